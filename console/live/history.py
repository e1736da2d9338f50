"""Recently finished workers, for services that record them (chassis services), and the hub
blocks the service's watchdog recorded (any service a console attached to); else hidden.

A keyed table (newest first) that takes focus, scrolls, follows the workers table's filter, and
opens a finished worker with enter (:class:`FinishedWorkerScreen`): arguments, context data,
call chain, duration, outcome, and for a failure the exception with its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from nameko_chassis.view.page import (
    NOT_DETAILED,
    BlockEntry,
    HistoryEntry,
    StackStyle,
    arguments_text,
    finished_fields,
    history_cells,
    history_columns,
    history_entries,
    incident_entries,
    kv_table,
    mapping_text,
    outcome_counts,
    render_traceback,
)

from .common import KeyedTable, KeysFooter, Palette, clip, format_age, set_border, sortable
from .poller import TargetStatus
from .status import ConsoleView, StatusBar
from .workers import WorkerRef, parse_terms

#: How many finished workers the panel lists (newest first; it scrolls). Each chassis service
#: keeps at most CHASSIS.HISTORY_SIZE (100 by default).
HISTORY_LISTED = 500
#: Frames drawn of a finished worker's traceback (the bookkeeping keeps at most 30).
MAX_FRAMES = 60
VALUE_CHARS = 300
MAX_ITEMS = 50


#: Which finished worker a row is: the same key as a running worker's (target, call id).
FinishedRef = WorkerRef


def matches(entry: HistoryEntry, service: str | None, needle: str,
            entrypoint: str | None = None) -> bool:
    if service is not None and entry.service != service:
        return False
    if entrypoint is not None and entry.worker.entrypoint != entrypoint:
        return False
    h = entry.worker
    text = " ".join((entry.target or "", entry.service, h.entrypoint, h.outcome,
                     h.exc_type or "", h.exc_message or "", h.call_id)).lower()
    return needle in text


def entries_of(statuses: Sequence[TargetStatus]) -> list[tuple[int, HistoryEntry]]:
    """Every finished worker of every target: (target index, entry)."""
    out = []
    for s in statuses:
        if s.snapshot is None:
            continue
        for c in s.snapshot.containers:
            out += [(s.index, e) for e in history_entries(c, s.snapshot.time, s.label)]
    return out


def blocks_of(statuses: Sequence[TargetStatus]) -> list[tuple[int, BlockEntry]]:
    """Every hub block the targets' watchdogs recorded: (target index, entry)."""
    return [(s.index, e) for s in statuses if s.snapshot is not None
            for e in incident_entries(s.snapshot, s.label)]


def block_matches(entry: BlockEntry, service: str | None, needle: str,
                  entrypoint: str | None = None) -> bool:
    if service is not None and entry.service != service:
        return False
    if entrypoint is not None and entry.name != entrypoint:
        return False
    text = " ".join((entry.target or "", entry.service, entry.name, "hub blocked",
                     entry.error)).lower()
    return needle in text


def find_finished(statuses: Sequence[TargetStatus], ref: FinishedRef) -> HistoryEntry | None:
    for _, entry in entries_of([s for s in statuses if s.index == ref.target]):
        if entry.worker.call_id == ref.call_id:
            return entry
    return None


class HistoryPanel(KeyedTable):
    """The latest finished workers of every target, newest first; enter opens one."""

    def __init__(self, *, slow: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slow = slow
        self.order = ("ago", False)
        self.shown = 0
        self._several: bool | None = None
        self._static: dict[str, tuple[Text, ...]] = {}  # row key -> its cells but the first

    def current_ref(self) -> FinishedRef | None:
        key = self.current_key()
        return FinishedRef.from_key(key) if key is not None else None

    def show(self, statuses: Sequence[TargetStatus], filter: str = "") -> None:
        """Draw the latest finished workers; ``filter`` is the workers table's (``service:NAME``
        and text matched against target, service, entrypoint, outcome, error and call id)."""
        blocks = blocks_of(statuses)
        any_history = bool(blocks) or any(
            c.history is not None for s in statuses if s.snapshot is not None
            for c in s.snapshot.containers)
        self.display = any_history
        if not any_history:
            return
        several = len(statuses) > 1
        if several != self._several:
            self._several = several
            self._static = {}
            self.set_columns(history_columns(target=several))
        palette = Palette.of(self.app)
        styles = {"success": palette.success, "error": f"bold {palette.error}",
                  "expected_error": palette.warning, "killed": palette.warning,
                  "hub blocked": f"bold {palette.error}"}
        terms = parse_terms(filter)  # a where: term says nothing about finished workers
        entries = [(i, e) for i, e in entries_of(statuses)
                   if matches(e, terms.service, terms.needle, terms.entrypoint)]
        shown_blocks = [(i, b) for i, b in blocks
                        if block_matches(b, terms.service, terms.needle, terms.entrypoint)]
        entries.sort(key=lambda ie: ie[1].ago)
        entries = entries[:HISTORY_LISTED]
        wanted: dict[str, tuple[Text, ...]] = {}
        cache: dict[str, tuple[Text, ...]] = {}
        for index, b in shown_blocks:  # hub blocks: no finished worker to open
            key = f"{index}|{b.key}"
            cells = history_cells(b, slow_after=self.slow, target=several, outcome_styles=styles)
            wanted[key] = (sortable(cells[0], (-(b.incident.started_at + b.incident.duration_s),
                                               key)), *cells[1:])
        for index, e in entries:
            key = FinishedRef(index, e.worker.call_id).key
            # a finished worker never changes: only its "ago" cell is drawn again
            rest = self._static.get(key)
            if rest is None:
                rest = tuple(history_cells(e, slow_after=self.slow, target=several,
                                           outcome_styles=styles)[1:])
            cache[key] = rest
            ago = sortable(Text(format_age(e.ago), style="dim"), (-e.worker.finished_at, key))
            wanted[key] = (ago, *rest)
        self._static = cache
        self.shown = len(wanted)
        self.apply(wanted)
        if not self.has_focus and self.row_count and (self.cursor_row or self.scroll_y):
            # nobody is reading it: the newest stay in view (with focus, the row is followed)
            self.move_cursor(row=0, scroll=False)
            self.scroll_home(animate=False, immediate=True)
        counts = "  ".join(f"{k} {v}" for k, v in outcome_counts(
            [e for _, e in entries] + [b for _, b in shown_blocks]).items())
        set_border(self, "recently finished" + (" · hub blocks" if blocks else ""),
                   (counts + "  · enter opens") if counts else None)


class FinishedWorkerScreen(Screen[None]):
    """One finished worker, as the service's bookkeeping recorded it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="back"),
        Binding("s", "nothing", show=False),
    ]

    def __init__(self, ref: FinishedRef, entry: HistoryEntry) -> None:
        super().__init__()
        self.ref = ref
        self.entry = entry

    def action_nothing(self) -> None:
        """Keys of the lists that mean nothing on this screen."""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static(id="finished-worker", classes="panel")
            yield Static(id="finished-args", classes="panel")
            yield Static(id="finished-context", classes="panel")
            yield Static(id="finished-traceback", classes="panel")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#finished-worker").border_title = "finished worker"
        self.query_one("#finished-args").border_title = "arguments"
        self.query_one("#finished-context").border_title = "context data"
        self.query_one("#finished-traceback").border_title = "traceback (most recent call last)"
        self.query_one("#detail-body").focus()
        app: Any = self.app
        if hasattr(app, "statuses"):
            self.show(app.view, app.statuses)
        else:
            self._draw()

    def show(self, view: ConsoleView, statuses: Sequence[TargetStatus]) -> None:
        self.query_one(StatusBar).show(view, statuses)
        # keep the last copy seen: the entry may roll out of the bounded history
        self.entry = find_finished(statuses, self.ref) or self.entry
        self._draw()

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        e, h = self.entry, self.entry.worker
        slow = float(getattr(self.app, "slow", 10.0))
        styles = {"success": palette.success, "error": palette.error,
                  "expected_error": palette.warning}
        title = Text()
        title.append(f" {clip(h.entrypoint, 80)} ", style=f"bold reverse {palette.primary}")
        title.append("  ■ FINISHED ", style=f"bold {palette.muted}")
        title.append(f" {h.outcome}", style=f"bold {styles.get(h.outcome, '')}")
        title.append(f" after {format_age(h.duration_s)}, {format_age(e.ago)} ago")
        if h.exc_type:
            title.append(f"  {clip(h.exc_type, 40)}: {clip(h.exc_message or '', 80)}",
                         style=palette.error)
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#finished-worker", Static).update(kv_table(finished_fields(
            e, max_items=MAX_ITEMS, value_chars=VALUE_CHARS, slow_after=slow,
            accent=palette.accent, outcome_styles=styles)))
        args = self.query_one("#finished-args", Static)
        context = self.query_one("#finished-context", Static)
        if h.detailed:
            args.update(arguments_text(h, max_items=MAX_ITEMS, value_chars=VALUE_CHARS))
            context.update(mapping_text(h.context_data, max_items=MAX_ITEMS,
                                        value_chars=VALUE_CHARS,
                                        empty="no context data (besides the call chain)"))
        else:
            args.update(Text(NOT_DETAILED, style="dim"))
            context.update(Text("-", style="dim"))
        tb = self.query_one("#finished-traceback", Static)
        tb.display = h.traceback is not None or h.outcome != "success"
        style = StackStyle(user_marker="  ", where_marker="▶ ",
                           where_note="   ← innermost frame of the service's own code",
                           accent=palette.accent, library_code=True, highlight=True)
        tb.update(render_traceback(h.traceback or [], max_frames=MAX_FRAMES,
                                   code_chars=160, style=style))
