"""Rates and latency per entrypoint over the last minute: calls/s, error rate, p50/p99 duration
and a per-bucket sparkline of calls. Pure (standard library): the ``--once`` page computes them
from one snapshot's history, the live console from every finished worker it has seen (chassis
services) or from workers vanishing between snapshots (plain services: estimates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Seconds the figures cover.
WINDOW_S = 60.0
#: Buckets of the calls sparkline (each WINDOW_S / BUCKETS seconds).
BUCKETS = 12


@dataclass(frozen=True)
class Call:
    """One finished call as the rates see it."""

    entrypoint: str
    finished_at: float
    duration_s: float
    #: "success" | "error" | "expected_error"; None when unknown (plain services)
    outcome: str | None = None


@dataclass(frozen=True)
class EntrypointRate:
    entrypoint: str
    calls: int
    per_s: float
    errors: int
    expected_errors: int
    p50_s: float | None
    p99_s: float | None
    #: calls per bucket, oldest first
    buckets: tuple[int, ...]
    #: figures estimated from successive snapshots (plain services: no outcomes, durations
    #: only bounded, calls shorter than a refresh unseen)
    estimate: bool = False
    #: some calls may be missing (the history turned over faster than the console refreshed)
    incomplete: bool = False

    @property
    def error_rate(self) -> float | None:
        if self.estimate:
            return None
        return self.errors / self.calls if self.calls else 0.0

    def attention(self, slow_after: float) -> tuple[float, ...]:
        """Sort key, most in need of attention first: error rate, then p99 over ``slow_after``,
        then p99, then calls/s."""
        p99 = self.p99_s or 0.0
        return (-(self.error_rate or 0.0), -(p99 >= slow_after), -p99, -self.per_s)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))  # ceil(n * q), at least 1
    return sorted_values[min(int(rank), len(sorted_values)) - 1]


def entrypoint_rates(calls: Iterable[Call], now: float, *, window_s: float = WINDOW_S,
                     buckets: int = BUCKETS, estimate: bool = False,
                     incomplete: bool = False) -> list[EntrypointRate]:
    """Per entrypoint, the calls that finished in ``(now - window_s, now]``."""
    start = now - window_s
    width = window_s / buckets
    by_ep: dict[str, list[Call]] = {}
    for c in calls:
        if start < c.finished_at <= now:
            by_ep.setdefault(c.entrypoint, []).append(c)
    out = []
    for ep, ep_calls in by_ep.items():
        counts = [0] * buckets
        for c in ep_calls:
            counts[min(int((c.finished_at - start) // width), buckets - 1)] += 1
        durations = sorted(c.duration_s for c in ep_calls)
        out.append(EntrypointRate(
            entrypoint=ep, calls=len(ep_calls), per_s=len(ep_calls) / window_s,
            errors=sum(c.outcome == "error" for c in ep_calls),
            expected_errors=sum(c.outcome == "expected_error" for c in ep_calls),
            p50_s=percentile(durations, 0.5), p99_s=percentile(durations, 0.99),
            buckets=tuple(counts), estimate=estimate, incomplete=incomplete))
    return out


_BLOCKS = " ▁▂▃▄▅▆▇█"


def spark(values: Iterable[int]) -> str:
    """Values as block characters scaled to their peak (an empty bucket is a space)."""
    vs = list(values)
    top = max(vs, default=0) or 1
    return "".join(_BLOCKS[0 if v <= 0 else max(1, round(v / top * 8))] for v in vs)
