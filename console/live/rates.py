"""The rates view: per entrypoint, calls/s, error rate and p50/p99 duration over the last
minute with a sparkline of calls, most in need of attention first.

Chassis services: from every finished worker the console has seen in the snapshots' history
(merged by call id across refreshes, so more than one history's worth per minute is counted
while the console refreshes faster than the history turns over; when it turns over faster,
the figures are marked incomplete). Plain services keep no history: a worker that was in one
snapshot and is gone from the next finished in between — those figures are estimates (``~``),
with no outcome, and calls shorter than a refresh are not seen at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from nameko_chassis.view.model import Snapshot
from nameko_chassis.view.rates import WINDOW_S, Call, EntrypointRate, entrypoint_rates, spark
from nameko_chassis.view.text import format_age, short_entrypoint

from .common import KeyedTable, Palette, SortText, cell, set_border
from .poller import TargetStatus

COLUMNS: tuple[tuple[str, str], ...] = (
    ("attention", " "),
    ("service", "service"),
    ("entrypoint", "entrypoint"),
    ("rate", "calls/s"),
    ("spark", "last minute"),
    ("errors", "errors"),
    ("p50", "p50"),
    ("p99", "p99"),
    ("running", "running"),
)
FIXED_WIDTHS = {"attention": 1, "spark": 12}


@dataclass
class TargetRates:
    """What one target's successive snapshots say about finished calls."""

    calls: dict[str, Call] = field(default_factory=dict)  # call id -> call
    #: plain services: the workers of the last snapshot, call id -> (entrypoint, age)
    last_workers: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)
    last_time: float | None = None
    last_pid: int | None = None
    estimated: set[str] = field(default_factory=set)  # services measured by estimate
    incomplete_until: dict[str, float] = field(default_factory=dict)  # service -> time

    def record(self, snap: Snapshot) -> None:
        """Take in a new snapshot (the same one twice counts once)."""
        if snap.time == self.last_time:
            return
        if self.last_pid is not None and snap.pid != self.last_pid:
            self.last_workers.clear()  # a restart: its workers did not finish
        previous, now = self.last_time, snap.time
        for c in snap.containers:
            service = c.service_name
            if c.history is not None:
                fresh = [h for h in c.history if h.call_id not in self.calls]
                if (previous is not None and fresh and len(fresh) == len(c.history) > 1
                        and min(h.finished_at for h in fresh) > previous):
                    # nothing seen before is left in the history: some calls went unseen
                    self.incomplete_until[service] = now + WINDOW_S
                for h in fresh:
                    self.calls[h.call_id] = Call(h.entrypoint, h.finished_at, h.duration_s,
                                                 h.outcome)
                continue
            self.estimated.add(service)
            current = {w.call_id: (w.entrypoint, w.age_s) for w in c.workers}
            before = self.last_workers.get(service)
            complete = c.workers_running <= len(c.workers)
            if before is not None and previous is not None and complete:
                half = (now - previous) / 2
                for call_id, (entrypoint, age) in before.items():
                    if call_id not in current:  # finished between the two snapshots
                        self.calls[call_id] = Call(entrypoint, previous + half, age + half)
            elif not complete:
                self.incomplete_until[service] = now + WINDOW_S
            self.last_workers[service] = current
        self.last_time, self.last_pid = now, snap.pid
        cutoff = now - WINDOW_S
        for call_id in [k for k, v in self.calls.items() if v.finished_at <= cutoff]:
            del self.calls[call_id]

    def rates(self, now: float) -> list[tuple[str, EntrypointRate]]:
        """(service, figures) per entrypoint that finished a call in the last minute."""
        by_service: dict[str, list[Call]] = {}
        for call in self.calls.values():
            by_service.setdefault(call.entrypoint.split(".", 1)[0], []).append(call)
        out = []
        for service, calls in by_service.items():
            out += [(service, r) for r in entrypoint_rates(
                calls, now, estimate=service in self.estimated,
                incomplete=self.incomplete_until.get(service, 0.0) > now)]
        return out


def _duration(seconds: float | None, estimate: bool) -> str:
    if seconds is None:
        return "–"
    return ("~" if estimate else "") + format_age(seconds)


class RatesTable(KeyedTable):
    """Every entrypoint that finished a call in the last minute, of every target."""

    def __init__(self, *, slow: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slow = slow
        self.order = ("attention", False)
        self.targets: dict[int, TargetRates] = {}

    def on_mount(self) -> None:
        self.set_columns(COLUMNS, FIXED_WIDTHS)

    def record(self, statuses: Sequence[TargetStatus]) -> None:
        """Keep counting while hidden: called on every refresh."""
        for s in statuses:
            if s.snapshot is not None and not s.stale:
                self.targets.setdefault(s.index, TargetRates()).record(s.snapshot)

    def show(self, statuses: Sequence[TargetStatus]) -> None:
        palette = Palette.of(self.app)
        wanted: dict[str, tuple[Text, ...]] = {}
        any_estimate = any_incomplete = False
        for s in statuses:
            tracker = self.targets.get(s.index)
            if tracker is None or s.snapshot is None:
                continue
            running: dict[str, int] = {}
            for _, w in s.snapshot.workers:
                running[w.entrypoint] = running.get(w.entrypoint, 0) + 1
            for service, r in tracker.rates(s.snapshot.time):
                key = f"{s.index}|{r.entrypoint}"
                any_estimate |= r.estimate
                any_incomplete |= r.incomplete
                rate = r.error_rate
                slow = (r.p99_s or 0.0) >= self.slow
                mark = SortText("●" if rate else "⚠" if slow else " ", no_wrap=True,
                                style=f"bold {palette.error}" if rate else palette.warning)
                mark.sort_value = (r.attention(self.slow), key)
                prefix = "~" if r.estimate else "≥" if r.incomplete else ""
                per_s = cell(f"{prefix}{r.per_s:.2f}", "bold", limit=12, sort=(-r.per_s, key))
                if rate is None:
                    errors = cell("?", "dim", limit=12, sort=(0.0, key))
                else:
                    text = f"{rate:.0%} ({r.errors})" if r.errors else "0"
                    if r.expected_errors:
                        text += f" +{r.expected_errors} expected"
                    errors = cell(text, f"bold {palette.error}" if r.errors else "dim",
                                  limit=30, sort=(-rate, key))
                entrypoint = short_entrypoint(service, r.entrypoint)
                wanted[key] = (
                    mark,
                    cell(service, "", limit=30, sort=(service, key)),
                    cell(entrypoint, "bold", limit=40, sort=(entrypoint, key)),
                    per_s,
                    cell(spark(r.buckets), palette.accent, limit=12, sort=(-r.calls, key)),
                    errors,
                    cell(_duration(r.p50_s, r.estimate), "", limit=12,
                         sort=(-(r.p50_s or 0.0), key)),
                    cell(_duration(r.p99_s, r.estimate),
                         f"bold {palette.error}" if slow else "", limit=12,
                         sort=(-(r.p99_s or 0.0), key)),
                    cell(str(running.get(r.entrypoint, 0)), "", limit=8,
                         sort=(-running.get(r.entrypoint, 0), key)),
                )
        self.apply(wanted)
        notes = []
        if any_estimate:
            notes.append("~ estimated from successive snapshots (plain service: no outcomes, "
                         "calls shorter than a refresh unseen)")
        if any_incomplete:
            notes.append("≥ some calls unseen (history turned over between refreshes)")
        set_border(self, f"entrypoints: last {WINDOW_S:g}s, most in need of attention first",
                   " · ".join(notes) or "e back")
