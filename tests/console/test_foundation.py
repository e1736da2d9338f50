"""The harness itself: real broker, real `nameko run` subprocess, raw backdoor protocol."""

from __future__ import annotations

import subprocess

from tests.harness import wait_for


def test_service_subprocess_answers_on_its_backdoor(start_service):
    service = start_service()
    conn = service.backdoor()
    try:
        assert "InteractiveConsole" in conn.banner
        assert conn.command("sorted(runner.service_map)").strip() == "['parking']"
        # one line per request, output then prompt: a second request on the same connection works
        assert conn.command("1 + 1").strip() == "2"
    finally:
        conn.close()


def test_workers_held_in_flight_with_context_data(start_service):
    service = start_service()
    service.hold(3, tag="t1", context={"user_id": "alice"})
    assert service.running_workers("parking") == 3
    seen = service.eval(
        "sorted(w.data.get('user_id') for w in runner.service_map['parking']._worker_threads)"
    )
    assert seen == "['alice', 'alice', 'alice']"
    assert service.release("t1") == 3
    wait_for(lambda: service.running_workers("parking") == 0, what="workers to finish")
    assert service.rpc.call("parking", "ping") == "pong"


def test_stop_leaves_no_process_behind(start_service):
    service = start_service()
    pid = service.process.pid
    service.close()
    assert not service.process.running
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pid)], capture_output=True, text=True)
    assert out.stdout.strip() == ""
