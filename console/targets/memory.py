"""An in-memory :class:`~chassis_console.targets.Target`: recorded snapshots, scripted failures.

The live console talks to targets through one narrow interface; this implementation feeds it
from memory so that tests (and snapshot tests of the screens) need no service, no socket and no
clock. ``sample_snapshot()`` replays a snapshot recorded from the real demo shop, at a fixed time.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nameko_chassis.view.model import Snapshot

from ..errors import ConsoleError

SAMPLE_TIME = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: fixed, so screens are reproducible


class MemoryTarget:
    """A target whose state is a :class:`Snapshot` held in memory.

    - ``state``: the full snapshot (stacks included); ``snapshot()`` strips the stacks that were
      not asked for, as the backdoor client does.
    - ``fail``: when set, every call raises it (a service that is down or not answering).
    - ``delay``: seconds every snapshot takes (a service that is slow, stopped or cut off).
    - ``advance(seconds)``: ages every worker, as time passing would.
    - ``pids``: when set, each snapshot is answered by the next of these pids in turn (several
      processes sharing one backdoor port, SO_REUSEPORT).
    - ``calls``: what the console asked for, in order.
    """

    def __init__(self, state: Snapshot | None = None, *, label: str = "127.0.0.1:12345",
                 round_trip_ms: float = 0.8) -> None:
        self.label = label
        self.state = state if state is not None else sample_snapshot()
        self.round_trip_ms = round_trip_ms
        self.last_round_trip_ms: float | None = None
        self.fail: ConsoleError | None = None
        self.delay = 0.0  # seconds each snapshot takes (a slow or stopped service)
        self.connected = False
        self.calls: list[str] = []
        self.killed: list[str] = []
        self.pids: list[int] | None = None
        self._answers = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryTarget {self.label} {'connected' if self.connected else 'closed'}>"

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.fail is not None:
            self.connected = False
            raise self.fail

    def connect(self) -> None:
        self._check("connect")
        self.connected = True

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot:
        self._check("snapshot")
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            state = self.state
        keep: frozenset[str] | None = None if stacks == "all" else (
            frozenset() if stacks == "none" else frozenset(stacks))
        containers = []
        for c in state.containers:
            workers = [w if keep is None or w.call_id in keep else replace(w, stack=None)
                       for w in c.workers[:max_workers]]
            containers.append(replace(c, workers=workers))
        self.last_round_trip_ms = self.round_trip_ms
        if self.pids:
            pid = self.pids[self._answers % len(self.pids)]
            self._answers += 1
            return replace(state, containers=containers, pid=pid)
        return replace(state, containers=containers)

    def kill_worker(self, call_id: str) -> bool:
        self._check(f"kill {call_id}")
        with self._lock:
            found = self.state.find_worker(call_id)
            if found is None:
                return False
            self.killed.append(call_id)
            self.remove_worker(call_id)
        return True

    def close(self) -> None:
        self.calls.append("close")
        self.connected = False

    # -- changing the state, for tests ------------------------------------------------------

    def remove_worker(self, call_id: str) -> None:
        """The worker finishes (it disappears from the next snapshot)."""
        containers = [replace(c, workers=[w for w in c.workers if w.call_id != call_id],
                              workers_running=c.workers_running - any(
                                  w.call_id == call_id for w in c.workers))
                      for c in self.state.containers]
        self.state = replace(self.state, containers=containers)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: every worker gets older, the snapshot time moves on."""
        containers = [replace(c, workers=[replace(w, age_s=w.age_s + seconds) for w in c.workers])
                      for c in self.state.containers]
        self.state = replace(self.state, time=self.state.time + seconds, containers=containers)


# -- the sample: a snapshot recorded from the real demo shop -------------------------------------

#: Recorded by tests/fixtures/record_demo_snapshot.py from the real demo shop (see there).
SAMPLE_FILE = "demo_snapshot.json"


def _recorded() -> dict[str, Any]:
    here = Path(__file__).resolve()
    for folder in here.parents:
        path = folder / "tests" / "fixtures" / SAMPLE_FILE
        if path.is_file():
            return dict(json.loads(path.read_text()))
    raise FileNotFoundError(f"tests/fixtures/{SAMPLE_FILE} (the in-memory target's sample is "
                            "part of the source tree, not of the installed package)")


def sample_snapshot(*, workers_per_service: int = 1, history: bool = True) -> Snapshot:
    """The recorded demo shop, moved to :data:`SAMPLE_TIME` so screens are reproducible.

    ``workers_per_service`` repeats each in-flight worker (new call ids, each copy 10 ms
    younger) for screens with many rows; ``history=False`` drops the recently finished ones.
    """
    data = copy.deepcopy(_recorded())
    shift = SAMPLE_TIME - float(data["time"])
    data["time"] = SAMPLE_TIME
    for container in data["containers"]:
        for worker in container["workers"]:
            worker["first_seen"] += shift
            if worker["started_at"] is not None:
                worker["started_at"] += shift
        for entry in container["history"] or []:
            entry["started_at"] += shift
            entry["finished_at"] += shift
        if not history:
            container["history"] = None
        copies = []
        for k in range(1, workers_per_service):
            for worker in container["workers"]:
                twin = copy.deepcopy(worker)
                twin["call_id"] = f"{worker['call_id']}-{k}"
                twin["call_id_stack"] = [*worker["call_id_stack"][:-1], twin["call_id"]]
                twin["age_s"] = round(max(worker["age_s"] - 0.01 * k, 0.0), 3)
                copies.append(twin)
        container["workers"] += copies  # the model keeps them oldest first
        container["workers_running"] = len(container["workers"])
    return Snapshot.from_dict(data)
