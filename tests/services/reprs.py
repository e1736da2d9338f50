"""A plain nameko service whose workers carry objects with hostile ``__repr__``s in their context
data, for the bounded-inspection tests.

``park(kind, tag="default")`` parks a worker whose context holds one object of ``kind``:

- ``waits``: its repr reads a socket nobody writes to (it waits, green, for ever);
- ``burns``: its repr loops on the CPU for ever, on one line;
- ``huge``: 50 MB of bytes;
- ``fine``: an ordinary object with a repr of its own.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from typing import Any

from eventlet.event import Event
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

_parked: dict[str, list[Event]] = defaultdict(list)


class Waits:
    def __repr__(self) -> str:
        a, b = socket.socketpair()
        try:
            a.recv(1)  # nobody writes: waits for ever (green, under nameko run)
        finally:
            a.close()
            b.close()
        return "Waits()"


class Burns:
    def __repr__(self) -> str:
        while True: pass  # noqa: E701  (one line: no line events, opcode ones only)


class Fine:
    def __repr__(self) -> str:
        return "Fine(42)"


KINDS: dict[str, Any] = {"waits": Waits, "burns": Burns, "fine": Fine,
                         "huge": lambda: b"\x00" * 50_000_000}


class Hostile(DependencyProvider):
    def worker_setup(self, worker_ctx: Any) -> None:
        kind = worker_ctx.kwargs.get("kind") or (worker_ctx.args[:1] or [None])[0]
        if kind in KINDS:
            worker_ctx.data["payload"] = KINDS[kind]()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None


class Reprs:
    name = "reprs"
    hostile = Hostile()

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc
    def park(self, kind: str, tag: str = "default") -> str:
        event = Event()
        _parked[tag].append(event)
        event.wait()
        return kind

    @rpc
    def release(self, tag: str = "default") -> int:
        events = _parked.pop(tag, [])
        for event in events:
            event.send(None)
        return len(events)
