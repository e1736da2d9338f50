"""The chassis when its backends are down: a Sentry DSN and an OTLP endpoint that never answer
do not slow workers, and readiness follows the broker connection and the containers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from chassis_console.launch import NamekoProcess, free_port

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from nameko_chassis.amqp.rpc import RpcError
from tests.harness import REPO, IsolatedVhost, Service, wait_for
from tests.providers.test_chassis_service import clean_env
from tests.services.chassis_sinks import Blackhole, TcpProxy

#: Seconds: the negotiated AMQP heartbeat of the service under test. kombu drops a silent
#: connection after two of them; readiness must say so sooner, after one (plus its slack).
HEARTBEAT = 4


@dataclass
class Target:
    service: Service
    http_port: int
    proxy: TcpProxy

    def probe(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:  # 404 before the health routes are registered
                return exc.code, {"text": body.decode(errors="replace")}
        except OSError:
            return 0, {}


@pytest.fixture(scope="module")
def target(management: ManagementApi, broker: AmqpUri,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with Blackhole() as sentry_hole, Blackhole() as otlp_hole, \
            TcpProxy((broker.host, broker.port)) as proxy, \
            IsolatedVhost(management, broker) as vh:
        via_proxy = AmqpUri(vh.uri.scheme, "127.0.0.1", proxy.port, vh.uri.username,
                            vh.uri.password, vh.uri.vhost)
        http_port = free_port()
        config = {
            "AMQP_URI": str(via_proxy),
            "HEARTBEAT": HEARTBEAT,
            "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
            "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{http_port}"},
            "SENTRY": {"DSN": f"http://key@127.0.0.1:{sentry_hole.port}/1"},
            "OTEL": {"EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_hole.port}"},
        }
        proc = NamekoProcess(["tests.services.chassis_shop"], config, cwd=REPO,
                             workdir=tmp_path_factory.mktemp("resilience"),
                             env=clean_env(OTEL_BSP_SCHEDULE_DELAY="50"))
        # the test's RPC client goes straight to the broker, never through the proxy
        service = Service(proc, vh.uri)
        proc.start()
        try:
            t = Target(service, http_port, proxy)
            wait_for(lambda: t.probe("/health/ready")[0] == 200, timeout=30, what="readiness")
            yield t
        finally:
            service.close()


def test_dead_sentry_and_otlp_backends_do_not_slow_workers(target: Target) -> None:
    rpc = target.service.rpc
    slowest = 0.0
    for i in range(30):
        started = time.monotonic()
        with pytest.raises(RpcError):
            rpc.call("chassis_front", "explode", f"user{i}", "pw")
        assert rpc.call("chassis_front", "hello") == "hello world"
        slowest = max(slowest, time.monotonic() - started)
    # a blocked transport would hold each call for the SDKs' timeouts (seconds)
    assert slowest < 1.0, f"a call took {slowest:.2f}s with dead backends"


def test_liveness(target: Target) -> None:
    status, body = target.probe("/health/live")
    assert status == 200 and body["status"] == "live"


def test_readiness_follows_the_broker_connection(target: Target) -> None:
    status, body = target.probe("/health/ready")
    # the standalone service has no Health provider: it is not part of readiness
    assert status == 200 and set(body["services"]) == {
        "chassis_front", "chassis_back", "chassis_parking", "chassis_quiet"}
    target.proxy.cut()
    try:
        def all_failing() -> dict | None:
            status, body = target.probe("/health/ready")
            services = body.get("services", {})
            return body if status == 503 and services and not any(
                s["ready"] for s in services.values()) else None

        body = wait_for(all_failing, timeout=30, what="not ready without the broker")
        assert "broker connection failing" in body["reason"]
        assert any("broker connection failing" in p
                   for p in body["services"]["chassis_front"]["problems"])
        assert target.probe("/health/live")[0] == 200
    finally:
        target.proxy.restore()
    wait_for(lambda: target.probe("/health/ready")[0] == 200, timeout=60,
             what="ready again once the broker is back")


def test_readiness_fails_when_the_broker_goes_silent_and_recovers(target: Target) -> None:
    """A blackhole: the broker's connections stay open, nothing comes back. Readiness goes 503
    within the documented bound (HEARTBEAT + 1.5 s: the slack, and kombu's once-a-second stamp
    of the last frame), before kombu itself gives up on the connection (2 x HEARTBEAT)."""
    wait_for(lambda: target.probe("/health/ready")[0] == 200, timeout=60, what="ready")
    target.proxy.blackhole()
    started = time.monotonic()
    try:
        def failing() -> dict | None:
            status, body = target.probe("/health/ready")
            return body if status == 503 else None

        body = wait_for(failing, timeout=3 * HEARTBEAT, interval=0.1,
                        what="not ready with a silent broker")
        took = time.monotonic() - started
        bound = HEARTBEAT + 1.5
        print(f"503 {took:.1f}s after the silence began: {body['reason']}")
        assert took <= bound + 0.5, f"503 after {took:.1f}s, documented bound {bound:g}s"
        assert "broker silent for" in body["reason"], body["reason"]
        assert target.probe("/health/live")[0] == 200
    finally:
        target.proxy.unblackhole()
    wait_for(lambda: target.probe("/health/ready")[0] == 200, timeout=60,
             what="ready again once the broker answers")
    assert target.service.rpc.call("chassis_front", "hello") == "hello world"


def test_readiness_reports_a_stopped_container(target: Target) -> None:
    target.service.eval("__import__('eventlet').spawn(runner.service_map['chassis_quiet'].stop)")

    def quiet_stopped() -> dict | None:
        status, body = target.probe("/health/ready")
        quiet = body.get("services", {}).get("chassis_quiet", {})
        # while stopping, its consumers report "consumer stopped" first
        return body if status == 503 and quiet.get("problems") == ["container stopped"] else None

    body = wait_for(quiet_stopped, timeout=30, what="not ready with a stopped container")
    assert body["services"]["chassis_quiet"] == {"ready": False, "problems": ["container stopped"]}
    assert body["services"]["chassis_front"]["ready"] is True
    assert "chassis_quiet: container stopped" in body["reason"]
