"""The live console against real ``nameko run`` subprocesses, driven with Textual's Pilot."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from chassis_console.launch import free_port
from chassis_console.live.app import ChassisConsole
from chassis_console.live.detail import WorkerDetailScreen
from chassis_console.live.dialogs import ConfirmKillScreen
from chassis_console.live.poller import ConsoleOptions
from chassis_console.live.status import StatusBar
from chassis_console.live.workers import WorkersTable
from chassis_console.targets.backdoor import BackdoorClient

from tests.console.pilot import plain, until

pytestmark = pytest.mark.timeout(90)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no asyncio plugin needed)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def make_app(*targets: str, timeout: float = 5.0, **options: Any) -> ChassisConsole:
    opts = ConsoleOptions(interval=0.2, timeout=timeout, **options)
    clients = [BackdoorClient(t, timeout=timeout, connect_timeout=2) for t in targets]
    return ChassisConsole(clients, opts)



def header(app: ChassisConsole) -> str:
    return plain(app.screen.query_one(StatusBar))


def table(app: ChassisConsole) -> WorkersTable:
    return app.query_one(WorkersTable)


@sync
async def test_workers_appear_and_the_detail_shows_a_stack_reaching_user_code(start_service):
    service = start_service()
    service.hold(2, tag="a", context={"user_id": "alice"})
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 2, what="2 workers in the table")
        assert "● live" in header(app)
        await pilot.press("enter")
        assert isinstance(app.screen, WorkerDetailScreen)
        screen = app.screen
        await until(pilot, lambda: screen.worker is not None and screen.worker.stack,
                    what="the worker's stack")
        functions = [f.function for f in screen.worker.stack]
        assert "wait_here" in functions
        assert screen.worker.context_data.get("user_id") == "alice"
        stack_text = plain(screen.query_one("#detail-stack"))
        assert "wait_here" in stack_text and "event.wait()" in stack_text
        # only the worker looked at gets its full stack
        assert app.pollers[0].watched == {screen.ref.call_id}

        # it finishes: the screen says so, and keeps what it last saw
        await asyncio.to_thread(service.release, "a")
        await until(pilot, lambda: screen.state == "finished", what="finished state")
        assert "FINISHED" in plain(screen.query_one("#detail-title"))
        await pilot.press("escape")
        assert not isinstance(app.screen, WorkerDetailScreen)
        assert app.pollers[0].watched == set()
        await until(pilot, lambda: table(app).row_count == 0, what="an empty table")


@sync
async def test_the_filter_narrows_the_rows(start_service):
    service = start_service()
    service.hold(2, tag="f")
    service.hold(1, method="login", username="alice", password="hunter2")
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 3, what="3 workers")
        await pilot.press("slash")
        await pilot.press(*"login")
        await until(pilot, lambda: table(app).row_count == 1, what="the filter to apply")
        assert "alice" in str(table(app).get_row_at(0))
        assert "hunter2" not in str(table(app).get_row_at(0))  # redacted in the service
        await pilot.press("enter")  # keep the filter, back to the table
        assert table(app).has_focus and table(app).row_count == 1
        await pilot.press("escape")  # clears it
        await until(pilot, lambda: table(app).row_count == 3, what="the filter to clear")
        service.release("f")
        service.release("login")


@sync
async def test_pause_stops_updates_and_resume_catches_up(start_service):
    service = start_service()
    service.hold(1, tag="p")
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 1, what="1 worker")
        await pilot.press("p")
        assert "PAUSED" in header(app)
        polls = app.pollers[0].status.polls
        await asyncio.to_thread(service.hold, 2, tag="p")
        await pilot.pause(1.0)  # five intervals
        assert app.pollers[0].status.polls <= polls + 1  # at most the poll in flight
        assert table(app).row_count == 1
        await pilot.press("p")
        await until(pilot, lambda: table(app).row_count == 3, what="3 workers after resume")
        service.release("p")


@sync
async def test_killed_service_shows_disconnected_then_recovers_on_restart(start_service):
    service = start_service()
    service.hold(2, tag="k")
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 2, what="2 workers")
        old_pid = app.pollers[0].status.snapshot.pid
        old_rows = set(table(app).keys())
        await pilot.press("enter")  # look at one worker while its service dies
        detail = app.screen
        assert isinstance(detail, WorkerDetailScreen)
        await until(pilot, lambda: detail.state == "running", what="the worker on screen")
        await asyncio.to_thread(service.process.kill)
        status = app.pollers[0].status
        await until(pilot, lambda: status.state == "down", what="the down state")
        assert status.stale and status.snapshot is not None
        text = header(app)
        assert "connection lost" in text and "STALE" in text and "retry #" in text
        assert table(app).row_count == 2  # the last snapshot stays, dimmed
        assert detail.state == "stale" and "STALE" in plain(detail.query_one("#detail-title"))

        await asyncio.to_thread(service.process.start)
        await until(pilot, lambda: status.state == "live", timeout=30, what="reconnection")
        await until(pilot, lambda: detail.state == "finished", what="the worker gone")
        assert "service restarted" in plain(detail.query_one("#detail-title"))
        await pilot.press("escape")
        assert status.snapshot.pid != old_pid
        assert "service restarted" in (status.note or "")
        # the broker redelivers the two unacknowledged calls: new workers, new call ids
        await until(pilot, lambda: not old_rows & set(table(app).keys()),
                    what="the old workers gone")
        assert "● live" in header(app)
        await asyncio.to_thread(service.release, "k")


@sync
async def test_a_target_down_at_start_is_shown_not_fatal():
    port = free_port()
    app = make_app(f"127.0.0.1:{port}")
    async with app.run_test(size=(150, 40)) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.failures >= 2, what="two failed attempts")
        assert status.state == "down" and status.snapshot is None
        text = header(app)
        assert "✖ down" in text and "connection refused" in text
        assert status.retry_in and status.retry_in > 0.5  # backing off


@sync
async def test_unresponsive_target_is_reported_and_recovers(start_service):
    # without the hub watchdog (with it, the state is "blocked": see test_watchdog.py)
    service = start_service(env={**os.environ, "CHASSIS_WATCHDOG": "0"})
    app = make_app(service.target, timeout=1.0)
    async with app.run_test(size=(150, 40)) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.state == "live", what="live")
        pending = service.rpc.call_async("parking", "spin", seconds=3.5)
        await until(pilot, lambda: "not answering" in header(app),
                    what="the unresponsive state on screen")
        assert status.state == "unresponsive"
        await until(pilot, lambda: status.state == "live", timeout=30, what="recovery")
        assert pending.result(10) == 3.5


@sync
async def test_with_allow_actions_a_confirmed_kill_removes_the_worker(start_service):
    service = start_service()
    service.hold(2, tag="x")
    app = make_app(service.target, allow_actions=True)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 2, what="2 workers")
        victim = table(app).current_ref()
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmKillScreen)
        assert any(victim.call_id == value for _, value in app.screen.rows)
        await pilot.press("escape")  # cancelling kills nothing
        assert not isinstance(app.screen, ConfirmKillScreen)
        await pilot.pause(0.5)
        assert service.running_workers("parking") == 2

        await pilot.press("k")
        await pilot.press("y")
        await until(pilot, lambda: table(app).row_count == 1, what="the killed worker gone")
        assert victim.key not in set(table(app).keys())
        assert service.running_workers("parking") == 1
        service.release("x")


@sync
async def test_without_allow_actions_nothing_can_be_killed(start_service):
    service = start_service()
    service.hold(1, tag="ro")
    app = make_app(service.target)
    killed: list[str] = []
    app.pollers[0].target.kill_worker = killed.append  # type: ignore[method-assign]
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 1, what="1 worker")
        await pilot.press("k")
        await pilot.press("y")
        await pilot.press("enter")  # opens the detail screen; k there is refused too
        await pilot.press("k")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmKillScreen)
        assert killed == []
        assert any("--allow-actions" in n.message for n in app._notifications)
        assert service.running_workers("parking") == 1
        service.release("ro")


@sync
async def test_several_targets_in_one_view_one_live_one_down(start_service):
    service = start_service()
    service.hold(2, tag="m")
    down = f"127.0.0.1:{free_port()}"
    app = make_app(service.target, down)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 2, what="2 workers")
        await until(pilot, lambda: app.pollers[1].status.failures, what="the second one down")
        labels = [col.label.plain for col in table(app).columns.values()]
        assert labels[0] == "target"
        assert all(str(table(app).get_row_at(i)[0]) == service.target for i in range(2))
        text = header(app)
        assert service.target in text and down in text and "1/2 targets live" in text
        assert "✖ down" in text and "● live" in text
        service.release("m")
