"""The hub watchdog against real ``nameko run`` services whose worker never yields.

A fresh ``chassis-console --json`` / ``--once`` started during the block answers at once (exit 3,
culprit named), the next snapshot records the incident, the live console shows the blocked state
and comes back, and the service keeps serving. Plain services get the watchdog from the first
console that attaches; chassis services have it from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from chassis_console.live.poller import ConsoleOptions
from chassis_console.targets import backdoor
from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.amqp.rpc import RpcTimeout
from tests.console.pilot import until
from tests.console.test_app import header, sync
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "chassis_console"]
PLAIN = "tests.services.hog"
CHASSIS = "tests.services.chassis_hog"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHASSIS_", "SENTRY_"))}
    env.update(extra)
    return env


def _pinged(service: Any, name: str) -> Any:
    for _ in range(30):
        try:
            assert service.rpc.call(name, "ping", timeout=1.0) == "pong"
            return service
        except RpcTimeout:
            continue
    raise AssertionError(f"{name} never answered a ping")


def console(target: str, *args: str, timeout: float = 30) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, target, *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def blocked_json(target: str) -> tuple[dict[str, Any], float, str]:
    """Run ``--json`` until the hub is blocked (the RPC needs a moment to arrive); returns
    that run's JSON, how long that run took, and its stderr."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        code, out, err, took = console(target, "--json")
        if code == 3:
            return json.loads(out), took, err
        assert code == 0, err
        time.sleep(0.1)
    raise AssertionError("the hub never looked blocked")


def assert_names_the_culprit(answer: dict[str, Any], entrypoint: str) -> None:
    assert answer["state"] == "blocked"
    blocked = answer["blocked"]
    assert blocked["ongoing"] is True and blocked["duration_s"] > 0.2
    culprit = blocked["culprit"]
    assert culprit["kind"] == "worker"
    assert culprit["entrypoint"] == entrypoint
    assert culprit["where"]["function"] == "crunch_numbers"
    assert [f["function"] for f in culprit["stack"]][-2:] == ["crunch", "crunch_numbers"]
    assert culprit["kwargs"]["label"] == "'the-label'"
    assert "hunter2" not in json.dumps(answer)  # a sensitive argument, redacted
    assert entrypoint in answer["error"] and "crunch_numbers" in answer["error"]


def incidents_after(target: str, entrypoint: str) -> list[dict[str, Any]]:
    code, out, err, _took = console(target, "--json")
    assert code == 0, err
    found = [i for i in json.loads(out).get("incidents", [])
             if (i["culprit"] or {}).get("entrypoint") == entrypoint]
    return found


def test_plain_service_after_one_attach_answers_json_and_once_while_blocked(start_service):
    service = _pinged(start_service(PLAIN, env=_env()), "hog")
    code, out, err, _ = console(service.target, "--json")  # the first attach starts it
    assert code == 0, err
    assert json.loads(out)["incidents"] == []
    pending = service.rpc.call_async("hog", "crunch", seconds=6, token="hunter2",
                                     label="the-label")

    answer, took, err = blocked_json(service.target)
    assert took <= 5.0
    assert_names_the_culprit(answer, "hog.crunch")
    assert "hog.crunch" in err and "blocked" in err

    code, out, err, took = console(service.target, "--once")
    assert code == 3 and took <= 5.0
    assert "HUB BLOCKED" in out and "hog.crunch" in out and "crunch_numbers" in out
    assert "hunter2" not in out

    # the service survives, serves again, and the next snapshot records the block
    assert pending.result(30) == 6
    assert service.rpc.call("hog", "ping", timeout=10) == "pong"
    incidents = incidents_after(service.target, "hog.crunch")
    assert len(incidents) == 1
    assert 4.0 <= incidents[0]["duration_s"] <= 7.0
    assert incidents[0]["culprit"]["where"]["function"] == "crunch_numbers"
    assert incidents[0]["ongoing"] is False
    code, out, _err, _ = console(service.target, "--once")
    assert code == 0 and "hub blocks (watchdog): 1" in out and "hog.crunch" in out


def test_chassis_service_never_attached_answers_while_blocked(start_service):
    service = _pinged(start_service(CHASSIS, env=_env()), "chassis_hog")
    pending = service.rpc.call_async("chassis_hog", "crunch", seconds=5, token="hunter2",
                                     label="the-label")
    answer, took, _err = blocked_json(service.target)
    assert took <= 5.0
    assert_names_the_culprit(answer, "chassis_hog.crunch")
    assert pending.result(30) == 5
    assert service.rpc.call("chassis_hog", "ping", timeout=10) == "pong"
    assert len(incidents_after(service.target, "chassis_hog.crunch")) == 1


def test_one_watchdog_per_process_across_attaches_and_probe_versions(start_service,
                                                                     monkeypatch):
    service = _pinged(start_service(PLAIN, env=_env()), "hog")
    probe = ("(id(__import__('sys')._nameko_chassis_watchdog), "
             "len(__import__('sys')._current_frames()))")
    for _ in range(3):
        with BackdoorClient(service.target):
            pass
    first = service.eval(probe)
    # a console of another version ships another probe (another hash): it joins the same one
    sources = backdoor._shipped_sources()
    monkeypatch.setattr(backdoor, "_payload", backdoor._Payload(
        [(name, src + "\n# another version\n") for name, src in sources]))
    with BackdoorClient(service.target) as client:
        assert client.info["watchdog"]["version"] != client.info["version"]
    assert service.eval(probe) == first


def test_without_a_watchdog_a_blocked_hub_is_only_unresponsive(start_service):
    service = _pinged(start_service(PLAIN, env=_env(CHASSIS_WATCHDOG="0")), "hog")
    code, _out, err, _ = console(service.target, "--json")
    assert code == 0, err
    service.rpc.call_async("hog", "crunch", seconds=4)
    time.sleep(0.5)
    code, out, err, _ = console(service.target, "--json", "--timeout", "1.5")
    assert code == 3 and out == "" and "blocked" not in err


@sync
async def test_live_console_shows_the_blocked_hub_and_returns_to_live(start_service):
    from chassis_console.live.app import ChassisConsole

    service = _pinged(start_service(PLAIN, env=_env()), "hog")
    client = BackdoorClient(service.target, timeout=8.0, connect_timeout=2)
    app = ChassisConsole([client], ConsoleOptions(interval=0.2, timeout=8.0))
    async with app.run_test(size=(160, 45)) as pilot:
        status = app.pollers[0].status
        await until(pilot, lambda: status.state == "live", what="live")
        pending = service.rpc.call_async("hog", "crunch", seconds=4, label="the-label")
        await until(pilot, lambda: status.state == "blocked", what="the blocked state")
        text = header(app)
        assert "HUB BLOCKED" in text and "hog.crunch" in text and "crunch_numbers" in text
        assert "workers below as they were just before" in text
        first = status.blocked_for
        await until(pilot, lambda: (status.blocked_for or 0) > (first or 0) + 1,
                    what="the duration to count up")
        await until(pilot, lambda: status.state == "live", timeout=30, what="back to live")
        assert status.blocked is None and "hub was blocked" in (status.note or "")
        await until(pilot, lambda: status.snapshot is not None and status.snapshot.incidents,
                    what="the incident in the snapshot")
        incident = status.snapshot.incidents[-1]
        assert incident.culprit is not None and incident.culprit.entrypoint == "hog.crunch"
        history = app.query_one("#history")
        def rows_text() -> str:  # the history panel is a table: what its rows say
            return " ".join(str(cell) for i in range(history.row_count)
                            for cell in history.get_row_at(i))

        await until(pilot, lambda: history.display and "hub blocked" in rows_text(),
                    what="the block in the history panel")
    assert pending.result(10) == 4
    wait_for(lambda: service.rpc.call("hog", "ping", timeout=5) == "pong", timeout=20)

