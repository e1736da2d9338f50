"""Modal screens: the `?` help, and the confirmation before killing a worker."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from .common import clip, format_age

#: (keys, what they do) for the help screen, in the order a newcomer needs them.
KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ PgUp PgDn", "move through the workers"),
    ("enter", "open the worker under the cursor: args, context data, call chain, stack"),
    ("esc", "back to the list (or clear the filter)"),
    ("f", "follow the call: open the worker the selected one is waiting for (any target)"),
    ("u  (worker screen)", "up the call chain: open the worker that called this one"),
    ("/", "filter workers by service, entrypoint, where or arguments"),
    ("s", "cycle the sort order: age (oldest first), service, entrypoint, where"),
    ("o  or a header click", "sort by any column; the same column again reverses it "
                             "(remembered for these targets)"),
    ("g", "group the workers by entrypoint and where (enter: show that group's workers)"),
    ("e", "rates per entrypoint over the last minute: calls/s, errors, p50/p99, "
          "most in need of attention first"),
    ("p", "pause / resume refreshing (the screen freezes; r still refreshes once)"),
    ("r", "refresh now"),
    ("+  -", "refresh less / more often"),
    ("k", "kill the selected worker (needs --allow-actions; asks first)"),
    ("l", "log tail: every record, then only the selected worker's, then hidden"),
    ("L", "set a logger's level in the services (needs --allow-actions)"),
    ("tab", "move between the panels (services tree, workers)"),
    ("enter / space (tree)", "show only that service's workers (again: all) / fold a node"),
    ("ctrl+p", "command palette: every action above, searchable"),
    ("?", "this help"),
    ("q", "quit (esc goes back from the worker screen)"),
)

LEGEND: tuple[tuple[str, str], ...] = (
    ("● live", "the last refresh succeeded"),
    ("✖ connection lost", "the service went away; the last snapshot stays on screen, dimmed "
                          "and marked STALE, while the console reconnects with backoff"),
    ("◐ not answering", "connected, but no reply in time: usually a worker burning CPU "
                        "without yielding to eventlet"),
    ("age ⚠", "a worker older than --slow seconds (10 by default)"),
    ("≥ age", "a lower bound: the service records no start times (not a chassis service), so "
              "the age counts from when the console first saw the worker"),
    ("pool gauge", "running workers against max_workers; yellow from 75%, red when full "
                   "(new work waits)"),
    ("⤷ backlog", "messages ready in the pool's queues, unacked by the process, change per "
                  "second; \"growing ▲\" first when it grows, red when the pool is full too"),
    ("round trip", "how long the console waited for the last snapshot"),
    ("service stall", "how long collecting it blocked the service's event loop"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="close"),
    ]

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, what in KEYS:
            keys.add_row(key, what)
        legend = Table.grid(padding=(0, 2))
        legend.add_column(style="bold", no_wrap=True)
        legend.add_column()
        for key, what in LEGEND:
            legend.add_row(key, what)
        with VerticalScroll(id="help-box"):
            yield Static(Text("keys", style="bold underline"))
            yield Static(keys)
            yield Static(Text("\nwhat the screen says", style="bold underline"))
            yield Static(legend)
            yield Static(Text("\nesc closes this help", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "chassis-console help"

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class ConfirmKillScreen(ModalScreen[bool]):
    """Asks before killing, and shows exactly which worker. Cancel is focused: enter cancels."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", id="cancel"),
        Binding("y", "confirm", "Kill it", id="confirm"),
    ]

    def __init__(self, rows: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        details = Table.grid(padding=(0, 2))
        details.add_column(style="dim", no_wrap=True)
        details.add_column(overflow="fold")
        for key, value in self.rows:
            details.add_row(key, Text(clip(value, 200)))
        with Vertical(id="confirm-box"):
            yield Static(Text("Kill this worker?", style="bold"), id="confirm-title")
            yield Static(details)
            yield Static(Text(
                "WorkerKilled is raised where the worker waits. Its RPC caller gets an error "
                "reply naming the kill (a RemoteError it can handle), the message is "
                "acknowledged and not redelivered, and the history counts it as killed. The "
                "service keeps running. This cannot be undone.", style="dim"),
                id="confirm-note")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (esc)", id="cancel", variant="default")
                yield Button("Kill worker (y)", id="kill", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-box").border_title = "confirm action"
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "kill")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)


def describe_worker(target: str, service: str, entrypoint: str, call_id: str, age_s: float,
                    where: str, args: str) -> list[tuple[str, str]]:
    return [("target", target), ("service", service), ("entrypoint", entrypoint),
            ("call id", call_id), ("age", format_age(age_s)), ("where", where),
            ("arguments", args or "-")]


class SortPickerScreen(ModalScreen[str | None]):
    """`o`: choose the column to sort the workers by (the current one again reverses it)."""

    BINDINGS = [Binding("escape,q", "cancel", "Cancel", id="cancel_sort")]

    def __init__(self, columns: Sequence[tuple[str, str]], current: str, label: str) -> None:
        super().__init__()
        self.columns = list(columns)
        self.current = current
        self.label = label

    def compose(self) -> ComposeResult:
        options = [Option(f"{name}   (now: {self.label}; again reverses)" if key == self.current
                          else name, id=key) for key, name in self.columns]
        with Vertical(id="sort-box"):
            yield OptionList(*options, id="sort-options")

    def on_mount(self) -> None:
        self.query_one("#sort-box").border_title = "sort workers by"
        options = self.query_one(OptionList)
        keys = [key for key, _ in self.columns]
        if self.current in keys:
            options.highlighted = keys.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
