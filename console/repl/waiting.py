"""Waiting for a statement running in the service: requests on a helper thread, Ctrl-C counted
(first interrupts, second stops waiting), a spinner that says whether the hub is free, and
output shown as it comes — pages (``debug_runner()`` in a service without nameko-chassis) drawn
by the one page renderer."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .output import write_output

if TYPE_CHECKING:
    from .session import Repl

#: A statement running longer than this gets a spinner with the elapsed time.
SPINNER_AFTER_SECONDS = 0.5
#: A request unanswered this long past what it should take: the statement holds the hub.
BLOCKED_AFTER_SECONDS = 1.0
#: How long ``exec`` may run before the console gives up waiting: effectively never. A statement
#: may legitimately take long; the spinner shows it is running and Ctrl-C stops waiting.
EXEC_WAIT_SECONDS = 7 * 24 * 3600.0


class _StopWaiting(Exception):
    """The user pressed Ctrl-C twice while a statement ran."""


class _CtrlC:
    """Counts Ctrl-C (SIGINT) while a statement runs, instead of raising KeyboardInterrupt
    wherever the main thread happens to be (which could be halfway through a reply)."""

    def __init__(self) -> None:
        self.count = 0
        self._saved: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._saved = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            signal.signal(signal.SIGINT, self._saved)


class _Waiting:
    """Requests for one running statement, each made in a helper thread so that the main
    thread keeps the spinner going and watches Ctrl-C: the first asks for an interrupt, the
    second (:class:`_StopWaiting` out of :meth:`call`) stops waiting. A request left unanswered
    well past what it should take means the statement holds the hub."""

    def __init__(self, repl: Repl, t0: float, ctrl_c: _CtrlC) -> None:
        self.repl = repl
        self.t0 = t0
        self.ctrl_c = ctrl_c
        self.spinner = _Spinner(repl.interactive)
        self.interrupt = "no"  # "no" -> "wanted" -> "sent"
        self.answered = False  # a poll came back in time: the hub is free
        self.at_line_start = True

    def call(self, op: str, *, expected: float = 0.0, **kwargs: Any) -> dict[str, Any]:
        client = self.repl.client
        client.conn.timeout = EXEC_WAIT_SECONDS
        box: dict[str, Any] = {}

        done = threading.Event()

        def work() -> None:
            try:
                box["result"] = client.request(op, **kwargs)
            except BaseException as exc:  # handed over to the main thread
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"repl-{op}", daemon=True)
        sent = time.monotonic()
        worker.start()
        # SIGINT only counts (see _CtrlC), so waiting on the event cannot be interrupted
        while not done.wait(0.05):
            if self.ctrl_c.count >= 2:
                raise _StopWaiting
            if self.ctrl_c.count == 1 and self.interrupt == "no":
                self.interrupt = "wanted"
                self.spinner.clear()
                self.end_line()
                self.repl.notice("interrupting: KeyboardInterrupt where the statement waits "
                                 "(code computing without a yield cannot be reached) · Ctrl-C "
                                 "again: stop waiting", "ansiyellow")
            now = time.monotonic()
            if now - self.t0 >= SPINNER_AFTER_SECONDS and self.at_line_start:
                late = now - sent > expected + BLOCKED_AFTER_SECONDS
                self.spinner.show(now - self.t0,
                                  "blocked" if late else "free" if self.answered else None)
        if "error" in box:
            raise box["error"]
        if expected and time.monotonic() - sent <= expected + BLOCKED_AFTER_SECONDS:
            self.answered = True
        result: dict[str, Any] = box["result"]
        return result

    def write(self, text: str) -> None:
        self.spinner.clear()
        self.at_line_start = write_output(text, sys.stdout, color=self.repl.color)

    def end_line(self) -> None:
        if not self.at_line_start:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.at_line_start = True


class _Spinner:
    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    STATES = {
        None: "",
        "free": " — it yields, so workers still run",
        "blocked": " — it holds the hub: no worker runs and the service does not answer",
    }

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False
        self.n = 0

    def show(self, elapsed: float, state: str | None = None) -> None:
        if not self.enabled:
            return
        self.n += 1
        text = (f"{self.FRAMES[self.n % len(self.FRAMES)]} still running {elapsed:.1f}s"
                f"{self.STATES.get(state, '')} · Ctrl-C interrupts")
        width = shutil.get_terminal_size().columns
        sys.stdout.write("\r\x1b[2m" + text[: max(width - 1, 10)] + "\x1b[0m\x1b[K")
        sys.stdout.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self.shown = False
