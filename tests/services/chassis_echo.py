"""A second, tiny chassis service, to run beside chassis_parking in one `nameko run` process."""

from __future__ import annotations

from nameko.rpc import rpc

from nameko_chassis.service import Service


class Echo(Service):
    name = "echo"

    @rpc
    def echo(self, value: object) -> object:
        return value
