"""The groups view: in-flight workers counted by entrypoint and *where*, with the oldest age
per group (the ``--once`` page's summary, live). Enter on a group filters the workers to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from nameko_chassis.view.model import Worker
from nameko_chassis.view.text import (
    format_age,
    group_workers,
    short_entrypoint,
    where_key,
    where_of,
    where_text,
)

from .common import KeyedTable, Palette, SortText, age_style, cell, set_border
from .poller import TargetStatus
from .workers import parse_terms, worker_text

COLUMNS: tuple[tuple[str, str], ...] = (
    ("count", "workers"),
    ("service", "service"),
    ("entrypoint", "entrypoint"),
    ("where", "where"),
    ("oldest", "oldest"),
)
FIXED_WIDTHS = {"count": 7, "oldest": 9}


def group_filter(service: str, entrypoint: str, where: str) -> str:
    """The filter that shows one group's workers."""
    return f"service:{service} entrypoint:{entrypoint} where:{where}"


class GroupsTable(KeyedTable):
    """Workers of every target grouped by (entrypoint, where); the workers table's filter
    applies first. Largest groups first, then oldest."""

    def __init__(self, *, slow: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slow = slow
        self.order = ("count", False)
        self.total = 0
        self._services: dict[str, str] = {}  # row key -> service name
        self._filters: dict[str, str] = {}  # row key -> the filter showing its workers

    def on_mount(self) -> None:
        self.set_columns(COLUMNS, FIXED_WIDTHS)

    def filter_for(self, key: str) -> str | None:
        return self._filters.get(key)

    def show(self, statuses: Sequence[TargetStatus], filter: str = "") -> None:
        palette = Palette.of(self.app)
        terms = parse_terms(filter)
        by_service: dict[str, list[Worker]] = {}
        for s in statuses:
            if s.snapshot is None:
                continue
            for c in s.snapshot.containers:
                if terms.service is not None and c.service_name != terms.service:
                    continue
                for w in c.workers:
                    if terms.entrypoint is not None and w.entrypoint != terms.entrypoint:
                        continue
                    if terms.where is not None and where_key(where_of(w)) != terms.where:
                        continue
                    if terms.needle and terms.needle not in worker_text(c, w, s.label):
                        continue
                    by_service.setdefault(c.service_name, []).append(w)
        wanted: dict[str, tuple[Text, ...]] = {}
        self._filters.clear()
        self.total = 0
        for service, workers in by_service.items():
            for g in group_workers(workers):
                key = f"{g.entrypoint}|{g.where_key}"
                self._filters[key] = group_filter(service, g.entrypoint, g.where_key)
                self.total += g.count
                count = SortText(str(g.count), style="bold", no_wrap=True, justify="right")
                count.sort_value = (-g.count, -g.oldest_s, key)
                oldest = SortText(("≥" if g.lower_bound else "") + format_age(g.oldest_s)
                                  + (" ⚠" if g.oldest_s >= self.slow else ""),
                                  style=age_style(g.oldest_s, self.slow, palette),
                                  no_wrap=True)
                oldest.sort_value = (-g.oldest_s, key)
                entrypoint = short_entrypoint(service, g.entrypoint)
                wanted[key] = (
                    count,
                    cell(service, "", limit=30, sort=(service, -g.count, key)),
                    cell(entrypoint, "bold", limit=40, sort=(entrypoint, -g.count, key)),
                    cell(where_text(g.where), "", limit=60, sort=(g.where_key, -g.count)),
                    oldest,
                )
        self.apply(wanted)
        set_border(self, f"groups: {len(wanted)} of {self.total} workers",
                   "by entrypoint and where · enter shows a group's workers · g back")
