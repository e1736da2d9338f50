"""Chassis services for the console tests: a call that fails with a traceback through the
service's own code, and a chain of calls held where a test wants (``relay`` calls
``parking.park`` and waits on it), so the console can follow a call downstream.

Run beside ``tests.services.parking`` (same process or another target); no HTTP entrypoints,
so several of these may run at once.
"""

from __future__ import annotations

from nameko.rpc import ServiceRpc, rpc

from nameko_chassis.service import Service
from tests.services import parking as _parking


class Refused(Exception):
    pass


def check_card(card: str) -> None:
    raise Refused(f"card ending {card[-4:]} refused")


class ChainFront(Service):
    name = "chain_front"

    parking = ServiceRpc("parking")

    @rpc(sensitive_arguments=("card",))
    def pay(self, user: str, card: str) -> None:
        check_card(card)

    @rpc
    def hello(self, who: str = "world") -> str:
        return f"hello {who}"

    @rpc
    def relay(self, tag: str = "default") -> str:
        return str(self.parking.park(tag=tag))


class ChainParking(Service, _parking.Parking):
    """Parking on the chassis: its workers have exact start times (plain ones are timed from
    when the collector first saw them, so workers seen first together look equally old)."""

    name = "chain_parking"
