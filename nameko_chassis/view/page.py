"""The one page renderer: rich renderables for a :class:`~nameko_chassis.view.model.Snapshot`,
what ``debug_runner``, ``chassis-console --once`` and the REPL print, and the stack renderer the
live console uses too.

Pure: imports rich, the model and the text helpers only (never nameko, eventlet or textual).
Everything that came from the service (arguments, context data, file names, source lines,
service names, error messages) is untrusted text: it goes into :class:`rich.text.Text` objects,
never into markup strings, and is made single-line and clipped before it is drawn. Every bound on
the output is a keyword argument with a module-level default, so 1000 workers still make one
readable page.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.constrain import Constrain
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from .derived import history_rates
from .model import Container, Culprit, FinishedWorker, Frame, Incident, Snapshot, Worker
from .rates import WINDOW_S, spark
from .text import (
    VALUE_CHARS,
    backlog_summary,
    call_id_tail,
    caller,
    clip,
    clip_value,
    clock,
    entrypoint_label,
    format_age,
    group_label,
    group_workers,
    managed_thread_groups,
    oldest_first,
    pool_level,
    process_summary,
    where_of,
)

__all__ = [
    "StackStyle",
    "arguments_text",
    "kv_table",
    "mapping_text",
    "render_worker_detail",
    "render_finished_detail",
    "render_traceback",
    "render_rates",
    "finished_fields",
    "call_chain_text",
    "history_cells",
    "history_columns",
    "history_table",
    "worker_fields",
    "culprit_fields",
    "render_blocked",
    "render_container",
    "render_incidents",
    "render_snapshot",
    "render_stack",
    "render_workers",
    "to_text",
]

# -- limits (every one is also a keyword argument of the functions below) -----------------------

#: Worker rows listed per container (oldest first); the rest are counted ("... and 980 more").
MAX_WORKERS_LISTED = 20
#: Stacks drawn per container, for its oldest workers that carry one.
STACKS_FOR_OLDEST = 3
#: Workers at least this old (seconds) are highlighted as slow.
SLOW_AFTER = 10.0
#: Rows of the "by entrypoint and where" summary, shown when workers do not all fit in the list.
MAX_GROUPS = 10
#: Frames drawn per stack; the innermost are kept (that is where the worker is now).
MAX_FRAMES = 30
#: Hub blocks (watchdog incidents) listed, newest first.
INCIDENTS_LISTED = 5
#: Characters of a call id's unique part shown in the workers table (like a short git hash).
CALL_ID_CHARS = 8
#: Characters of an argument preview in the workers table.
PREVIEW_CHARS = 60
#: Entries listed per section of a worker's detail (args, kwargs, context data, call chain).
MAX_ITEMS = 20
#: Errors listed from ``snapshot.errors``; the rest are counted.
MAX_ERRORS = 10
#: Entrypoint methods named per entrypoint type in a container header.
MAX_ENTRYPOINTS_PER_TYPE = 12
#: Dependencies, subextensions and managed threads named in a container header.
MAX_LISTED_EXTENSIONS = 12
#: Finished workers listed from a chassis service's history (most recent first).
HISTORY_LISTED = 5
#: Width used by :func:`to_text` when the caller does not know the terminal's.
DEFAULT_WIDTH = 120

# -- styles ---------------------------------------------------------------------------------------

S_TITLE = "bold"
S_DIM = "dim"
S_SERVICE = "bold cyan"
S_ENTRYPOINT = "cyan"
S_USER_FRAME = "bold"
S_USER_CODE = "yellow"
S_LIBRARY = "dim"
S_SLOW = "bold red"
S_WARN = "bold yellow"
S_ERROR = "bold red"
S_OK = "green"

# -- text helpers ---------------------------------------------------------------------------------


def _t(text: Any, style: str = "", limit: int = VALUE_CHARS) -> Text:
    """Untrusted text as a :class:`Text`: never parsed as markup, one line, bounded."""
    return Text(clip(text, limit), style=style)


def _age(seconds: float, slow_after: float, lower_bound: bool = False) -> Text:
    return Text(("≥" if lower_bound else "") + format_age(seconds),
                style=S_SLOW if seconds >= slow_after else "")


def _worker_age(worker: Worker, slow_after: float) -> Text:
    """Its age; ``≥`` when counted from first sight (the service records no start times)."""
    return _age(worker.age_s, slow_after, worker.started_at is None)


def _where_text(frame: Frame | None, limit: int = VALUE_CHARS) -> Text:
    if frame is None:
        return Text("?", style=S_DIM)
    text = _t(frame.function, S_USER_FRAME if not frame.library else S_LIBRARY, limit)
    text.append(" ")
    text.append(clip(f"{frame.short_file}:{frame.line}", limit), style=S_DIM)
    return text


def _cell(text: Text) -> Text:
    """A table cell that is cut with an ellipsis rather than wrapped when its column narrows."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _names(items: Iterable[Any], limit: int, sep: str = ", ") -> Text:
    """A bounded, comma-separated list of untrusted names ("a, b, c … +7 more")."""
    items = list(items)
    text = Text()
    for i, item in enumerate(items[:limit]):
        if i:
            text.append(sep)
        text.append_text(item if isinstance(item, Text) else _t(item, limit=VALUE_CHARS))
    if len(items) > limit:
        text.append(f" … +{len(items) - limit} more", style=S_DIM)
    return text


def _entrypoint_label(method: str, type_: str, details: Mapping[str, Any]) -> Text:
    text = _t(method, S_ENTRYPOINT, 80)
    shown = entrypoint_label(type_, details)
    if shown:
        text.append(" ")
        text.append(clip(f"[{shown}]", 80), style=S_DIM)
    return text


# -- stacks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackStyle:
    """How :func:`render_stack` draws: the page's plain defaults, or the live console's."""

    #: prefix of the service's own frames, and of the innermost one (where the worker is now)
    user_marker: str = "> "
    where_marker: str = "> "
    #: appended to the innermost user frame's line
    where_note: str = ""
    #: style of the service's function names and of the where marker and note
    accent: str = S_ENTRYPOINT
    #: library frames: one dim line (False) or with their source line too (True)
    library_code: bool = False
    #: Python syntax highlighting of the service's source lines
    highlight: bool = False
    #: what a stack that was not collected says
    missing: str = "stack not collected in this snapshot"


PAGE_STACK = StackStyle()


def _code_line(code: str, style: StackStyle, library: bool, code_chars: int) -> Text:
    text = clip(code, code_chars)
    if library:
        return Text("      " + text, style=S_LIBRARY)
    if style.highlight:
        line = Syntax(text, "python", theme="ansi_dark").highlight(text)
        line.rstrip()
        return Text("      ") + line
    return Text("      ") + Text(text, style=S_USER_CODE)


def render_stack(frames: Sequence[Frame] | None, *, max_frames: int = MAX_FRAMES,
                 code_chars: int = VALUE_CHARS, style: StackStyle = PAGE_STACK) -> RenderableType:
    """A stack, outermost first and innermost last (like a traceback).

    The service's own frames are emphasised with their source line; library frames (stdlib,
    site-packages, nameko, eventlet) are dimmed. Only the innermost ``max_frames`` are drawn.
    Plain-text output keeps the distinction: user frames start with ``style.user_marker``.
    """
    if frames is None:
        return Text(style.missing, style=S_DIM)
    if not frames:
        return Text("no stack (the greenthread is running or has finished)", style=S_DIM)
    where = next((i for i in range(len(frames) - 1, -1, -1) if not frames[i].library), None)
    lines: list[Text] = []
    hidden = len(frames) - max_frames
    if hidden > 0:
        lines.append(Text(f"  … {hidden} outer frames not shown", style=S_DIM))
    for i, frame in enumerate(frames):
        if i < hidden:
            continue
        if frame.library:
            line = Text("  ", style=S_LIBRARY)
            line.append(clip(f"{frame.short_file}:{frame.line} in {frame.function}", code_chars))
            lines.append(line)
            if style.library_code and frame.code:
                lines.append(_code_line(frame.code, style, True, code_chars))
            continue
        marker = style.where_marker if i == where else style.user_marker
        line = Text(marker, style=f"bold {style.accent}" if i == where else S_USER_FRAME)
        line.append(clip(frame.file, code_chars), style=S_USER_FRAME)
        line.append(f":{frame.line}", style=S_USER_FRAME)
        line.append(" in ")
        line.append(clip(frame.function, code_chars), style=f"{S_USER_FRAME} {style.accent}")
        if i == where and style.where_note:
            line.append(style.where_note, style=f"italic {style.accent}")
        lines.append(line)
        if frame.code:
            lines.append(_code_line(frame.code, style, False, code_chars))
    return Group(*lines)


# -- workers --------------------------------------------------------------------------------------


def _worker_title(worker: Worker, slow_after: float) -> Text:
    title = _t(worker.entrypoint, S_ENTRYPOINT + " bold", 120)
    title.append("  ")
    title.append_text(_worker_age(worker, slow_after))
    title.append("  ")
    title.append(clip(worker.call_id, 120), style=S_DIM)
    return title


def render_workers(workers: Sequence[Worker], *, max_workers_listed: int = MAX_WORKERS_LISTED,
                   slow_after: float = SLOW_AFTER, preview_chars: int = PREVIEW_CHARS,
                   total: int | None = None) -> RenderableType:
    """A table of workers, oldest first: entrypoint, age, where, call id, argument preview.

    At most ``max_workers_listed`` rows; a last line counts the others. ``total`` is how many
    workers are running when that is more than the snapshot lists.
    """
    ordered = oldest_first(workers)
    shown = ordered[:max_workers_listed]
    with_caller = any(len(w.call_id_stack) > 1 for w in shown)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Narrow columns never wrap; the wide ones may be narrowed by rich, and their cells cut
    # themselves with an ellipsis instead of wrapping (see _cell).
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("entrypoint", style=S_ENTRYPOINT, no_wrap=True, max_width=40)
    table.add_column("where", min_width=16)
    table.add_column("call id", style=S_DIM, no_wrap=True)
    if with_caller:
        table.add_column("called by", min_width=10, max_width=32)
    table.add_column("arguments", min_width=10)
    for w in shown:
        row: list[RenderableType] = [
            _worker_age(w, slow_after),
            _cell(_t(w.entrypoint, limit=120)),
            _cell(_where_text(where_of(w), 120)),
            _t(call_id_tail(w.call_id)[:CALL_ID_CHARS]),
        ]
        if with_caller:
            row.append(_cell(_t(caller(w), limit=120)))
        row.append(_cell(_t(clip_value(w.args_preview, preview_chars), limit=preview_chars)))
        table.add_row(*row)
    parts: list[RenderableType] = [table]
    more = max(len(ordered), total or 0) - len(shown)
    if more > 0:
        parts.append(Text(f"… and {more} more", style=S_DIM))
    return Group(*parts)


def _render_groups(workers: Sequence[Worker], *, max_groups: int, slow_after: float
                   ) -> RenderableType:
    """Workers counted by (entrypoint, where), largest groups first (:func:`group_workers`,
    which the live console's groups view uses too)."""
    groups = group_workers(workers)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  title=Text("by entrypoint and where", style=S_TITLE), title_justify="left")
    table.add_column("workers", justify="right")
    table.add_column("entrypoint", style=S_ENTRYPOINT, no_wrap=True, overflow="ellipsis",
                     max_width=40)
    table.add_column("where", min_width=16)
    table.add_column("oldest", justify="right", no_wrap=True)
    for g in groups[:max_groups]:
        table.add_row(str(g.count), _cell(_t(g.entrypoint, limit=120)),
                      _cell(_where_text(g.where, 120)),
                      _age(g.oldest_s, slow_after, g.lower_bound))
    parts: list[RenderableType] = [table]
    if len(groups) > max_groups:
        rest = sum(g.count for g in groups[max_groups:])
        parts.append(Text(f"… and {len(groups) - max_groups} more groups ({rest} workers)",
                          style=S_DIM))
    return Group(*parts)


def _kv_table() -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    table.add_column(style=S_DIM, no_wrap=True)
    table.add_column(overflow="fold")
    return table


def kv_table(rows: Iterable[tuple[str, RenderableType]]) -> Table:
    """Two columns: a dim key (never markup: keys may come from the service) and its value."""
    table = _kv_table()
    for key, value in rows:
        table.add_row(Text(clip(key, 60)), value)
    return table


def mapping_text(mapping: Mapping[str, Any], *, max_items: int = MAX_ITEMS,
                 value_chars: int = VALUE_CHARS, empty: str = "-") -> Text:
    """``key = value`` lines of a mapping (kwargs, context data), bounded."""
    if not mapping:
        return Text(empty, style=S_DIM)
    lines = Text()
    for i, (k, v) in enumerate(list(mapping.items())[:max_items]):
        if i:
            lines.append("\n")
        lines.append(clip(k, 60), style=S_TITLE)
        lines.append(" = ")
        lines.append(clip(v if isinstance(v, str) else repr(v), value_chars))
    if len(mapping) > max_items:
        lines.append(f"\n… and {len(mapping) - max_items} more", style=S_DIM)
    return lines


def arguments_text(worker: Worker | FinishedWorker, *, max_items: int = MAX_ITEMS,
                   value_chars: int = VALUE_CHARS) -> Text:
    """A worker's positional arguments (``[0] 'alice'``) then keyword ones (``tag = 't1'``),
    as the collector redacted them."""
    if not worker.args and not worker.kwargs:
        return Text("no arguments", style=S_DIM)
    lines = Text()
    for i, a in enumerate(worker.args[:max_items]):
        if i:
            lines.append("\n")
        lines.append(f"[{i}] ", style=S_DIM)
        lines.append(clip(a, value_chars))
    if len(worker.args) > max_items:
        lines.append(f"\n… and {len(worker.args) - max_items} more", style=S_DIM)
    if worker.kwargs:
        if worker.args:
            lines.append("\n")
        lines.append_text(mapping_text(worker.kwargs, max_items=max_items,
                                       value_chars=value_chars))
    return lines


def worker_fields(container: Container | None, worker: Worker, *, target: str | None = None,
                  max_items: int = MAX_ITEMS, value_chars: int = VALUE_CHARS,
                  slow_after: float = SLOW_AFTER, accent: str = S_ENTRYPOINT
                  ) -> list[tuple[str, RenderableType]]:
    """Who a worker is: target, entrypoint, call id, call chain, age and start, where."""
    rows: list[tuple[str, RenderableType]] = []
    if target is not None:
        rows.append(("target", _t(target, limit=value_chars)))
    service = f" ({container.service_name})" if container is not None else ""
    rows.append(("entrypoint", _t(worker.entrypoint + service, f"bold {accent}", value_chars)
                 + _t(f"  {worker.entrypoint_type}", S_DIM, 40)))
    rows.append(("call id", _t(worker.call_id, limit=value_chars)))
    if len(worker.call_id_stack) > 1:
        rows.append(("call chain", call_chain_text(worker.call_id_stack, worker.call_id,
                                                   max_items=max_items,
                                                   value_chars=value_chars, accent=accent)))
    age = _worker_age(worker, slow_after)
    if worker.started_at is not None:
        age.append(f"  started {clock(worker.started_at)}", style=S_DIM)
    else:
        age.append(f"  first seen {clock(worker.first_seen)} (start time not recorded)",
                   style=S_DIM)
    rows.append(("age", age))
    rows.append(("where", _where_text(where_of(worker), value_chars)))
    return rows


def render_worker_detail(container: Container | None, worker: Worker, *,
                         target: str | None = None, max_frames: int = MAX_FRAMES,
                         value_chars: int = VALUE_CHARS, max_items: int = MAX_ITEMS,
                         slow_after: float = SLOW_AFTER, stack_style: StackStyle = PAGE_STACK
                         ) -> RenderableType:
    """Everything about one worker: who it is (:func:`worker_fields`), its arguments and
    context data (already redacted by the collector) and its stack. The live console's worker
    screen draws the same pieces in panels of their own."""
    rows = worker_fields(container, worker, target=target, max_items=max_items,
                         value_chars=value_chars, slow_after=slow_after)
    rows.append(("arguments", arguments_text(worker, max_items=max_items,
                                             value_chars=value_chars)))
    rows.append(("context data", mapping_text(worker.context_data, max_items=max_items,
                                              value_chars=value_chars)))
    return Group(kv_table(rows), Text("stack", style=S_TITLE),
                 render_stack(worker.stack, max_frames=max_frames, code_chars=value_chars,
                              style=stack_style))


# -- hub blocks (the watchdog) ---------------------------------------------------------------------


def culprit_fields(culprit: Culprit | None, *, max_items: int = MAX_ITEMS,
                   value_chars: int = VALUE_CHARS, accent: str = S_ENTRYPOINT
                   ) -> list[tuple[str, RenderableType]]:
    """Who held the hub: entrypoint (or what the greenlet runs), call id and chain, where,
    and a worker's arguments and context data (redacted in the service)."""
    if culprit is None:
        return [("culprit", Text("not seen: the watchdog's thread could not run meanwhile "
                                 "(C code holding the GIL?)", style=S_DIM))]
    rows: list[tuple[str, RenderableType]] = []
    if culprit.kind == "worker":
        service = f" ({culprit.service})" if culprit.service else ""
        rows.append(("culprit", _t(f"{culprit.entrypoint}{service}", f"bold {accent}",
                                   value_chars)
                     + _t(f"  worker, {culprit.entrypoint_type or '?'}", S_DIM, 40)))
        rows.append(("call id", _t(culprit.call_id or "?", limit=value_chars)))
        if len(culprit.call_id_stack) > 1:
            rows.append(("call chain", _t(" → ".join(culprit.call_id_stack[-max_items:]),
                                          limit=value_chars)))
    else:
        what = "managed thread" if culprit.kind == "managed_thread" else "greenlet (no worker)"
        rows.append(("culprit", _t(culprit.target or "?", f"bold {accent}", value_chars)
                     + _t(f"  {what}", S_DIM, 40)))
    rows.append(("where", _where_text(culprit.where, value_chars)))
    if culprit.kind == "worker":
        args = Worker(call_id=culprit.call_id or "", call_id_stack=[], entrypoint="",
                      entrypoint_type="", args=culprit.args, kwargs=culprit.kwargs,
                      context_data={}, started_at=None, first_seen=0.0, age_s=0.0,
                      where=None, stack=None)
        rows.append(("arguments", arguments_text(args, max_items=max_items,
                                                 value_chars=value_chars)))
        rows.append(("context data", mapping_text(culprit.context_data, max_items=max_items,
                                                  value_chars=value_chars)))
    return rows


def render_blocked(incident: Incident, *, target: str | None = None, pid: int | None = None,
                   max_frames: int = MAX_FRAMES, value_chars: int = VALUE_CHARS,
                   max_items: int = MAX_ITEMS) -> RenderableType:
    """The page for a service whose hub is blocked, from the watchdog's answer: since when,
    by whom, and the culprit's stack (its innermost own frame marked)."""
    title = Text("HUB BLOCKED", style=f"bold reverse {S_ERROR}")
    title.append(" ")
    if target:
        title.append(clip(target, 80), style=S_TITLE)
    if pid is not None:
        title.append(f"  pid {pid}", style=S_DIM)
    state = "for" if incident.ongoing else "(now free) for"
    title.append(f"\nthe eventlet hub has run nothing else {state} ")
    title.append(format_age(incident.duration_s), style=S_SLOW)
    title.append(f", since {clock(incident.started_at)}", style=S_DIM)
    rows = culprit_fields(incident.culprit, max_items=max_items, value_chars=value_chars)
    parts: list[RenderableType] = [title, kv_table(rows)]
    if incident.culprit is not None:
        parts += [Text("stack of the culprit", style=S_TITLE),
                  render_stack(incident.culprit.stack, max_frames=max_frames,
                               code_chars=value_chars)]
    return Group(*parts)


def render_incidents(incidents: Sequence[Incident], *, listed: int = INCIDENTS_LISTED,
                     slow_after: float = SLOW_AFTER) -> RenderableType:
    """The watchdog's record of hub blocks, newest first: when, how long, by whom, where."""
    summary = Text(f"hub blocks (watchdog): {len(incidents)}", style=S_TITLE)
    if not incidents:
        summary.append("  none recorded", style=S_DIM)
        return summary
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("at", no_wrap=True, min_width=27)
    table.add_column("blocked", justify="right", no_wrap=True, min_width=7)
    table.add_column("culprit", style=S_ENTRYPOINT, no_wrap=True, overflow="ellipsis",
                     min_width=16, max_width=40)
    table.add_column("call id", no_wrap=True, min_width=CALL_ID_CHARS)
    table.add_column("where", min_width=10)
    for incident in list(reversed(incidents))[:listed]:
        culprit = incident.culprit
        table.add_row(Text(clock(incident.started_at), style=S_DIM),
                      Text(format_age(incident.duration_s), style=S_SLOW),
                      _t(culprit.name if culprit else "not seen", limit=120),
                      _t(call_id_tail(culprit.call_id)[:CALL_ID_CHARS]
                         if culprit and culprit.call_id else "", S_DIM, 40),
                      _cell(_where_text(culprit.where if culprit else None)))
    return Group(summary, table)


# -- containers and snapshots ----------------------------------------------------------------------


def _pool_text(container: Container) -> Text:
    running, most = container.workers_running, container.max_workers
    text = Text(f"{running}/{most} workers running")
    level = pool_level(running, most)
    if level == "full":
        text.append("  SATURATED: new work waits for a free worker", style=S_ERROR)
    elif level == "warning":
        text.append(f"  near capacity ({running / most:.0%})", style=S_WARN)
    return text


def _backlog_text(container: Container) -> Text:
    """One line per queue: ``rpc-slowpoke  381 ready · 10 unacked · +12.5/s``; a full pool whose
    backlog grows says so."""
    summary = backlog_summary(container.backlog)
    queues = container.backlog or []
    if not queues:
        return Text("no queues consumed", style=S_DIM)
    text = Text()
    for i, q in enumerate(queues):
        if i:
            text.append("\n")
        one = backlog_summary([q])
        text.append_text(_t(q.queue, limit=80))
        if q.error is not None and q.ready is None:
            text.append(f"  ? ({clip(q.error, 120)})", style=S_DIM)
            continue
        style = S_WARN if one is not None and one.growing else ""
        text.append(f"  {one.text() if one is not None else ''}", style=style)
    if summary is not None and summary.growing and \
            pool_level(container.workers_running, container.max_workers) == "full":
        text.append("\nPOOL FULL AND BACKLOG GROWING: work arrives faster than it is done",
                    style=S_ERROR)
    return text


def _distinct_stacks(oldest_first: Sequence[Worker], n: int) -> list[tuple[Worker, int]]:
    """The ``n`` oldest workers whose stacks differ, each with how many other workers share its
    stack: 1000 workers parked on the same line are drawn once."""
    chosen: dict[tuple[tuple[str, int], ...], list[Any]] = {}
    for w in oldest_first:
        if w.stack is None:
            continue
        key = tuple((f.file, f.line) for f in w.stack)
        if key in chosen:
            chosen[key][1] += 1
        elif len(chosen) < n:
            chosen[key] = [w, 0]
    return [(w, same) for w, same in chosen.values()]


def _render_header(container: Container) -> RenderableType:
    table = _kv_table()
    started = Text("started", style=S_OK) if container.started else Text("not started",
                                                                          style=S_ERROR)
    table.add_row("class", _t(container.service_class, limit=120) + Text("  ") + started)
    table.add_row("workers", _pool_text(container))
    if container.backlog is not None:
        table.add_row("backlog", _backlog_text(container))
    by_type: dict[str, list[Text]] = {}
    for ep in container.entrypoints:
        by_type.setdefault(ep.type, []).append(_entrypoint_label(ep.method, ep.type, ep.details))
    for type_, labels in by_type.items():
        table.add_row(clip(type_, 30), _names(labels, MAX_ENTRYPOINTS_PER_TYPE))
    if not container.entrypoints:
        table.add_row("entrypoints", Text("none", style=S_DIM))
    if container.dependencies:
        deps = [_t(d.attr, limit=60) + _t(f" ({d.type.rsplit('.', 1)[-1]})", S_DIM, 60)
                for d in container.dependencies]
        table.add_row("dependencies", _names(deps, MAX_LISTED_EXTENSIONS))
    if container.subextensions:
        subs = Counter(s.type.rsplit(".", 1)[-1] for s in container.subextensions)
        table.add_row("subextensions", _names(
            [f"{name} ×{n}" if n > 1 else name for name, n in subs.items()],
            MAX_LISTED_EXTENSIONS))
    if container.managed_threads:
        threads = [_t(group_label(name, n), limit=80) for name, n in managed_thread_groups(
            t.target or t.identifier for t in container.managed_threads)]
        table.add_row("managed threads", _names(threads, MAX_LISTED_EXTENSIONS))
    return table


@dataclass(frozen=True)
class HistoryEntry:
    """One finished worker as a history table lists it: which target and service it ran in,
    and how long before the snapshot it finished."""

    worker: FinishedWorker
    service: str
    ago: float
    target: str | None = None


def history_entries(container: Container, now: float, target: str | None = None
                    ) -> list[HistoryEntry]:
    return [HistoryEntry(h, container.service_name, max(now - h.finished_at, 0.0), target)
            for h in container.history or ()]


@dataclass(frozen=True)
class BlockEntry:
    """A block of the hub (a watchdog incident) as a history row: what held the hub, how long,
    where."""

    incident: Incident
    ago: float
    target: str | None = None

    @property
    def service(self) -> str:
        culprit = self.incident.culprit
        return (culprit.service if culprit is not None else None) or ""

    @property
    def name(self) -> str:
        culprit = self.incident.culprit
        if culprit is None:
            return "not seen"
        return culprit.entrypoint or culprit.target or culprit.kind

    @property
    def error(self) -> str:
        culprit = self.incident.culprit
        where = "" if culprit is None or culprit.where is None else str(culprit.where)
        return f"held the eventlet hub at {where}" if where else ""

    @property
    def key(self) -> str:
        return f"block@{self.incident.started_at:.6f}"


def incident_entries(snapshot: Snapshot, target: str | None = None) -> list[BlockEntry]:
    return [BlockEntry(i, max(snapshot.time - i.started_at - i.duration_s, 0.0), target)
            for i in snapshot.incidents or ()]


def outcome_counts(entries: Iterable[HistoryEntry | BlockEntry]) -> dict[str, int]:
    return dict(sorted(Counter(e.worker.outcome if isinstance(e, HistoryEntry)
                               else HUB_BLOCKED for e in entries).items()))


#: The outcome column of a hub block in a history table.
HUB_BLOCKED = "hub blocked"


#: Style of each outcome in history tables (the live console passes its theme's colours).
OUTCOME_STYLES = {"success": S_OK, "error": S_ERROR, "expected_error": S_WARN,
                  "killed": S_WARN, "hub blocked": S_ERROR}


def history_columns(*, service: bool = True, target: bool = False) -> list[tuple[str, str]]:
    """(key, header) of the history table's columns: the page and the live console's panel."""
    cols = [("ago", "ago")]
    if target:
        cols.append(("target", "target"))
    if service:
        cols.append(("service", "service"))
    return cols + [("entrypoint", "entrypoint"), ("took", "took"), ("outcome", "outcome"),
                   ("error", "error")]


def history_cells(entry: HistoryEntry | BlockEntry, *, slow_after: float = SLOW_AFTER,
                  service: bool = True, target: bool = False,
                  outcome_styles: Mapping[str, str] = OUTCOME_STYLES,
                  error_chars: int = VALUE_CHARS) -> list[Text]:
    """One finished worker's (or hub block's) cells, in :func:`history_columns` order."""
    if isinstance(entry, BlockEntry):
        cells = [Text(format_age(entry.ago), style=S_DIM)]
        if target:
            cells.append(_t(entry.target or "", S_DIM, 30))
        name = entry.name
        if service:
            cells.append(_t(entry.service, limit=30))
            prefix = entry.service + "."
            name = name[len(prefix):] if entry.service and name.startswith(prefix) else name
        return cells + [_t(name, "bold", 40), Text(format_age(entry.incident.duration_s),
                                                  style=S_SLOW),
                      _t(HUB_BLOCKED, outcome_styles.get(HUB_BLOCKED, S_ERROR), 20),
                      _cell(_t(entry.error, S_ERROR, error_chars))]
    h = entry.worker
    error = "" if h.exc_type is None else f"{h.exc_type}: {h.exc_message or ''}"
    row: list[Text] = [Text(format_age(entry.ago), style=S_DIM)]
    if target:
        row.append(_t(entry.target or "", S_DIM, 30))
    entrypoint = h.entrypoint
    if service:
        row.append(_t(entry.service, limit=30))
        prefix = entry.service + "."  # the service has a column of its own
        entrypoint = entrypoint[len(prefix):] if entrypoint.startswith(prefix) else entrypoint
    row += [_t(entrypoint, "bold", 40), _age(h.duration_s, slow_after),
            _t(h.outcome, outcome_styles.get(h.outcome, ""), 20),
            _cell(_t(error, S_ERROR if error else "", error_chars))]
    return row


def history_table(entries: Sequence[HistoryEntry], *, listed: int = HISTORY_LISTED,
                  slow_after: float = SLOW_AFTER, service: bool = True, target: bool = False,
                  outcome_styles: Mapping[str, str] = OUTCOME_STYLES, expand: bool = False
                  ) -> Table:
    """The most recently finished workers first: how long ago, (target,) (service,)
    entrypoint, duration, outcome and error (cells: :func:`history_cells`, which the live
    console's panel draws too)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=expand,
                  header_style=S_DIM)
    for key, label in history_columns(service=service, target=target):
        if key in ("ago", "took"):
            table.add_column(label, justify="right", no_wrap=True)
        elif key in ("target", "service"):
            table.add_column(label, no_wrap=True, max_width=30)
        elif key == "entrypoint":
            table.add_column(label, style=S_ENTRYPOINT, no_wrap=True, overflow="ellipsis",
                             max_width=40)
        elif key == "outcome":
            table.add_column(label, no_wrap=True)
        else:
            table.add_column(label, min_width=10, ratio=1 if expand else None, no_wrap=True,
                             overflow="ellipsis")
    for e in sorted(entries, key=lambda e: e.ago)[:listed]:
        table.add_row(*history_cells(e, slow_after=slow_after, service=service, target=target,
                                     outcome_styles=outcome_styles))
    return table


def finished_fields(entry: HistoryEntry, *, max_items: int = MAX_ITEMS,
                    value_chars: int = VALUE_CHARS, slow_after: float = SLOW_AFTER,
                    accent: str = S_ENTRYPOINT,
                    outcome_styles: Mapping[str, str] = OUTCOME_STYLES
                    ) -> list[tuple[str, RenderableType]]:
    """Who a finished worker was and how it ended: target, entrypoint, call id, call chain,
    start, end, duration, outcome and exception."""
    h = entry.worker
    rows: list[tuple[str, RenderableType]] = []
    if entry.target is not None:
        rows.append(("target", _t(entry.target, limit=value_chars)))
    rows.append(("entrypoint", _t(f"{h.entrypoint} ({entry.service})", f"bold {accent}",
                                  value_chars)
                 + _t(f"  {h.entrypoint_type or ''}", S_DIM, 40)))
    rows.append(("call id", _t(h.call_id, limit=value_chars)))
    if len(h.call_id_stack) > 1:
        rows.append(("call chain", call_chain_text(h.call_id_stack, h.call_id,
                                                   max_items=max_items,
                                                   value_chars=value_chars, accent=accent)))
    rows.append(("started", _t(clock(h.started_at), limit=40)))
    took = _age(h.duration_s, slow_after)
    took.append(f"  finished {clock(h.finished_at)}, {format_age(entry.ago)} ago", style=S_DIM)
    rows.append(("took", took))
    rows.append(("outcome", _t(h.outcome, f"bold {outcome_styles.get(h.outcome, '')}", 20)))
    if h.exc_type is not None:
        rows.append(("exception", _t(h.exc_type, S_ERROR, 80)
                     + _t(f": {h.exc_message or ''}", "", value_chars)))
    return rows


def call_chain_text(call_id_stack: Sequence[str], current: str, *, max_items: int = MAX_ITEMS,
                    value_chars: int = VALUE_CHARS, accent: str = S_ENTRYPOINT) -> Text:
    """``a → b → this`` with this call emphasised; the outermost cut when long."""
    chain = list(call_id_stack)[-max_items:]
    text = Text(" → ").join(_t(c, f"bold {accent}" if c == current else "", value_chars)
                            for c in chain)
    if len(call_id_stack) > len(chain):
        text = Text("… → ", style=S_DIM) + text
    return text


def render_finished_detail(entry: HistoryEntry, *, max_frames: int = MAX_FRAMES,
                           value_chars: int = VALUE_CHARS, max_items: int = MAX_ITEMS,
                           slow_after: float = SLOW_AFTER, stack_style: StackStyle = PAGE_STACK
                           ) -> RenderableType:
    """Everything the bookkeeping kept of one finished worker: :func:`finished_fields`, its
    arguments and context data (redacted in the service) and, for a failure, the traceback."""
    h = entry.worker
    rows = finished_fields(entry, max_items=max_items, value_chars=value_chars,
                           slow_after=slow_after)
    if h.detailed:
        rows.append(("arguments", arguments_text(h, max_items=max_items,
                                                 value_chars=value_chars)))
        rows.append(("context data", mapping_text(h.context_data, max_items=max_items,
                                                  value_chars=value_chars)))
    else:
        rows.append(("details", Text(NOT_DETAILED, style=S_DIM)))
    parts: list[RenderableType] = [kv_table(rows)]
    if h.traceback is not None:
        parts += [Text("traceback (most recent call last)", style=S_TITLE),
                  render_traceback(h.traceback, max_frames=max_frames,
                                   code_chars=value_chars, style=stack_style)]
    return Group(*parts)


#: What a finished worker of a service whose bookkeeping records no details says.
NOT_DETAILED = ("this service's bookkeeping records outcomes only (an older nameko-chassis): "
                "no arguments, context data or traceback")


def render_traceback(frames: Sequence[Frame], *, max_frames: int = MAX_FRAMES,
                     code_chars: int = VALUE_CHARS, style: StackStyle = PAGE_STACK
                     ) -> RenderableType:
    """A finished worker's traceback, drawn like a stack (the raise is the innermost frame)."""
    if not frames:
        return Text("no traceback recorded", style=S_DIM)
    return render_stack(frames, max_frames=max_frames, code_chars=code_chars, style=style)


def _render_history(entries: Sequence[HistoryEntry], *, listed: int, slow_after: float
                    ) -> RenderableType:
    summary = Text(f"recently finished: {len(entries)}", style=S_TITLE)
    for outcome, n in outcome_counts(entries).items():
        summary.append(f"  {outcome} {n}", style=S_ERROR if outcome == "error" else S_DIM)
    if not entries:
        return summary
    return Group(summary, history_table(entries, listed=listed, slow_after=slow_after,
                                        service=False))


def render_rates(container: Container, now: float, *, slow_after: float = SLOW_AFTER
                 ) -> RenderableType | None:
    """Per entrypoint, from the history: calls/s, errors and p50/p99 over the last minute, most
    in need of attention first (None without history in that minute). A history that holds
    fewer than a minute's calls undercounts: the figures say ``≥`` then (the ``estimate`` of
    ``--json``'s ``rates``, :func:`~nameko_chassis.view.derived.history_rates`)."""
    found = history_rates(container, now, slow_after)
    if found is None or not found.rates:
        return None
    cut = found.estimate
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style=S_DIM,
                  title=Text(f"last {WINDOW_S:g}s by entrypoint"
                             + (" (≥: the history holds less than the minute)" if cut else ""),
                             style=S_TITLE), title_justify="left")
    table.add_column("entrypoint", style=S_ENTRYPOINT, no_wrap=True, max_width=40)
    table.add_column("calls/s", justify="right", no_wrap=True)
    table.add_column("calls", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("p99", justify="right", no_wrap=True)
    for r in found.rates:
        errors = f"{r.error_rate or 0:.0%} ({r.errors})" if r.errors else "0"
        if r.expected_errors:
            errors += f" +{r.expected_errors} expected"
        table.add_row(_t(r.entrypoint, limit=80), ("≥" if cut else "") + f"{r.per_s:.2f}",
                      Text(spark(r.buckets), style=S_ENTRYPOINT),
                      Text(errors, style=S_ERROR if r.errors else S_DIM),
                      format_age(r.p50_s), _age(r.p99_s or 0.0, slow_after))
    return table


#: What the page says where a service keeps no history, so one snapshot shows no rate.
NO_RATES = ("rates: this service keeps no history (no chassis bookkeeping), so one snapshot "
            "shows no rate; the live console estimates them from successive snapshots (e)")


def render_container(container: Container, *, max_workers_listed: int = MAX_WORKERS_LISTED,
                     stacks_for_oldest: int = STACKS_FOR_OLDEST, slow_after: float = SLOW_AFTER,
                     max_groups: int = MAX_GROUPS, max_frames: int = MAX_FRAMES,
                     preview_chars: int = PREVIEW_CHARS, history_listed: int = HISTORY_LISTED,
                     now: float | None = None) -> RenderableType:
    """One container: a header, its workers (grouped when they do not all fit in the list,
    then the oldest), the stacks of its oldest workers, and its recent history when it keeps one
    (``now``: the snapshot's time, for how long ago they finished).
    """
    title = _t(container.service_name, S_SERVICE, 80)
    parts: list[RenderableType] = [Rule(title, align="left"), _render_header(container)]
    workers = container.workers
    if workers:
        if len(workers) > max_workers_listed:
            parts.append(_render_groups(workers, max_groups=max_groups, slow_after=slow_after))
        parts.append(Text("oldest workers" if len(workers) > max_workers_listed
                          else "workers", style=S_TITLE))
        parts.append(render_workers(workers, max_workers_listed=max_workers_listed,
                                    slow_after=slow_after, preview_chars=preview_chars,
                                    total=container.workers_running))
        collected = sum(1 for w in workers if w.stack is not None)
        for w, same in _distinct_stacks(oldest_first(workers), stacks_for_oldest):
            title = Text("stack of ", style=S_TITLE) + _worker_title(w, slow_after)
            parts.append(title)
            if same:
                of = f" of the {collected} collected" if collected < len(workers) else ""
                parts.append(Text(f"  (+{same} more with this stack{of})", style=S_DIM))
            parts.append(render_stack(w.stack, max_frames=max_frames))
    else:
        parts.append(Text("no workers running", style=S_DIM))
    if container.history is None:
        if workers:  # in flight but no history: say why no rates are shown
            parts.append(Text(NO_RATES, style=S_DIM))
    else:
        when = now if now is not None else max((h.finished_at for h in container.history),
                                               default=0.0)
        parts.append(_render_history(history_entries(container, when), listed=history_listed,
                                     slow_after=slow_after))
        rates = render_rates(container, when, slow_after=slow_after)
        if rates is not None:
            parts.append(rates)
    return Group(*parts)


def _render_snapshot_header(snapshot: Snapshot, *, max_errors: int) -> RenderableType:
    n_workers = sum(max(len(c.workers), c.workers_running) for c in snapshot.containers)
    text = Text()
    text.append("pid ", style=S_DIM)
    text.append(str(snapshot.pid), style=S_TITLE)
    text.append(" on ", style=S_DIM)
    text.append(clip(snapshot.host, 80), style=S_TITLE)
    text.append(f"  Python {clip(snapshot.python, 30)}  nameko {clip(snapshot.nameko, 30)}",
                style=S_DIM)
    text.append(f"\n{len(snapshot.containers)} container"
                f"{'' if len(snapshot.containers) == 1 else 's'}, {n_workers} worker"
                f"{'' if n_workers == 1 else 's'} running")
    text.append(f"  taken {clock(snapshot.time)} in {snapshot.took_ms:.2f} ms", style=S_DIM)
    basics = process_summary(snapshot.process)
    if basics:
        text.append(f"\n{basics}", style=S_DIM)
    parts: list[RenderableType] = [text]
    if snapshot.errors:
        errors = Text(f"{len(snapshot.errors)} error"
                      f"{'' if len(snapshot.errors) == 1 else 's'} while collecting:",
                      style=S_ERROR)
        for e in snapshot.errors[:max_errors]:
            errors.append("\n  ")
            errors.append(clip(e, VALUE_CHARS))
        if len(snapshot.errors) > max_errors:
            errors.append(f"\n  … and {len(snapshot.errors) - max_errors} more", style=S_DIM)
        parts.append(errors)
    return Group(*parts)


def render_snapshot(snapshot: Snapshot, *, max_workers_listed: int = MAX_WORKERS_LISTED,
                    stacks_for_oldest: int = STACKS_FOR_OLDEST, slow_after: float = SLOW_AFTER,
                    max_groups: int = MAX_GROUPS, max_frames: int = MAX_FRAMES,
                    preview_chars: int = PREVIEW_CHARS, history_listed: int = HISTORY_LISTED,
                    max_errors: int = MAX_ERRORS, incidents_listed: int = INCIDENTS_LISTED,
                    width: int | None = None) -> RenderableType:
    """The whole snapshot: process header, collection errors, each container (see
    :func:`render_container` for the limits), then the hub watchdog's record of blocks when one
    runs. ``width`` caps the rendering's width."""
    parts: list[RenderableType] = [_render_snapshot_header(snapshot, max_errors=max_errors)]
    for container in snapshot.containers:
        parts.append(render_container(
            container, max_workers_listed=max_workers_listed,
            stacks_for_oldest=stacks_for_oldest, slow_after=slow_after, max_groups=max_groups,
            max_frames=max_frames, preview_chars=preview_chars, history_listed=history_listed,
            now=snapshot.time))
    if not snapshot.containers:
        parts.append(Text("no nameko containers found in this process", style=S_WARN))
    if snapshot.incidents:
        parts.append(render_incidents(snapshot.incidents, listed=incidents_listed,
                                      slow_after=slow_after))
    group = Group(*parts)
    return Constrain(group, width) if width else group


def to_text(renderable: RenderableType, *, width: int = DEFAULT_WIDTH, color: bool = False
            ) -> str:
    """Render to a string: ANSI colour and styles when ``color``, else plain text (no escape
    codes at all)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, markup=False, emoji=False,
                      highlight=False, soft_wrap=False, legacy_windows=False,
                      force_jupyter=False, force_interactive=False)
    console.print(renderable)
    return buffer.getvalue()
