"""The hog test service on the chassis: its watchdog starts with the container."""

from __future__ import annotations

from nameko_chassis.service import Service
from tests.services import hog


class ChassisHog(Service, hog.Hog):
    name = "chassis_hog"
