"""Two processes on one backdoor port (SO_REUSEPORT) answer in turn: the console notices the pid
alternating between replies and says so on every screen, and never calls it a restart."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from chassis_console.launch import free_port
from chassis_console.live.app import ChassisConsole
from chassis_console.live.detail import WorkerDetailScreen
from chassis_console.live.poller import (
    SHARED_WINDOW,
    ConsoleOptions,
    TargetStatus,
    shared_port_note,
    track_pid,
)
from chassis_console.live.status import StatusBar
from chassis_console.targets.memory import MemoryTarget

from tests.console.pilot import plain, until

SIZE = (150, 42)
NOTE = "two processes answer on this port: pid 101 and pid 202"


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def replay(pids: list[int], *, step: float = 1.0) -> TargetStatus:
    status = TargetStatus(label="t", index=0)
    previous = None
    for i, pid in enumerate(pids):
        track_pid(status, previous, pid, i * step)
        previous = pid
    return status


def test_a_restart_is_not_a_shared_port() -> None:
    assert replay([1, 1, 2, 2, 2]).shared_pids == ()
    assert replay([1, 2, 3]).shared_pids == ()  # restarted twice: no pid came back


def test_a_pid_answering_again_after_another_reveals_the_shared_port() -> None:
    status = replay([101, 202, 101])
    assert status.shared_pids == (101, 202)
    assert status.shared_note is not None and status.shared_note.startswith(NOTE)
    status = replay([3, 1, 2, 1, 3])
    assert status.shared_pids == (1, 2, 3)
    assert shared_port_note((1, 2, 3)) is not None
    assert "three processes answer on this port: pid 1, pid 2 and pid 3" in \
        (shared_port_note((1, 2, 3)) or "")
    assert shared_port_note((7,)) is None


def test_the_note_stays_and_clears_once_one_process_is_left_for_the_window() -> None:
    status = replay([101, 202, 101, 101, 101, 101])
    assert status.shared_pids == (101, 202)  # one process answering for a while: still shared
    track_pid(status, 101, 101, SHARED_WINDOW + 10)
    assert status.shared_pids == ()  # 202 has not answered for the whole window


def test_a_fleet_pid_zero_is_left_alone() -> None:
    assert replay([0, 0, 0]).shared_pids == ()


class TwoProcesses(MemoryTarget):
    """pid 101 and pid 202 answer in turn; ``only_in_101`` runs in pid 101 alone."""

    def __init__(self) -> None:
        super().__init__()
        self.pids = [101, 202]
        self.only_in_101: str | None = None

    def snapshot(self, **kwargs: Any) -> Any:
        snap = super().snapshot(**kwargs)
        if snap.pid == 202 and self.only_in_101 is not None:
            containers = [replace(c, workers=[w for w in c.workers
                                              if w.call_id != self.only_in_101])
                          for c in snap.containers]
            snap = replace(snap, containers=containers)
        return snap


def header(app: ChassisConsole) -> str:
    return plain(app.screen.query_one(StatusBar))


@sync
async def test_every_screen_says_two_processes_answer_in_turn() -> None:
    target = TwoProcesses()
    app = ChassisConsole([target], ConsoleOptions(interval=0.05))
    async with app.run_test(size=SIZE) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.polls >= 4, what="four polls")
        await pilot.pause(0.1)
        text = header(app)
        assert NOTE in text, text
        assert "service restarted" not in text
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, WorkerDetailScreen)
        await until(pilot, lambda: screen.worker is not None, what="the worker on screen")
        target.only_in_101 = screen.ref.call_id  # pid 202's answers do not have it
        polls = status.polls
        await until(pilot, lambda: status.polls >= polls + 4, what="more polls")
        await pilot.pause(0.1)
        assert NOTE in header(app)
        # the other process answering without it is not the worker finishing, nor a restart
        assert screen.state == "running" and screen.restarted_as is None
        assert "restarted" not in plain(screen.query_one("#detail-title"))
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert NOTE in header(app)


def test_free_port_never_hands_one_port_out_twice() -> None:
    # The kernel gives a released port out again within a few thousand binds; two servers of a
    # test handed the same one would share it through SO_REUSEPORT and answer each other's
    # connections (a backdoor reading HTTP, an HTTP client reading the backdoor banner).
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
