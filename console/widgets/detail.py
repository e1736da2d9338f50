"""The worker detail screen: everything about one worker, updated live, clear when it finished."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from nameko_chassis.render import where_of
from nameko_chassis.snapshot import Container, FinishedWorker, Frame, Worker

from .common import Palette, age_style, clip, format_age
from .polling import TargetStatus
from .status import ConsoleView, StatusBar
from .workers import WorkerRef, short_entrypoint

VALUE_CHARS = 300
CODE_CHARS = 160


def _code(code: str, dim: bool) -> Text:
    if dim:
        return Text(clip(code, CODE_CHARS), style="dim")
    text = Syntax(clip(code, CODE_CHARS), "python", theme="ansi_dark").highlight(
        clip(code, CODE_CHARS))
    text.rstrip()
    return text


def stack_view(frames: Sequence[Frame] | None, palette: Palette) -> RenderableType:
    """The full stack, outermost first: every frame with its source line; the service's own
    frames emphasised, library frames (stdlib, nameko, eventlet, site-packages) dimmed, and the
    innermost user frame marked as where the worker is."""
    if frames is None:
        return Text("collecting the stack…", style="dim italic")
    if not frames:
        return Text("no stack: the greenthread is running right now or has just finished",
                    style="dim")
    where = next((i for i in range(len(frames) - 1, -1, -1) if not frames[i].library), None)
    lines: list[Text] = []
    for i, frame in enumerate(frames):
        if frame.library:
            head = Text("   ", style="dim")
            head.append(clip(frame.short_file, 80), style="dim")
            head.append(f":{frame.line}", style="dim")
            head.append(" in ", style="dim")
            head.append(clip(frame.function, 60), style="dim italic")
        else:
            marker = "▶ " if i == where else "  "
            head = Text(marker, style=f"bold {palette.accent}")
            head.append(clip(frame.file, 120), style="bold")
            head.append(f":{frame.line}", style="bold")
            head.append(" in ", style="")
            head.append(clip(frame.function, 60), style=f"bold {palette.accent}")
            if i == where:
                head.append("   ← where it is now", style=f"italic {palette.accent}")
        lines.append(head)
        if frame.code:
            lines.append(Text("       ") + _code(frame.code, frame.library))
    return Group(*lines)


def _kv(rows: Sequence[tuple[str, RenderableType]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        # keys can come from the service (kwargs, context data): never parse them as markup
        table.add_row(Text(key), value)
    return table


def _value(value: Any) -> Text:
    return Text(clip(value if isinstance(value, str) else repr(value), VALUE_CHARS))


def _mapping(mapping: dict[str, Any], empty: str) -> RenderableType:
    if not mapping:
        return Text(empty, style="dim")
    return _kv([(clip(k, 40), _value(v)) for k, v in mapping.items()])


class WorkerDetailScreen(Screen[None]):
    """Arguments, context data, call chain and the full stack of one worker."""

    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="back"),
        Binding("q", "dismiss", "Back", show=False),
    ]

    def __init__(self, ref: WorkerRef, label: str) -> None:
        super().__init__()
        self.ref = ref
        self.target_label = label
        self.worker: Worker | None = None
        self.container: Container | None = None
        self.finished: FinishedWorker | None = None
        self.gone_at: float | None = None  # snapshot time at which it was first missing
        self.state = "waiting"  # waiting | running | finished | stale
        self.pid: int | None = None  # of the service process the worker was seen in
        self.restarted_as: int | None = None  # pid of the process that replaced it

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static(id="detail-worker", classes="panel")
            yield Static(id="detail-args", classes="panel")
            yield Static(id="detail-context", classes="panel")
            yield Static(id="detail-stack", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-worker").border_title = "worker"
        self.query_one("#detail-args").border_title = "arguments"
        self.query_one("#detail-context").border_title = "context data"
        self.query_one("#detail-stack").border_title = "stack (outermost first)"
        self.query_one("#detail-body").focus()
        app: Any = self.app  # the ChassisConsole: draw from its state at once
        if hasattr(app, "statuses"):
            self.show(app.view, app.statuses)

    def show(self, view: ConsoleView, statuses: Sequence[TargetStatus]) -> None:
        self.query_one(StatusBar).show(view, statuses)
        status = next((s for s in statuses if s.index == self.ref.target), None)
        snap = status.snapshot if status is not None else None
        found = snap.find_worker(self.ref.call_id) if snap is not None else None
        if status is not None and status.stale:
            self.state = "stale" if self.worker is not None else "waiting"
        elif found is not None:
            self.container, worker = found
            if worker.stack is None and self.worker is not None and self.worker.stack:
                # the stack was not collected in this snapshot: keep the last one we saw
                worker = replace(worker, stack=self.worker.stack)
            self.worker = worker
            self.state = "running"
            self.pid = snap.pid if snap is not None else None
        elif snap is not None and self.worker is not None:
            if self.state != "finished":
                self.gone_at = snap.time
            self.state = "finished"
            if self.pid is not None and snap.pid != self.pid:
                self.restarted_as = snap.pid
            container = next((c for c in snap.containers
                              if self.container is not None
                              and c.service_name == self.container.service_name), None)
            if container is not None and container.history:
                self.finished = next((h for h in container.history
                                      if h.call_id == self.ref.call_id), self.finished)
        self._draw()

    def _title(self, palette: Palette) -> Text:
        w, c = self.worker, self.container
        title = Text()
        name = f"{c.service_name}.{short_entrypoint(c, w)}" if (w and c) else self.ref.call_id
        title.append(f" {clip(name, 80)} ", style=f"bold reverse {palette.primary}")
        title.append("  ")
        if self.state == "running" and w is not None:
            slow = self.app_slow
            title.append("● running ", style=f"bold {palette.success}")
            title.append(format_age(w.age_s), style=age_style(w.age_s, slow, palette) or "bold")
            if w.age_s >= slow:
                title.append(f"  ⚠ slow (over {slow:g}s)", style=f"bold {palette.error}")
        elif self.state == "finished":
            title.append(" ■ FINISHED ", style=f"bold reverse {palette.warning}")
            title.append("  this worker is no longer running", style=f"bold {palette.warning}")
            if self.finished is not None:
                f = self.finished
                outcome_style = palette.error if f.outcome == "error" else palette.success
                title.append(f" — {f.outcome}", style=f"bold {outcome_style}")
                title.append(f" after {format_age(f.duration_s)}")
                if f.exc_type:
                    title.append(f"  {clip(f.exc_type, 40)}: {clip(f.exc_message or '', 80)}",
                                 style=palette.error)
            elif self.restarted_as is not None:
                title.append(f" — the service restarted (pid {self.pid} → {self.restarted_as})"
                             " and the worker went with it", style=f"bold {palette.error}")
            elif w is not None:
                title.append(f" (ran for at least {format_age(w.age_s)})", style="dim")
            title.append("   — what follows is its last known state", style="dim")
        elif self.state == "stale":
            title.append(" STALE ", style=f"bold reverse {palette.warning}")
            title.append("  the target is not answering: showing the last known state",
                         style=palette.warning)
        else:
            title.append("waiting for the next snapshot…", style="dim")
        return title

    @property
    def app_slow(self) -> float:
        return float(getattr(self.app, "slow", 10.0))

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        self.query_one("#detail-title", Static).update(self._title(palette))
        w, c = self.worker, self.container
        if w is None:
            return
        where = where_of(w)
        started = w.started_at if w.started_at is not None else w.first_seen
        started_text = Text(time.strftime("%H:%M:%S", time.gmtime(started)))
        started_text.append(f".{int(started % 1 * 1000):03d} UTC")
        if w.started_at is None:
            started_text.append("  (first seen: the service does not record start times)",
                                style="dim")
        chain = Text()
        for i, call_id in enumerate(w.call_id_stack):
            if i:
                chain.append("\n")
            mine = call_id == w.call_id
            chain.append("  " * i + ("└ " if i else ""), style="dim")
            chain.append(clip(call_id, 120), style=f"bold {palette.accent}" if mine else "")
        rows: list[tuple[str, RenderableType]] = [
            ("target", Text(self.target_label)),
            ("service", Text(c.service_name if c else "?", style="bold")),
            ("entrypoint", Text.assemble((short_entrypoint(c, w) if c else w.entrypoint, "bold"),
                                         (f"  {w.entrypoint_type}", "dim"))),
            ("call id", Text(w.call_id)),
            ("started", started_text),
            ("age", Text(format_age(w.age_s), style=age_style(w.age_s, self.app_slow, palette))),
            ("where", Text("?" if where is None else str(where), style="bold")),
            ("call chain", chain),
        ]
        self.query_one("#detail-worker", Static).update(_kv(rows))
        args: list[tuple[str, RenderableType]] = [
            (f"[{i}]", _value(a)) for i, a in enumerate(w.args)]
        args += [(clip(k, 40), _value(v)) for k, v in w.kwargs.items()]
        self.query_one("#detail-args", Static).update(
            _kv(args) if args else Text("no arguments", style="dim"))
        context = {k: v for k, v in w.context_data.items() if k != "call_id_stack"}
        self.query_one("#detail-context", Static).update(
            _mapping(context, "no context data (besides the call chain)"))
        self.query_one("#detail-stack", Static).update(stack_view(w.stack, palette))
