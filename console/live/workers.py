"""The workers table: one keyed row per in-flight worker, updated in place on every refresh.

Rows are never cleared: new workers are added, finished ones removed, changed cells updated with
``update_cell``, and the cursor follows the worker it was on, so a refresh never moves what the
user is looking at.

A refresh costs what is on screen and what changed, not the number of workers: every cell but the
age is rebuilt only when its worker changed; the age, which changes on every refresh, is written
only for the rows in the viewport (a row scrolled into view gets its age when it is drawn), and
the rows are sorted again only when one was added or a cell of the sorted column changed (ages
sort by start time, which does not move).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from nameko_chassis.view.model import Container, Worker
from nameko_chassis.view.text import (
    age_text,
    clip_value,
    short_entrypoint,
    short_label,
    where_key,
    where_of,
    where_text,
)

from .common import CellCachingTable, Palette, SortText, age_style, cell, sort_key
from .poller import TargetStatus

#: (column key, label). The target column exists only when there are several targets.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("target", "target"),
    ("service", "service"),
    ("entrypoint", "entrypoint"),
    ("age", "age"),
    ("where", "where"),
    ("call", "call id"),
    ("args", "arguments"),
)
#: What `s` cycles through (column keys); a header click or `o` sorts by any column.
SORTS: tuple[str, ...] = ("age", "service", "entrypoint", "where")
#: Columns whose natural order is by descending value (the age cell sorts by -age: oldest
#: first); the others sort ascending. Choosing the same column again reverses it.
DESCENDING_FIRST = frozenset({"age"})


def sort_label(column: str, reverse: bool) -> str:
    """``age ↓`` (oldest first), ``age ↑``; ``service`` (A→Z), ``service ↓`` (Z→A)."""
    name = dict(COLUMNS).get(column, column)
    descending = (column in DESCENDING_FIRST) != reverse
    if column in DESCENDING_FIRST:
        return f"{name} {'↓' if descending else '↑'}"
    return f"{name} ↓" if descending else name
ARGS_CHARS = 40
#: Columns a narrow terminal (see ChassisConsole.NARROW_WIDTH) drops: where matters more.
NARROW_DROPS = frozenset({"call", "args"})
#: Columns whose cells change on every refresh get a fixed width (others size to their content).
FIXED_WIDTHS = {"age": 9, "call": 8}


@dataclass(frozen=True)
class WorkerRef:
    """Which worker a row is: enough to find it again in the next snapshot."""

    target: int
    call_id: str

    @property
    def key(self) -> str:
        return f"{self.target}|{self.call_id}"

    @classmethod
    def from_key(cls, key: str) -> WorkerRef:
        target, call_id = key.split("|", 1)
        return cls(int(target), call_id)


@dataclass(frozen=True)
class WorkerFilter:
    """What the filter box says: exact ``service:``, ``entrypoint:`` and ``where:`` terms
    (selecting a service in the tree, or a group, sets them) and free text matched anywhere."""

    service: str | None = None
    entrypoint: str | None = None
    where: str | None = None  # view.text.where_key: ``shop/orders.py:42``
    needle: str = ""

    @property
    def empty(self) -> bool:
        return self == WorkerFilter()


TERMS = ("service", "entrypoint", "where")


def parse_terms(text: str) -> WorkerFilter:
    """``service:NAME entrypoint:svc.method where:file.py:12 rest``: the terms match their
    field exactly; the rest matches any text, case-insensitively."""
    terms: dict[str, str] = {}
    words = []
    for word in text.split():
        name, sep, value = word.partition(":")
        if sep and name.lower() in TERMS:
            terms[name.lower()] = value
        else:
            words.append(word)
    return WorkerFilter(needle=" ".join(words).lower(), **terms)


def parse_filter(text: str) -> tuple[str | None, str]:
    """``service:NAME rest`` -> (``NAME``, ``rest``): ``service:`` matches the service field
    exactly (what selecting a service in the tree sets); the rest matches any text."""
    f = parse_terms(text)
    return f.service, f.needle


def worker_text(container: Container, worker: Worker, target: str = "") -> str:
    """What the filter matches against."""
    return " ".join((target, container.service_name, worker.entrypoint,
                     where_text(where_of(worker)), worker.args_preview,
                     worker.call_id)).lower()


class WorkersTable(CellCachingTable):
    """In-flight workers of every target."""

    _batching = False  # class level: refresh() runs before __init__ has finished
    _batched_refresh = False
    _follow_after_rebuild: WorkerRef | None = None
    _sorted_as: tuple[str, bool, str] | None = None  # (sort column, reverse, column sorted by)
    _palette = Palette()

    def __init__(self, *, several_targets: bool = False, slow: float = 10.0, **kwargs: object
                 ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.several_targets = several_targets
        self.slow = slow
        self.sort_column = SORTS[0]
        self.sort_reverse = False
        self.filter = ""
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._static: dict[str, tuple[tuple[object, ...], dict[str, SortText]]] = {}
        #: per row of the latest refresh: its static cells and what its age cell is drawn from
        #: (the latest worker, dim, target label)
        self._latest: dict[str, tuple[dict[str, SortText], Worker, str, str]] = {}
        #: per row: the refresh (generation) its age cell was last written for
        self._age_drawn: dict[str, int] = {}
        self._generation = 0
        #: per row: the static cells (see _static_cells) its cells were last brought in line with
        self._applied: dict[str, dict[str, SortText]] = {}
        self._columns = [c for c in COLUMNS if several_targets or c[0] != "target"]
        self.narrow = False
        self.lower_bounds = False
        self.shown = 0
        self.total = 0

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key, width=FIXED_WIDTHS.get(key))

    def set_narrow(self, narrow: bool) -> None:
        """Drop (or bring back) the call id and arguments columns; rows are rebuilt once."""
        if narrow == self.narrow:
            return
        self.narrow = narrow
        self._columns = [c for c in COLUMNS if (self.several_targets or c[0] != "target")
                         and not (narrow and c[0] in NARROW_DROPS)]
        following = self.current_ref()
        self.clear(columns=True)
        self._cells.clear()
        self._static.clear()
        self._age_drawn.clear()
        self._applied.clear()
        for key, label in self._columns:
            self.add_column(label, key=key, width=FIXED_WIDTHS.get(key))
        if following is not None:
            self._follow_after_rebuild = following

    @property
    def sort_label(self) -> str:
        return sort_label(self.sort_column, self.sort_reverse)

    @property
    def sortable_columns(self) -> list[tuple[str, str]]:
        return list(self._columns)

    def cycle_sort(self) -> None:
        """`s`: the next of :data:`SORTS`, in its natural direction."""
        i = SORTS.index(self.sort_column) + 1 if self.sort_column in SORTS else 0
        self.set_sort(SORTS[i % len(SORTS)], False)

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; the column already sorted by is reversed instead."""
        if column == self.sort_column:
            self.set_sort(column, not self.sort_reverse)
        else:
            self.set_sort(column, False)

    def set_sort(self, column: str, reverse: bool) -> None:
        if column not in dict(COLUMNS):
            return
        self.sort_column, self.sort_reverse = column, reverse
        self._sort()
        self.post_message(self.SortChanged(self.sort_column, self.sort_reverse))

    class SortChanged(Message):
        """The user sorted the table (the app remembers it for these targets)."""

        def __init__(self, column: str, reverse: bool) -> None:
            super().__init__()
            self.column = column
            self.reverse = reverse

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def current_ref(self) -> WorkerRef | None:
        """The worker under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return WorkerRef.from_key(str(key.value))

    def _age_cell(self, worker: Worker, dim: str, label: str) -> SortText:
        slow = worker.age_s >= self.slow
        age = SortText(age_text(worker) + (" ⚠" if slow else ""),
                       style=dim or age_style(worker.age_s, self.slow, self._palette),
                       no_wrap=True)
        # oldest first by start time: the order of the ages, but it stays put while they grow,
        # so a row whose age was not redrawn (off screen) still sorts right; total order
        age.sort_value = (worker.since, worker.call_id, label)
        return age

    def _static_cells(self, key: str, status: TargetStatus, container: Container,
                      worker: Worker) -> tuple[dict[str, SortText], str]:
        """Every cell of the row but the age (rebuilt only when it changes), and the row's
        dim style (stale target)."""
        slow = worker.age_s >= self.slow
        dim = "dim" if status.stale else ""
        where = where_of(worker)
        # Everything but the age changes rarely: build those cells again only when it does. A
        # worker the agent reported unchanged shares its where and arguments with the last
        # snapshot's, so comparing them is an identity check.
        cached = self._static.get(key)
        if cached is not None:
            sig = cached[0]
            if ((sig[2] is where or sig[2] == where) and (sig[3] is worker.args
                                                          or sig[3] == worker.args)
                    and (sig[4] is worker.kwargs or sig[4] == worker.kwargs)
                    and sig[0] == dim and sig[1] == slow and sig[5] == container.service_name
                    and sig[6] == status.label):
                return cached[1], dim
        signature = (dim, slow, where, worker.args, worker.kwargs, container.service_name,
                     status.label)
        # ties sort oldest first by start time, which (unlike the age) never changes
        start = worker.since
        strong = "bold" if slow and not dim else dim
        entrypoint = short_entrypoint(container.service_name, worker.entrypoint)
        static = {
            "target": cell(short_label(status.label, 30), dim, limit=30,
                           sort=(status.label, start)),
            "service": cell(container.service_name, strong, limit=30,
                            sort=(container.service_name, start)),
            "entrypoint": cell(entrypoint, strong, limit=40, sort=(entrypoint, start)),
            "where": cell(where_text(where), dim, limit=44,
                          sort=("" if where is None
                                else f"{where.short_file}:{where.line:08d}", start)),
            "call": cell(worker.call_id.rsplit(".", 1)[-1][:8], dim or "dim", limit=8),
            "args": cell(clip_value(worker.args_preview, ARGS_CHARS), dim,
                         limit=ARGS_CHARS),
        }
        self._static[key] = (signature, static)
        return static, dim

    def show(self, statuses: Sequence[TargetStatus]) -> None:
        """Bring the rows in line with the latest snapshots (in place)."""
        self._palette = Palette.of(self.app)
        terms = parse_terms(self.filter)
        service, needle = terms.service, terms.needle
        self.lower_bounds = False  # some age is counted from first sight (plain service)
        wanted: dict[str, tuple[dict[str, SortText], Worker, str, str]] = {}
        # rows whose static cells are not those on screen (the usual refresh: none)
        changed: list[str] = []
        applied = self._applied
        cached_static = self._static.get
        slow_after = self.slow
        total = 0
        for status in statuses:
            if status.snapshot is None:
                continue
            dim = "dim" if status.stale else ""
            label = status.label
            prefix = f"{status.index}|"  # WorkerRef(...).key
            for container in status.snapshot.containers:
                name = container.service_name
                for worker in container.workers:
                    total += 1
                    if service is not None and name != service:
                        continue
                    if terms.entrypoint is not None and worker.entrypoint != terms.entrypoint:
                        continue
                    if terms.where is not None and where_key(where_of(worker)) != terms.where:
                        continue
                    if worker.started_at is None:
                        self.lower_bounds = True
                    if needle and needle not in worker_text(container, worker, label):
                        continue
                    key = prefix + worker.call_id
                    # the usual refresh: a worker the agent reported unchanged shares its
                    # where and arguments with the last snapshot's (see _static_cells)
                    cached = cached_static(key)
                    if cached is not None and (
                            (sig := cached[0])[2] is (worker.where or where_of(worker))
                            and sig[3] is worker.args and sig[4] is worker.kwargs
                            and sig[1] == (worker.age_s >= slow_after) and sig[0] == dim
                            and sig[5] == name and sig[6] == label):
                        static = cached[1]
                    else:
                        static, _ = self._static_cells(key, status, container, worker)
                    wanted[key] = (static, worker, dim, label)
                    if applied.get(key) is not static:
                        changed.append(key)
        self.total, self.shown = total, len(wanted)
        self._apply(wanted, changed)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if self._batching and not (layout or recompose):
            # update_cell refreshes the whole table each call: once per batch is enough
            self._batched_refresh = True
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def _apply(self, wanted: dict[str, tuple[dict[str, SortText], Worker, str, str]],
               changed: list[str]) -> None:
        self._batching = True
        try:
            self._apply_rows(wanted, changed)
        finally:
            self._batching = False
        if self._batched_refresh:
            self._batched_refresh = False
            self.refresh()

    def _apply_rows(self, wanted: dict[str, tuple[dict[str, SortText], Worker, str, str]],
                    changed: list[str]) -> None:
        """``wanted``: every row of this refresh, in order; ``changed``: those of its rows
        whose static cells are not the ones applied (new rows included)."""
        following = self.current_ref()
        old_index = self.cursor_row
        column_keys = [key for key, _ in self._columns]
        sorted_by = self.sort_column if self.sort_column in column_keys else "age"
        self._generation += 1
        resort = False
        for key in self._cells.keys() - wanted.keys():
            self.remove_row(key)
            del self._cells[key]
            self._static.pop(key, None)
            self._age_drawn.pop(key, None)
            self._applied.pop(key, None)
        self._latest = wanted
        applied = self._applied
        # a row not changed: nothing but its age changed, which _freshen_ages sees to
        for key in changed:
            static, worker, dim, label = wanted[key]
            applied[key] = static
            previous = self._cells.get(key)
            if previous is None:
                age = self._age_cell(worker, dim, label)
                cells: tuple[Text, ...] = tuple(age if column == "age" else static[column]
                              for column in column_keys)
                self.add_row(*cells, key=key)
                self._age_drawn[key] = self._generation
                resort = True
            else:
                # the age cell stays as it is here: _freshen_ages redraws it when on screen
                cells = tuple(old if column == "age" else static[column]
                              for column, old in zip(column_keys, previous, strict=True))
                for column, old, new in zip(column_keys, previous, cells, strict=True):
                    # Text equality ignores the base style: compare it too (stale rows dim)
                    if old is not new and (old != new or old.style != new.style):
                        self.update_cell(key, column, new)
                        resort |= column == sorted_by
            self._cells[key] = cells
        if resort or self._sorted_as != (self.sort_column, self.sort_reverse, sorted_by):
            self._sort()
        following = getattr(self, "_follow_after_rebuild", None) or following
        self._follow_after_rebuild = None
        if following is not None and following.key in self._cells:
            index = self.get_row_index(following.key)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)
        elif self.row_count:
            self.move_cursor(row=min(old_index, self.row_count - 1), scroll=False)
        self._freshen_ages()

    def _visible_rows(self) -> range:
        """Indices of the rows in the viewport (one line each), a row either side."""
        top = int(self.scroll_y)
        return range(max(top - 1, 0), min(top + self.size.height + 1, self.row_count))

    def _freshen_ages(self) -> None:
        """Redraw the age cells of the rows on screen that are older than the last refresh."""
        if "age" not in self._cells_columns():
            return
        generation = self._generation
        for index in self._visible_rows():
            try:
                key = str(self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value)
            except CellDoesNotExist:
                continue
            if self._age_drawn.get(key) == generation or key not in self._latest:
                continue
            self._age_drawn[key] = generation
            _, worker, dim, label = self._latest[key]
            age = self._age_cell(worker, dim, label)
            cells = self._cells[key]
            i = self._age_index
            old = cells[i]
            if old != age or old.style != age.style:
                self.update_cell(key, "age", age)
                self._cells[key] = (*cells[:i], age, *cells[i + 1:])

    def _cells_columns(self) -> list[str]:
        return [key for key, _ in self._columns]

    @property
    def _age_index(self) -> int:
        return self._cells_columns().index("age")

    def render_lines(self, crop: Region) -> list[Strip]:
        # a row scrolled into view (or a taller window) gets its age of the latest refresh
        batching, self._batching = self._batching, True
        try:
            self._freshen_ages()
        finally:
            self._batching = batching
            self._batched_refresh = False  # drawn right now: no second repaint
        return super().render_lines(crop)

    def _sort(self) -> None:
        if not self.row_count:
            return
        column = self.sort_column
        if column not in self.columns:  # dropped on a narrow terminal: by age meanwhile
            column = "age"
        reverse = self.sort_reverse if column == self.sort_column else False
        following = self.current_ref()
        self.sort(column, key=sort_key, reverse=reverse)
        self._sorted_as = (self.sort_column, self.sort_reverse, column)
        if following is not None and following.key in self._cells:
            self.move_cursor(row=self.get_row_index(following.key), scroll=False)

    def keys(self) -> Iterable[str]:
        return [str(row.key.value) for row in self.ordered_rows]
