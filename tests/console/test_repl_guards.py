"""REPL guards against a real ``nameko run`` service: each way of stopping the service by
accident that an attack found — directly, unbound, through a spawn, a timer, a thread or a
signal timer — is refused (or contained in the greenthread it was deferred to), and the service
keeps answering. Completion never runs a property or cached_property getter."""

from __future__ import annotations

import time

import pytest
from chassis_console.targets.backdoor import BackdoorClient

from tests.harness import Service

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def service(shared_parking: Service) -> Service:
    return shared_parking


SETUP = ("import eventlet, eventlet.hubs, os, signal, sys, threading\n"
         "from nameko.runners import ServiceRunner\n"
         "c = runner.service_map['parking']\n")

#: Refused where they are typed: the exec reply says so.
REFUSED_AT_ONCE = [
    "eventlet.hubs.get_hub().abort()",
    "type(runner).stop(runner)",
    "ServiceRunner.kill(runner)",
    "type(c).kill(c)",
    "type(c).stop(c)",
    "signal.alarm(1)",
    "signal.setitimer(signal.ITIMER_REAL, 0.2)",
    "signal.setitimer(signal.ITIMER_PROF, 0.2)",
    "runner.stop()",
    "c.kill()",
    "os._exit(1)",
]
#: Deferred to another greenthread or thread: refused or contained there, later.
DEFERRED = [
    "eventlet.spawn(sys.exit, 3)",
    "eventlet.spawn(os._exit, 1)",
    "eventlet.spawn_n(os._exit, 1)",
    "eventlet.spawn_after(0.3, runner.stop)",
    "eventlet.spawn_after(0.3, ServiceRunner.stop, runner)",
    "eventlet.spawn_after(0.3, type(c).kill, c)",
    "eventlet.GreenPool().spawn(os._exit, 1)",
    "threading.Thread(target=os._exit, args=(1,)).start()",
    "threading.Thread(target=sys.exit).start()",
    "eventlet.spawn(signal.alarm, 1)",
]


def alive(service: Service) -> bool:
    return service.process.running and service.rpc.call("parking", "ping", timeout=5) == "pong"


def test_every_accidental_stop_is_refused_and_the_service_keeps_running(service) -> None:
    with BackdoorClient(service.target) as client:
        def exec_(source: str) -> dict:
            return client.request("exec", source=source)

        assert exec_(SETUP)["error"] is None
        refused = {}
        for attempt in REFUSED_AT_ONCE:
            reply = exec_(attempt)
            refused[attempt] = reply["refused"]
            assert reply["refused"], f"{attempt} was not refused: {reply}"
            assert "would stop the service" in reply["refused"]
        for attempt in DEFERRED:
            reply = exec_(attempt)
            assert reply["error"] is None and reply["refused"] is None, reply
        time.sleep(1.0)  # the timers fire, the threads run
        assert alive(service)
        # the unguarded original is not one attribute away
        assert "AttributeError" in exec_("c.stop.__wrapped__()")["error"]
        assert exec_("signal.alarm(0)")["refused"] is None  # cancelling an alarm is fine
        exec_("del eventlet, os, signal, sys, threading, ServiceRunner, c")
    assert alive(service)
    # no REPL code runs: the guards are gone, what the service calls is the original again
    assert service.eval("print(type(runner).stop.__qualname__, os_exit_name := "
                        "__import__('os')._exit.__qualname__)") == "ServiceRunner.stop _exit"
    log = service.process.log_text()
    assert "was contained" in log and "would stop the service" in log


def test_completion_never_runs_a_getter(service) -> None:
    with BackdoorClient(service.target) as client:
        define = ("import functools\n"
                  "class Probe:\n"
                  "    runs = 0\n"
                  "    value = 1\n"
                  "    @property\n"
                  "    def prop(self):\n"
                  "        Probe.runs += 1\n"
                  "        return self\n"
                  "    @functools.cached_property\n"
                  "    def cached(self):\n"
                  "        Probe.runs += 1\n"
                  "        return self\n"
                  "    def __getattr__(self, name):\n"
                  "        Probe.runs += 1\n"
                  "        return self\n"
                  "probe = Probe()\n")
        assert client.request("exec", source=define)["error"] is None
        for line in ("probe.prop.va", "probe.cached.va", "probe.dynamic.va", "probe.pr",
                     "probe.ca", "probe.prop.prop.", "probe.cached."):
            client.request("complete", line=line)
        assert client.request("complete", line="probe.va")["matches"] == ["probe.value"]
        assert client.request("exec", source="Probe.runs")["output"] == "0\n"
        # a cached_property already computed is a plain value: completion goes through it
        client.request("exec", source="probe.cached; Probe.runs = 0")
        assert "probe.cached.value" in client.request(
            "complete", line="probe.cached.va")["matches"]
        assert client.request("exec", source="Probe.runs")["output"] == "0\n"
        client.request("exec", source="del functools, Probe, probe")
