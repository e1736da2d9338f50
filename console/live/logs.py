"""The log panel (``l``): the services' own log records, tailed through the agent's ``logs``
operation (probe/logtail.py), below the workers.

- ``l`` cycles: hidden → every record → only the selected worker's (the row under the cursor
  in the workers table, by call id) → hidden.
- While shown, the panel asks each backdoor target every :data:`FETCH_EVERY` seconds for the
  records after the last one it has (a cursor), so a record travels once. The service keeps its
  handler only while asked (``keep_s``); closing the panel or the console lets it go.
- ``L`` (with ``--allow-actions``) sets a logger's level in every attached service, through
  the service's own :mod:`logging` (:class:`LogLevelScreen`).

Records are redacted in the service before they leave it; here they are untrusted text, drawn
as ``Text`` (never markup) with control characters escaped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, RichLog, Static

from nameko_chassis.view.text import call_id_tail, clip, sanitize

from .common import set_border

if TYPE_CHECKING:
    from .poller import TargetPoller

#: Seconds between two fetches while the panel is shown.
FETCH_EVERY = 1.0
#: The service drops its handler this many seconds after the last fetch.
KEEP_S = 15.0
#: Records the console keeps per target (the panel scrolls back this far).
KEPT = 2000
#: Characters of a message drawn on one line.
MESSAGE_CHARS = 400
MODES = ("off", "all", "worker")
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
_LEVEL_STYLE = {"CRITICAL": "bold red", "ERROR": "red", "WARNING": "yellow", "INFO": "",
                "DEBUG": "dim"}


@dataclass
class Record:
    target: str
    seq: int
    time: float
    level: str
    logger: str
    message: str
    origin: str
    call_id: str | None
    exception: str | None

    @classmethod
    def from_dict(cls, target: str, data: dict[str, Any]) -> Record:
        return cls(target, int(data.get("seq") or 0), float(data.get("time") or 0.0),
                   str(data.get("level") or "?"), str(data.get("logger") or "?"),
                   str(data.get("message") or ""), str(data.get("origin") or ""),
                   str(data["call_id"]) if data.get("call_id") else None,
                   str(data["exception"]) if data.get("exception") else None)


class TargetTail:
    """One target's tail: the cursor (the last sequence number seen) and the records kept."""

    def __init__(self) -> None:
        self.cursor = 0
        self.records: deque[Record] = deque(maxlen=KEPT)
        self.missed = 0
        self.error: str | None = None
        self.pid: int | None = None

    def take(self, target: str, answer: dict[str, Any]) -> list[Record]:
        new = [Record.from_dict(target, r) for r in answer.get("records", [])
               if isinstance(r, dict)]
        self.records.extend(new)
        self.cursor = int(answer.get("cursor") or self.cursor)
        self.missed += int(answer.get("missed") or 0)
        self.error = None
        return new


def record_line(record: Record, several: bool) -> Text:
    clock = time.strftime("%H:%M:%S", time.localtime(record.time)) + \
        f".{int(record.time * 1000) % 1000:03d}"
    text = Text(no_wrap=True, overflow="ellipsis")
    if several:
        text.append(f"{clip(record.target, 24)} ", style="dim")
    text.append(f"{clock} ", style="dim")
    text.append(f"{record.level:<7} ", style=_LEVEL_STYLE.get(record.level, ""))
    text.append(f"{clip(record.logger, 30)} ", style="bold")
    text.append(sanitize(record.message)[:MESSAGE_CHARS])
    if record.call_id:  # service.method.<uuid>: the method and the uuid's start
        parts = record.call_id.rsplit(".", 2)
        method = parts[-2] if len(parts) == 3 else ""
        text.append(f"  [{clip(method, 30)} {call_id_tail(record.call_id)[:8]}]", style="dim")
    if record.exception:
        last = [ln for ln in record.exception.strip().splitlines() if ln.strip()][-1:]
        text.append(f"  ⤷ {sanitize(last[0])[:200]}" if last else "", style="red")
    return text


class LogPanel(RichLog):
    """The tail of every backdoor target's log, newest at the bottom."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=KEPT, wrap=False, markup=False, highlight=False, **kwargs)
        self.mode = "off"
        self.tails: dict[int, TargetTail] = {}
        self.call_id: str | None = None  # the worker the panel is filtered to (mode "worker")
        self._fetching = False
        self.pollers: Sequence[TargetPoller] = ()
        #: the call id of the worker under the workers table's cursor (set by the app)
        self.selected: Callable[[], str | None] = lambda: None

    def on_mount(self) -> None:
        self.set_interval(FETCH_EVERY, self._tick)
        self.display = False

    # -- what it shows ---------------------------------------------------------------------------

    def cycle(self, pollers: Sequence[TargetPoller], selected: Callable[[], str | None]) -> str:
        """``l``: off → all → the selected worker's → off. Returns the new mode."""
        self.pollers = pollers
        self.selected = selected
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self.follow(selected())
        if self.mode == "worker" and self.call_id is None:
            self.mode = "off"  # no worker to follow
        self.display = self.mode != "off"
        self._redraw()
        if self.mode != "off":
            self._tick()
        return self.mode

    def follow(self, call_id: str | None) -> None:
        """The selected worker changed (mode ``worker``): show its records only."""
        if self.mode != "worker":
            self.call_id = None
        elif call_id is not None and call_id != self.call_id:
            self.call_id = call_id
            self._redraw()

    def wanted(self, record: Record) -> bool:
        return self.mode != "worker" or record.call_id == self.call_id

    def shown_lines(self) -> list[str]:
        """What the panel shows, as plain text (tests, --once-like dumps)."""
        return [record_line(r, len(self.tails) > 1).plain for r in self._records()
                if self.wanted(r)]

    def _records(self) -> list[Record]:
        out = [r for tail in self.tails.values() for r in tail.records]
        out.sort(key=lambda r: (r.time, r.seq))
        return out

    def _redraw(self) -> None:
        self.clear()
        several = len(self.tails) > 1
        for record in self._records():
            if self.wanted(record):
                # expand: a no_wrap Text measures at RichLog's min_width (78) otherwise
                self.write(record_line(record, several), expand=True)
        self._title()

    def _title(self) -> None:
        which = (f"worker {call_id_tail(self.call_id)[:8]} (l: all off)"
                 if self.mode == "worker" and self.call_id else "every record (l: the selected "
                 "worker's)")
        missed = sum(t.missed for t in self.tails.values())
        errors = [t.error for t in self.tails.values() if t.error]
        set_border(self, f"log · {which}" + (f" · {missed} missed" if missed else ""),
                   clip(errors[0], 120) if errors else "L: set a logger's level")

    # -- fetching --------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.mode == "off" or not self.pollers:
            return
        self.follow(self.selected())
        if self._fetching:
            return
        self._fetching = True
        self.run_worker(self._fetch(), group="logs", exclusive=True)

    async def _fetch(self) -> None:
        try:
            several = len(self.pollers) > 1
            for poller in self.pollers:
                status = poller.status
                if not status.ok or poller.paused or \
                        getattr(poller.target, "request", None) is None:
                    continue  # paused: the screen is frozen, the log too
                tail = self.tails.setdefault(status.index, TargetTail())
                pid = status.snapshot.pid if status.snapshot is not None else None
                if tail.pid is not None and pid != tail.pid:
                    tail.cursor = 0  # a restarted service numbers its records afresh
                tail.pid = pid
                try:
                    answer = await poller.request("logs", after=tail.cursor, keep_s=KEEP_S)
                except Exception as exc:  # shown in the panel, never a crash
                    tail.error = f"{status.label}: {exc}"
                    continue
                if not isinstance(answer, dict):
                    continue
                for record in tail.take(status.label, answer):
                    if self.wanted(record):
                        self.write(record_line(record, several or len(self.tails) > 1),
                               expand=True)
            self._title()
        finally:
            self._fetching = False


class LogLevelScreen(ModalScreen[tuple[str, str] | None]):
    """``L``: which logger, which level (``slowpoke.chatty=DEBUG``; ``=INFO`` is the root)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="log-level-box"):
            yield Static("Set a logger's level in every attached service, through its own "
                         "logging. LOGGER=LEVEL (an empty logger is the root), e.g. "
                         f"orders=DEBUG. Levels: {', '.join(LEVELS)}. enter sets, esc cancels.",
                         id="log-level-help")
            yield Input(placeholder="logger=LEVEL", id="log-level-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        parsed = parse_level(event.value)
        if parsed is None:
            self.query_one("#log-level-help", Static).update(Text(
                f"not LOGGER=LEVEL with a level of {', '.join(LEVELS)}: {clip(event.value, 60)}",
                style="red"))
            return
        self.dismiss(parsed)

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_level(text: str) -> tuple[str, str] | None:
    """``"orders=debug"`` -> ``("orders", "DEBUG")``; None when it is not that."""
    logger, sep, level = text.strip().rpartition("=")
    if not sep:
        logger, level = "", text.strip()
    level = level.strip().upper()
    if level not in LEVELS:
        return None
    return logger.strip(), level


__all__ = ["LogLevelScreen", "LogPanel", "Record", "parse_level", "record_line"]
