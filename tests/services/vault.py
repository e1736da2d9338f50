"""A chassis service whose workers carry secrets, for the redaction corpus test.

``hold(user, password, note="", **kwargs)`` and ``stash(who, **kwargs)`` park until
``release(tag)``; ``declared`` parks with
declared ``sensitive_arguments`` paths; ``fail(message, **kwargs)`` logs a line (a Sentry
breadcrumb), then raises ``Leak(message)``: history, Sentry and OTel see the exception.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from eventlet.event import Event
from nameko.rpc import rpc

from nameko_chassis.service import Service

log = logging.getLogger(__name__)
_parked: dict[str, list[Event]] = defaultdict(list)


class Leak(Exception):
    pass


def _park(tag: str) -> None:
    event = Event()
    _parked[tag].append(event)
    event.wait()


class Vault(Service):
    name = "vault"

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc
    def hold(self, user, password, note="", tag="default", **kwargs):  # noqa: ANN001, ANN003, ANN201
        _park(tag)

    @rpc
    def stash(self, who, note="", tag="default", **kwargs):  # noqa: ANN001, ANN003, ANN201
        _park(tag)

    @rpc(sensitive_arguments=("items[0].token", "profile.ssn", "voucher", "pin_code"))
    def declared(self, items, profile=None, tag="default", **kwargs):  # noqa: ANN001, ANN003, ANN201
        _park(tag)

    @rpc
    def fail(self, message, **kwargs):  # noqa: ANN001, ANN003, ANN201
        log.warning("about to fail: %s", message)
        self.sentry.add_breadcrumb(f"crumb: {message}", category="vault", detail=message)
        raise Leak(message)

    @rpc
    def release(self, tag: str = "default") -> int:
        events = _parked.pop(tag, [])
        for event in events:
            event.send(None)
        return len(events)
