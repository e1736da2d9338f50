"""A test service whose worker burns CPU without ever yielding to the eventlet hub.

``crunch(seconds, token=None, label="")`` holds the hub for ``seconds`` inside
``crunch_numbers`` (a user function the watchdog must name); ``token`` is a sensitive argument.
"""

from __future__ import annotations

import time

from nameko.rpc import rpc


def crunch_numbers(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:  # no eventlet call: nothing else runs meanwhile
        n += 1
    return n


class Hog:
    name = "hog"

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc(sensitive_arguments=("token",))
    def crunch(self, seconds: float, token: str | None = None, label: str = "") -> float:
        crunch_numbers(seconds)
        return seconds
