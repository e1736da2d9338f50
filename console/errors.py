"""Errors the console reports to a user, each with its documented exit code.

::

    ConsoleError                 exit 1   (base; anything a user can act on)
    ├── LaunchError              exit 1   a `nameko run` child (--demo) exited or never got ready
    ├── UsageError               exit 2   malformed target, bad option
    ├── UnreachableError         exit 3   connection refused / no such host / connection lost
    │   └── UnresponsiveError    exit 3   connected, but no answer within the timeout
    └── ProtocolError            exit 4   reached something that is not a nameko backdoor
        ├── NoRunnerError        exit 4   a Python backdoor, but no nameko runner in it
        └── RemoteError          exit 4   the collector raised in the service (traceback kept)

Messages name the target, what happened and what to do, on one line.
"""

from __future__ import annotations


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
