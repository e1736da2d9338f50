"""The live console: a Textual app showing what one or more nameko services are doing now.

``run_app(addresses, args)`` is what ``chassis-console HOST:PORT`` runs. The app talks to each
service through a :class:`~chassis_console.targets.Target` (the backdoor client, or an in-memory
one in tests), polled by one :class:`~chassis_console.live.poller.TargetPoller` per target.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input

from nameko_chassis.amqp.management import AmqpUri
from nameko_chassis.view.text import pool_level

from ..targets import Target, TargetAddress
from .backlog import backlog_note
from .calls import downstream
from .common import KeysFooter, set_border
from .detail import ManagedThreadScreen, WorkerDetailScreen
from .dialogs import ConfirmKillScreen, HelpScreen, SortPickerScreen, describe_worker
from .groups import GroupsTable
from .history import FinishedRef, FinishedWorkerScreen, HistoryPanel, find_finished
from .logs import LogLevelScreen, LogPanel
from .poller import MIN_INTERVAL, ConsoleOptions, TargetPoller, TargetStatus
from .prefs import remember_sort, remembered_sort
from .rates import RatesTable
from .services import ManagedRef, PoolGauges, ServiceTree
from .status import ConsoleView, StatusBar
from .workers import WorkerRef, WorkersTable

if TYPE_CHECKING:
    from ..launch import NamekoProcess

#: What `+` and `-` step through (seconds between refreshes): from MIN_INTERVAL, the fastest
#: the console sustains at 1000 workers, which is also the shortest --interval.
INTERVALS = tuple(sorted({MIN_INTERVAL, *(i for i in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
                                          if i > MIN_INTERVAL)}))


#: What the workers table's title says about a stale target, by state.
_STALE_REASONS = {"unresponsive": "not answering", "blocked": "hub blocked (workers as before)"}


class TargetChanged(Message):
    """A poller has news about one target: its state and (when it answered) a new snapshot.
    A pending message about the same target is superseded by a newer one."""

    def __init__(self, status: TargetStatus) -> None:
        super().__init__()
        self.status = status
        self.snapshot = status.snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TargetChanged) and message.status is self.status


class ChassisConsole(App[int]):
    """``chassis-console``: containers, entrypoints and in-flight workers, live."""

    CSS_PATH = "app.tcss"
    #: Below this many columns (or NARROW_HEIGHT rows) the side panel goes and the workers
    #: table keeps service, entrypoint, age and where: 80x24 is a designed layout.
    NARROW_WIDTH = 110
    NARROW_HEIGHT = 30
    TITLE = "chassis-console"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        # like top and htop (and as the README promises): Ctrl-C quits, even from the filter box
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="interrupt"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("slash", "filter", "Filter", key_display="/", id="filter"),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("o", "choose_sort", "Sort by…", id="sort_by"),
        Binding("g", "toggle_groups", "Groups", id="groups"),
        Binding("e", "toggle_rates", "Rates", id="rates"),
        Binding("f", "follow", "Follow call", id="follow"),
        Binding("p", "toggle_pause", "Pause", id="pause"),
        Binding("r", "refresh_now", "Refresh", id="refresh"),
        Binding("plus", "slower", "Slower", key_display="+", id="interval_up"),
        Binding("minus", "faster", "Faster", key_display="-", id="interval_down"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("l", "toggle_logs", "Log", show=False, id="logs"),
        Binding("L", "log_level", "Log level", show=False, id="log_level"),
    ]

    def __init__(self, targets: Sequence[Target], options: ConsoleOptions | None = None, *,
                 demo: NamekoProcess | None = None) -> None:
        super().__init__()
        self.options = options or ConsoleOptions()
        self.targets = list(targets)
        self.demo = demo
        self.pollers = [TargetPoller(t, i, self.options, self._on_poller_change)
                        for i, t in enumerate(self.targets)]
        self.view = ConsoleView(interval=self.options.interval,
                                allow_actions=self.options.allow_actions)
        if demo is not None:
            self.view.demo = f"demo shop: nameko run pid {demo.pid} (stopped when you quit)"

    #: What the main column shows: the workers, their groups (g) or the rates (e).
    VIEWS = ("workers", "groups", "rates")
    main_view = "workers"

    @property
    def slow(self) -> float:
        return self.options.slow

    @property
    def statuses(self) -> list[TargetStatus]:
        return [p.status for p in self.pollers]

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield PoolGauges(id="pools")
                yield ServiceTree(id="services")
            with Vertical(id="main"):
                yield Input(placeholder="filter: service, entrypoint, where, arguments "
                                        "(enter keeps it, esc clears it)", id="filter")
                yield WorkersTable(id="workers", several_targets=len(self.targets) > 1,
                                   slow=self.options.slow)
                yield GroupsTable(id="groups", slow=self.options.slow)
                yield RatesTable(id="rates", slow=self.options.slow)
                yield LogPanel(id="logs")
                yield HistoryPanel(id="history", slow=self.options.slow)
        yield KeysFooter()

    def on_resize(self, event: Any) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        narrow = width < self.NARROW_WIDTH or height < self.NARROW_HEIGHT
        self.screen_stack[0].set_class(narrow, "-narrow")
        try:
            table = self.query_one(WorkersTable)
        except NoMatches:
            return
        if table.narrow != narrow:
            table.set_narrow(narrow)
            self.redraw()

    def on_mount(self) -> None:
        self._fit(self.size.width, self.size.height)
        self.query_one("#services").border_title = "services"
        table = self.query_one(WorkersTable)
        table.border_title = "workers"
        remembered = remembered_sort(t.label for t in self.targets)
        if remembered is not None:
            table.sort_column, table.sort_reverse = remembered
        table.focus()
        self.redraw()
        for poller in self.pollers:
            self.run_worker(poller.run(), name=f"poll {poller.status.label}", group="pollers")
        # "last good snapshot Ns ago" keeps counting between two (backed-off) attempts
        self.set_interval(1.0, self._tick_stale)

    def _tick_stale(self) -> None:
        # also while a hub is blocked: its banner's duration counts up
        # and while a retry is pending: its countdown moves
        if any(s.stale or s.state == "blocked" or s.retry_at is not None
               for s in self.statuses):
            self.redraw_labels()

    def on_unmount(self) -> None:
        for poller in self.pollers:
            poller.stop()

    # -- refreshes -----------------------------------------------------------------------------

    def _on_poller_change(self, status: TargetStatus) -> None:
        self.post_message(TargetChanged(status))

    def on_target_changed(self, message: TargetChanged) -> None:
        try:
            self.redraw()
        except NoMatches:  # a late poll while the app shuts down: nothing left to draw on
            pass

    def redraw(self) -> None:
        """Draw every panel from the pollers' state (cheap: tables are updated in place)."""
        statuses = self.statuses
        self.query_one(PoolGauges).show(statuses)
        self.query_one(ServiceTree).show(statuses)
        self.query_one(WorkersTable).show(statuses)
        if self.main_view == "groups":
            self.query_one(GroupsTable).show(statuses, self.query_one(WorkersTable).filter)
        rates = self.query_one(RatesTable)
        rates.record(statuses)  # counts while hidden too
        if self.main_view == "rates":
            rates.show(statuses)
        self.query_one(HistoryPanel).show(statuses, self.query_one(WorkersTable).filter)
        self.redraw_labels()
        screen = self.screen
        if isinstance(screen, (WorkerDetailScreen, FinishedWorkerScreen, ManagedThreadScreen)):
            screen.show(self.view, statuses)

    def redraw_labels(self) -> None:
        """The header and the table's titles (after a key changed sort, filter or interval)."""
        statuses = self.statuses
        table = self.query_one(WorkersTable)
        self.view.sort = table.sort_label
        self.view.filter = table.filter
        self.query_one("#status", StatusBar).show(self.view, statuses)
        if isinstance(self.screen, (WorkerDetailScreen, FinishedWorkerScreen,
                                    ManagedThreadScreen)):
            self.screen.query_one(StatusBar).show(self.view, statuses)
        shown = (f"{table.shown} of {table.total}" if table.filter else str(table.total))
        running = sum(c.workers_running for s in statuses if s.snapshot is not None
                      for c in s.snapshot.containers)
        if running > table.total:
            shown += f" listed of {running} running (--max-workers {self.options.max_workers})"
        stale = [s for s in statuses if s.stale]
        table.set_class(bool(stale), "-stale")
        if stale:
            shown += " · STALE: " + ", ".join(
                f"{s.label} {_STALE_REASONS.get(s.state, 'unreachable')}" for s in stale)
        if table.lower_bounds:
            shown += " · ≥ age: since first seen (no start times recorded)"
        # a fleet target says per service: replicas, running, the oldest worker and where
        shown += "".join(f" · {note}" for t in self.targets if (note := getattr(t, "summary", "")))
        title = f"workers {shown}"
        subtitle = f"sorted by {table.sort_label}"
        if table.narrow:  # no pool gauges on screen: name the pools that need attention
            alerts = [f"{c.service_name} {c.workers_running}/{c.max_workers}"
                      + (" FULL" if level == "full" else " !") + backlog_note(c)
                      for s in statuses if s.snapshot is not None for c in s.snapshot.containers
                      if (level := pool_level(c.workers_running, c.max_workers))
                      in ("full", "warning")]
            if alerts:
                subtitle = "pools: " + ", ".join(alerts) + " · " + subtitle
        set_border(table, title, subtitle)

    # -- drilling in ----------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, GroupsTable):
            wanted = event.data_table.filter_for(str(event.row_key.value))
            if wanted is not None:
                self.show_view("workers")
                box = self.query_one("#filter", Input)
                box.add_class("-visible")
                box.value = wanted
        elif isinstance(event.data_table, WorkersTable):
            self.open_worker(WorkerRef.from_key(str(event.row_key.value)))
        elif isinstance(event.data_table, HistoryPanel):
            self.open_finished(FinishedRef.from_key(str(event.row_key.value)))

    def open_finished(self, ref: FinishedRef) -> None:
        """A finished worker as the service's bookkeeping recorded it."""
        entry = find_finished(self.statuses, ref)
        if entry is None:
            self.notify("That worker is no longer in the service's history.",
                        severity="warning", timeout=3)
            return
        self.push_screen(FinishedWorkerScreen(ref, entry))

    def open_worker(self, ref: WorkerRef) -> None:
        poller = self.pollers[ref.target]
        poller.watched = {ref.call_id}
        # what the table showed: the screen starts from it, so a worker that finishes before
        # the next snapshot (the one with its stack) still has its last known state
        snap = poller.status.snapshot
        seen = snap.find_worker(ref.call_id) if snap is not None else None
        screen = WorkerDetailScreen(ref, poller.status.label, seen=seen,
                                    pid=snap.pid if snap is not None else None)
        self.push_screen(screen, callback=lambda _: self._closed_worker(ref))
        poller.wake()  # fetch its stack now, not at the next tick

    def open_managed(self, ref: ManagedRef) -> None:
        """The stacks of managed threads: asked for while the screen is open."""
        poller = self.pollers[ref.target]
        poller.watched |= ref.stacks
        screen = ManagedThreadScreen(ref, poller.status.label)

        def closed(_: None) -> None:
            poller.watched -= ref.stacks

        self.push_screen(screen, callback=closed)
        poller.wake()

    def _closed_worker(self, ref: WorkerRef) -> None:
        # the table behind kept refreshing: nothing to redraw
        self.pollers[ref.target].watched.discard(ref.call_id)

    def jump_to_worker(self, ref: WorkerRef) -> None:
        """Following a call: the worker screen on top is replaced by ``ref``'s."""
        if isinstance(self.screen, WorkerDetailScreen):
            self.screen.dismiss()
        self.open_worker(ref)

    def action_follow(self) -> None:
        """From the workers table: open the worker the selected one waits for."""
        ref = self.query_one(WorkersTable).current_ref()
        if ref is None:
            return
        snap = self.pollers[ref.target].status.snapshot
        found = snap.find_worker(ref.call_id) if snap is not None else None
        if found is None:
            return
        callees = downstream(self.statuses, found[1])
        if not callees or callees[0].ref is None:
            self.notify("The selected worker waits on no call the attached targets show.",
                        severity="warning", timeout=3)
            return
        self.open_worker(callees[0].ref)

    def action_open_worker(self) -> None:
        ref = self.query_one(WorkersTable).current_ref()
        if ref is not None:
            self.open_worker(ref)

    # -- actions -------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_pause(self) -> None:
        self.view.paused = not self.view.paused
        for poller in self.pollers:
            poller.paused = self.view.paused
            if not self.view.paused:
                poller.wake()
        self.redraw_labels()

    def action_refresh_now(self) -> None:
        for poller in self.pollers:
            poller.wake()

    def _set_interval(self, seconds: float) -> None:
        self.options.interval = seconds
        self.view.interval = seconds
        self.redraw_labels()
        self.notify(f"refreshing every {seconds:g}s", timeout=2)

    def action_slower(self) -> None:
        later = [i for i in INTERVALS if i > self.options.interval]
        self._set_interval(later[0] if later else INTERVALS[-1])

    def action_faster(self) -> None:
        sooner = [i for i in INTERVALS if i < self.options.interval]
        self._set_interval(sooner[-1] if sooner else INTERVALS[0])

    def show_view(self, view: str) -> None:
        """Put ``view`` (one of :data:`VIEWS`) in the main column, in the workers' place."""
        self.main_view = view
        for name in self.VIEWS[1:]:
            self.screen_stack[0].set_class(view == name, f"-{name}")
        self.redraw()
        self.query_one(f"#{view}").focus()

    def action_toggle_groups(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.show_view("workers" if self.main_view == "groups" else "groups")

    def action_toggle_rates(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.show_view("workers" if self.main_view == "rates" else "rates")

    def action_cycle_sort(self) -> None:
        self.query_one(WorkersTable).cycle_sort()

    def action_choose_sort(self) -> None:
        table = self.query_one(WorkersTable)

        def chosen(column: str | None) -> None:
            if column is not None:
                table.sort_by(column)

        self.push_screen(SortPickerScreen(table.sortable_columns, table.sort_column,
                                          table.sort_label), callback=chosen)

    def on_workers_table_sort_changed(self, message: WorkersTable.SortChanged) -> None:
        remember_sort((t.label for t in self.targets), message.column, message.reverse)
        self.redraw_labels()

    def action_filter(self) -> None:
        if isinstance(self.screen, (WorkerDetailScreen, FinishedWorkerScreen,
                                    ManagedThreadScreen)):
            self.screen.dismiss()
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        box.focus()

    def on_tree_node_selected(self, event: ServiceTree.NodeSelected[Any]) -> None:
        """Selecting a service (or one of its entrypoints) in the tree filters the table by it;
        selecting a managed thread opens its stack."""
        service = event.node.data
        if isinstance(service, ManagedRef):
            self.open_managed(service)
            return
        if not service:
            return
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        wanted = f"service:{service}"
        box.value = "" if box.value == wanted else wanted  # selecting it again clears it
        if not box.value:
            box.remove_class("-visible")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.query_one(WorkersTable).filter = event.value
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.remove_class("-visible")
            self.query_one(WorkersTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if self.screen is self.screen_stack[0] and (box.has_focus or box.value):
            box.value = ""
            box.remove_class("-visible")
            self.query_one(WorkersTable).focus()

    def _selected(self) -> tuple[TargetPoller, WorkerRef, Any, Any] | None:
        """The worker the user is looking at (detail screen) or pointing at (table)."""
        screen = self.screen
        ref = (screen.ref if isinstance(screen, WorkerDetailScreen)
               else self.query_one(WorkersTable).current_ref())
        if ref is None:
            return None
        poller = self.pollers[ref.target]
        snap = poller.status.snapshot
        found = snap.find_worker(ref.call_id) if snap is not None else None
        if found is None:
            return None
        return poller, ref, found[0], found[1]

    def action_kill(self) -> None:
        if not self.options.allow_actions:
            self.notify("This console is read-only. To kill workers, restart it with "
                        "--allow-actions (it asks for confirmation every time).",
                        title="killing is off", severity="warning", timeout=6)
            return
        selected = self._selected()
        if selected is None:
            self.notify("No running worker selected.", severity="warning", timeout=3)
            return
        poller, ref, container, worker = selected
        where = worker.where
        rows = describe_worker(poller.status.label, container.service_name, worker.entrypoint,
                               worker.call_id, worker.age_s,
                               "?" if where is None else str(where), worker.args_preview)

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._kill(poller, ref)

        self.push_screen(ConfirmKillScreen(rows), callback=confirmed)

    @work(group="actions")
    async def _kill(self, poller: TargetPoller, ref: WorkerRef) -> None:
        try:
            killed = await poller.kill_worker(ref.call_id)
        except Exception as exc:  # shown to the user, never a crash
            self.notify(f"could not kill {ref.call_id}: {exc}", title="kill failed",
                        severity="error", timeout=8, markup=False)
            return
        if killed:
            self.notify(f"killed worker {ref.call_id}", title="killed", timeout=5, markup=False)
        else:
            self.notify(f"{ref.call_id} was no longer running", severity="warning", timeout=5,
                        markup=False)
        poller.wake()

    # -- the log tail (console/live/logs.py) ------------------------------------------------------

    def _selected_call_id(self) -> str | None:
        ref = self.query_one(WorkersTable).current_ref()
        return ref.call_id if ref is not None else None

    def action_toggle_logs(self) -> None:
        """``l``: the log panel, every record → the selected worker's → hidden."""
        if self.screen is not self.screen_stack[0]:
            return
        panel = self.query_one(LogPanel)
        if not any(getattr(p.target, "request", None) for p in self.pollers):
            self.notify("No target here ships its log (the log tail needs a backdoor "
                        "target).", severity="warning", timeout=4)
            return
        panel.cycle(self.pollers, self._selected_call_id)

    def action_log_level(self) -> None:
        """``L``: set a logger's level in every attached service (needs --allow-actions: a
        level change is no kill, but it changes the target — DEBUG on a busy service fills
        its disks)."""
        if not self.options.allow_actions:
            self.notify("This console is read-only. To change log levels, restart it with "
                        "--allow-actions.", title="log levels are off", severity="warning",
                        timeout=6)
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self._set_log_level(*answer)

        self.push_screen(LogLevelScreen(), callback=chosen)

    @work(group="actions")
    async def _set_log_level(self, logger: str, level: str) -> None:
        for poller in self.pollers:
            if getattr(poller.target, "request", None) is None:
                continue
            try:
                done = await poller.request("log_level", logger=logger, level=level)
            except Exception as exc:  # shown to the user, never a crash
                self.notify(f"{poller.status.label}: could not set {logger or 'root'} to "
                            f"{level}: {exc}", severity="error", timeout=8, markup=False)
                continue
            self.notify(f"{poller.status.label}: {done.get('logger')} {done.get('previous')} → "
                        f"{done.get('level')} (effective {done.get('effective')})",
                        title="log level", timeout=5, markup=False)

    # -- demo ----------------------------------------------------------------------------------

    @work(thread=True, group="demo", exclusive=True)
    def _demo_crash(self) -> None:
        if self.demo is not None:
            self.demo.kill()

    @work(thread=True, group="demo", exclusive=True)
    def _demo_restart(self) -> None:
        if self.demo is None:
            return
        if self.demo.running:
            self.demo.stop()
        try:
            self.demo.start()
        except Exception as exc:  # shown to the user
            self.call_from_thread(self.notify, f"could not restart the demo: {exc}",
                                  severity="error", markup=False)
            return
        self.view.demo = f"demo shop: nameko run pid {self.demo.pid} (stopped when you quit)"
        self.call_from_thread(self.action_refresh_now)

    # -- command palette -------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        pause = "Resume refreshing" if self.view.paused else "Pause refreshing"
        yield SystemCommand(pause, "Freeze or unfreeze the screen (p)", self.action_toggle_pause)
        yield SystemCommand("Refresh now", "Take a new snapshot of every target (r)",
                            self.action_refresh_now)
        yield SystemCommand("Refresh less often", "Longer interval between refreshes (+)",
                            self.action_slower)
        yield SystemCommand("Refresh more often", "Shorter interval between refreshes (-)",
                            self.action_faster)
        yield SystemCommand("Filter workers", "By service, entrypoint, where or arguments (/)",
                            self.action_filter)
        yield SystemCommand("Cycle sort order", "Age, service, entrypoint, where (s)",
                            self.action_cycle_sort)
        yield SystemCommand("Sort workers by…", "Any column; the same one again reverses (o)",
                            self.action_choose_sort)
        yield SystemCommand("Open worker", "Arguments, context data, call chain, stack (enter)",
                            self.action_open_worker)
        yield SystemCommand("Kill worker", "Needs --allow-actions; asks first (k)",
                            self.action_kill)
        yield SystemCommand("Log tail", "Every record, the selected worker's, hidden (l)",
                            self.action_toggle_logs)
        yield SystemCommand("Set a logger's level", "Needs --allow-actions (L)",
                            self.action_log_level)
        yield SystemCommand("Help", "Keys and what the screen says (?)", self.action_help)
        if self.demo is not None:
            yield SystemCommand("Demo: crash the services",
                                "SIGKILL the demo's nameko run, to watch the console cope",
                                self._demo_crash)
            yield SystemCommand("Demo: restart the services",
                                "Start the demo's nameko run again on the same port",
                                self._demo_restart)


def run_app(addresses: Sequence[TargetAddress | AmqpUri], args: argparse.Namespace | object,
            demo: NamekoProcess | None = None) -> int:
    """Run the live console until the user quits; returns the exit code."""
    from ..targets.backdoor import BackdoorClient
    from ..targets.fleet import DEFAULT_DEADLINE, FleetTarget

    options = ConsoleOptions.from_args(args)
    deadline = getattr(args, "deadline", DEFAULT_DEADLINE)
    targets: list[Target] = [
        FleetTarget(a, deadline=deadline, timeout=options.timeout) if isinstance(a, AmqpUri)
        else BackdoorClient(a, timeout=options.timeout) for a in addresses]
    app = ChassisConsole(targets, options, demo=demo)
    result = app.run()
    return app.return_code or (result or 0)
