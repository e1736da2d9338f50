"""A refresh that finds many new workers hands the hub back between slices of its work, against
a real ``nameko run`` with a backdoor: the service's greenthreads run meanwhile, two consoles
asking at once each get their own complete, redacted reply on their own socket, and the
figures say the longest hold and the sum."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from chassis_console.errors import ConsoleError
from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.view.model import Snapshot
from tests.harness import wait_for

NEW = 2000
SECRET = "hunter2-slices"
TOKEN = "tok-slices-9f8e"
USER = "alice-in-wonderland"

# A greenthread in the service beating every 0.5 ms, counting the beats that ran while a
# console's request was in progress (the agent keeps its running requests in ``_requests``):
# before slices, none could (a request held the hub in one piece). ``both``: beats while two
# consoles' requests were in progress at once (one ran in the other's pause).
BEAT = """
import eventlet
_beat = {"during": 0, "both": 0, "all": 0, "stop": False}
def _beating(agent=__chassis__):
    while not _beat["stop"]:
        _beat["all"] += 1
        if agent._requests:
            _beat["during"] += 1
        if len(agent._requests) > 1:
            _beat["both"] += 1
        eventlet.sleep(0.0005)
eventlet.spawn_n(_beating)
"""


def _running(service) -> int:
    """Workers running, on a connection of its own listing one (so the refresh under test
    still finds the others new); 0 while the service is too busy to say (taking in
    thousands of calls blocks its hub for seconds: the hub watchdog answers instead)."""
    try:
        with BackdoorClient(service.target, timeout=30) as client:
            return client.snapshot(max_workers=1).containers[0].workers_running
    except ConsoleError:
        return 0


def _ask(ask: Any, out: dict[str, Any], key: str, start: threading.Barrier) -> None:
    try:
        start.wait(timeout=30)
        out[key] = ask()
    except BaseException as exc:  # reported by the test
        out[key] = exc


@pytest.mark.timeout(300)
def test_a_refresh_of_many_new_workers_hands_the_hub_back_between_slices(start_service):
    service = start_service("tests.services.parking",
                            config={"max_workers": NEW + 200, "PREFETCH_COUNT": NEW + 200})
    service.wait_answering("parking")
    with BackdoorClient(service.target, timeout=60) as a, \
            BackdoorClient(service.target, timeout=60) as b:
        assert a.snapshot(max_workers=NEW + 100).containers[0].workers_running == 0
        b.snapshot(max_workers=NEW + 100)
        service.eval(f"exec({BEAT!r}, globals())")
        service.hold(NEW, method="login", username=USER, password=SECRET,
                     context={"auth_token": TOKEN, "user_id": "u-alice"}, wait=False)
        wait_for(lambda: _running(service) == NEW, timeout=120, interval=0.5,
                 what=f"{NEW} workers in flight")
        service.eval("_beat.update(during=0, both=0)")  # counted from here
        # both consoles ask at once, for different listings: each reply must reach its own
        got: dict[str, Any] = {}
        barrier = threading.Barrier(2)
        # b: a full dump with reprs cut at 12 characters (other limits: every worker is new
        # to it as well, so both requests work in slices at once; and its reply tells itself
        # apart from a's)
        threads = [threading.Thread(target=_ask, args=(
                       lambda: a.snapshot(max_workers=NEW + 100), got, "a", barrier)),
                   threading.Thread(target=_ask, args=(
                       lambda: b.collect(stacks="none", max_workers=NEW + 100, repr_limit=12),
                       got, "b", barrier))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert isinstance(got.get("a"), Snapshot), got.get("a")
        assert isinstance(got.get("b"), dict), got.get("b")
        during = int(service.eval("_beat['during']"))
        both = int(service.eval("_beat['both']"))
        beats = int(service.eval("_beat['all']"))
        service.eval("_beat.__setitem__('stop', True)")
        snap_a, dump_b = got["a"], got["b"]
        # the service's own greenthread ran between the slices of the requests
        assert during > 0, (during, beats)
        # and the two requests were in progress at once: the hub switched between the two
        # backdoor greenlets mid-request (eventlet's SocketConsole.switch points sys.stdout at
        # the resumed one's socket), and each reply still reached its own console (below)
        assert both > 0, (both, during)
        assert snap_a.slices is not None
        holds, longest, total = snap_a.slices
        assert holds >= 1 and 0 < longest <= total < snap_a.took_ms
        assert snap_a.longest_hold_ms < snap_a.took_ms  # the longest hold is one of several
        (ca,) = snap_a.containers
        assert ca.workers_running == NEW
        ids_a = [w.call_id for w in ca.workers]
        assert len(ids_a) == NEW and len(set(ids_a)) == NEW  # every worker once
        for worker in ca.workers:
            assert worker.entrypoint == "parking.login"
            assert worker.kwargs.get("username") == f"{USER!r}"  # a's reprs: in full
            assert worker.kwargs.get("password")  # redacted, not dropped
            assert SECRET not in worker.kwargs["password"]
            assert TOKEN not in str(worker.context_data.get("auth_token"))
            assert worker.context_data.get("user_id") == "u-alice"
            assert worker.where is not None and worker.where.function == "wait_here"
        (cb,) = dump_b["containers"]
        assert cb["workers_running"] == NEW
        assert sorted(w["call_id"] for w in cb["workers"]) == sorted(ids_a)
        for worker in cb["workers"]:  # b's own reply: its reprs cut at 12 characters
            assert worker["kwargs"]["username"] != f"{USER!r}"
            assert len(worker["kwargs"]["username"]) <= 16
            assert SECRET not in repr(worker) and TOKEN not in repr(worker)
        # the full dump (every worker in full, as --json asks) holds no secret either
        dump = a.collect(stacks="none", max_workers=NEW + 100)
        assert len(dump["containers"][0]["workers"]) == NEW
        assert SECRET not in repr(dump) and TOKEN not in repr(dump)
        # nothing new since: one piece, no slices
        again = a.snapshot(max_workers=NEW + 100)
        assert again.slices is None
        assert [w.call_id for w in again.containers[0].workers] == ids_a
        assert again.longest_hold_ms == again.took_ms
    service.release("login")


# In the service: the backdoor's greenlet may hand the hub back; a real OS thread (as the hub
# watchdog's, which answers while the hub is blocked) may not: it has no hub of its own.
ON_A_THREAD = ("(lambda t, r: (t.Thread(target=lambda: r.append("
               "__chassis__.privates.hub_pause() is None)).start(), "
               "__import__('time').sleep(0.3), r)[2])"
               "(__import__('eventlet.patcher').patcher.original('threading'), [])")


def test_only_a_greenlet_on_the_hub_hands_it_back(start_service):
    service = start_service("tests.services.parking")
    service.wait_answering("parking")
    with BackdoorClient(service.target, timeout=30) as client:
        client.snapshot()  # the agent is in the backdoor's namespace
        assert service.eval("__chassis__.privates.hub_pause() is not None") == "True"
        assert service.eval(ON_A_THREAD) == "[True]"
        # inside a bounded repr, the collect op does not slice
        assert service.eval("__chassis__.redaction.in_bounded()") == "False"
        assert service.eval("__chassis__.redaction.bounded("
                            "lambda v: repr(__chassis__.redaction.in_bounded()), 0)") == "'True'"
