"""Input history of the REPL: one private file per target."""

from __future__ import annotations

import os
import re
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from ..targets import TargetAddress


def history_path(address: TargetAddress, environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/nameko-chassis/history/<target>`` (default ``~/.local/share``), one file
    per target, the target's characters outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    env = os.environ if environ is None else environ
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(address)).strip("._") or "target"
    return base / "nameko-chassis" / "history" / name


def open_history(address: TargetAddress) -> tuple[History, str | None]:
    """The target's history file, private to the user (what is typed may hold secrets); an
    in-memory history and a warning when it cannot be written."""
    path = history_path(address)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        return InMemoryHistory(), f"history will not be kept: cannot write {path}: {exc.strerror}"
    return FileHistory(str(path)), None
