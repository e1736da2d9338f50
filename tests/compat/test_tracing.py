"""Tracing that cooperates, in real ``nameko run`` processes exporting over OTLP/HTTP into a
local sink that decodes protobuf: the chassis' CLIENT/PRODUCER spans link each hop; a mapped
404 is recorded as 404; with 3.2.0's ``NamekoInstrumentor().instrument()`` kept in place, the
instrumentation traces and the chassis adds nothing (one SERVER span per worker)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from chassis_console.launch import free_port
from opentelemetry.trace import SpanKind

from tests.harness import wait_for
from tests.services.chassis_sinks import OtlpSink

SERVER, CLIENT, PRODUCER, CONSUMER = (k.value + 1 for k in (  # OTLP numbers kinds from 1
    SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER))


class CountingSink(OtlpSink):
    """Also counts the protobuf bytes received."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self._count = threading.Lock()

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        with self._count:
            self.bytes += len(body)
        return super().handle(path, body)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_")) and k != "APP_VERSION"}
    env.update(OTEL_BSP_SCHEDULE_DELAY="100", **extra)
    return env


@pytest.fixture
def otlp() -> Iterator[CountingSink]:
    with CountingSink() as sink:
        yield sink


def one(spans: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(spans) == 1, f"{what}: {len(spans)} spans: {[s['name'] for s in spans]}"
    return spans[0]


def relay_and_wait(service: Any, otlp: OtlpSink, *names: str) -> None:
    assert service.rpc.call("chassis_front", "relay", 21, timeout=20) == 42
    wait_for(lambda: all(otlp.find(name=n) for n in names), timeout=15,
             what=f"spans {names}")


def test_client_and_producer_spans_link_every_hop(start_service: Any, otlp: CountingSink
                                                  ) -> None:
    service = start_service("tests.services.chassis_shop", env=clean_env(), config={
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint}})
    service.wait_answering("chassis_front")
    before = otlp.bytes
    relay_and_wait(service, otlp, "process chassis_front.happened", "chassis_front/relay",
                   "chassis_back/double", "publish chassis_front.events")
    relay = one(otlp.find(name="chassis_front/relay", kind=SERVER), "relay")
    call = one(otlp.find(name="chassis_back/double", kind=CLIENT), "client")
    served = one(otlp.find(name="chassis_back/double", kind=SERVER), "served")
    produced = one(otlp.find(name="publish chassis_front.events", kind=PRODUCER), "producer")
    handled = one(otlp.find(name="process chassis_front.happened", kind=CONSUMER), "handler")
    trace_ids = {s["trace_id"] for s in (relay, call, served, produced, handled)}
    assert trace_ids == {relay["trace_id"]}
    assert call["parent_span_id"] == relay["span_id"]
    assert served["parent_span_id"] == call["span_id"]  # the hop is its own span
    assert produced["parent_span_id"] == relay["span_id"]
    assert handled["parent_span_id"] == produced["span_id"]
    assert call["service"] == "chassis_front" and served["service"] == "chassis_back"
    assert call["attributes"] == {"rpc.system": "nameko", "rpc.service": "chassis_back",
                                  "rpc.method": "double"}
    assert produced["attributes"]["messaging.rabbitmq.destination.routing_key"] == "happened"
    print(f"\nchassis spans: {otlp.bytes - before} OTLP bytes per relay (5 spans)")

    service.rpc.call("chassis_front", "enqueue", "j1", timeout=20)
    wait_for(lambda: otlp.find(name="process chassis-jobs") and
             otlp.find(name="publish chassis-jobs"), timeout=15, what="the message's spans")
    job = one(otlp.find(name="process chassis-jobs", kind=CONSUMER), "consumer")
    publish = one(otlp.find(name="publish chassis-jobs", kind=PRODUCER), "publisher")
    assert job["parent_span_id"] == publish["span_id"]


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_a_404_is_a_404_in_the_span(start_service: Any, otlp: CountingSink) -> None:
    port = free_port()
    start_service("tests.compat.services_v320:Web", env=clean_env(), config={
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint}})
    wait_for(lambda: get(port, "/items/1") == 200, timeout=30, what="compat_web")
    assert get(port, "/items/2") == 404
    assert get(port, "/declined") == 400

    def statuses(route: str) -> list[int]:
        return sorted(s["attributes"]["http.response.status_code"]
                      for s in otlp.find(name=f"GET {route}", kind=SERVER))

    wait_for(lambda: len(statuses("/items/<int:item_id>")) == 2, timeout=15, what="item spans")
    assert statuses("/items/<int:item_id>") == [200, 404]
    missing = next(s for s in otlp.find(name="GET /items/<int:item_id>")
                   if s["attributes"]["http.response.status_code"] == 404)
    assert missing["attributes"]["nameko.expected_error"] is True
    wait_for(lambda: statuses("/declined"), timeout=15, what="declined span")
    assert statuses("/declined") == [400]  # what nameko's own handler answers


def test_with_the_instrumentation_kept_in_place_workers_get_one_span(
        start_service: Any, otlp: CountingSink) -> None:
    service = start_service("tests.compat.services_instrumented", env=clean_env(), config={
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint}})
    service.wait_answering("chassis_front")
    before = otlp.bytes
    relay_and_wait(service, otlp, "chassis_back.on_happened", "chassis_front.relay",
                   "chassis_back.double")
    relay_spans = [s for s in otlp.spans if "relay" in s["name"]]
    assert [s["kind"] for s in relay_spans] == [SERVER], relay_spans
    assert relay_spans[0]["name"] == "chassis_front.relay"  # the instrumentation's
    double = [s for s in otlp.spans if "double" in s["name"]]
    assert sorted(s["kind"] for s in double) == [SERVER, CLIENT]  # one hop, not two
    assert not otlp.find(name="chassis_front/relay")  # no chassis span at all
    # one trace, not split in two
    assert {s["trace_id"] for s in double} == {relay_spans[0]["trace_id"]}
    in_trace = [s for s in otlp.spans if s["trace_id"] == relay_spans[0]["trace_id"]]
    print(f"\ninstrumentation spans: {otlp.bytes - before} OTLP bytes per relay "
          f"({len(in_trace)} spans)")
    log = service.process.log_text()
    assert "opentelemetry-instrumentation-nameko traces chassis_front" in log
    assert "nameko_chassis traces chassis_front" not in log
