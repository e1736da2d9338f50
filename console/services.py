"""``chassis-console --services [AMQP_URI]``: list the nameko services on a broker's vhost.

Reads queues through the RabbitMQ management API and asks chassis services for ``describe()``
over AMQP (kombu, no eventlet); see :mod:`nameko_chassis.discovery`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from nameko_chassis.amqp.discovery import DiscoveredService, UnknownVhostError, discover
from nameko_chassis.amqp.management import DEFAULT_AMQP_URI, AmqpUri, ManagementError

from .errors import UnreachableError, UsageError


def _entrypoints(service: DiscoveredService) -> Text:
    if service.entrypoints is not None:
        by_type: dict[str, list[str]] = {}
        for ep in service.entrypoints:
            by_type.setdefault(ep["type"], []).append(ep["method"])
        return Text("\n".join(f"{kind}: {', '.join(methods)}"
                              for kind, methods in sorted(by_type.items())))
    parts = []
    if service.event_handlers:
        parts.append(f"event_handler: {', '.join(service.event_handlers)}")
    if service.rpc_queue:
        parts.append("rpc: ?")
    return Text("\n".join(parts) or "—", style="dim")


def instances(service: DiscoveredService) -> int | None:
    """Running instances: consumers of its RPC queue, else of its event queues."""
    if service.rpc_queue:
        return service.instances
    return service.event_instances or None


def render_services(services: list[DiscoveredService], uri: AmqpUri) -> Table:
    table = Table(title=Text(f"nameko services on {uri.redacted()}"), title_justify="left")
    table.add_column("service", style="bold")
    table.add_column("instances", justify="right")
    table.add_column("version")
    table.add_column("entrypoints")
    table.add_column("notes", style="yellow")
    for s in services:
        notes = []
        if s.error:
            notes.append(s.error)
        if s.chassis is False:
            notes.append("not a chassis service (no describe()): attach to its backdoor "
                         "with chassis-console HOST:PORT for its entrypoints")
        if s.calls_others and not s.rpc_queue and not s.event_handlers:
            notes.append("no RPC or event queue (calls other services)")
        count = instances(s)
        table.add_row(Text(s.name), "—" if count is None else str(count),
                      Text(s.version or ""), _entrypoints(s), Text("; ".join(notes)))
    return table


def run_services(uri: str | None, *, timeout: float, as_json: bool = False) -> int:
    """List the services on ``uri`` (default ``$AMQP_URI``); 0 when the listing worked.
    ``as_json``: one JSON array of the services (the fields of ``DiscoveredService``)."""
    text = uri or os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    try:
        parsed = AmqpUri.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        services = discover(parsed, timeout=timeout)
    except UnknownVhostError as exc:
        raise UsageError(str(exc)) from None
    except ManagementError as exc:
        raise UnreachableError(str(exc)) from None
    if as_json:
        rows = [{**dataclasses.asdict(s), "instances": instances(s) or 0} for s in services]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    console = Console(highlight=False)
    if not services:
        console.print(Text(f"no nameko services (queues with consumers) on vhost "
                           f"{parsed.vhost!r} at {parsed.redacted()}"))
        return 0
    console.print(render_services(services, parsed))
    return 0
