"""``--json`` and ``--once``: one snapshot per target, printed, then exit.

A target whose hub is blocked fails like any unresponsive one (exit 3), but its hub watchdog
said by what: ``--once`` prints that page (the culprit and its stack), ``--json`` prints the
watchdog's answer in that target's place (``{"target", "state": "blocked", "error", "blocked",
...}``) as long as every failure is a blocked hub. A broker target (the fleet) is one refresh of
every replica: a summary per service, then each replica's page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from nameko_chassis.amqp.management import AmqpUri

from .errors import (
    BlockedError,
    ConsoleError,
    ProtocolError,
    RemoteError,
    UnresponsiveError,
    UsageError,
    report,
)
from .targets import TargetAddress
from .targets.backdoor import BackdoorClient

#: Seconds ``--once``/``--json`` wait for the service's first backlog sample (its queues'
#: passive declares; probe/backlog.py). The wait yields the service's hub.
BACKLOG_WAIT = 3.0


def _collect(address: TargetAddress, args: argparse.Namespace) -> dict[str, Any]:
    with BackdoorClient(address, timeout=args.timeout) as client:
        try:
            client.request("backlog", wait=min(BACKLOG_WAIT, args.timeout / 2))
        except RemoteError:  # no backlog is no reason to fail a snapshot
            pass
        return client.collect(stacks=args.stacks, max_workers=args.max_workers)


def _blocked_json(address: TargetAddress, exc: BlockedError) -> dict[str, Any]:
    answer = exc.answer
    return {"target": str(address), "state": "blocked", "error": str(exc),
            "pid": answer.get("pid"), "host": answer.get("host"),
            "services": answer.get("services", []), "watchdog": answer.get("watchdog"),
            "blocked": exc.incident}


#: Columns of a --once page written to a pipe or a file (no terminal to ask), unless COLUMNS or
#: --width says otherwise: wide enough that paths and arguments are not cut.
PIPE_WIDTH = 160


def page_width(args: argparse.Namespace) -> int | None:
    """``--width``, else ``$COLUMNS``, else the terminal's (None: rich asks it), else
    :data:`PIPE_WIDTH` when stdout is no terminal."""
    if getattr(args, "width", None):
        return int(args.width)
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if sys.stdout.isatty() else PIPE_WIDTH


def run_oneshot(addresses: Sequence[TargetAddress | AmqpUri], args: argparse.Namespace) -> int:
    if any(isinstance(a, AmqpUri) for a in addresses):
        if len(addresses) != 1 or not isinstance(addresses[0], AmqpUri):
            raise UsageError("--json and --once take one broker URI alone (the fleet), or "
                             "backdoor TARGETs")
        return run_fleet_oneshot(addresses[0], args)
    return _run_backdoors([a for a in addresses if isinstance(a, TargetAddress)], args)


def run_fleet_oneshot(uri: AmqpUri, args: argparse.Namespace) -> int:
    from .targets.fleet import FleetTarget

    target = FleetTarget(uri, deadline=args.deadline, timeout=args.timeout)
    try:
        target.connect()
        data = target.collect(stacks=args.stacks, max_workers=args.max_workers)
    finally:
        target.close()
    if not data["replicas"] and not data["plain_services"]:
        raise UnresponsiveError(f"no chassis process answered on vhost {uri.vhost!r} at "
                                f"{uri.redacted()} within {args.deadline:g}s (--deadline), and "
                                "no nameko service is seen there")
    if args.json:
        for replica in data["replicas"]:
            if replica.get("snapshot") is not None:
                replica["snapshot"] = _with_figures(
                    replica["snapshot"], f"replica {replica.get('host', '?')}:"
                                         f"{replica.get('pid', '?')}")
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
        return 0
    from rich.console import Console

    from nameko_chassis.view.page import render_snapshot

    console = Console(highlight=False, width=page_width(args))
    console.print(render_fleet_summary(target))
    for replica in target.ordered():
        console.rule(f"{replica.label} ({replica.state})")
        if replica.snapshot is not None:
            console.print(render_snapshot(replica.snapshot, slow_after=args.slow))
    return 0


def _with_figures(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with the groups and rates ``--json`` adds per container (docs/schema.md); a
    peer that speaks the protocol but sends nonsense is a :class:`ProtocolError` naming
    ``source``."""
    from nameko_chassis.view.derived import with_figures
    from nameko_chassis.view.model import SnapshotError

    try:
        return with_figures(data)
    except SnapshotError as exc:
        raise ProtocolError(f"{source}: invalid snapshot: {exc}") from None


def render_fleet_summary(target: Any) -> Any:
    """Per service: replicas, workers in flight (summed and per replica), the oldest worker
    across the fleet and where it runs; then the services without the chassis."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .targets.fleet import NO_CHASSIS

    table = Table()
    for name in ("service", "replicas", "running", "per replica", "oldest", "on", "version",
                 "backlog"):
        table.add_column(name, justify="right" if name in ("running", "oldest") else "left")
    for s in target.summaries():
        per = []
        for r in s.replicas:
            running = sum(c.workers_running for c in (r.snapshot.containers if r.snapshot else ())
                          if c.service_name == s.name)
            per.append(f"{r.label} {running}" + ("" if r.answering else " (silent)"))
        table.add_row(Text(s.name, style="bold"), str(len(s.replicas)), str(s.running),
                      Text("\n".join(per)),
                      "" if s.oldest_age is None else f"{s.oldest_age:.1f}s",
                      Text(s.oldest_on or ""), Text(", ".join(sorted(s.versions))),
                      Text(s.backlog_text()))
    for p in target.plain:
        table.add_row(Text(p.name, style="bold"), str(p.instances or p.event_instances or "?"),
                      "", Text(NO_CHASSIS, style="yellow"), "", "", "", "")
    live = sum(1 for r in target.replicas.values() if r.answering)
    heading = Text(f"{target.label}: {live}/{len(target.replicas)} replicas answering",
                   style="bold")
    return Group(heading, table)


def _run_backdoors(addresses: Sequence[TargetAddress], args: argparse.Namespace) -> int:
    snapshots: list[dict[str, Any]] = []
    failures: list[ConsoleError] = []
    blocked: dict[int, BlockedError] = {}
    for i, address in enumerate(addresses):
        try:
            snapshots.append(_collect(address, args))
        except BlockedError as exc:
            failures.append(exc)
            blocked[i] = exc
            snapshots.append(_blocked_json(address, exc))
            report(exc)
        except ConsoleError as exc:
            failures.append(exc)
            report(exc)
    if len(blocked) < len(failures):
        # all or nothing: a partial array would shift the positions of the others
        return failures[0].exit_code
    if args.json:
        for i, address in enumerate(addresses):
            if i not in blocked:
                snapshots[i] = _with_figures(snapshots[i], str(address))
        payload: Any = snapshots[0] if len(snapshots) == 1 else snapshots
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        sys.stdout.flush()
        return failures[0].exit_code if failures else 0
    from rich.console import Console

    from nameko_chassis.view.model import Incident, Snapshot, SnapshotError
    from nameko_chassis.view.page import render_blocked, render_snapshot

    parsed: dict[int, Snapshot] = {}
    for i, (address, data) in enumerate(zip(addresses, snapshots, strict=True)):
        if i in blocked:
            continue
        try:
            parsed[i] = Snapshot.from_dict(data)
        except SnapshotError as exc:  # a peer that speaks the protocol but sends nonsense
            raise ProtocolError(f"{address}: invalid snapshot: {exc}") from None
    console = Console(highlight=False, width=page_width(args))
    for i, (address, data) in enumerate(zip(addresses, snapshots, strict=True)):
        if len(addresses) > 1:
            console.rule(str(address))
        if i in blocked:
            try:
                incident = Incident.from_dict(blocked[i].incident, "blocked")
            except SnapshotError:
                continue  # the one-line message on stderr said it all
            console.print(render_blocked(incident, target=str(address), pid=data.get("pid")))
            continue
        console.print(render_snapshot(parsed[i], slow_after=args.slow))
    return failures[0].exit_code if failures else 0
