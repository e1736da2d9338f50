"""The live console fed by the in-memory target: behaviour in detail, and the look (snapshots).

Snapshot tests compare SVG screenshots at a fixed size with the ones accepted in
``__snapshots__/``; after an intended change of the look, review and accept with
``pytest tests/console/test_app_memory.py --snapshot-update``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
from chassis_console.cli import run as cli_run
from chassis_console.errors import UnreachableError, UnresponsiveError
from chassis_console.live.app import INTERVALS, ChassisConsole
from chassis_console.live.detail import WorkerDetailScreen
from chassis_console.live.dialogs import ConfirmKillScreen, HelpScreen
from chassis_console.live.history import HistoryPanel
from chassis_console.live.poller import MIN_INTERVAL, ConsoleOptions, TargetPoller
from chassis_console.live.services import PoolGauges
from chassis_console.live.status import StatusBar
from chassis_console.live.workers import WorkerRef, WorkersTable
from chassis_console.targets.memory import MemoryTarget, sample_snapshot
from textual.coordinate import Coordinate

from nameko_chassis.view.text import format_age
from tests.console.pilot import plain, table_text, until

SIZE = (150, 42)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run



def make_app(*targets: MemoryTarget, interval: float = 60.0, **options: Any) -> ChassisConsole:
    return ChassisConsole(list(targets) or [MemoryTarget()],
                          ConsoleOptions(interval=interval, **options))


def table(app: ChassisConsole) -> WorkersTable:
    return app.query_one(WorkersTable)


async def polled(pilot: Any, n: int = 1) -> None:
    app = pilot.app
    await until(pilot, lambda: all(p.status.polls >= n for p in app.pollers), what=f"poll {n}")
    await pilot.pause(0.1)  # let the redraw that the poll posted happen


# -- behaviour -----------------------------------------------------------------------------------


@sync
async def test_rows_are_sorted_oldest_first_and_s_cycles_the_sort():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        shown = [str(t.get_row_at(i)[2]) for i in range(t.row_count)]
        ages = sorted((w.age_s for _, w in sample_snapshot().workers), reverse=True)
        assert ages[0] >= 10 > ages[-1]  # the recording has slow and quick workers
        assert shown == [format_age(a) + (" ⚠" if a >= 10 else "") for a in ages]
        await pilot.press("s")
        assert t.sort_label == "service"
        services = [str(t.get_row_at(i)[0]) for i in range(t.row_count)]
        assert services == sorted(services)
        await pilot.press("s", "s", "s")
        assert t.sort_label == "age ↓"


@sync
async def test_refresh_updates_rows_in_place_and_the_cursor_follows_its_worker():
    target = MemoryTarget()
    app = make_app(target)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        await pilot.press("down", "down", "down")
        followed = t.current_ref()
        assert followed is not None
        row_objects = dict(t.rows)
        # the oldest worker finishes, everyone gets older
        oldest = next(iter(t.keys()))
        target.remove_worker(oldest.split("|", 1)[1])
        target.advance(2.0)
        await pilot.press("r")
        await polled(pilot, 2)
        assert t.current_ref() == followed  # the cursor stayed on the same worker
        assert t.cursor_row == 2  # which moved up one row
        # the remaining rows are the same row objects, updated in place
        assert all(t.rows[k] is row_objects[k] for k in t.rows)
        second = sorted((w.age_s for _, w in sample_snapshot().workers), reverse=True)[1]
        assert format_age(second + 2.0) in str(t.get_row_at(0)[2])



@sync
async def test_a_refresh_redraws_the_ages_on_screen_and_a_row_scrolled_into_view_is_current():
    # many more workers than rows on screen: a refresh writes the ages of the rows in view;
    # the others get theirs when they are drawn (scrolled to), and the order stays by age
    target = MemoryTarget(sample_snapshot(workers_per_service=40))
    app = make_app(target)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        assert t.row_count > 3 * t.size.height
        target.advance(90.0)
        await pilot.press("r")
        await polled(pilot, 2)
        ages = sorted((w.age_s for _, w in target.state.workers), reverse=True)

        def shown(i: int) -> str:
            return str(t.get_row_at(i)[2]).removesuffix(" ⚠")

        assert shown(0) == format_age(ages[0])
        last = t.row_count - 1
        t.move_cursor(row=last)  # scrolls the last row into view
        await pilot.pause(0.2)
        assert shown(last) == format_age(ages[last])
        assert [t.get_row_at(i)[2].sort_value for i in range(t.row_count)] == sorted(
            t.get_row_at(i)[2].sort_value for i in range(t.row_count))



@sync
async def test_the_tables_draw_plain_cells_as_datatable_does():
    # one-style cells (an age, "finished ago") are drawn without rich's layout, every visible
    # one on every refresh: the segments must be DataTable's own, in every state of a row
    # (cursor, hover, zebra stripes)
    app = make_app(MemoryTarget())
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        for t in (table(app), app.query_one(HistoryPanel)):  # CellCachingTables
            assert plain_cells_compared(t) >= t.row_count * 3  # one column at least


@sync
async def test_the_tables_draw_whole_lines_as_datatable_does():
    # a body line is put together from the cells with the styles read once per paint: every
    # line must be DataTable's own, scrolled, with the cursor, the hover and zebra stripes, on
    # a wide and on an 80x24 screen, in every table the console shows
    for size in (SIZE, (80, 24)):
        app = make_app(MemoryTarget(sample_snapshot(workers_per_service=40)))
        async with app.run_test(size=size) as pilot:
            await polled(pilot)
            await pilot.press("g")
            await pilot.pause(0.1)
            lines = lines_compared(app.query_one("#groups"))
            await pilot.press("g", "e")
            await pilot.pause(0.1)
            lines += lines_compared(app.query_one("#rates"))
            await pilot.press("e")
            await pilot.pause(0.1)
            t = table(app)
            assert t.row_count > 2 * t.size.height
            t.move_cursor(row=t.row_count // 2)  # scrolls
            await pilot.pause(0.1)
            assert t.scroll_y > 0
            t.hover_coordinate = Coordinate(t.cursor_row - 1, 2)  # on screen, above it
            t._show_hover_cursor = True
            lines += lines_compared(t)
            # the lines just drawn again with the hover and the cursor elsewhere: no line
            # kept from before may show them where they were
            t.hover_coordinate = Coordinate(t.cursor_row - 2, 0)
            t.move_cursor(row=t.cursor_row - 1)
            await pilot.pause(0.1)
            lines += lines_compared(t)
            if t.max_scroll_x:  # 80x24: the last column is cut, left/right scroll it
                t.scroll_to(x=t.max_scroll_x, animate=False, immediate=True)
                assert t.scroll_x > 0
                lines += lines_compared(t)
            lines += lines_compared(app.query_one(HistoryPanel))
            assert lines >= t.size.height + 3


def lines_compared(t: Any) -> int:
    """Compare every line the fast path draws with DataTable's own; how many body lines."""
    from textual.widgets import DataTable

    t._pseudo_class_state = t.get_pseudo_class_state()
    t._painting, t._paint = True, None
    try:
        fast = [list(t.render_line(y)) for y in range(t.size.height)]
        assert t._paint is not None, f"{t.id}: drawn by DataTable, not line by line"
    finally:
        t._painting, t._paint = False, None
    t._update_count += 1  # DataTable's own caches: render afresh
    slow = [list(DataTable.render_line(t, y)) for y in range(t.size.height)]
    for y, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, (t.id, y)
    return sum(1 for y in range(t.size.height) if t.header_height <= y < t.row_count)


def plain_cells_compared(t: Any) -> int:
    """Compare every cell the fast path draws with DataTable's drawing; how many matched."""
    from rich.segment import Segment
    from textual.widgets import DataTable

    t._pseudo_class_state = t.get_pseudo_class_state()
    compared = 0
    for row in range(t.row_count):
        style = t._get_row_style(row, t.rich_style)
        for column, col in enumerate(t.ordered_columns):
            value = t.get_cell_at(Coordinate(row, column))
            width = col.get_render_width(t)
            for cursor, hover in ((False, False), (True, False), (False, True)):
                fast = t._render_plain_cell(value, row, column, style, width, cursor, hover)
                if fast is None:
                    continue
                t._update_count += 1  # DataTable's own cache: render afresh
                slow = DataTable._render_cell(t, row, column, style, width, cursor, hover)
                assert [list(Segment.simplify(line)) for line in fast] == \
                    [list(Segment.simplify(line)) for line in slow], (t.id, row, column)
                compared += 1
    return compared


@sync
async def test_slow_workers_stand_out():
    app = make_app(slow=5.0)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        ages = [t.get_row_at(i)[2] for i in range(t.row_count)]
        slow = [a for a in ages if "⚠" in str(a)]
        expected = [w for _, w in sample_snapshot().workers if w.age_s >= 5.0]
        assert len(slow) == len(expected) >= 1
        assert all("bold" in str(a.style) for a in slow)


@sync
async def test_pool_gauge_warns_near_saturation():
    state = sample_snapshot()
    payments = next(c for c in state.containers if c.service_name == "payments")
    assert payments.workers_running == 3
    app = make_app(MemoryTarget(replace(state, containers=[
        replace(c, max_workers=4) if c is payments else c for c in state.containers])))
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        pools = app.query_one(PoolGauges)
        assert pools.has_class("-warning")  # payments: 3 of 4
        assert pools.border_subtitle == "1 near saturation"
        assert "3/4 !" in plain(pools)
        # an unchanged refresh leaves the panel as it is; a changed pool is drawn again
        target = app.pollers[0].target
        await pilot.press("r")
        await polled(pilot, 2)
        assert "3/4 !" in plain(pools) and pools.border_subtitle == "1 near saturation"
        target.state = state  # payments: 3 of its own 20
        await pilot.press("r")
        await polled(pilot, 3)
        assert "3/4 !" not in plain(pools) and "3/20" in plain(pools)
        assert not pools.has_class("-warning") and pools.border_subtitle is None


@sync
async def test_history_panel_only_for_services_that_keep_history():
    app = make_app(MemoryTarget(sample_snapshot(history=False)))
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        assert not app.query_one(HistoryPanel).display
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        assert app.query_one(HistoryPanel).display


@sync
async def test_detail_asks_for_one_stack_and_says_when_the_worker_finished():
    target = MemoryTarget()
    app = make_app(target)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        ref = table(app).current_ref()
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, WorkerDetailScreen)
        await until(pilot, lambda: screen.worker is not None and screen.worker.stack)
        assert app.pollers[0].watched == {ref.call_id}
        target.remove_worker(ref.call_id)
        await pilot.press("r")
        await until(pilot, lambda: screen.state == "finished")
        assert screen.worker is not None  # the last known state stays on screen


@sync
async def test_each_footer_shows_the_keys_of_its_screen_after_every_switch():
    # the footer is composed again only when its keys change: switching screens and back, and
    # moving the focus to the filter box and back, must still show the right keys
    from textual.widgets._footer import FooterKey

    def keys() -> list[str]:
        return [k.description for k in app.screen.query(FooterKey)]

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        await pilot.pause(0.2)
        main = keys()
        assert "Sort" in main and "Back" not in main
        for _ in range(2):
            await pilot.press("enter")
            await until(pilot, lambda: "Back" in keys(), what="the worker screen's keys")
            assert "Caller ↑" in keys() and "Sort" not in keys()
            await pilot.press("escape")
            await until(pilot, lambda: keys() == main, what="the table's keys again")
        await pilot.press("slash")  # the filter box has the focus: its own keys
        await until(pilot, lambda: keys() != main, what="the filter box's keys")
        await pilot.press("escape")
        await until(pilot, lambda: keys() == main, what="the table's keys after the filter")


@sync
async def test_lost_target_keeps_its_snapshot_marked_stale_and_backs_off():
    target = MemoryTarget()
    app = make_app(target, interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        target.fail = UnreachableError("connection to 127.0.0.1:12345 closed by the service")
        status = app.pollers[0].status
        await until(pilot, lambda: status.failures >= 2)
        assert status.state == "down" and status.stale
        assert status.retry_in == 1.0  # 0.5s, then 1s: doubling
        assert table(app).row_count == 8
        assert all(c.style == "dim" or "dim" in str(c.style) for c in table(app).get_row_at(0))
        target.fail = None
        await until(pilot, lambda: status.state == "live", timeout=5)
        assert status.note and status.note.startswith("reconnected")


@sync
async def test_unresponsive_target_is_named_so():
    target = MemoryTarget()
    target.fail = UnresponsiveError("127.0.0.1:12345 is not answering (no reply within 10s)")
    app = make_app(target)
    async with app.run_test(size=SIZE) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.failures >= 1)
        assert status.state == "unresponsive"


@sync
async def test_a_refresh_starts_one_interval_after_the_last_one_started():
    # the interval counts from the start of a poll (10/s asked is 10/s had), but a service
    # slower than half its interval still gets half an interval between two polls
    target = MemoryTarget()
    poller = TargetPoller(target, 0, ConsoleOptions(interval=10.0), lambda status: None)
    try:
        target.delay = 0.3
        waited = await poller.poll_once()
        assert poller.status.state == "live"
        assert 9.0 < waited <= 10.0 - 0.3  # the poll's own time is taken off
        poller.options.interval = 0.4  # (a refresh asked for now: a new start)
        assert await poller.poll_once() == pytest.approx(0.2)  # 0.3 s of 0.4: half, not 0.1
        target.delay = 0.0
        await asyncio.sleep(0.25)  # this start is 0.05 s late...
        waited = await poller.poll_once()
        assert 0.2 <= waited <= 0.35  # ...so the next one waits less: 0.4 s after the last was due
    finally:
        poller.stop()


@sync
async def test_interval_keys_step_through_the_intervals():
    app = make_app(interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus")
        assert app.options.interval == 2.0
        await pilot.press("minus", "minus")
        assert app.options.interval == 0.5
        # `-` stops at the floor that --interval enforces too
        await pilot.press(*["minus"] * len(INTERVALS))
        assert app.options.interval == MIN_INTERVAL == INTERVALS[0]
    with pytest.raises(SystemExit) as exit:
        cli_run(["localhost:1", "--interval", str(MIN_INTERVAL / 2)])
    assert exit.value.code == 2


@sync
async def test_help_screen_and_palette_commands():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Pause refreshing", "Refresh now", "Filter workers", "Cycle sort order",
                "Kill worker", "Help"} <= titles


@sync
async def test_kill_confirmation_shows_the_worker_and_enter_cancels():
    target = MemoryTarget()
    app = make_app(target, allow_actions=True)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        ref = table(app).current_ref()
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmKillScreen)
        assert ("call id", ref.call_id) in app.screen.rows
        await pilot.press("enter")  # Cancel has the focus: a reflex enter kills nothing
        assert not isinstance(app.screen, ConfirmKillScreen)
        assert target.killed == []
        await pilot.press("k", "y")
        await until(pilot, lambda: target.killed == [ref.call_id])
        await until(pilot, lambda: table(app).row_count == 7)


# -- the look -------------------------------------------------------------------------------------


def _settled(*keys: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def run_before(pilot: Any) -> None:
        await polled(pilot)
        for key in keys:
            await pilot.press(key)
        if keys:
            await polled(pilot, 2)
        await pilot.pause()
    return run_before


@pytest.mark.timeout(60)
def test_main_screen_look(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_settled())


@pytest.mark.timeout(60)
def test_80x24_look(snap_compare):
    # the smallest terminal we design for: no side panel, where stays, nothing wraps
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_settled())


@sync
async def test_80x24_keeps_where_and_help_fits():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await polled(pilot)
        t = table(app)
        assert [str(c.label) for c in t.columns.values()] == ["service", "entrypoint", "age",
                                                              "where"]
        assert not app.query_one("#side").display
        await pilot.resize_terminal(150, 42)
        await pilot.pause(0.2)
        assert "arguments" in [str(c.label) for c in t.columns.values()]
        assert app.query_one("#side").display
        await pilot.resize_terminal(80, 24)
        await pilot.press("question_mark")
        box = app.screen.query_one("#help-box")
        assert box.region.width <= 80 and box.region.height <= 24


@pytest.mark.timeout(60)
def test_worker_detail_look(snap_compare):
    app = make_app()

    async def run_before(pilot: Any) -> None:
        await polled(pilot)
        await pilot.press("down", "enter")
        screen = pilot.app.screen
        await until(pilot, lambda: screen.worker is not None and screen.worker.stack)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.timeout(60)
def test_several_targets_look(snap_compare):
    other = MemoryTarget(sample_snapshot(workers_per_service=1, history=False),
                         label="10.0.0.7:12345")
    settle = _settled()

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        # the cursor follows the worker it was on when the first poll landed, and which target
        # answered first varies: put it on the top row for a deterministic picture
        table(pilot.app).move_cursor(row=0)
        await pilot.pause(0.1)

    assert snap_compare(make_app(MemoryTarget(), other), terminal_size=SIZE,
                        run_before=run_before)


@sync
async def test_selecting_a_service_in_the_tree_filters_the_table():
    app = make_app()
    state = sample_snapshot()
    payments = [w for c in state.containers if c.service_name == "payments" for w in c.workers]
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        tree = app.query_one("#services")
        tree.focus()
        for _ in range(40):  # down to the payments container's own line
            await pilot.press("down")
            node = tree.cursor_node
            if node is not None and node.data == "payments" and node.parent is tree.root:
                break
        assert node is not None and node.data == "payments"
        await pilot.press("enter")
        await until(pilot, lambda: table(app).row_count == len(payments))
        assert table(app).filter == "service:payments"
        shown = {str(table(app).get_row_at(i)[0]) for i in range(table(app).row_count)}
        assert shown == {"payments"}
        await pilot.press("enter")  # again: cleared
        await until(pilot, lambda: table(app).row_count == len(state.workers))


@sync
async def test_q_and_ctrl_c_quit_but_q_types_in_the_filter():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", "q")
        assert app.is_running and table(app).filter == "q"
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


@sync
async def test_untrusted_text_is_shown_as_itself_never_as_markup():
    from dataclasses import replace

    state = sample_snapshot()
    c = state.containers[1]
    w = replace(c.workers[0], args=["'[red]not red[/red]'"], kwargs={"[/tmp]": "[bold]x"},
                context_data={"[b]key": "[/]", "call_id_stack": []})
    state = replace(state, containers=[state.containers[0], replace(c, workers=[w]),
                                       *state.containers[2:]])
    app = make_app(MemoryTarget(state))
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        app.open_worker(next(r for r in map(WorkerRef.from_key, table(app).keys())
                             if r.call_id == w.call_id))
        screen = app.screen
        await until(pilot, lambda: isinstance(screen, WorkerDetailScreen) and screen.worker)
        await pilot.pause()
        svg = app.export_screenshot()
        assert "[red]not&#160;red[/red]" in svg and "[/tmp]" in svg and "[b]key" in svg


@sync
async def test_collector_errors_and_unlisted_workers_are_said():
    from dataclasses import replace

    from chassis_console.live.status import StatusBar

    state = replace(sample_snapshot(), errors=["orders: cannot read a worker: ValueError: x"])
    app = make_app(MemoryTarget(state), max_workers=1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        await pilot.pause()
        header = plain(app.query_one(StatusBar))
        assert "1 collector error: orders: cannot read a worker" in header
        assert table(app).row_count == 4  # one per container
        assert "workers 4 listed of 8 running (--max-workers 1)" in str(table(app).border_title)


# -- first-contact fixes (issue 12) --------------------------------------------------------------


@sync
async def test_the_filter_applies_to_recently_finished_too():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        panel = app.query_one(HistoryPanel)
        everyone = table_text(panel)
        assert "orders" in everyone and "payments" in everyone
        await pilot.press("slash", *"service:payments", "enter")
        await pilot.pause(0.1)
        only = table_text(panel)
        assert "payments" in only and "orders" not in only and "notifications" not in only


@sync
async def test_a_worker_that_finished_before_its_stack_came_says_so():
    target = MemoryTarget()
    app = make_app(target)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        ref = table(app).current_ref()
        assert ref is not None
        target.remove_worker(ref.call_id)  # it finishes before the console asks for its stack
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, WorkerDetailScreen)
        await until(pilot, lambda: screen.state == "finished",
                    what=f"the worker to finish (it is {screen.state})")
        stack = plain(screen.query_one("#detail-stack"))
        assert "finished before one was taken" in stack and "collecting" not in stack


@sync
async def test_ages_of_plain_services_are_marked_as_lower_bounds():
    state = sample_snapshot()
    plain_service = replace(state, containers=[
        replace(c, workers=[replace(w, started_at=None) for w in c.workers])
        for c in state.containers])
    app = make_app(MemoryTarget(plain_service))
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        ages = [str(table(app).get_row_at(i)[2]) for i in range(table(app).row_count)]
        assert ages and all(a.startswith("≥") for a in ages)
        assert "since first seen" in str(table(app).border_title)
    app = make_app()  # a chassis service: exact ages, no mark
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        assert not str(table(app).get_row_at(0)[2]).startswith("≥")
        assert "since first seen" not in str(table(app).border_title)


@sync
async def test_on_the_worker_screen_q_quits_and_s_does_not_resort_the_list_behind():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, WorkerDetailScreen)
        await pilot.press("s")
        assert table(app).sort_label == "age ↓"
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code in (0, None) and not app.is_running


@sync
async def test_a_redacted_argument_is_never_cut_in_half_in_the_table():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        args = [str(t.get_row_at(i)[-1]) for i in range(t.row_count)]  # arguments: last
        hidden = [a for a in args if "card" in a]
        assert hidden and all("card='********'" in a for a in hidden), args


@sync
async def test_a_silent_service_reads_not_answering_after_two_intervals_not_its_timeout():
    target = MemoryTarget()
    app = make_app(target, interval=0.5, timeout=30.0)
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        status = app.pollers[0].status
        target.delay = 4.0  # the next refreshes take 4 s: much longer than two intervals
        await until(pilot, lambda: status.state == "unresponsive", timeout=3.5,
                    what="not answering")
        assert status.snapshot is not None and status.stale  # the last picture stays
        await until(pilot, lambda: "not answering" in plain(app.query_one(StatusBar)),
                    timeout=2, what="the header to say so")  # its redraw follows the state
        target.delay = 0.0
        await until(pilot, lambda: status.state == "live", timeout=8, what="live again")


@sync
async def test_the_retry_countdown_counts_down():
    target = MemoryTarget()
    target.fail = UnreachableError("connection refused")
    app = make_app(target, interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.failures >= 4, timeout=15, what="a longer backoff")
        import re

        def left() -> float:
            found = re.search(r"retry #\d+ in ([\d.]+)s", plain(app.query_one(StatusBar)))
            assert found, plain(app.query_one(StatusBar))
            return float(found.group(1))

        first = left()
        await pilot.pause(1.2)
        second = left()
        assert second < first or status.failures >= 5  # counted down, or the next try came


@sync
async def test_the_service_filter_matches_the_service_not_text_that_names_it():
    state = sample_snapshot()
    # an orders worker whose argument mentions payments: a text filter would show it
    tricky = replace(state, containers=[
        replace(c, workers=[replace(c.workers[0], args=["'refund via payments'"]),
                            *c.workers[1:]]) if c.service_name == "orders" else c
        for c in state.containers])
    app = make_app(MemoryTarget(tricky))
    async with app.run_test(size=SIZE) as pilot:
        await polled(pilot)
        t = table(app)
        t.filter = "payments"  # plain text: matches the orders worker too
        app.redraw()
        assert "orders" in {str(t.get_row_at(i)[0]) for i in range(t.row_count)}
        t.filter = "service:payments"
        app.redraw()
        assert {str(t.get_row_at(i)[0]) for i in range(t.row_count)} == {"payments"}


@sync
async def test_the_header_shows_process_basics():
    from nameko_chassis.view.model import Process

    state = replace(sample_snapshot(), process=Process(
        uptime_s=7380.0, cpu_percent=12.4, rss_bytes=89_456_640, open_fds=31, greenthreads=14,
        hub_lag_ms=3.2))
    app = make_app(MemoryTarget(state))
    async with app.run_test(size=(200, 42)) as pilot:
        await polled(pilot)
        header = plain(app.query_one(StatusBar))
        assert "cpu 12%" in header and "rss 85.3 MB" in header and "fds 31" in header
        assert "greenthreads 14" in header and "hub lag 3 ms" in header and "up 2h03m" in header
