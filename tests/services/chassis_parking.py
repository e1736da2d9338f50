"""The parking service as a chassis service: the same workers that wait where a test wants, plus
every chassis provider (fleet introspection included). For the fleet tests and bench/fleet.py.

Imported as a module (``parking.Parking``), so that ``nameko run`` finds one service here.
"""

from __future__ import annotations

from nameko_chassis.service import Service
from tests.services import parking


class ChassisParking(parking.Parking, Service):
    name = "parking"
    version = "2.0.0"
