"""What the agent does on the hub, against real services: the oldest workers listed out of
10,000 without sorting them all, the whole hold reported, per-session history deltas, and work
done once per process (the socket tuned without a file-descriptor walk, one gc search on a
backdoor without nameko, which is left clean)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from chassis_console.errors import ConsoleError, NoRunnerError
from chassis_console.targets.backdoor import NAMESPACE_NAME, BackdoorClient, _get_payload

from nameko_chassis.probe import privates, wire
from nameko_chassis.view.model import Snapshot
from tests.harness import wait_for

MANY = 10_000


def _hold_many(service, n: int, tag: str) -> None:
    for _ in range(n):
        service.rpc.call_async("parking", "park", tag=tag)


def _running(service) -> int:
    """Workers running, on a connection of its own; 0 while the service is too busy to say
    (taking in thousands of calls blocks its hub for seconds at a time)."""
    try:
        with BackdoorClient(service.target, timeout=30) as client:
            return client.snapshot(max_workers=10).containers[0].workers_running
    except ConsoleError:
        return 0


def _started_ats(client: BackdoorClient) -> dict[str, float]:
    data = client.collect(stacks="none", max_workers=MANY + 1000)
    return {w["call_id"]: w["started_at"] for w in data["containers"][0]["workers"]}


@pytest.mark.timeout(900)  # 10,000 calls to take in and finish on 2 shared cores
def test_refresh_at_10000_workers_lists_the_oldest_and_counts_the_rest(start_service):
    service = start_service("tests.services.chassis_parking",
                            config={"max_workers": MANY + 600, "PREFETCH_COUNT": MANY + 600})
    service.wait_answering("parking")
    _hold_many(service, MANY, "old")
    wait_for(lambda: _running(service) == MANY, timeout=300, interval=1.0,
             what=f"{MANY} workers in flight")
    with BackdoorClient(service.target, timeout=60) as client:
        everyone = _started_ats(client)
        assert len(everyone) == MANY and None not in everyone.values()
        oldest = sorted(everyone, key=lambda c: (everyone[c], c))[:1000]
        cutoff = everyone[oldest[-1]]
        snap = client.snapshot(max_workers=1000)
        (container,) = snap.containers
        assert container.workers_running == MANY
        listed = [w.call_id for w in container.workers]
        assert len(listed) == 1000 and len(set(listed)) == 1000
        # the oldest 1000 by start time (workers started in the same instant may trade places)
        assert all(everyone[c] <= cutoff for c in listed)
        assert {c for c in listed if everyone[c] < cutoff} == \
            {c for c in oldest if everyone[c] < cutoff}
        # 500 younger ones arrive: counted, not listed; the listing is unchanged
        _hold_many(service, 500, "young")
        wait_for(lambda: _running(service) == MANY + 500, timeout=120, interval=0.5,
                 what="500 more workers")
        again = client.snapshot(max_workers=1000)
        assert {w.call_id for w in again.containers[0].workers} == set(listed)
        # the 10,000 finish: the listing moves on to the young ones, oldest first
        service.release("old")
        wait_for(lambda: _running(service) == 500, timeout=180, interval=0.5,
                 what="the 10,000 to finish")
        young = _started_ats(client)
        after = client.snapshot(max_workers=300)
        listed_young = [w.call_id for w in after.containers[0].workers]
        assert len(listed_young) == 300 and set(listed_young) <= set(young)
        assert max(young[c] for c in listed_young) <= \
            sorted(young.values())[299]
    service.release("young")


def _raw_collect(client: BackdoorClient, **kwargs) -> dict:
    """One ``collect`` request, its payload as the agent sent it (no merging)."""
    return client.request("collect", **kwargs)


def test_finished_workers_are_a_delta_per_session(start_service):
    service = start_service("tests.services.chassis_parking").wait_answering("parking")
    for i in range(3):
        assert service.rpc.call("parking", "park", seconds=0.01, tag=f"h{i}") == f"h{i}"
    with BackdoorClient(service.target) as client:
        first = client.snapshot()
        n0 = len(first.containers[0].history)  # the three, and the ping that waited for it
        assert [h.entrypoint for h in first.containers[0].history].count("parking.park") == 3
        second = client.snapshot()
        assert second.containers[0].history == first.containers[0].history
        for i in range(2):
            service.rpc.call("parking", "park", seconds=0.01, tag=f"n{i}")
        # the reply leaves before the bookkeeping has the worker in its history
        with BackdoorClient(service.target) as fresh:
            wait_for(lambda: len(fresh.collect(stacks="none")["containers"][0]["history"])
                     == n0 + 2, what="the two in the history")
        third = client.snapshot()
        # the delta merged: the same list a fresh connection gets in full
        with BackdoorClient(service.target) as fresh:
            full = fresh.snapshot()
        assert [h.call_id for h in third.containers[0].history] == \
            [h.call_id for h in full.containers[0].history]
        assert len(full.containers[0].history) == n0 + 2
        # on the wire: only what the session has not seen
        session = "delta-test"
        whole = _raw_collect(client, session=session, stacks="none")
        assert len(whole["containers"][0]["history"]) == n0 + 2
        assert "history_kept" not in whole["containers"][0]
        service.rpc.call("parking", "park", seconds=0.01, tag="last")
        wait_for(lambda: len(client.collect(stacks="none")["containers"][0]["history"])
                 == n0 + 3, what="the last in the history")
        delta = _raw_collect(client, session=session, stacks="none")
        assert delta["containers"][0]["history_kept"] == n0 + 2
        (new,) = delta["containers"][0]["history"]
        assert new["call_id"] not in {h["call_id"] for h in whole["containers"][0]["history"]}
        assert new["entrypoint"] == "parking.park"
        # --json (no session) always has all of it
        plain = client.collect(stacks="none")
        assert len(plain["containers"][0]["history"]) == n0 + 3


def test_the_reported_stall_covers_compiling_the_request_line(start_service):
    service = start_service()
    with BackdoorClient(service.target) as client:
        client.request("hello")
        plain = client.last_stall_ms
        # a request line that is slow to compile (a 300,000-item literal) before the agent runs
        heavy = "[" + "0," * 300_000 + "] and None or " + \
            f"{NAMESPACE_NAME}.handle(globals(), 'hello')"
        t0 = time.perf_counter()
        compile(heavy, "<heavy>", "eval")
        compile_ms = (time.perf_counter() - t0) * 1000
        reply = client._request_raw(heavy)
        assert reply["services"] == ["parking"]
        heavy_stall = client.last_stall_ms
    assert plain is not None and heavy_stall is not None
    # the agent's own work is the same; the difference is the line's read and compile
    assert heavy_stall > plain + compile_ms * 0.3, (plain, heavy_stall, compile_ms)


def test_the_stall_trailer_is_read_and_the_header_figure_is_kept_without_one():
    body = json.dumps({"a": 1})
    framed = wire.encode_frame("j", body, 1.5) + wire.stall_trailer(2.25) + ">>> "
    assert wire.decode_frame(framed.encode(), 0) == ("j", {"a": 1}, 2.25)
    bare = wire.encode_frame("j", body, 1.5) + ">>> "
    assert wire.decode_frame(bare.encode(), 0) == ("j", {"a": 1}, 1.5)
    with pytest.raises(wire.WireError):
        wire.decode_frame((wire.encode_frame("j", body, 1.5) + wire.STALL_MARK + "x\n").encode(),
                          0)


def test_took_ms_is_the_whole_hold(start_service):
    service = start_service()
    service.hold(2, tag="s")
    with BackdoorClient(service.target) as client:
        snap = client.snapshot()
        assert snap.took_ms == round(client.last_stall_ms, 3)
        data = client.collect()
        assert data["took_ms"] == round(client.last_stall_ms, 3)
    service.release("s")


def test_the_socket_is_tuned_with_one_descriptor_walk_per_process(start_service):
    service = start_service()
    state = f"{NAMESPACE_NAME}.modules['agent']._state"
    for attempt in range(3):
        with BackdoorClient(service.target) as client:
            assert client.info["nodelay"] is True
            client.snapshot()  # a second request: the hub has named the connection's socket
            out = client.conn.command(
                "import socket as _s; print(_s.socket(fileno=__import__('os').dup("
                f"__import__('greenlet').getcurrent().{privates.SWITCHED_FD_ATTR})).getsockopt("
                "_s.IPPROTO_TCP, _s.TCP_NODELAY))")
            # accepted after the first attach tuned the listener: inherited, no walk
            assert out.strip() not in ("", "0"), f"attempt {attempt}: {out!r}"
            walks = client.conn.command(f"print({state}.get('fd_walks'))").strip()
            assert walks == "1", f"attempt {attempt}: {walks!r}"
            client.conn.command("del _s")


def test_a_backdoor_without_nameko_is_searched_once_and_left_clean(start_service):
    service = start_service(argv=[sys.executable, "-m", "tests.services.plain_backdoor", "{port}"],
                            ready="prompt")
    version = _get_payload().version
    searched = (f"id(__import__('sys').modules['nameko_chassis_probe_{version}']"
                ".agent._state['searched'])")
    for attempt in range(3):
        with pytest.raises(NoRunnerError):
            BackdoorClient(service.target).connect()
        conn = service.backdoor()
        try:
            names = conn.command("print(sorted(k for k in globals() if 'chassis' in k))")
            assert names.strip() == "[]", f"attempt {attempt}: {names!r}"
            # no watchdog thread was started for it
            assert conn.command("print(hasattr(__import__('sys'), "
                                "'_nameko_chassis_watchdog'))").strip() == "False"
            search = conn.command(f"print({searched})").strip()
        finally:
            conn.close()
        if attempt == 0:
            first_search = search
        assert search == first_search  # the gc search ran once, on the first attach


def _essentials(workers) -> list[tuple]:
    """What a listed worker is, but its age (which moves on between two requests) and stack."""
    return [(w.call_id, w.entrypoint, tuple(w.args), tuple(sorted(w.kwargs.items())),
             tuple(sorted(w.context_data.items())), w.started_at, w.first_seen,
             None if w.where is None else (w.where.file, w.where.line, w.where.function))
            for w in workers]


def test_delta_refreshes_merge_to_a_full_dump_whatever_comes_and_goes(start_service):
    service = start_service()
    parked = {"park": 0, "walk": 0}

    def settle() -> None:  # every worker parked again where it waits, and no other running
        wait_for(lambda: service.rpc.call("parking", "parked", tag="walk") == parked["walk"]
                 and service.rpc.call("parking", "parked", tag="a") == parked["park"],
                 what="workers parked")
        wait_for(lambda: service.running_workers("parking") == sum(parked.values()),
                 what="only the parked workers running")

    with BackdoorClient(service.target) as a, BackdoorClient(service.target) as b, \
            BackdoorClient(service.target) as full:

        def same(step: str, client: BackdoorClient, **kwargs) -> Any:
            settle()
            merged = client.snapshot(**kwargs).containers[0]
            limit = kwargs.get("max_workers", 1000)
            dump = Snapshot.from_dict(full.collect(stacks="none", max_workers=limit)).containers[0]
            assert _essentials(merged.workers) == _essentials(dump.workers), step
            assert [w.age_s for w in merged.workers] == sorted(
                (w.age_s for w in merged.workers), reverse=True), step
            return merged

        same("nothing yet", a)
        service.hold(3, tag="a")
        parked["park"] = 3
        same("three came", a)
        same("three came", b)
        service.hold(2, method="walk")
        parked["walk"] = 2
        same("two walkers came", a)
        # nothing changed: the agent sends no worker and an empty "all but" list
        raw = _raw_collect(a, session=a._session, stacks="none")
        assert raw["containers"][0]["workers"] == [] and \
            raw["containers"][0]["unchanged_except"] == []
        a._session = None  # that raw request was not merged: start this connection afresh
        a.close()
        same("a afresh", a)
        for _ in range(3):  # the walkers move on: sent again, the others kept
            service.release("walk")
            same("walkers moved", a)
        # b saw none of that: one refresh with all of it
        walked = same("b after the walks", b)
        assert {w.where.function for w in walked.workers if w.entrypoint == "parking.walk"} \
            == {"wait_there"}
        # a watched worker comes with its stack, the others without, and all merge
        watched = walked.workers[0].call_id
        merged = same("a watches one", a, stacks=frozenset({watched}))
        assert [w.call_id for w in merged.workers if w.stack is not None] == [watched]
        same("a stops watching", a)
        # a smaller listing and back
        assert len(same("a lists two", a, max_workers=2).workers) == 2
        assert len(same("a lists all", a).workers) == 5
        # three leave, one comes, the walkers move: all in one refresh
        service.release("a")
        parked["park"] = 0
        settle()  # hold() counts from the workers running: the three gone first
        service.hold(1, tag="a")
        parked["park"] = 1
        service.release("walk")
        same("leave, come and move", a)
        same("leave, come and move", b)
        service.release("a")
        parked["park"] = 0
        service.rpc.call("parking", "release", tag="walk")
        parked["walk"] = 2
        same("one left", b)
