"""``chassis-console --repl``: a Python prompt inside a running service, over its backdoor.

:mod:`.session` (the REPL loop and reconnects), :mod:`.editing` (when Enter runs, indent, Tab
completion), :mod:`.waiting` (a running statement: Ctrl-C, spinner, streamed output),
:mod:`.output` (terminal-safe text, pages), :mod:`.history` (per-target history files).
"""

from .editing import input_state, should_run
from .history import history_path
from .session import Repl, run_repl

__all__ = ["Repl", "history_path", "input_state", "run_repl", "should_run"]
