"""``--json`` and ``--once``: one snapshot per target, printed, then exit."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConsoleError, ProtocolError
from .targets import TargetAddress
from .targets.backdoor import BackdoorClient


def _collect(address: TargetAddress, args: argparse.Namespace) -> dict[str, Any]:
    with BackdoorClient(address, timeout=args.timeout) as client:
        return client.collect(stacks=args.stacks, max_workers=args.max_workers)


def run_oneshot(addresses: Sequence[TargetAddress], args: argparse.Namespace) -> int:
    snapshots: list[dict[str, Any]] = []
    failures: list[ConsoleError] = []
    for address in addresses:
        try:
            snapshots.append(_collect(address, args))
        except ConsoleError as exc:
            failures.append(exc)
            print(f"chassis-console: {exc}", file=sys.stderr)
    if failures:
        # all or nothing: a partial array would shift the positions of the others
        return failures[0].exit_code
    if args.json:
        payload: Any = snapshots[0] if len(snapshots) == 1 else snapshots
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        sys.stdout.flush()
        return 0
    from rich.console import Console

    from nameko_chassis.view.model import Snapshot, SnapshotError
    from nameko_chassis.view.page import render_snapshot

    parsed = []
    for address, data in zip(addresses, snapshots, strict=True):
        try:
            parsed.append(Snapshot.from_dict(data))
        except SnapshotError as exc:  # a peer that speaks the protocol but sends nonsense
            raise ProtocolError(f"{address}: invalid snapshot: {exc}") from None
    console = Console(highlight=False)
    for address, snapshot in zip(addresses, parsed, strict=True):
        if len(addresses) > 1:
            console.rule(str(address))
        console.print(render_snapshot(snapshot, slow_after=args.slow))
    return 0
