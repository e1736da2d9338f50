"""debug_runner / debug_container: in-process on a container full of parked workers, and over the
raw backdoor of a real `nameko run` subprocess."""

from __future__ import annotations

import io

import eventlet
import nameko
import pytest
from eventlet.event import Event
from nameko.containers import ServiceContainer
from nameko.testing.services import dummy

from nameko_chassis.debug import debug_container, debug_runner, terminal_width, wants_color
from tests.harness import wait_for

PASSWORD = "hunter2-Pa55word-debug"
TOKEN = "tok-debug-0123456789"
DEBUG_RUNNER = "__import__('nameko_chassis.debug', fromlist=['x']).debug_runner(runner{args})"

_gate = Event()


def sit_here(gate: Event) -> None:
    gate.wait()


class Sitting:
    name = "sitting"

    @dummy
    def sit(self, n, note="", password=None):
        sit_here(_gate)

    @dummy
    def stand(self):
        sit_here(_gate)


@pytest.fixture
def sitting():
    """A started container (no broker needed: dummy entrypoints) and a way to park workers in
    it; every worker is released at teardown."""
    global _gate
    _gate = Event()
    with nameko.config.patch({"max_workers": 2000}):
        container = ServiceContainer(Sitting)
    container.start()
    entrypoints = {ep.method_name: ep for ep in container.entrypoints}

    def park(n: int, method: str = "sit", *, context=None, **kwargs):
        for i in range(n):
            args = (i,) if method == "sit" else ()
            container.spawn_worker(entrypoints[method], args, dict(kwargs),
                                   context_data=dict(context or {}))
        eventlet.sleep(0)  # let them reach sit_here
        return container

    yield park
    _gate.send(None)
    container.stop()


def page(container, **kwargs) -> str:
    out = io.StringIO()
    assert debug_container(container, file=out, **kwargs) is None
    return out.getvalue()


def test_debug_container_prints_workers_stacks_and_no_secrets(sitting):
    container = sitting(3, note="[bold red]x", context={"user_id": "alice", "auth_token": TOKEN})
    sitting(1, "stand")
    out = page(container)
    assert "sitting" in out and "4/2000 workers running" in out
    assert "sitting.sit" in out and "sitting.stand" in out
    assert "sit_here" in out
    assert "stack of sitting." in out and "gate.wait()" in out
    assert "[bold red]x" in out
    assert TOKEN not in out
    assert "\x1b[" not in out  # a StringIO is no terminal: plain text


def test_a_thousand_workers_make_one_page(sitting):
    container = sitting(1000, note="x" * 10_000)
    out = page(container)
    lines = out.splitlines()
    assert len(lines) < 80, out
    assert "1000/2000 workers running" in out
    assert "by entrypoint and where" in out
    assert "… and 980 more" in out
    assert len(out) < 20_000


def test_width_colour_and_limits(sitting):
    container = sitting(30)
    narrow = page(container, width=70, max_workers_listed=5, stacks_for_oldest=0)
    assert max(len(line) for line in narrow.splitlines()) <= 70
    assert "… and 25 more" in narrow and "stack of" not in narrow
    coloured = page(container, color=True)
    assert "\x1b[" in coloured
    with pytest.raises(TypeError, match="unknown limit"):
        debug_container(container, file=io.StringIO(), max_wrokers=3)


def test_terminal_detection(monkeypatch):
    class Backdoor(io.StringIO):  # like eventlet's backdoor FileProxy: a tty with no size
        def isatty(self):
            return True

    assert terminal_width(Backdoor()) == 120
    assert terminal_width(io.StringIO()) == 120
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert wants_color(Backdoor()) is True
    assert wants_color(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert wants_color(Backdoor()) is False


def test_debug_runner_finds_runner_in_the_callers_namespace(sitting):
    container = sitting(2)

    class Runner:  # what the collector looks for in a namespace: a `runner` with a service_map
        service_map = {"sitting": container}

    Runner.__name__ = "ServiceRunner"
    runner = Runner()
    out = io.StringIO()
    exec("debug_runner(file=out)", {"debug_runner": debug_runner, "runner": runner, "out": out})
    assert "sitting.sit" in out.getvalue()
    out2 = io.StringIO()
    debug_runner(runner, file=out2)
    assert "sitting.sit" in out2.getvalue()


def test_debug_runner_over_a_raw_backdoor(start_service):
    service = start_service()
    service.hold(3, tag="dbg", context={"user_id": "alice", "auth_token": TOKEN},
                 payload="[/tmp]")
    service.hold(1, method="login", username="bob", password=PASSWORD)
    try:
        before = service.eval("sorted(globals())")
        with service.backdoor() as conn:
            out = conn.command(DEBUG_RUNNER.format(args=""), timeout=20)
            plain = conn.command(DEBUG_RUNNER.format(args=", color=False"), timeout=20)
        after = service.eval("sorted(globals())")
    finally:
        service.release("dbg")
        service.release("login")
    for text in (out, plain):
        assert "parking.park" in text and "parking.login" in text
        assert "wait_here" in text
        assert "[/tmp]" in text
        assert "'bob'" in text
        assert PASSWORD not in text and TOKEN not in text
        assert "None" not in text.splitlines()[-1]  # returns None: nothing echoed after the page
    assert "\x1b[" in out  # the backdoor connection says it is a tty: colour by default
    assert "\x1b[" not in plain
    assert before == after  # the expression leaves no name behind
    wait_for(lambda: service.running_workers("parking") == 0, what="workers to finish")
    assert service.rpc.call("parking", "ping") == "pong"
