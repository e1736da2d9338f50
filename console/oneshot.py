"""``--json`` and ``--once``: one snapshot per target, printed, then exit.

A target whose hub is blocked fails like any unresponsive one (exit 3), but its hub watchdog
said by what: ``--once`` prints that page (the culprit and its stack), ``--json`` prints the
watchdog's answer in that target's place (``{"target", "state": "blocked", "error", "blocked",
...}``) as long as every failure is a blocked hub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import BlockedError, ConsoleError, ProtocolError
from .targets import TargetAddress
from .targets.backdoor import BackdoorClient


def _collect(address: TargetAddress, args: argparse.Namespace) -> dict[str, Any]:
    with BackdoorClient(address, timeout=args.timeout) as client:
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


def run_oneshot(addresses: Sequence[TargetAddress], args: argparse.Namespace) -> int:
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
            print(f"chassis-console: {exc}", file=sys.stderr)
        except ConsoleError as exc:
            failures.append(exc)
            print(f"chassis-console: {exc}", file=sys.stderr)
    if len(blocked) < len(failures):
        # all or nothing: a partial array would shift the positions of the others
        return failures[0].exit_code
    if args.json:
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
