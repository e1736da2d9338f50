"""The console's one seam to a service: the :class:`Target` protocol.

Everything the live console and the one-shot modes need from a service goes through these few
calls. :class:`~chassis_console.targets.backdoor.BackdoorClient` is the real one;
:class:`~chassis_console.targets.memory.MemoryTarget` serves recorded snapshots from memory.
"""

from __future__ import annotations

from typing import Protocol

from nameko_chassis.view.model import Snapshot


class Target(Protocol):
    """What the console talks to. Blocking; one call at a time (the poller serialises them)."""

    label: str
    #: how long the last call waited for the service, if it measured that
    last_round_trip_ms: float | None

    def connect(self) -> None: ...

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot: ...

    def kill_worker(self, call_id: str) -> bool: ...

    def close(self) -> None: ...
