"""``chassis-console --repl TARGET``: a Python REPL over a nameko backdoor, with prompt-toolkit.

Each unit of input — a line, or a whole block once it is complete — goes to the service as ONE
``exec`` request (the backdoor drops extra lines sent at once); completion is computed in the
service; the service side, with its safety policy, is :mod:`nameko_chassis.remote_repl`.
Connection problems end in a message and an offer to reconnect, never a traceback.
"""

from __future__ import annotations

import codeop
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.completion.base import get_common_complete_suffix
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText, PygmentsTokens
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.lexers import PygmentsLexer
from pygments import lex
from pygments.lexers.python import PythonLexer, PythonTracebackLexer

from .client import BackdoorClient
from .errors import (
    ConsoleError,
    ProtocolError,
    RemoteError,
    UnreachableError,
    UnresponsiveError,
)
from .target import TargetAddress

#: How long ``exec`` may run before the console gives up waiting: effectively never. A statement
#: may legitimately take long; the spinner shows it is running and Ctrl-C stops waiting.
EXEC_WAIT_SECONDS = 7 * 24 * 3600.0
#: Longest wait for completions (the prompt is frozen meanwhile).
COMPLETE_TIMEOUT_SECONDS = 3.0
#: A statement running longer than this gets a spinner with the elapsed time.
SPINNER_AFTER_SECONDS = 0.5
#: How long the service holds a poll for output of a running statement.
POLL_WAIT_SECONDS = 0.25
#: A request unanswered this long past what it should take: the statement holds the hub.
BLOCKED_AFTER_SECONDS = 1.0
INDENT = "    "
#: Typed alone, these leave the REPL (inside code they are contained in the service).
EXIT_INPUT = re.compile(r"(exit|quit)\(\s*(\d+|None)?\s*\)")
_DEDENT_AFTER = re.compile(r"^\s*(return|pass|break|continue|raise)\b")


# ---------------------------------------------------------------------------------------------
# history


def history_path(address: TargetAddress, environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/nameko-chassis/history/<target>`` (default ``~/.local/share``), one file
    per target, the target's characters outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    env = os.environ if environ is None else environ
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(address)).strip("._") or "target"
    return base / "nameko-chassis" / "history" / name


def _open_history(address: TargetAddress) -> tuple[History, str | None]:
    """The target's history file, private to the user (what is typed may hold secrets); an
    in-memory history and a warning when it cannot be written."""
    path = history_path(address)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        return InMemoryHistory(), f"history will not be kept: cannot write {path}: {exc.strerror}"
    return FileHistory(str(path)), None


# ---------------------------------------------------------------------------------------------
# editing: when does Enter run the input?


def input_state(text: str) -> str:
    """``"complete"``, ``"incomplete"`` or ``"invalid"``, as the interactive prompt decides
    (:func:`codeop.compile_command`); several statements count as complete (the service runs
    them one by one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "is" with a literal
            code = codeop.compile_command(text, "<input>", "single")
    except (SyntaxError, ValueError, OverflowError) as exc:
        if "multiple statements" in str(exc):
            return "complete"
        return "invalid"
    return "incomplete" if code is None else "complete"


def should_run(text: str) -> bool:
    """Enter with the cursor at the end runs the input when the prompt would: a complete or
    invalid single line; a block once its last line is empty (and no bracket is left open — two
    empty lines run it anyway, to show the error)."""
    if not text.strip():
        return True
    lines = text.split("\n")
    if len(lines) == 1:
        return input_state(text) != "incomplete"
    if lines[-1].strip():
        return False
    if len(lines) > 2 and not lines[-2].strip():
        return True
    return input_state(text.rstrip() + "\n") != "incomplete"


def next_indent(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    if line.rstrip().endswith(":"):
        return indent + INDENT
    if _DEDENT_AFTER.match(line):
        return indent[: -len(INDENT)] if indent.endswith(INDENT) else ""
    return indent


def _key_bindings(completer: Completer) -> KeyBindings:
    kb = KeyBindings()

    @Condition
    def blank_before_cursor() -> bool:
        from prompt_toolkit.application.current import get_app

        return not get_app().current_buffer.document.current_line_before_cursor.strip()

    @kb.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.complete_state is not None:
            picked = buffer.complete_state.current_completion is not None
            buffer.complete_state = None
            if picked:  # Enter takes the completion chosen in the menu, and runs nothing yet
                return
        document = buffer.document
        at_end = not document.text_after_cursor.strip()
        if (at_end or "\n" not in document.text) and should_run(document.text):
            buffer.validate_and_handle()
            return
        buffer.insert_text("\n" + next_indent(document.current_line_before_cursor))

    @kb.add("escape", "enter")
    def _run_now(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @kb.add("tab", filter=blank_before_cursor)
    def _indent(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text(INDENT)

    @kb.add("tab", filter=~blank_before_cursor)
    def _complete(event: KeyPressEvent) -> None:
        # Synchronous, like readline: a single match is inserted before the next key is
        # handled, so "Tab Enter" typed quickly runs the completed text.
        buffer = event.current_buffer
        if buffer.complete_state is not None:
            buffer.complete_next()
            return
        completions = list(completer.get_completions(
            buffer.document, CompleteEvent(completion_requested=True)))
        if len(completions) == 1:
            buffer.apply_completion(completions[0])
        elif completions:
            common = get_common_complete_suffix(buffer.document, completions)
            if common:
                buffer.insert_text(common)
            else:
                buffer.start_completion(select_first=False)

    @kb.add("backspace", filter=blank_before_cursor)
    def _dedent(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        before = buffer.document.current_line_before_cursor
        if before and len(before) % len(INDENT) == 0:
            buffer.delete_before_cursor(len(INDENT))
        else:
            buffer.delete_before_cursor(1)

    return kb


# ---------------------------------------------------------------------------------------------
# completion


class RemoteCompleter(Completer):
    """Completions computed in the service, from the live namespace (on Tab only)."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        line = document.current_line_before_cursor
        if not line.strip():
            return
        start, matches = self.repl.complete(line)
        typed = line[start:]
        # the menu shows what is new: "service_map", not "runner.service_map"
        base = typed[: max(typed.rfind("."), typed.rfind("[")) + 1]
        for match in matches:
            display = match[len(base):] if base and match.startswith(base) else match
            yield Completion(match, start_position=start - len(line), display=display)


# ---------------------------------------------------------------------------------------------
# the session


class Repl:
    """One REPL session against one target; reconnects on request after a drop."""

    def __init__(self, address: TargetAddress, *, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.client = BackdoorClient(address, timeout=timeout)
        self.pid: int | None = None
        self.abandoned = False  # the user stopped waiting for a statement: it may still run
        self.interactive = sys.stdout.isatty()
        # colour in what the service prints for us (debug_runner): a terminal, and no NO_COLOR
        self.color = self.interactive and not os.environ.get("NO_COLOR")

    def __repr__(self) -> str:
        return f"<Repl {self.address} pid={self.pid}>"

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        self.client = BackdoorClient(self.address, timeout=self.timeout)
        self.client.connect()
        self.abandoned = False
        hello: dict[str, Any] = self.client.request("repl_hello")
        self.pid = self.client.info.get("pid")
        return hello

    def banner(self, hello: dict[str, Any]) -> FormattedText:
        info = self.client.info
        helpers = hello.get("helpers", {})
        lines: list[tuple[str, str]] = [
            ("bold", f"Python {info.get('python')} in {', '.join(info.get('services', []))}"),
            ("", f" — pid {info.get('pid')} on {info.get('host')}, backdoor {self.address}\n"),
            ("", "Without imports: "),
            ("bold", "runner"),
            ("", ", "),
            ("bold", "debug_runner(runner)"),
            ("", ", debug_container(c), collect(), snapshot()\n"),
        ]
        picture = str(helpers.get("debug_runner", ""))
        if picture.startswith("plain"):
            lines.append(("ansiyellow", f"debug_runner: {picture}\n"))
        if not hello.get("runner", True):
            lines.append(("ansiyellow", "no `runner` in this backdoor: the helpers find the "
                                        "containers with gc\n"))
        lines += [
            ("", "Code runs on the service's eventlet hub: until it returns or yields, "
                 "no worker runs.\n"
                 "exit(), sys.exit(), os._exit() and runner.stop() cannot stop the service "
                 "from here.\n"),
            ("ansibrightblack", "Tab completes · empty line runs a block · Esc Enter runs now · "
                                "Ctrl-C cancels · Ctrl-D leaves"),
        ]
        return FormattedText(lines)

    def _drop(self) -> None:
        """Close the connection at once, also under a thread blocked reading from it."""
        self.client.conn.abort()

    def reconnect_message(self, exc: ConsoleError) -> str:
        message = str(exc)
        if self.abandoned and not isinstance(exc, RemoteError):
            if isinstance(exc, UnresponsiveError):  # a busy backdoor sends no prompt
                return (f"{self.address} accepted the connection but did not answer — the "
                        "statement you stopped waiting for is probably still holding the "
                        "service's hub")
            message += (" — the statement you stopped waiting for may still be holding the "
                        "service's hub")
        return message

    def offer_reconnect(self, exc: ConsoleError) -> bool:
        """Say what happened; ask to reconnect until it works or the user says no."""
        self.notice(self.reconnect_message(exc), "ansired")
        asker: PromptSession[str] = PromptSession()
        while True:
            try:
                answer = asker.prompt(f"Reconnect to {self.address}? [Y/n] ")
            except (EOFError, KeyboardInterrupt):
                return False
            if answer.strip().lower() not in ("", "y", "yes"):
                return False
            old_pid = self.pid
            try:
                self.connect()
            except ConsoleError as again:
                self.notice(self.reconnect_message(again), "ansired")
                continue
            except KeyboardInterrupt:
                self.client.close()
                continue
            same = old_pid == self.pid
            self.notice(f"reconnected to {self.address}, pid {self.pid}"
                        + ("" if same else " — a new process: what you defined before is gone"),
                        "ansigreen")
            return True

    # -- requests ------------------------------------------------------------------------------

    def complete(self, line: str) -> tuple[int, list[str]]:
        if not self.client.connected:
            return len(line), []
        self.client.conn.timeout = min(self.timeout, COMPLETE_TIMEOUT_SECONDS)
        try:
            result = self.client.request("complete", line=line)
        except ConsoleError:
            # a late reply would be read as the answer to the next request: start afresh
            self._drop()
            return len(line), []
        finally:
            self.client.conn.timeout = self.timeout
        return int(result.get("start", len(line))), [str(m) for m in result.get("matches", [])]

    def execute(self, source: str) -> dict[str, Any]:
        """Run ``source`` in the service and show its output as it comes (the statement runs
        in a greenthread of its own there; the console polls). A spinner shows a long statement
        is still running and whether the service's hub is free. The first Ctrl-C interrupts the
        statement (KeyboardInterrupt where it waits), a second one stops waiting."""
        if not self.client.connected:
            if self.abandoned:
                self.notice(f"reconnecting to {self.address}…", "ansibrightblack")
            self.connect()
        with _CtrlC() as ctrl_c:
            return self._execute(source, _Waiting(self, time.monotonic(), ctrl_c))

    def _execute(self, source: str, waiting: _Waiting) -> dict[str, Any]:
        try:
            result = waiting.call("exec_start", source=source,
                                  columns=shutil.get_terminal_size().columns, color=self.color)
            if result.get("done"):
                return dict(result)
            run_id = int(result["id"])
            offset = 0
            while True:
                if waiting.interrupt == "wanted":
                    waiting.interrupt = "sent"
                    waiting.call("exec_cancel", id=run_id)
                poll = waiting.call("exec_poll", expected=POLL_WAIT_SECONDS, id=run_id,
                                    offset=offset, wait=POLL_WAIT_SECONDS)
                if poll.get("output"):
                    waiting.write(str(poll["output"]))
                offset = int(poll.get("offset", offset))
                if poll.get("done"):
                    waiting.end_line()
                    return {**poll, "output": ""}
        except (_StopWaiting, KeyboardInterrupt):  # the second Ctrl-C
            waiting.spinner.clear()
            waiting.end_line()
            self.abandoned = True
            self._drop()
            self.notice(f"stopped waiting after {time.monotonic() - waiting.t0:.1f}s — the "
                        "statement may still be running in the service; the next input opens a "
                        "new connection", "ansiyellow")
            return {}
        finally:
            waiting.spinner.clear()
            self.client.conn.timeout = self.timeout

    # -- output --------------------------------------------------------------------------------

    def notice(self, text: str, style: str = "") -> None:
        sys.stdout.flush()
        print_formatted_text(FormattedText([(style, _printable(text, sys.stderr))]),
                             file=sys.stderr)

    def show(self, result: dict[str, Any]) -> None:
        output = _printable(result.get("output") or "", sys.stdout)
        if output:
            sys.stdout.write(output if output.endswith("\n") else output + "\n")
            sys.stdout.flush()
        if result.get("truncated"):
            self.notice("(output truncated)", "ansiyellow")
        if result.get("error"):
            self.show_traceback(str(result["error"]))
        if result.get("contained"):
            self.notice(str(result["contained"]), "ansiyellow")
        if result.get("refused"):
            self.notice(str(result["refused"]), "ansiyellow")

    def show_traceback(self, text: str) -> None:
        text = _printable(text, sys.stderr)
        sys.stdout.flush()
        if self.interactive:
            tokens = list(lex(text, PythonTracebackLexer()))
            print_formatted_text(PygmentsTokens(tokens), end="", file=sys.stderr)
        else:
            sys.stderr.write(text)
        sys.stderr.flush()

    # -- the loop ------------------------------------------------------------------------------

    def run_script(self, source: str) -> int:
        """Input that is not a terminal (``chassis-console --repl T < script.py``): run it all
        as one unit, statement by statement, and show the output as the REPL would. Exit code
        0, or 1 when the code raised or was refused (a contained ``exit()`` is no failure)."""
        self.connect()
        try:
            result = self.execute(source) if source.strip() else {}
        finally:
            self.client.close()
        self.show(result)
        failed = result.get("error") or result.get("refused")
        return 1 if failed else 0

    def run(self) -> int:
        if not sys.stdin.isatty():
            return self.run_script(sys.stdin.read())
        hello = self.connect()  # a failure here is the CLI's one-line message and exit code
        history, warning = _open_history(self.address)
        completer = RemoteCompleter(self)
        print_formatted_text(self.banner(hello))
        if warning:
            self.notice(warning, "ansiyellow")
        session: PromptSession[str] = PromptSession(
            message=">>> ",
            multiline=True,
            prompt_continuation=lambda width, line_number, is_soft_wrap: "... ",
            lexer=PygmentsLexer(PythonLexer),
            completer=completer,
            complete_while_typing=False,
            auto_suggest=AutoSuggestFromHistory(),
            history=history,
            key_bindings=_key_bindings(completer),
            enable_history_search=False,
            search_ignore_case=True,
        )
        while True:
            try:
                text = session.prompt()
            except KeyboardInterrupt:
                continue  # Ctrl-C: the input is dropped, the prompt comes back
            except EOFError:
                self.notice("left the REPL — the service keeps running")
                return 0
            if not text.strip():
                continue
            if EXIT_INPUT.fullmatch(text.strip()):
                self.notice("left the REPL — the service keeps running")
                return 0
            try:
                result = self.execute(text)
            except RemoteError as exc:  # the REPL's own code failed in the service
                self.notice(str(exc), "ansired")
                if exc.remote_traceback:
                    self.show_traceback(exc.remote_traceback)
                continue
            except (UnreachableError, ProtocolError) as exc:
                if not self.offer_reconnect(exc):
                    self.client.close()
                    return exc.exit_code
                continue
            except KeyboardInterrupt:  # while (re)connecting, before the statement was sent
                self.client.close()
                self.notice("cancelled", "ansiyellow")
                continue
            self.show(result)


def _printable(text: str, stream: Any) -> str:
    """``text`` as ``stream`` can encode it: what a service prints may hold lone surrogates, or
    characters the local terminal's encoding lacks."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        return text.encode(encoding, "replace").decode(encoding, "replace")


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
        sys.stdout.write(_printable(text, sys.stdout))
        sys.stdout.flush()
        self.at_line_start = text.endswith("\n")

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


def run_repl(address: TargetAddress, *, timeout: float) -> int:
    """``chassis-console --repl``: returns the exit code (0 when the user leaves, 3 when the
    connection is lost and not re-established)."""
    return Repl(address, timeout=timeout).run()


__all__ = ["Repl", "run_repl", "history_path", "should_run", "input_state"]
