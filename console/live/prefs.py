"""What the console remembers between runs: the workers' sort order per set of targets.

Stored as JSON in ``$XDG_STATE_HOME/chassis-console/console.json`` (``~/.local/state/...``
without it). Best effort: a file that cannot be read or written is ignored, never an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Sets of targets remembered; the least recently used are forgotten first.
MAX_REMEMBERED = 200


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "chassis-console" / "console.json"


def targets_key(labels: Iterable[str]) -> str:
    return " ".join(sorted(labels))


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_sort(labels: Iterable[str], path: Path | None = None) -> tuple[str, bool] | None:
    """The (column, reversed) last chosen for these targets, if any."""
    entry = _load(path or state_file()).get("sort", {}).get(targets_key(labels))
    if (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], bool)):
        return entry[0], entry[1]
    return None


def remember_sort(labels: Iterable[str], column: str, reverse: bool,
                  path: Path | None = None) -> None:
    path = path or state_file()
    data = _load(path)
    sorts = data.get("sort")
    if not isinstance(sorts, dict):
        sorts = {}
    key = targets_key(labels)
    sorts.pop(key, None)
    sorts[key] = [column, reverse]  # most recently used last
    while len(sorts) > MAX_REMEMBERED:
        sorts.pop(next(iter(sorts)))
    data["sort"] = sorts
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError:
        pass
