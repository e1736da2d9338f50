"""A nameko service whose worker calls the chassis parking lot and waits: the caller of a
worker an operator kills, to see what the other side gets."""

from __future__ import annotations

from nameko.exceptions import RemoteError
from nameko.rpc import ServiceRpc, rpc


class Caller:
    name = "kill_caller"

    lot = ServiceRpc("chassis_parking")

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc
    def wait_for_lot(self, tag: str) -> str:
        try:
            return "returned " + self.lot.park(tag=tag)
        except RemoteError as exc:
            return f"RemoteError {exc.exc_type}: {exc.value}"
