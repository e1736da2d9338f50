"""A kill from the console ends the work the way an operator means it, as the other side sees
it: the caller (itself a nameko worker) gets an error reply naming the kill, the broker holds
no unacknowledged or redelivered message, the history and metrics count a kill, and the service
still stops cleanly afterwards."""

from __future__ import annotations

import time

from chassis_console.targets.backdoor import BackdoorClient

from tests.harness import wait_for


def test_a_killed_rpc_worker_answers_its_caller_and_leaves_nothing_behind(start_service,
                                                                          management):
    lot = start_service(["tests.services.chassis_shop", "tests.services.kill_caller"])

    lot.wait_answering("kill_caller", "chassis_parking")
    pending = lot.rpc.call_async("kill_caller", "wait_for_lot", tag="victim")
    with BackdoorClient(lot.target) as client:
        def parked():
            snap = client.snapshot()
            return next((w for c in snap.containers if c.service_name == "chassis_parking"
                         for w in c.workers), None)

        victim = wait_for(parked, timeout=30, what="the parked worker")
        assert victim.call_id_stack[0].startswith("kill_caller.wait_for_lot.")
        assert client.kill_worker(victim.call_id)
        # the caller, a nameko worker itself, gets an error reply naming the kill
        answer = pending.result(timeout=30)
        assert answer.startswith("RemoteError WorkerKilled:") and victim.call_id in answer
        # the bookkeeping counts a kill
        def finished():
            snap = client.snapshot()
            lot_history = next(c.history for c in snap.containers
                               if c.service_name == "chassis_parking")
            return next((h for h in lot_history or () if h.call_id == victim.call_id), None)

        entry = wait_for(finished, timeout=30, what="the kill in the history")
        assert entry.outcome == "killed" and entry.exc_type == "WorkerKilled"
        assert client.snapshot().find_worker(victim.call_id) is None
    # the broker: the message was acknowledged, nothing waits to be redelivered
    def queue_settled():
        q = management.request("GET", f"/api/queues/{management._q(lot.amqp_uri.vhost)}/"
                                      "rpc-chassis_parking")
        return q if q.get("messages_unacknowledged") == 0 and q.get("messages_ready") == 0 \
            else None

    wait_for(queue_settled, timeout=30, interval=0.5, what="no unacked or ready message")
    # and the process still stops cleanly
    t0 = time.monotonic()
    lot.process.stop(timeout=20)
    assert lot.process.proc is not None and lot.process.proc.returncode == 0
    assert time.monotonic() - t0 < 15
    log = lot.process.log_text()
    # nameko logs the failed worker once, naming the kill; nothing else went wrong
    assert log.count("Traceback") == 1 and "was killed by an operator" in log
