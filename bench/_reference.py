"""nameko-chassis 3.2.0, the reference the benches compare against, in a bench-only virtualenv
(bench/.venv-ref): it uses the same import name as this project, so it never mixes with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REF_VENV = Path(__file__).resolve().parent / ".venv-ref"


def ensure_ref_venv() -> Path | None:
    """The reference venv's python, created on first use; None when it cannot be installed."""
    python = REF_VENV / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-ref with nameko-chassis 3.2.0 ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        # rich: 3.2.0's debug_runner takes its rich path when rich is there, as users would see
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "nameko-chassis==3.2.0",
                               "rich"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"could not install nameko-chassis 3.2.0: {done.stderr[-500:]}", file=sys.stderr)
            return None
    return python
