"""The collector, the agent and the backdoor client against real `nameko run` subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace

import pytest
from chassis_console.errors import (
    NoRunnerError,
    RemoteError,
    UnreachableError,
    UnresponsiveError,
)
from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.view.model import Snapshot
from tests.harness import REPO, wait_for

PASSWORD = "hunter2-pa55word-XYZ"
TOKEN = "tok-9f8e7d6c5b4a-SECRET"


def chassis_console(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chassis_console", *args],
        capture_output=True, text=True, cwd=REPO, timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "NO_COLOR": "1"},
    )


@pytest.fixture
def parked(start_service):
    service = start_service()
    service.hold(3, tag="t", context={"user_id": "alice", "auth_token": TOKEN})
    service.hold(2, method="login", username="bob", password=PASSWORD)
    yield service
    service.release("t")
    service.release("login")


def test_held_workers_appear_with_entrypoints_and_counts(parked):
    with BackdoorClient(parked.target) as client:
        snap = client.snapshot(stacks="none")
        assert client.info["nodelay"] is True  # the service's end of the socket was tuned
    assert snap.schema == 1
    (container,) = snap.containers
    assert container.service_name == "parking"
    assert container.started
    assert container.workers_running == 5
    kinds = {e.method: e.type for e in container.entrypoints}
    assert kinds["park"] == "rpc" and kinds["login"] == "rpc"
    assert Counter(w.entrypoint for w in container.workers) == {"parking.park": 3,
                                                                "parking.login": 2}
    assert {d.attr for d in container.dependencies} == set()
    for worker in container.workers:
        assert worker.stack is None  # not asked for
        assert worker.where is not None and worker.where.function == "wait_here"
        assert worker.call_id.startswith("parking.")
        assert worker.call_id_stack[-1] == worker.call_id
    ages = [w.age_s for w in container.workers]
    assert ages == sorted(ages, reverse=True)  # oldest first


def test_stacks_reach_the_user_function(parked):
    with BackdoorClient(parked.target) as client:
        snap = client.snapshot(stacks="all")
        one = snap.containers[0].workers[0]
        only = client.snapshot(stacks=frozenset({one.call_id}))
    for worker in snap.containers[0].workers:
        assert worker.stack, "full stacks were asked for"
        user = [f for f in worker.stack if not f.library]
        assert [f.function for f in user][-2:] in (["park", "wait_here"], ["login", "wait_here"])
        assert any(f.library and "eventlet" in f.file for f in worker.stack)
        assert worker.stack[-1].library  # innermost: the eventlet hub switch
    by_id = {w.call_id: w for w in only.containers[0].workers}
    assert by_id[one.call_id].stack
    assert all(w.stack is None for cid, w in by_id.items() if cid != one.call_id)


def test_secrets_never_leave_the_service(parked):
    out = chassis_console(parked.target, "--json")
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout and TOKEN not in out.stdout
    data = json.loads(out.stdout)
    workers = data["containers"][0]["workers"]
    login = [w for w in workers if w["entrypoint"] == "parking.login"]
    assert login and all(w["kwargs"]["password"] == "'********'" for w in login)
    assert all(w["kwargs"]["username"] == "'bob'" for w in login)
    park = [w for w in workers if w["entrypoint"] == "parking.park"]
    assert all(w["context_data"]["auth_token"] == "********" for w in park)
    assert all(w["context_data"]["user_id"] == "alice" for w in park)

    once = chassis_console(parked.target, "--once")
    assert once.returncode == 0, once.stderr
    assert "parking.login" in once.stdout
    assert PASSWORD not in once.stdout and TOKEN not in once.stdout


def test_markup_like_and_huge_arguments_are_safe(start_service):
    service = start_service()
    service.hold(1, tag="m", payload="[bold red]boom[/] [/tmp]")
    service.hold(1, tag="m", payload="x" * 2_000_000)
    with BackdoorClient(service.target) as client:
        data = client.collect(stacks="none")
    payloads = [w["kwargs"]["payload"] for w in data["containers"][0]["workers"]]
    assert "'[bold red]boom[/] [/tmp]'" in payloads
    assert all(len(p) <= 200 for p in payloads)
    once = chassis_console(service.target, "--once")
    assert once.returncode == 0, once.stderr
    assert "[bold red]boom[/] [/tmp]" in once.stdout
    assert "x" * 201 not in once.stdout
    service.release("m")


def test_shared_namespace_gets_one_name_whatever_the_connections(start_service):
    service = start_service()
    before = service.eval("sorted(globals())")
    for _ in range(15):
        with BackdoorClient(service.target) as client:
            client.snapshot(stacks="all")
    out = chassis_console(service.target, "--json")
    assert out.returncode == 0
    after = service.eval("sorted(globals())")
    added = set(eval(after)) - set(eval(before))
    assert added == {"__chassis__"}
    assert service.rpc.call("parking", "ping") == "pong"


def test_exceptions_in_requests_come_back_as_error_frames(start_service):
    service = start_service()
    with BackdoorClient(service.target) as client:
        with pytest.raises(RemoteError) as err:
            client.request("collect", stacks="bogus")
        assert err.value.exc_type == "ValueError"
        assert "stacks must be" in str(err.value)
        # an operation that raises SystemExit must not stop the service
        client.conn.command(
            "__chassis__.OPS.__setitem__('boom', lambda ns: (_ for _ in ()).throw(SystemExit(3)))")
        with pytest.raises(RemoteError) as err:
            client.request("boom")
        assert err.value.exc_type == "SystemExit"
        assert "Traceback" in err.value.remote_traceback
        client.conn.command("__chassis__.OPS.pop('boom')")
        assert client.snapshot().containers[0].service_name == "parking"
    assert service.rpc.call("parking", "ping") == "pong"
    assert service.process.running


def test_closed_port_and_malformed_target_give_documented_exit_codes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = chassis_console(f"127.0.0.1:{port}", "--json")
    assert out.returncode == 3
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "connection refused" in out.stderr
    assert "Traceback" not in out.stderr
    out = chassis_console("localhost:notaport", "--json")
    assert out.returncode == 2
    assert "not a port number" in out.stderr and "Traceback" not in out.stderr
    out = chassis_console("localhost:12345", "--json", "--interval", "0")
    assert out.returncode == 2


def test_something_that_is_not_a_backdoor_is_a_protocol_error():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        threading.Event().wait(3)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        out = chassis_console(f"127.0.0.1:{port}", "--json", "--timeout", "1")
    finally:
        server.close()
    assert out.returncode == 4, out.stderr
    assert "not" in out.stderr and "backdoor" in out.stderr and "Traceback" not in out.stderr


def test_plain_eventlet_backdoor_without_a_runner(start_service):
    service = start_service(argv=[sys.executable, "-m", "tests.services.plain_backdoor", "{port}"],
                            ready="prompt")
    with pytest.raises(NoRunnerError):
        BackdoorClient(service.target).connect()
    out = chassis_console(service.target, "--json")
    assert out.returncode == 4
    assert "no nameko service runner" in out.stderr and "Traceback" not in out.stderr


def test_programmatic_runner_not_named_runner_is_found(start_service):
    service = start_service(
        argv=[sys.executable, "-m", "tests.services.programmatic_runner", "{port}", "{config}"],
        ready="prompt")
    wait_for(lambda: _ping(service), timeout=20, what="the programmatic service to answer")
    service.hold(2, tag="p", wait=False)
    out = wait_for(lambda: _running(service.target) == 2 and _running(service.target),
                   what="2 workers seen through the gc search")
    assert out == 2
    service.release("p")


def _ping(service) -> bool:
    try:
        return service.rpc.call("parking", "ping", timeout=2) == "pong"
    except Exception:
        return False


def _running(target: str) -> int:
    with BackdoorClient(target) as client:
        snap = client.snapshot()
    assert [c.service_name for c in snap.containers] == ["parking"]
    return snap.containers[0].workers_running


def test_cpu_bound_worker_makes_the_target_unresponsive_not_a_hang(start_service):
    service = start_service()
    client = BackdoorClient(service.target, timeout=1.0)
    client.connect()
    service.rpc.call_async("parking", "spin", 4)
    deadline = time.monotonic() + 15
    with pytest.raises(UnresponsiveError) as err:
        while time.monotonic() < deadline:  # until the spin has started (a count of
            client.snapshot()               # snapshots ran out first on a loaded machine)
            time.sleep(0.01)
    assert "not answering" in str(err.value)
    client.close()
    # once the worker yields, the service answers again
    wait_for(lambda: _ping(service), timeout=20, what="the service to answer again")


def test_restart_on_the_same_port_bootstraps_again(start_service):
    service = start_service()
    client = BackdoorClient(service.target)
    client.connect()
    pid = client.snapshot().pid
    service.process.stop()
    with pytest.raises(UnreachableError):
        client.snapshot()
    service.process.start()
    client.connect()
    snap = client.snapshot()
    assert snap.pid != pid
    assert isinstance(snap, Snapshot)
    client.close()


def test_refreshes_on_one_connection_send_deltas_that_merge_to_full_workers(start_service):
    service = start_service()
    service.hold(2, tag="a", context={"user_id": "carol"})
    with BackdoorClient(service.target) as client:
        first = client.snapshot(stacks="none")
        size_first = client.last_payload_bytes
        second = client.snapshot(stacks="none")
        size_second = client.last_payload_bytes
        assert size_second < size_first  # the second one only carried call ids and the time
        full = {w.call_id: replace(w, age_s=0.0) for w in first.containers[0].workers}
        again = {w.call_id: replace(w, age_s=0.0) for w in second.containers[0].workers}
        assert again == full and len(full) == 2
        # the unchanged workers are the first snapshot's objects, not parsed again
        for new in second.containers[0].workers:
            old = first.find_worker(new.call_id)[1]
            assert new.args is old.args and new.where is old.where
            assert new.age_s >= old.age_s
        # --json's path sends every worker in full on the same connection
        plain = client.collect(stacks="none")
        assert {w["call_id"] for w in plain["containers"][0]["workers"]} == \
            {w.call_id for w in second.containers[0].workers}
        service.hold(1, tag="b", payload="new")
        service.release("a")
        wait_for(lambda: service.running_workers("parking") == 1, what="two to finish")
        third = client.snapshot(stacks="none")
    (worker,) = third.containers[0].workers
    assert worker.kwargs == {"tag": "'b'", "payload": "'new'"}
    service.release("b")


def _fake_backdoor(snapshot: dict) -> tuple[socket.socket, int]:
    """A server that speaks the backdoor protocol well enough to get past hello, then answers
    ``collect`` with ``snapshot``."""
    from nameko_chassis.probe import wire

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"Python 3.11 fake backdoor\n>>> ")
        buffer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if b"'collect'" in line:
                    reply = wire.encode_frame("j", json.dumps(snapshot), 0.1)
                elif b"nameko_chassis_probe_" in line:  # a bootstrap line: accepted
                    reply = ""
                else:
                    reply = wire.encode_frame("j", json.dumps(
                        {"version": "fake", "services": ["fake"], "pid": 1}), 0.1)
                conn.sendall(reply.encode() + b">>> ")

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_peer_that_sends_an_invalid_snapshot_is_a_protocol_error_not_a_traceback():
    bad = {"schema": 1, "pid": 1, "host": "h", "python": "3", "nameko": "x", "time": 1.0,
           "took_ms": 0.1, "errors": [], "containers": [{"service_name": 42}]}
    server, port = _fake_backdoor(bad)
    try:
        out = chassis_console(f"127.0.0.1:{port}", "--once", "--timeout", "3")
    finally:
        server.close()
    assert out.returncode == 4, out.stderr
    assert "invalid snapshot" in out.stderr and "service_name" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_server_that_hangs_up_without_a_word_is_not_a_backdoor():
    # what RabbitMQ does to a client that never sends its protocol header
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        threading.Event().wait(0.5)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        out = chassis_console(f"127.0.0.1:{server.getsockname()[1]}", "--once", "--timeout", "5")
    finally:
        server.close()
    assert out.returncode == 4, out.stderr
    assert "not a Python backdoor" in out.stderr and "Traceback" not in out.stderr


def test_the_amqp_port_is_recognised_as_not_a_backdoor(broker):
    # RabbitMQ waits for the client's protocol header: silence, then the console's probe line
    out = chassis_console(f"{broker.host}:{broker.port}", "--once", "--timeout", "5")
    assert out.returncode == 4, out.stderr
    assert "not with a Python prompt" in out.stderr and "Traceback" not in out.stderr


def test_once_into_a_pipe_is_a_wide_page_and_width_sets_it(start_service):
    service = start_service()
    service.hold(1, tag="w")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run([sys.executable, "-m", "chassis_console", service.target, "--once"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert piped.returncode == 0, piped.stderr
    assert max(len(line) for line in piped.stdout.splitlines()) == 160  # the rules span it
    narrow = subprocess.run([sys.executable, "-m", "chassis_console", service.target, "--once",
                             "--width", "100"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert max(len(line) for line in narrow.stdout.splitlines()) == 100
    columns = subprocess.run([sys.executable, "-m", "chassis_console", service.target,
                              "--once"], capture_output=True, text=True, timeout=60,
                             env={**env, "COLUMNS": "120"})
    assert max(len(line) for line in columns.stdout.splitlines()) == 120
    service.release("w")


def test_snapshots_carry_process_basics(start_service):
    service = start_service()
    service.hold(2, tag="basics")
    with BackdoorClient(service.target) as client:
        first = client.collect(stacks="none")
        second = client.snapshot()
    process = first["process"]
    assert process["rss_bytes"] > 10 * 1024 * 1024 and process["open_fds"] > 3
    assert 0 < process["uptime_s"] < 600
    assert process["greenthreads"] >= 2  # the parked workers, and the consumers' threads
    basics = second.process
    assert basics is not None and basics.cpu_percent is not None and basics.cpu_percent >= 0
    assert basics.hub_lag_ms is not None and basics.hub_lag_ms >= 0  # the watchdog's heartbeat
    page = chassis_console(service.target, "--once")
    assert "rss " in page.stdout and "greenthreads " in page.stdout and "hub lag" in page.stdout
    service.release("basics")


@pytest.mark.parametrize("context", [
    {}, {"user_id": "u1", "auth_token": "********"}, {"n": 3, "x": 1.5, "nan": float("nan"),
                                                     "inf": float("-inf"), "b": True, "none": None},
    {"unicode": "é\u2028\x00", 'quo"te': "it's \"q\"\n", "<more>": "2 more keys"},
    {"big": 10**30, "neg": -0.0},
])
def test_a_workers_head_is_its_static_fields_as_json(context: dict) -> None:
    """The wire's pre-encoded head, built from its parts, is exactly the JSON encoder's."""
    from nameko_chassis.probe import collect as collect_module

    static = {"call_id": "svc.m.1", "call_id_stack": ["a.b.1", 'é"x'], "entrypoint": "svc.m",
              "entrypoint_type": "rpc", "args": ["60", "'x'", '"q"'],
              "kwargs": {"note": "'order 1'", "é": "None"}, "context_data": context}
    label = ('"entrypoint":' + json.dumps("svc.m") + ',"entrypoint_type":'
             + json.dumps("rpc"))
    assert collect_module._head_json(static, label) == collect_module._dumps(static)[1:-1]
