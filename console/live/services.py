"""The side panel: worker-pool gauges per container, and the tree of what each container runs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from nameko_chassis.view.model import Container
from nameko_chassis.view.text import (
    entrypoint_label,
    group_label,
    managed_thread_groups,
    pool_level,
    short_label,
)

from .backlog import backlog_alarm, backlog_line
from .common import Palette, clip, pool_colour, set_border, text_key, update_static
from .poller import TargetStatus

GAUGE_WIDTH = 8
#: How many refreshes the per-container sparkline of running workers remembers.
SPARK_POINTS = 10
_BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], max_workers: int, colour: str,
              width: int = SPARK_POINTS) -> Text:
    """Running workers over the last refreshes (oldest left), scaled to their own peak (but at
    least a quarter of the pool) so the shape shows; the gauge beside it gives the level."""
    top = max(max(values, default=0), max_workers / 4, 1)
    text = Text(" " * (width - len(values)), no_wrap=True)
    for v in values[-width:]:
        level = 0 if v <= 0 else max(1, round(v / top * (len(_BLOCKS) - 1)))
        text.append(_BLOCKS[level], style=colour)
    return text


def gauge(running: int, max_workers: int, palette: Palette, width: int = GAUGE_WIDTH) -> Text:
    ratio = min(1.0, running / max_workers) if max_workers else 0.0
    filled = round(ratio * width)
    if running and not filled:
        filled = 1  # one busy worker still shows
    colour = pool_colour(running, max_workers, palette)
    text = Text(no_wrap=True)
    text.append("━" * filled, style=colour)
    text.append("━" * (width - filled), style="#444444")
    return text


class PoolGauges(Static):
    """Per container: running workers over the last refreshes, and against ``max_workers``;
    warns near saturation."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._series: dict[tuple[int, str], deque[int]] = {}
        self._seen: dict[int, float] = {}  # target -> time of the snapshot last recorded

    def _record(self, status: TargetStatus) -> None:
        snap = status.snapshot
        if snap is None or self._seen.get(status.index) == snap.time or status.stale:
            return  # a redraw without a new snapshot (a key, a filter) adds no point
        self._seen[status.index] = snap.time
        for c in snap.containers:
            series = self._series.setdefault((status.index, c.service_name),
                                             deque(maxlen=SPARK_POINTS))
            series.append(c.workers_running)

    def show(self, statuses: Sequence[TargetStatus]) -> None:
        palette = Palette.of(self.app)
        # the sparkline goes first when the panel is narrow: names and gauges matter more
        spark = not 0 < self.size.width < 42
        blank = ("",) * (3 if spark else 2)
        several = len(statuses) > 1
        full = near = piling = 0
        # rows of cells, and backlog lines (a Text across the panel) between them
        rows: list[list[Any] | Text] = []
        for status in statuses:
            snap = status.snapshot
            self._record(status)
            if several:
                rows.append([Text(short_label(status.label, 40), style="bold dim"), *blank])
            if snap is None:
                rows.append([Text("  no data yet", style="dim"), *blank])
                continue
            for c in snap.containers:
                colour = pool_colour(c.workers_running, c.max_workers, palette)
                name = Text(("  " if several else "") + clip(c.service_name, 30),
                            style="dim" if status.stale else "")
                count = Text(f"{c.workers_running}/{c.max_workers}", style=colour)
                level = pool_level(c.workers_running, c.max_workers)
                if level == "full":
                    count.append(" FULL", style=f"bold {palette.error}")
                    full += 1
                elif level == "warning":
                    count.append(" !", style=f"bold {palette.warning}")
                    near += 1
                cells: list[Any] = [name, gauge(c.workers_running, c.max_workers, palette),
                                    count]
                if spark:
                    series = self._series.get((status.index, c.service_name), ())
                    cells.insert(1, sparkline(list(series), c.max_workers, colour))
                rows.append(cells)
                line = backlog_line(c, palette, indent="    " if several else "  ")
                if line is not None:
                    rows.append(line)
                    piling += backlog_alarm(c)
        said = [f"{full} full" if full else "", f"{near} near saturation" if near else "",
                f"{piling} full with a growing backlog" if piling else ""]
        set_border(self, "worker pools", " · ".join(s for s in said if s) or None)
        self.set_class(bool(full or near), "-warning")
        self.set_class(bool(piling), "-backlog")
        # unchanged pools (the usual refresh) are not rendered again
        drawn_from = (spark, tuple(text_key(row) if isinstance(row, Text)
                                   else tuple(text_key(cell) for cell in row) for row in rows))
        update_static(self, _pool_rows(rows, spark), (len(rows), spark), drawn_from)


def _pool_rows(rows: Sequence[list[Any] | Text], spark: bool) -> Group:
    """Rows of cells as grids whose fixed-width columns line up from one grid to the next, with
    the backlog lines between them across the whole panel."""
    count_width = max((cells[-1].cell_len for cells in rows if isinstance(cells, list)
                       and isinstance(cells[-1], Text)), default=1)

    def grid() -> Table:
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=8)
        if spark:
            table.add_column(no_wrap=True, width=SPARK_POINTS)
        table.add_column(no_wrap=True, width=GAUGE_WIDTH)
        table.add_column(justify="right", no_wrap=True, width=max(count_width, 1))
        return table

    parts: list[Any] = []
    table: Table | None = None
    for row in rows:
        if isinstance(row, Text):
            table = None
            parts.append(row)
            continue
        if table is None:
            table = grid()
            parts.append(table)
        table.add_row(*row)
    return Group(*parts)


def _entrypoint_label(method: str, kind: str, details: dict[str, Any]) -> Text:
    text = Text(clip(method, 40))
    shown = entrypoint_label(kind, details)
    if shown:
        text.append(f"  {clip(shown, 60)}", style="dim")
    return text


@dataclass(frozen=True)
class ManagedRef:
    """A tree leaf of managed threads: the threads of one container running alike targets
    (``ConsumerMixin.run ×2``, ``HTTP connections ×12``)."""

    target: int
    service: str
    name: str  # as the tree shows it (managed_thread_groups)
    members: frozenset[str]  # their `target or identifier`

    @property
    def stacks(self) -> frozenset[str]:
        """What the collector is asked for (``stacks``: ``managed:<target>``)."""
        return frozenset(f"managed:{m}" for m in self.members)


def managed_refs(target: int, c: Container) -> list[tuple[ManagedRef, int]]:
    """The container's managed threads as the tree groups them, with their counts."""
    members: dict[str, set[str]] = {}
    for t in c.managed_threads:
        member = t.target or t.identifier
        name = managed_thread_groups([member])[0][0]
        members.setdefault(name, set()).add(member)
    return [(ManagedRef(target, c.service_name, name, frozenset(members.get(name, ()))), count)
            for name, count in managed_thread_groups(
                t.target or t.identifier for t in c.managed_threads)]


class ServiceTree(Tree[Any]):
    """Containers with their entrypoints (grouped by type), dependencies and managed threads.

    Enter on a managed thread opens its stack (:class:`ManagedRef` leaves). Rebuilt only when
    the structure changes, so expanded nodes and the cursor survive refreshes;
    the running-worker counts in the labels are updated in place.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("services", **kwargs)
        self.show_root = False
        self.auto_expand = False  # enter filters the workers by the service; space expands
        self.guide_depth = 3
        self._signature: tuple[Any, ...] = ()
        self._container_nodes: dict[tuple[int, str], TreeNode[str]] = {}
        self._labels: dict[tuple[int, str], Text] = {}

    @staticmethod
    def _structure(statuses: Sequence[TargetStatus]) -> tuple[Any, ...]:
        parts: list[Any] = [len(statuses)]
        for s in statuses:
            snap = s.snapshot
            if snap is None:
                parts.append(None)
                continue
            parts.append(tuple(
                (c.service_name, tuple((e.method, e.type) for e in c.entrypoints),
                 tuple((d.attr, d.type) for d in c.dependencies),
                 tuple(t.identifier for t in c.managed_threads))
                for c in snap.containers))
        return tuple(parts)

    def _container_label(self, c: Container, stale: bool, palette: Palette) -> Text:
        label = Text(clip(c.service_name, 30), style="bold dim" if stale else "bold")
        cls = c.service_class.rsplit(".", 1)[-1]
        if cls.lower() != c.service_name.lower():  # "orders  Orders" says nothing new
            label.append(f"  {clip(cls, 30)}", style="dim")
        if c.workers_running:
            colour = pool_colour(c.workers_running, c.max_workers, palette)
            label.append(f"  {c.workers_running} running", style=colour)
        return label

    def show(self, statuses: Sequence[TargetStatus]) -> None:
        palette = Palette.of(self.app)
        signature = self._structure(statuses)
        if signature != self._signature:
            self._rebuild(statuses, palette)
            self._signature = signature
            return
        for s in statuses:
            if s.snapshot is None:
                continue
            for c in s.snapshot.containers:
                node = self._container_nodes.get((s.index, c.service_name))
                if node is not None:
                    label = self._container_label(c, s.stale, palette)
                    old = self._labels.get((s.index, c.service_name))
                    if old is None or old != label or old.style != label.style:
                        self._labels[(s.index, c.service_name)] = label
                        node.set_label(label)

    def _rebuild(self, statuses: Sequence[TargetStatus], palette: Palette) -> None:
        self.clear()
        self._container_nodes.clear()
        self._labels.clear()
        several = len(statuses) > 1
        for s in statuses:
            parent = self.root
            if several:
                parent = self.root.add(Text(clip(s.label, 40), style="bold"), expand=True)
            if s.snapshot is None:
                parent.add_leaf(Text("no data yet", style="dim"))
                continue
            for c in s.snapshot.containers:
                node = parent.add(self._container_label(c, s.stale, palette),
                                  data=c.service_name, expand=True)
                self._container_nodes[(s.index, c.service_name)] = node
                by_type: dict[str, list[Any]] = {}
                for ep in c.entrypoints:
                    by_type.setdefault(ep.type, []).append(ep)
                for type_, eps in by_type.items():
                    group = node.add(Text.assemble((clip(type_, 30), palette.accent),
                                                   (f" {len(eps)}", "dim")), data=c.service_name, expand=True)
                    for ep in eps:
                        group.add_leaf(_entrypoint_label(ep.method, ep.type, ep.details),
                                       data=c.service_name)
                if c.dependencies:
                    deps = node.add(Text.assemble(("dependencies", palette.primary),
                                                  (f" {len(c.dependencies)}", "dim")),
                                    data=c.service_name)
                    for d in c.dependencies:
                        deps.add_leaf(Text.assemble(clip(d.attr, 30), "  ",
                                                    (clip(d.type.rsplit(".", 1)[-1], 30), "dim")))
                if c.managed_threads:
                    threads = node.add(Text.assemble(("managed threads", palette.primary),
                                                     (f" {len(c.managed_threads)}", "dim")),
                                       data=c.service_name)
                    for ref, count in managed_refs(s.index, c):
                        threads.add_leaf(Text(clip(group_label(ref.name, count), 60)),
                                         data=ref)
