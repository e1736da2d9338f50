"""A 3.2.0 client against services written for 3.2.0, run by ``nameko run`` on this version:
nameko's own RPC client (what 3.2.0 callers use), Sentry through the real sentry-sdk transport
into a local sink, ``/metrics`` on nameko's web server parsed with prometheus_client's parser."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from chassis_console.launch import free_port
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ClusterRpcClient
from prometheus_client.parser import text_string_to_metric_families

from nameko_chassis.health import is_service_responsive
from tests.harness import IsolatedVhost, wait_for
from tests.services.chassis_sinks import SentrySink

MODULE = "tests.compat.services_v320"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_")) and k != "APP_VERSION"}
    env.update(extra)
    return env


def get(port: int, path: str, accept: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def sentry() -> Iterator[SentrySink]:
    with SentrySink() as sink:
        yield sink


@pytest.fixture
def client(vhost: IsolatedVhost) -> Iterator[Any]:
    with ClusterRpcClient(uri=str(vhost.uri), timeout=20) as rpc:
        yield rpc


def test_a_320_client_gets_what_it_got_from_320(start_service: Any, sentry: SentrySink,
                                                client: Any) -> None:
    web_port = free_port()
    service = start_service(MODULE, config={"WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}"},
                            env=clean_env(SENTRY_DSN=sentry.dsn))
    service.wait_answering("compat_greeter", "compat_web")  # both consume before we ask
    greeter = client["compat_greeter"]
    assert is_service_responsive(greeter, fail_gracefully=True, timeout=2)
    assert greeter.say_hello() == "Hello from compat_greeter!"
    assert client["compat_web"].say_hello() == "Hello from compat_web!"
    assert greeter.container_name() == "compat_greeter"

    parked = greeter.park.call_async("a note", password="pw-never-leaves")
    state = wait_for(lambda: (s := greeter.query_state())["running_workers"] >= 2 and s,
                     timeout=10, what="the parked worker in query_state")
    greeter.release()
    assert parked.result() == "a note"
    assert set(state) == {"version", "service_name", "uptime", "entrypoints", "dependencies",
                          "running_workers", "max_workers", "worker_states"}
    park = next(w for w in state["worker_states"] if w["method_name"] == "park")
    assert park["class_name"] == "Greeter" and "pw-never-leaves" not in str(state)
    assert any("in park" in line for line in park["stacktrace"])

    answer = greeter.set_log_level("compat.wire", logging.DEBUG)
    assert isinstance(answer, str) and "Log level changed on host" in answer
    assert "n.rpc.compat_greeter.set_log_level('compat.wire', 0)" in answer
    assert service.eval("__import__('logging').getLogger('compat.wire').level") == "10"
    with pytest.raises(RemoteError) as unknown:
        greeter.set_log_level("compat.wire", "foo")
    assert unknown.value.exc_type == "ValueError"

    assert greeter.oops() == "reported"  # self.sentry.captureException()
    with pytest.raises(RemoteError):
        greeter.fail()
    wait_for(lambda: sentry.events_for("Declined") and sentry.events_for("RuntimeError"),
             timeout=15, what="both Sentry events")
    # the unknown level is an expected error: never reported; the failure is reported once
    # although setup_sentry_sdk() set the SDK up (the chassis ignores nameko's own log line)
    assert sentry.events_for("ValueError") == []
    assert len(sentry.events_for("RuntimeError")) == 1

    # /metrics on nameko's web server (compat_web has HTTP routes, so it has one), also when
    # a browser asks for HTML; the chassis families are recorded without any chassis config
    assert get(web_port, "/items/1") == (200, "item 1")
    status, text = get(web_port, "/metrics", accept="text/html")
    assert status == 200
    found = samples(text)
    assert found[("nameko_worker_calls_total", frozenset({
        "service": "compat_web", "entrypoint": "item", "entrypoint_type": "http",
        "outcome": "success"}.items()))] == 1


def test_legacy_families_when_switched_on(start_service: Any, client: Any) -> None:
    web_port, greeter_port = free_port(), free_port()
    start_service(f"{MODULE}:Web", env=clean_env(), config={
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
        "CHASSIS": {"LEGACY_METRICS": True},
        "PROMETHEUS": {"compat_web": {"prefix": "shop"}},
    })
    # an RPC-only service: with the switch on, 3.2.0's port answers /metrics again
    start_service(f"{MODULE}:Greeter", env=clean_env(CHASSIS_LEGACY_METRICS="true"),
                  config={"WEB_SERVER_ADDRESS": f"127.0.0.1:{greeter_port}"})
    wait_for(lambda: get(web_port, "/items/1")[0] == 200, timeout=30, what="compat_web")
    assert get(web_port, "/items/2")[0] == 404
    assert get(web_port, "/declined")[0] == 400
    wait_for(lambda: is_service_responsive(client["compat_greeter"], fail_gracefully=True,
                                           timeout=2), timeout=30, what="compat_greeter")

    web = samples(get(web_port, "/metrics")[1])
    route = {"http_method": "GET", "endpoint": "/items/<int:item_id>"}
    assert web[("shop_http_requests_total", frozenset({**route, "status_code": "200"}.items()))] == 1
    assert web[("shop_http_requests_total", frozenset({**route, "status_code": "404"}.items()))] == 1
    assert web[("shop_http_requests_total", frozenset({
        "http_method": "GET", "endpoint": "/declined", "status_code": "400"}.items()))] == 1
    assert web[("shop_http_request_latency_seconds_count",
                frozenset({**route, "status_code": "404"}.items()))] == 1
    assert web[("shop_service_max_workers", frozenset())] == 10
    assert web[("shop_service_running_workers", frozenset())] >= 0
    assert any(name == "shop_service_info" for name, _ in web)
    # ours are there too, side by side
    assert any(name == "nameko_worker_calls_total" for name, _ in web)

    status, text = get(greeter_port, "/metrics")
    assert status == 200
    greeter = samples(text)
    assert greeter[("compat_greeter_rpc_requests_total",
                    frozenset({"method_name": "say_hello"}.items()))] >= 1
    assert greeter[("compat_greeter_rpc_request_latency_seconds_count",
                    frozenset({"method_name": "say_hello"}.items()))] >= 1
    assert greeter[("compat_greeter_service_uptime_seconds", frozenset())] > 0
