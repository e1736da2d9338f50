"""Views of a snapshot, pure: the typed model (:mod:`.model`), the text helpers every view shares
(:mod:`.text`) and the one page renderer (:mod:`.page`: ``--once``, ``debug_runner``, the REPL).
Imports the probe's tables and rich only — never nameko, eventlet or textual.
"""

from .model import (
    Container,
    Dependency,
    Entrypoint,
    FinishedWorker,
    Frame,
    ManagedThread,
    Snapshot,
    SnapshotError,
    Subextension,
    Worker,
)

__all__ = ["Container", "Dependency", "Entrypoint", "FinishedWorker", "Frame", "ManagedThread",
           "Snapshot", "SnapshotError", "Subextension", "Worker"]
