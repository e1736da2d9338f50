"""Figures derived from one snapshot, as JSON: per container, the workers grouped by entrypoint and
*where* and the rates per entrypoint over the last minute from the service's history. What
``chassis-console --json`` adds to each container (``groups`` and ``rates``, documented fields
within schema v1: docs/schema.md) and what the ``--once`` page draws (page.py), from the same
functions as the live console's groups and rates views. Pure: standard library only.

One snapshot cannot show a rate where the service keeps no history (a plain nameko service): the
live console estimates those from successive snapshots; here ``rates`` is ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .model import Container, Frame, Snapshot
from .rates import WINDOW_S, Call, EntrypointRate, entrypoint_rates
from .text import group_workers

#: JSON Schema (draft 2020-12) of the two container fields ``--json`` adds: their definitions in
#: probe/snapshot.schema.json, the one home of the schema.
CONTAINER_FIELDS_SCHEMA: dict[str, Any] = {
    name: definition for name, definition in json.loads(
        resources.files("nameko_chassis.probe").joinpath("snapshot.schema.json")
        .read_text(encoding="utf-8"))["$defs"]["container"]["properties"].items()
    if name in ("groups", "rates")}


@dataclass(frozen=True)
class HistoryRates:
    """A container's rates from its history: the figures, and whether they are a lower bound."""

    rates: list[EntrypointRate]
    #: the history's oldest entry is inside the window: older calls may have rolled out of it
    estimate: bool


def history_rates(container: Container, now: float, slow_after: float = 10.0
                  ) -> HistoryRates | None:
    """Per entrypoint from ``container``'s history, most in need of attention first; None when
    the service keeps no history."""
    history = container.history
    if history is None:
        return None
    rates = entrypoint_rates((Call(h.entrypoint, h.finished_at, h.duration_s, h.outcome)
                              for h in history), now)
    rates.sort(key=lambda r: (r.attention(slow_after), r.entrypoint))
    estimate = len(history) >= 2 and min(h.finished_at for h in history) > now - WINDOW_S
    return HistoryRates(rates, estimate)


def _where(frame: Frame | None) -> str | None:
    return None if frame is None else f"{frame.short_file}:{frame.line}"


def container_figures(container: Container, now: float) -> dict[str, Any]:
    """``{"groups": [...], "rates": {...} | None}`` for one container (see
    :data:`CONTAINER_FIELDS_SCHEMA`)."""
    groups = [{"entrypoint": g.entrypoint, "where": _where(g.where), "count": g.count,
               "oldest_s": round(g.oldest_s, 3), "lower_bound": g.lower_bound}
              for g in group_workers(container.workers)]
    found = history_rates(container, now)
    rates: dict[str, Any] | None = None
    if found is not None:
        rates = {"source": "history", "window_s": WINDOW_S, "estimate": found.estimate,
                 "entrypoints": [{
                     "entrypoint": r.entrypoint, "calls": r.calls, "per_s": round(r.per_s, 4),
                     "errors": r.errors, "expected_errors": r.expected_errors,
                     "error_rate": round(r.error_rate or 0.0, 4),
                     "p50_s": None if r.p50_s is None else round(r.p50_s, 6),
                     "p99_s": None if r.p99_s is None else round(r.p99_s, 6),
                     "buckets": list(r.buckets)} for r in found.rates]}
    return {"groups": groups, "rates": rates}


def with_figures(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the snapshot ``data`` (schema v1, as ``collect()`` returns it) whose containers
    carry ``groups`` and ``rates``, computed at the snapshot's time."""
    snapshot = Snapshot.from_dict(data)
    out = dict(data)
    out["containers"] = [{**raw, **container_figures(parsed, snapshot.time)}
                         for raw, parsed in zip(data["containers"], snapshot.containers,
                                                strict=True)]
    return out
