"""``chassis-console --repl TARGET``: a Python REPL over a nameko backdoor, with prompt-toolkit.

Each unit of input — a line, or a whole block once it is complete — goes to the service as ONE
``exec`` request (the backdoor drops extra lines sent at once); completion is computed in the
service; the service side, with its safety policy, is :mod:`nameko_chassis.probe.repl`.
Connection problems end in a message and an offer to reconnect, never a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import FormattedText, PygmentsTokens
from prompt_toolkit.lexers import PygmentsLexer
from pygments import lex
from pygments.lexers.python import PythonLexer, PythonTracebackLexer

from ..errors import (
    ConsoleError,
    ProtocolError,
    RemoteError,
    UnreachableError,
    UnresponsiveError,
)
from ..targets import TargetAddress
from ..targets.backdoor import BackdoorClient
from .editing import RemoteCompleter, key_bindings
from .history import open_history
from .output import printable, write_output
from .waiting import _CtrlC, _StopWaiting, _Waiting

#: Longest wait for completions (the prompt is frozen meanwhile).
COMPLETE_TIMEOUT_SECONDS = 3.0
#: How long the service holds a poll for output of a running statement.
POLL_WAIT_SECONDS = 0.25
#: Typed alone, these leave the REPL (inside code they are contained in the service).
EXIT_INPUT = re.compile(r"(exit|quit)\(\s*(\d+|None)?\s*\)")



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
        print_formatted_text(FormattedText([(style, printable(text, sys.stderr))]),
                             file=sys.stderr)

    def show(self, result: dict[str, Any]) -> None:
        output = result.get("output") or ""
        if output and not write_output(output, sys.stdout, color=self.color):
            sys.stdout.write("\n")
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
        text = printable(text, sys.stderr)
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
        history, warning = open_history(self.address)
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
            key_bindings=key_bindings(completer),
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


def run_repl(address: TargetAddress, *, timeout: float) -> int:
    """``chassis-console --repl``: returns the exit code (0 when the user leaves, 3 when the
    connection is lost and not re-established)."""
    return Repl(address, timeout=timeout).run()


__all__ = ["Repl", "run_repl"]
