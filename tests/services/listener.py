"""A plain nameko service with an event handler only (no RPC queue of its own)."""

from __future__ import annotations

from nameko.events import event_handler


class Listener:
    name = "listener"

    @event_handler("somewhere", "happened")
    def on_happened(self, payload: object) -> None:
        pass
