"""The worker detail screen: everything about one worker, updated live, clear when it finished."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from nameko_chassis.view.model import Container, FinishedWorker, Frame, ManagedThread, Worker
from nameko_chassis.view.page import (
    StackStyle,
    arguments_text,
    kv_table,
    mapping_text,
    render_stack,
    worker_fields,
)
from nameko_chassis.view.text import age_text

from .calls import CallLink, chain_text, downstream, locate, upstream
from .common import KeysFooter, Palette, age_style, clip, format_age
from .poller import TargetStatus
from .services import ManagedRef
from .status import ConsoleView, StatusBar
from .workers import WorkerRef

VALUE_CHARS = 300
#: Entries listed per section (arguments, context data, call chain).
MAX_ITEMS = 50
CODE_CHARS = 160
#: Frames drawn of a worker's stack (the collector sends at most 40).
MAX_FRAMES = 60


def stack_view(frames: Sequence[Frame] | None, palette: Palette,
               missing: str = "collecting the stack…") -> RenderableType:
    """The full stack, outermost first, drawn by the page's stack renderer in the console's
    style: every frame with its source line, the service's own frames emphasised, and the
    innermost of them marked as where the worker is."""
    style = StackStyle(user_marker="  ", where_marker="▶ ", where_note="   ← where it is now",
                       accent=palette.accent, library_code=True, highlight=True,
                       missing=missing)
    return render_stack(frames, max_frames=MAX_FRAMES, code_chars=CODE_CHARS, style=style)


class WorkerDetailScreen(Screen[None]):
    """Arguments, context data, call chain and the full stack of one worker."""

    # q quits as everywhere (the app's binding); s would re-sort the list behind: not here
    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="back"),
        Binding("f", "follow", "Follow call ↓", id="follow"),
        Binding("u", "caller", "Caller ↑", id="caller"),
        Binding("s", "nothing", show=False),
    ]

    def action_nothing(self) -> None:
        """Keys of the workers list that mean nothing on this screen."""

    def __init__(self, ref: WorkerRef, label: str, *,
                 seen: tuple[Container, Worker] | None = None, pid: int | None = None) -> None:
        super().__init__()
        self.ref = ref
        self.target_label = label
        self.container: Container | None = seen[0] if seen is not None else None
        self.worker: Worker | None = seen[1] if seen is not None else None
        self.finished: FinishedWorker | None = None
        self.gone_at: float | None = None  # snapshot time at which it was first missing
        self.state = "waiting"  # waiting | running | finished | stale
        self.pid: int | None = pid  # of the service process the worker was seen in
        self.restarted_as: int | None = None  # pid of the process that replaced it
        self.up: list[CallLink] = []  # its callers, the first one first
        self.down: list[CallLink] = []  # the running workers it waits for
        self.several = False

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static(id="detail-worker", classes="panel")
            yield Static(id="detail-calls", classes="panel")
            yield Static(id="detail-args", classes="panel")
            yield Static(id="detail-context", classes="panel")
            yield Static(id="detail-stack", classes="panel")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#detail-worker").border_title = "worker"
        self.query_one("#detail-calls").border_title = "call chain (u: caller ↑, f: follow ↓)"
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
        elif (snap is not None and self.worker is not None and status is not None
              and self.pid is not None and snap.pid != self.pid
              and self.pid in status.shared_pids):
            pass  # another process on the shared port answered: the worker's own is not gone
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
        if self.worker is not None:
            self.several = len(statuses) > 1
            self.up = upstream(statuses, self.worker)
            self.down = downstream(statuses, self.worker) if self.state == "running" else []
        self._draw()

    # -- following a call ------------------------------------------------------------------

    def _go(self, links: list[CallLink], what: str) -> None:
        running = [link for link in links if link.ref is not None]
        if not running:
            self.notify(f"No {what} running in the attached targets.", severity="warning",
                        timeout=3)
            return
        self.jump(running[0].call_id)

    def action_follow(self) -> None:
        """To the worker this one waits for (the oldest, when it waits for several)."""
        self._go(self.down, "call this worker waits for is")

    def action_caller(self) -> None:
        """To the worker that called this one (the nearest caller still running)."""
        self._go(list(reversed(self.up)), "caller of this worker is")

    def jump(self, call_id: str) -> None:
        """Open the worker ``call_id`` (in whichever target runs it) in place of this one."""
        app: Any = self.app
        link = locate(app.statuses, call_id) if hasattr(app, "statuses") else None
        if link is None or link.ref is None:
            self.notify(f"{call_id} is not running in the attached targets.",
                        severity="warning", timeout=3, markup=False)
            return
        app.jump_to_worker(link.ref)

    def _title(self, palette: Palette) -> Text:
        w = self.worker
        title = Text()
        name = w.entrypoint if w else self.ref.call_id
        title.append(f" {clip(name, 80)} ", style=f"bold reverse {palette.primary}")
        title.append("  ")
        if self.state == "running" and w is not None:
            slow = self.app_slow
            title.append("● running ", style=f"bold {palette.success}")
            title.append(age_text(w), style=age_style(w.age_s, slow, palette) or "bold")
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
        fields = worker_fields(c, w, target=self.target_label, value_chars=VALUE_CHARS,
                               slow_after=self.app_slow, accent=palette.accent)
        self.query_one("#detail-worker", Static).update(kv_table(fields))
        self.query_one("#detail-calls", Static).update(
            chain_text(self.up, w, self.down, accent=palette.accent, several=self.several))
        self.query_one("#detail-args", Static).update(
            arguments_text(w, max_items=MAX_ITEMS, value_chars=VALUE_CHARS))
        self.query_one("#detail-context", Static).update(mapping_text(
            w.context_data, max_items=MAX_ITEMS, value_chars=VALUE_CHARS,
            empty="no context data (besides the call chain)"))
        # a worker that finished before its stack was taken never gets one: say so
        missing = ("no stack: the worker finished before one was taken"
                   if self.state == "finished" else "collecting the stack…")
        self.query_one("#detail-stack", Static).update(stack_view(w.stack, palette, missing))


class ManagedThreadScreen(Screen[None]):
    """The stacks of one container's managed threads running alike targets (a consumer, a
    timer, the web server, its HTTP connections), collected while this screen is open."""

    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="back"),
        Binding("s", "nothing", show=False),
    ]

    #: Threads drawn (``HTTP connections ×200`` shows the first of them).
    MAX_THREADS = 20

    def __init__(self, ref: ManagedRef, label: str) -> None:
        super().__init__()
        self.ref = ref
        self.target_label = label
        self.threads: list[ManagedThread] = []
        self.collected = False  # a snapshot with their stacks came

    def action_nothing(self) -> None:
        """Keys of the lists that mean nothing on this screen."""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static(id="managed-stacks", classes="panel")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#managed-stacks").border_title = "stacks (outermost first)"
        self.query_one("#detail-body").focus()
        app: Any = self.app
        if hasattr(app, "statuses"):
            self.show(app.view, app.statuses)

    def show(self, view: ConsoleView, statuses: Sequence[TargetStatus]) -> None:
        self.query_one(StatusBar).show(view, statuses)
        status = next((s for s in statuses if s.index == self.ref.target), None)
        snap = status.snapshot if status is not None else None
        container = next((c for c in snap.containers if c.service_name == self.ref.service),
                         None) if snap is not None else None
        if container is not None:
            threads = [t for t in container.managed_threads
                       if (t.target or t.identifier) in self.ref.members]
            if any(t.stack is not None for t in threads) or not self.collected:
                self.threads = threads
                self.collected = any(t.stack is not None for t in threads)
        self._draw()

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        title = Text()
        title.append(f" {clip(self.ref.name, 60)} ", style=f"bold reverse {palette.primary}")
        title.append(f"  managed thread{'s' * (len(self.threads) != 1)} of ")
        title.append(clip(self.ref.service, 40), style="bold")
        title.append(f"  on {clip(self.target_label, 40)}", style="dim")
        title.append(f"  ×{len(self.threads)}" if len(self.threads) > 1 else "")
        self.query_one("#detail-title", Static).update(title)
        parts: list[RenderableType] = []
        for i, t in enumerate(self.threads[:self.MAX_THREADS]):
            head = Text(f"{i + 1}. ", style="dim")
            head.append(clip(t.target or "?", 80), style=f"bold {palette.accent}")
            head.append(f"  identifier {clip(t.identifier, 40)}", style="dim")
            parts += [head, stack_view(t.stack, palette)]
        if len(self.threads) > self.MAX_THREADS:
            parts.append(Text(f"… and {len(self.threads) - self.MAX_THREADS} more alike",
                              style="dim"))
        if not self.threads:
            parts.append(Text("no such managed thread any more", style="dim"))
        self.query_one("#managed-stacks", Static).update(Group(*parts))
