"""SIGTERM with dead exporters: an OTLP endpoint and a Sentry DSN that accept connections and
never answer must not hold a stopping service past its orchestrator's patience. docs/chassis.md,
*Shutdown*, states the bound: 5 s from SIGTERM to exit."""

from __future__ import annotations

import signal
import time

import pytest

from nameko_chassis.amqp.rpc import RpcError
from tests.conftest import StartService
from tests.harness import wait_for
from tests.providers.test_chassis_service import clean_env
from tests.services.chassis_sinks import Blackhole

#: Seconds from SIGTERM to exit with every exporter dead (docs/chassis.md, *Shutdown*).
SHUTDOWN_BOUND = 5.0


def test_sigterm_with_dead_exporters_exits_within_the_bound(start_service: StartService) -> None:
    with Blackhole() as sentry_hole, Blackhole() as otlp_hole:
        service = start_service("tests.services.chassis_shop", config={
            "SENTRY": {"DSN": f"http://key@127.0.0.1:{sentry_hole.port}/1"},
            "OTEL": {"EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_hole.port}"},
        }, env=clean_env())
        rpc = service.rpc

        def answers() -> bool:
            try:
                return bool(rpc.call("chassis_front", "hello", timeout=2) == "hello world")
            except Exception:  # an RPC in the first instants can be unroutable: try again
                return False

        wait_for(answers, timeout=30, what="chassis_front to answer")
        # spans queued for export (the batch processor's default 5 s delay: still queued at
        # SIGTERM) and Sentry events in flight, both to endpoints that never answer
        for i in range(20):
            assert rpc.call("chassis_front", "hello") == "hello world"
            with pytest.raises(RpcError):
                rpc.call("chassis_front", "explode", f"user{i}", "pw")
        proc = service.process.proc
        assert proc is not None and proc.poll() is None
        before = len(service.process.log_text())
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        finally:
            took = time.monotonic() - started
        print(f"exit {took:.2f}s after SIGTERM")
        log = service.process.log_text()[before:]  # the workers' Boom tracebacks are older
        assert took < SHUTDOWN_BOUND, f"exit {took:.1f}s after SIGTERM\n{log[-3000:]}"
        assert code == 0, f"exit code {code}\n{log[-3000:]}"
        assert "Traceback" not in log, log[-3000:]
