"""Services written for nameko-chassis 3.2.0, unchanged: what its users run today.

``compat_greeter``: RPC only (3.2.0's base methods come from ``Service``), a worker that parks
until released (for ``query_state``), ``self.sentry.captureException()`` as 3.2.0's README
spells it, and an unexpected error. ``compat_web``: HTTP entrypoints — one through a handler that
maps werkzeug HTTP errors to their status (the pattern nameko's docs show), one whose expected
error nameko answers with 400.

At import, like 3.2.0 services: ``setup_sentry_sdk()`` (reads ``$SENTRY_DSN``).
"""

from __future__ import annotations

import eventlet.event
from nameko.rpc import rpc
from nameko.web.handlers import HttpRequestHandler, http
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Response

from nameko_chassis.dependencies import ContainerProvider, setup_sentry_sdk
from nameko_chassis.service import Service

setup_sentry_sdk()

_gate = eventlet.event.Event()


class Declined(Exception):
    pass


class HttpEntrypoint(HttpRequestHandler):
    """werkzeug HTTP errors answer with their own status (a common nameko pattern)."""

    def response_from_exception(self, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return Response(exc.description or "", status=exc.code)
        return super().response_from_exception(exc)


mapped_http = HttpEntrypoint.decorator


class Greeter(Service):
    name = "compat_greeter"

    box = ContainerProvider()

    @rpc(sensitive_arguments=("password",))
    def park(self, note: str, password: str) -> str:
        _gate.wait()
        return note

    @rpc
    def release(self) -> None:
        global _gate
        _gate.send(None)
        _gate = eventlet.event.Event()

    @rpc
    def container_name(self) -> str:
        return self.box.service_name

    @rpc
    def oops(self) -> str:
        try:
            raise Declined("handled, and reported by hand")
        except Declined:
            self.sentry.captureException()
        return "reported"

    @rpc
    def fail(self) -> None:
        raise RuntimeError("compat worker failed")


class Web(Service):
    name = "compat_web"

    @mapped_http("GET", "/items/<int:item_id>", expected_exceptions=NotFound)
    def item(self, request, item_id: int) -> str:
        if item_id != 1:
            raise NotFound(f"no item {item_id}")
        return "item 1"

    @http("GET", "/declined", expected_exceptions=Declined)
    def declined(self, request) -> str:
        raise Declined("nameko answers 400")
