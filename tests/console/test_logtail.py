"""The log tail, against a real ``nameko run`` service: a worker's log line shows with its call
id, a secret in it is redacted, the console fetches only new records, the handler is gone after
the console stops asking, and a level change (``--allow-actions`` only) takes effect."""

from __future__ import annotations

from typing import Any

import pytest
from chassis_console.live.logs import LogLevelScreen, LogPanel
from chassis_console.live.workers import WorkersTable
from chassis_console.targets.backdoor import BackdoorClient

from tests.console.pilot import until
from tests.console.test_app import make_app, sync
from tests.harness import Service, wait_for

pytestmark = pytest.mark.timeout(120)

SECRET = "tok_9f8e7d6c5b4a"


def start_slowpoke(start_service: Any, **kwargs: Any) -> Service:
    return start_service("tests.services.slowpoke", **kwargs).wait_answering("slowpoke")


def handlers(service: Service) -> str:
    """The probe's tail handlers on the service's root logger."""
    return service.eval("[type(h).__name__ for h in __import__('logging').getLogger().handlers "
                        "if type(h).__name__ == 'TailHandler']")


def test_a_workers_log_line_comes_with_its_call_id_and_redacted(start_service):
    service = start_slowpoke(start_service)
    with BackdoorClient(service.process.address, timeout=10) as client:
        first = client.request("logs", after=0, keep_s=30)  # attaches: records start now
        assert first["records"] == [] and handlers(service) == "['TailHandler']"
        service.rpc.call("slowpoke", "talk", text="hello there", token=SECRET)
        answer = wait_for(lambda: (a := client.request("logs", after=first["cursor"]))["records"]
                          and a, timeout=10, what="the worker's records")
        records = answer["records"]
        said = next(r for r in records if r["message"] == "talk says hello there")
        assert said["level"] == "INFO" and said["logger"] == "slowpoke"
        assert said["call_id"].startswith("slowpoke.talk.")
        bank = next(r for r in records if "calling the bank" in r["message"])
        assert SECRET not in bank["message"] and "token=********" in bank["message"]
        assert bank["call_id"] == said["call_id"]
        # DEBUG is below the service's own level for that logger: not in the tail
        assert not any(r["level"] == "DEBUG" for r in records)
        # only what is new: asking from the cursor again gives nothing
        again = client.request("logs", after=answer["cursor"])
        assert again["records"] == [] and again["cursor"] == answer["cursor"]
        # a record logged outside any worker has no call id
        service.eval("__import__('logging').getLogger('slowpoke').warning('from the backdoor')")
        outside = client.request("logs", after=answer["cursor"])["records"]
        assert [(r["message"], r["call_id"]) for r in outside] == [("from the backdoor", None)]


def test_the_handler_is_removed_after_the_console_stops_asking(start_service):
    service = start_slowpoke(start_service)
    with BackdoorClient(service.process.address, timeout=10) as client:
        client.request("logs", after=0, keep_s=1)
        assert handlers(service) == "['TailHandler']"
        wait_for(lambda: handlers(service) == "[]", timeout=10, what="the handler to go")
        # and the service logs on as before, with nothing kept for nobody
        assert service.rpc.call("slowpoke", "talk", text="after", token="x") == "after"


def test_a_level_change_takes_effect_through_the_services_logging(start_service):
    service = start_slowpoke(start_service)
    with BackdoorClient(service.process.address, timeout=10) as client:
        cursor = client.request("logs", after=0)["cursor"]
        done = client.request("log_level", logger="slowpoke.chatty", level="debug")
        assert done == {"logger": "slowpoke.chatty", "level": "DEBUG", "previous": "NOTSET",
                        "effective": "DEBUG"}
        service.rpc.call("slowpoke", "talk", text="detail", token="x")
        records = wait_for(lambda: client.request("logs", after=cursor)["records"], timeout=10,
                           what="records")
        assert "debug detail of detail" in [r["message"] for r in records]
        assert service.eval("__import__('logging').getLogger('slowpoke.chatty').level") == "10"


@sync
async def test_the_log_panel_tails_filters_by_the_selected_worker_and_sets_levels(
        start_service):
    service = start_slowpoke(start_service, config={"max_workers": 2})
    app = make_app(service.target, allow_actions=True)
    async with app.run_test(size=(150, 45)) as pilot:
        panel = app.query_one(LogPanel)
        assert not panel.display
        await pilot.press("l")
        assert panel.display and panel.mode == "all"
        await until(pilot, lambda: panel.tails, what="the first fetch")
        service.rpc.call("slowpoke", "talk", text="one", token=SECRET)
        service.rpc.call("slowpoke", "talk", text="two", token=SECRET)
        await until(pilot, lambda: any("talk says two" in ln for ln in panel.shown_lines()),
                    timeout=15, what="the records in the panel")
        lines = panel.shown_lines()
        assert any("talk says one" in ln and "[talk " in ln for ln in lines)
        assert not any(SECRET in ln for ln in lines)
        # a worker in flight that logs nothing: following it filters everything else out
        service.rpc.call_async("slowpoke", "slow", seconds=30)
        workers = app.query_one(WorkersTable)
        await until(pilot, lambda: workers.row_count == 1, what="the slow worker")
        workers.focus()
        await pilot.press("l")
        assert panel.mode == "worker" and panel.call_id is not None
        assert panel.call_id.startswith("slowpoke.slow.")
        assert panel.shown_lines() == []
        await pilot.press("l")
        assert panel.mode == "off" and not panel.display
        # L: a level, through the service's own logging
        await pilot.press("L")
        assert isinstance(app.screen, LogLevelScreen)
        await pilot.press(*"slowpoke.chatty=DEBUG", "enter")
        await until(pilot, lambda: service.eval(
            "__import__('logging').getLogger('slowpoke.chatty').level") == "10",
            what="the level change")
        service.eval("__import__('tests.services.slowpoke').services.slowpoke.OPEN.append(1)")


@sync
async def test_a_read_only_console_does_not_change_levels(start_service):
    service = start_slowpoke(start_service)
    app = make_app(service.target)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.press("L")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, LogLevelScreen)
    assert service.eval("__import__('logging').getLogger('slowpoke.chatty').level") == "0"
