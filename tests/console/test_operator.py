"""The console an operator keeps open, against real ``nameko run`` services: history you can
open, grouping, following a call, sorting, rates, managed threads."""

from __future__ import annotations

from typing import Any

import pytest
from chassis_console.live.history import FinishedWorkerScreen, HistoryPanel

from nameko_chassis.amqp.rpc import RpcError
from tests.console.pilot import plain, table_text, until
from tests.console.test_app import make_app, started, sync

pytestmark = pytest.mark.timeout(120)

CHAIN = ["tests.services.chassis_chain", "tests.services.parking"]


def history(app: Any) -> HistoryPanel:
    return app.query_one(HistoryPanel)


@sync
async def test_a_failed_call_opens_with_its_exception_traceback_and_redacted_arguments(
        start_service):
    service = started(start_service(CHAIN))
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
