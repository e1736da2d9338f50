"""The console an operator keeps open, against real ``nameko run`` services: history you can
open, grouping, following a call, sorting, rates, managed threads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chassis_console.live.detail import ManagedThreadScreen, WorkerDetailScreen
from chassis_console.live.dialogs import SortPickerScreen
from chassis_console.live.groups import GroupsTable
from chassis_console.live.history import FinishedWorkerScreen, HistoryPanel
from chassis_console.live.rates import RatesTable
from chassis_console.live.services import ManagedRef, ServiceTree
from chassis_console.live.workers import WorkersTable

from nameko_chassis.amqp.rpc import RpcError
from tests.console.pilot import plain, table_text, until
from tests.console.test_app import make_app, sync
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(120)

CHAIN = ["tests.services.chassis_chain", "tests.services.parking"]


def history(app: Any) -> HistoryPanel:
    return app.query_one(HistoryPanel)


@sync
async def test_a_failed_call_opens_with_its_exception_traceback_and_redacted_arguments(
        start_service):
    service = start_service(CHAIN).wait_answering("chain_front")
    with pytest.raises(RpcError):
        service.rpc.call("chain_front", "pay", user="ann", card="4242424242424242",
                         context={"user_id": "ann", "auth_token": "s3cret"})
    assert service.rpc.call("chain_front", "hello", who="bob") == "hello bob"
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        panel = history(app)
        await until(pilot, lambda: panel.display and "Refused" in table_text(panel),
                    what="the failure in recently finished")
        # the panel takes focus and enter opens the row under the cursor
        panel.focus()
        row = next(i for i in range(panel.row_count) if "Refused" in table_text(panel)
                   .splitlines()[i])
        panel.move_cursor(row=row)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, FinishedWorkerScreen)
        worker = plain(screen.query_one("#finished-worker"))
        assert "chain_front.pay" in worker and "error" in worker
        assert "Refused: card ending 4242 refused" in worker
        args = plain(screen.query_one("#finished-args"))
        assert "ann" in args and "4242424242424242" not in args and "********" in args
        context = plain(screen.query_one("#finished-context"))
        assert "user_id = ann" in context and "s3cret" not in context
        tb = plain(screen.query_one("#finished-traceback"))
        # through the service's own code down to the raise
        assert "in pay" in tb and "in check_card" in tb
        assert 'raise Refused(f"card ending {card[-4:]} refused")' in tb
        await pilot.press("escape")
        assert not isinstance(app.screen, FinishedWorkerScreen)
        # the filter applies to the history too
        await pilot.press("slash", *"hello", "enter")
        await until(pilot, lambda: "Refused" not in table_text(panel)
                    and "hello" in table_text(panel), what="the filter on history")


@sync
async def test_groups_count_workers_by_entrypoint_and_where_and_enter_filters_to_one(
        start_service):
    service = start_service()
    service.hold(3, tag="g")
    service.hold(2, method="login", username="ann", password="pw")
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        workers = app.query_one(WorkersTable)
        await until(pilot, lambda: workers.row_count == 5, what="5 workers")
        await pilot.press("g")
        groups = app.query_one(GroupsTable)
        await until(pilot, lambda: groups.row_count == 2, what="2 groups")
        assert groups.has_focus and not workers.display
        rows = table_text(groups).splitlines()
        assert rows[0].startswith("3 parking park wait_here") and "parking.py:" in rows[0]
        assert rows[1].startswith("2 parking login wait_here")
        await pilot.press("enter")  # the largest group, under the cursor
        await until(pilot, lambda: workers.display and workers.row_count == 3,
                    what="the workers of that group")
        assert workers.has_focus
        assert "entrypoint:parking.park" in workers.filter and "where:" in workers.filter
        assert "entrypoint:parking.park" in plain(app.query_one("#status"))
    service.release("g")
    service.release("login")


@sync
async def test_following_a_call_lands_on_the_callee_in_another_target_and_back(start_service):
    parking = start_service()
    front = start_service("tests.services.chassis_chain").wait_answering("chain_front")
    pending = front.rpc.call_async("chain_front", "relay", tag="chain")
    wait_for(lambda: parking.running_workers() == 1, timeout=20, what="the callee to park")
    app = make_app(front.target, parking.target)
    async with app.run_test(size=(150, 40)) as pilot:
        workers = app.query_one(WorkersTable)
        await until(pilot, lambda: workers.row_count == 2, what="caller and callee")
        relay = next(r for r in workers.keys() if r.startswith("0|chain_front.relay."))
        workers.move_cursor(row=workers.get_row_index(relay))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, WorkerDetailScreen)
        await until(pilot, lambda: screen.down, what="the callee in the call chain")
        calls = plain(screen.query_one("#detail-calls"))
        assert "● chain_front.relay" in calls and "↓ parking.park" in calls
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailScreen)
                    and app.screen.ref.target == 1, what="the callee's screen")
        callee = app.screen
        assert callee.ref.call_id.startswith("parking.park.")
        await until(pilot, lambda: callee.worker is not None and callee.up, what="its caller")
        assert callee.up[-1].call_id == relay.split("|", 1)[1]
        assert "↑ chain_front.relay" in plain(callee.query_one("#detail-calls"))
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailScreen)
                    and app.screen.ref.target == 0, what="back on the caller")
        await pilot.press("escape")
        # from the table: f opens the callee directly
        workers.move_cursor(row=workers.get_row_index(relay))
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailScreen)
                    and app.screen.ref.target == 1, what="the callee from the table")
    parking.release("chain")
    assert pending.result() == "chain"


def column_x(table: WorkersTable, key: str) -> int:
    """Where a column's header is, from the table's left edge (inside its border)."""
    x = 1
    for column in table.ordered_columns:
        if column.key.value == key:
            return x + 1
        x += column.get_render_width(table)
    raise KeyError(key)


@sync
async def test_sorting_by_any_column_reverses_and_is_remembered_for_the_target(start_service):
    service = start_service(CHAIN).wait_answering("chain_front")
    for tag in ("s1", "s2", "s3"):  # three exact ages (a chassis service), oldest first
        service.hold(1, tag=tag, service="chain_parking")
        await asyncio.sleep(0.3)
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        workers = app.query_one(WorkersTable)
        await until(pilot, lambda: workers.row_count == 3, what="3 workers")

        def tags() -> list[str]:
            return [str(workers.get_row_at(i)[-1]).split("'")[1] for i in range(3)]

        assert tags() == ["s1", "s2", "s3"] and workers.sort_label == "age ↓"
        # choose from a list: age again reverses it
        await pilot.press("o")
        assert isinstance(app.screen, SortPickerScreen)
        await pilot.press("enter")  # the highlighted one is the current column
        await until(pilot, lambda: tags() == ["s3", "s2", "s1"], what="youngest first")
        assert workers.sort_label == "age ↑"
        assert "sort age ↑" in plain(app.query_one("#status"))
        # a header click sorts by that column, the same click again reverses
        await pilot.click(WorkersTable, offset=(column_x(workers, "args"), 1))
        await until(pilot, lambda: workers.sort_column == "args", what="sorted by arguments")
        assert tags() == ["s1", "s2", "s3"] and workers.sort_label == "arguments"
        await pilot.click(WorkersTable, offset=(column_x(workers, "args"), 1))
        await until(pilot, lambda: tags() == ["s3", "s2", "s1"], what="arguments reversed")
        assert workers.sort_label == "arguments ↓"
        # s still cycles the usual orders
        await pilot.press("s")
        assert workers.sort_label == "age ↓"
        await pilot.press("s")
        assert workers.sort_label == "service"
    # a new console on the same target starts with the sort last chosen there
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        workers = app.query_one(WorkersTable)
        await until(pilot, lambda: workers.row_count == 3, what="3 workers again")
        assert workers.sort_label == "service"
    for tag in ("s1", "s2", "s3"):
        service.release(tag, service="chain_parking")


def rates_rows(app: Any) -> dict[str, list[str]]:
    """entrypoint -> the row's cells, from the rates view."""
    rates = app.query_one(RatesTable)
    rows = {}
    for i in range(rates.row_count):
        cells = [str(c) for c in rates.get_row_at(i)]
        rows[f"{cells[1]}.{cells[2]}"] = cells
    return rows


@sync
async def test_rates_per_entrypoint_match_the_calls_made_and_plain_services_are_estimates(
        start_service):
    service = start_service(CHAIN).wait_answering("chain_front")
    for _ in range(6):
        service.rpc.call("chain_front", "hello")
    for _ in range(2):
        with pytest.raises(RpcError):
            service.rpc.call("chain_front", "pay", user="u", card="0000111122223333")
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: app.pollers[0].status.polls >= 1, what="a snapshot")
        await pilot.press("e")
        rates = app.query_one(RatesTable)
        assert rates.has_focus and rates.display
        await until(pilot, lambda: "chain_front.hello" in rates_rows(app), what="rates")
        rows = rates_rows(app)
        hello, pay = rows["chain_front.hello"], rows["chain_front.pay"]
        assert hello[3] == "0.10" and hello[5] == "0"  # 6 calls in the last 60 s, no errors
        assert pay[3] == "0.03" and pay[5].startswith("100% (2)")
        # the failing entrypoint needs attention first
        assert rates.get_row_at(0)[2].plain == "pay" and rates.get_row_at(0)[0].plain == "●"
        # more calls while the console watches
        for _ in range(3):
            await asyncio.to_thread(service.rpc.call, "chain_front", "hello")
        await until(pilot, lambda: rates_rows(app)["chain_front.hello"][3] == "0.15",
                    what="9 calls counted")
        # a plain service: workers gone between two snapshots, marked as estimates
        await asyncio.to_thread(service.hold, 2, tag="r")
        await until(pilot, lambda: app.query_one(WorkersTable).total == 2, what="2 parked")
        await asyncio.to_thread(service.release, "r")
        await until(pilot, lambda: "parking.park" in rates_rows(app), what="park estimated")
        park = rates_rows(app)["parking.park"]
        assert park[3] == "~0.03" and park[5] == "?" and park[7].startswith("~")
        assert "estimated from successive snapshots" in str(rates.border_subtitle)
        await pilot.press("e")
        assert app.query_one(WorkersTable).has_focus


@sync
async def test_a_managed_threads_stack_opens_from_the_tree(start_service):
    service = start_service()
    app = make_app(service.target)
    async with app.run_test(size=(150, 40)) as pilot:
        tree = app.query_one(ServiceTree)
        await until(pilot, lambda: app.pollers[0].status.polls >= 1, what="a snapshot")

        def leaves() -> list[Any]:
            out, todo = [], [tree.root]
            while todo:
                node = todo.pop()
                if isinstance(node.data, ManagedRef):
                    out.append(node)
                todo += list(node.children)
            return out

        await until(pilot, leaves, what="managed threads in the tree")
        node = next(n for n in leaves() if "ConsumerMixin.run" in n.data.members)
        node.parent.expand()
        await pilot.pause(0.1)
        tree.focus()
        tree.move_cursor(node)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ManagedThreadScreen)
        assert app.pollers[0].watched == {"managed:ConsumerMixin.run"}
        await until(pilot, lambda: screen.collected, what="the managed thread's stack")
        stacks = plain(screen.query_one("#managed-stacks"))
        assert "ConsumerMixin.run" in stacks and "kombu/mixins.py" in stacks
        assert "collecting" not in stacks
        await pilot.press("escape")
        assert app.pollers[0].watched == set()
