"""Service discovery: the nameko services on a broker, from the RabbitMQ management API, and
their entrypoints from the chassis ``describe()`` RPC method.

Pure on purpose (no nameko or eventlet): the console uses it. Queues tell which services are
there — only queues with consumers count, on the URI's vhost:

- ``rpc-<service>``: a service with RPC entrypoints (``instances`` = its consumers);
- ``evt-<source>-<event>--<service>.<method>[-<uuid>]``: an event handler of ``<service>``;
- ``rpc.reply-<service>-<uuid>``: a service that calls others (a timer-only service, say).

Then every service with an RPC queue is asked ``describe()`` over kombu
(:mod:`nameko_chassis.rpcclient`); a service that is not a chassis service answers
``MethodNotFound`` and is listed without its entrypoints.

Errors: :class:`nameko_chassis.broker.ManagementError` when the management API cannot be used.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .management import AmqpUri, ManagementApi, ManagementError
from .rpc import RpcClient, RpcError, RpcTimeout

#: Seconds to wait for all ``describe()`` answers together.
DEFAULT_DESCRIBE_TIMEOUT = 5.0

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RPC = re.compile(r"^rpc-(?P<service>.+)$")
_REPLY = re.compile(rf"^rpc\.reply-(?P<service>.+)-{_UUID}$")
_EVENT = re.compile(rf"^evt-.+--(?P<service>.+)\.(?P<method>[^.]+?)(-{_UUID})?$")


class UnknownVhostError(ManagementError):
    """The URI names a vhost the broker does not have."""


@dataclass
class DiscoveredService:
    """One service seen on the broker, and what it said about itself."""

    name: str
    vhost: str
    #: consumers on ``rpc-<name>``: running instances with RPC entrypoints (0: none)
    instances: int = 0
    #: most consumers on one of its event queues (instances of an event-only service)
    event_instances: int = 0
    rpc_queue: str | None = None
    event_handlers: list[str] = field(default_factory=list)
    calls_others: bool = False
    #: ``True`` when describe() answered, ``False`` when the service has no describe()
    chassis: bool | None = None
    version: str | None = None
    entrypoints: list[dict[str, Any]] | None = None
    error: str | None = None

    def __repr__(self) -> str:
        kind = {True: "chassis", False: "plain", None: "?"}[self.chassis]
        return f"<DiscoveredService {self.name} on {self.vhost} x{self.instances} {kind}>"



def services_from_queues(queues: list[dict[str, Any]], vhost: str) -> list[DiscoveredService]:
    """Services named by the queues (management API rows) that have consumers."""
    found: dict[str, DiscoveredService] = {}

    def get(name: str) -> DiscoveredService:
        if name not in found:
            found[name] = DiscoveredService(name=name, vhost=vhost)
        return found[name]

    for queue in queues:
        name = str(queue.get("name", ""))
        if queue.get("vhost", vhost) != vhost or not queue.get("consumers"):
            continue
        if (m := _REPLY.match(name)) is not None:
            get(m["service"]).calls_others = True
        elif (m := _RPC.match(name)) is not None:
            service = get(m["service"])
            service.rpc_queue = name
            service.instances = int(queue["consumers"])
        elif (m := _EVENT.match(name)) is not None:
            service = get(m["service"])
            service.event_handlers.append(m["method"])
            # every instance of a service consumes each of its (shared) event queues
            service.event_instances = max(service.event_instances, int(queue["consumers"]))
    for service in found.values():
        service.event_handlers.sort()
    return sorted(found.values(), key=lambda s: s.name)


def describe_services(services: list[DiscoveredService], amqp_uri: str, *,
                      timeout: float = DEFAULT_DESCRIBE_TIMEOUT) -> None:
    """Ask every service with an RPC queue for ``describe()``; fills in the answers."""
    with_rpc = [s for s in services if s.rpc_queue]
    if not with_rpc:
        return
    try:
        client = RpcClient(amqp_uri, timeout=timeout)
    except Exception as exc:  # kombu/amqp connection errors are of several kinds
        for service in with_rpc:
            service.error = f"cannot call describe(): {type(exc).__name__}: {exc}"
        return
    with client:
        pending = [(s, client.call_async(s.name, "describe")) for s in with_rpc]
        deadline = time.monotonic() + timeout
        for service, call in pending:
            try:
                answer = call.result(timeout=max(deadline - time.monotonic(), 0.01))
            except RpcError as exc:
                if exc.exc_type == "MethodNotFound":
                    service.chassis = False
                else:
                    service.error = f"describe() raised {exc}"
                continue
            except RpcTimeout:
                service.error = f"no answer to describe() within {timeout:g}s"
                continue
            if not isinstance(answer, dict):
                service.error = f"describe() answered {type(answer).__name__}, not a mapping"
                continue
            service.chassis = True
            service.version = str(answer.get("version") or "") or None
            service.entrypoints = [
                {"method": str(e.get("method")), "type": str(e.get("type"))}
                for e in answer.get("entrypoints", []) if isinstance(e, dict)
            ]


def discover(amqp_uri: str | AmqpUri, *, management: ManagementApi | None = None,
             describe: bool = True, timeout: float = DEFAULT_DESCRIBE_TIMEOUT
             ) -> list[DiscoveredService]:
    """The nameko services on ``amqp_uri``'s vhost, sorted by name (see the module docstring)."""
    uri = amqp_uri if isinstance(amqp_uri, AmqpUri) else AmqpUri.parse(amqp_uri)
    api = management or ManagementApi(uri, timeout=timeout)
    try:
        queues = api.queues(uri.vhost)
    except ManagementError as exc:
        if "HTTP 404" not in str(exc):
            raise
        known = ", ".join(repr(v) for v in sorted(api.vhosts())) or "none"
        raise UnknownVhostError(f"vhost {uri.vhost!r} does not exist on the broker at "
                                f"{api.url} (vhosts there: {known})") from None
    services = services_from_queues(queues, uri.vhost)
    if describe:
        describe_services(services, str(uri), timeout=timeout)
    return services
