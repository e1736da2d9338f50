"""A test service whose workers wait where a test wants them to.

``park(seconds=None, tag="default")`` holds a worker until ``release(tag)`` is called or
``seconds`` have passed, inside ``wait_here`` (a user function the stacks must reach).
"""

from __future__ import annotations

import time
from collections import defaultdict

import eventlet
from eventlet.event import Event
from nameko.rpc import rpc

_parked: dict[str, list[Event]] = defaultdict(list)


def wait_here(event: Event, seconds: float | None) -> None:
    if seconds is None:
        event.wait()
    else:
        with eventlet.Timeout(seconds, False):
            event.wait()


def wait_there(event: Event) -> None:
    event.wait()


class Parking:
    name = "parking"

    @rpc
    def park(self, seconds: float | None = None, tag: str = "default", payload=None) -> str:
        event = Event()
        _parked[tag].append(event)
        try:
            wait_here(event, seconds)
        finally:
            if event in _parked[tag]:
                _parked[tag].remove(event)
        return tag

    @rpc(sensitive_arguments=("password",))
    def login(self, username: str, password: str, seconds: float | None = None) -> str:
        event = Event()
        _parked["login"].append(event)
        try:
            wait_here(event, seconds)
        finally:
            if event in _parked["login"]:
                _parked["login"].remove(event)
        return username

    @rpc
    def walk(self, tag: str = "walk", steps: int = 100) -> int:
        """Waits ``steps`` times, by turns in ``wait_here`` and ``wait_there``: each
        ``release(tag)`` moves the worker on to the other (its ``where`` changes)."""
        for i in range(steps):
            event = Event()
            _parked[tag].append(event)
            if i % 2:
                wait_there(event)
            else:
                wait_here(event, None)
        return steps

    @rpc
    def release(self, tag: str = "default") -> int:
        events = _parked.pop(tag, [])
        for event in events:
            event.send(None)
        return len(events)

    @rpc
    def parked(self, tag: str = "default") -> int:
        return len(_parked.get(tag, []))

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc
    def spin(self, seconds: float) -> float:
        """Burn CPU without yielding to the hub: the backdoor cannot answer meanwhile."""
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
        return seconds
