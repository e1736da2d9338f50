"""Errors the console reports to a user, each with its documented exit code.

::

    ConsoleError                 exit 1   (base; anything a user can act on)
    ├── LaunchError              exit 1   a `nameko run` child (--demo) exited or never got ready
    ├── UsageError               exit 2   malformed target, bad option
    ├── UnreachableError         exit 3   connection refused / no such host / connection lost
    │   └── UnresponsiveError    exit 3   connected, but no answer within the timeout
    │       └── BlockedError     exit 3   its hub is blocked: the hub watchdog answered instead
    └── ProtocolError            exit 4   reached something that is not a nameko backdoor
        ├── NoRunnerError        exit 4   a Python backdoor, but no nameko runner in it
        └── RemoteError          exit 4   the collector raised in the service (traceback kept)

Messages name the target, what happened and what to do, on one line.
"""

from __future__ import annotations

from typing import Any


class ConsoleError(Exception):
    exit_code = 1


class LaunchError(ConsoleError):
    """A service process (``--demo``) exited or never became ready; the message quotes its log."""

    exit_code = 1


class UsageError(ConsoleError):
    exit_code = 2


class UnreachableError(ConsoleError):
    exit_code = 3


class UnresponsiveError(UnreachableError):
    exit_code = 3


class BlockedError(UnresponsiveError):
    """The service's eventlet hub is blocked (exit 3, like any unresponsive service): its hub
    watchdog answered instead. ``answer`` is the watchdog's hello (pid, services, watchdog);
    ``incident`` its ``blocked`` field (schema: an incident, ``ongoing``)."""

    def __init__(self, label: str, answer: dict[str, Any]) -> None:
        self.label = label
        self.answer = answer
        self.incident: dict[str, Any] = dict(answer.get("blocked") or {})
        super().__init__(describe_block(label, self.incident))


def describe_block(label: str, incident: dict[str, Any]) -> str:
    """One line: ``HOST:PORT: the eventlet hub is blocked for 2.1s by parking.spin
    (call id …) at tests/services/parking.py:72 in spin — ...``."""
    text = f"{label}: the service's eventlet hub is blocked"
    try:
        text += f" for {float(incident.get('duration_s', 0)):.1f}s"
    except (TypeError, ValueError):
        pass
    culprit = incident.get("culprit")
    if isinstance(culprit, dict):
        text += f" by {culprit.get('entrypoint') or culprit.get('target') or '?'}"
        if culprit.get("call_id"):
            text += f" (call id {culprit['call_id']})"
        where = culprit.get("where")
        if isinstance(where, dict):
            text += f" at {where.get('file')}:{where.get('line')} in {where.get('function')}"
        text += " — a worker that does not yield to the hub; answered by the hub watchdog"
    else:
        text += " — the hub watchdog could not see by what (C code holding the GIL?)"
    return text


class ProtocolError(ConsoleError):
    exit_code = 4


class NoRunnerError(ProtocolError):
    exit_code = 4


class RemoteError(ProtocolError):
    """An exception raised inside the service while serving a request.

    ``remote_traceback`` holds the formatted traceback from the service.
    """

    exit_code = 4

    def __init__(self, message: str, remote_traceback: str = "", exc_type: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
        self.exc_type = exc_type


def report(exc: ConsoleError) -> None:
    """The one line a user sees for ``exc``, on stderr. A message may quote the peer: no
    escape codes, bidi controls or lone surrogates reach the terminal."""
    import sys

    from nameko_chassis.view.text import sanitize_lines

    print(f"chassis-console: {sanitize_lines(exc)}", file=sys.stderr)
