"""The chassis ``Service`` on a real broker, in one real ``nameko run`` process per module:
worker bookkeeping, base RPC methods, Prometheus, Sentry (real sentry-sdk transport into a local
sink) and OpenTelemetry (real OTLP/HTTP exporter into a local sink decoding protobuf)."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chassis_console.launch import NamekoProcess, free_port
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from nameko_chassis.amqp.rpc import RpcError
from tests.harness import REPO, IsolatedVhost, Service, wait_for
from tests.services.chassis_sinks import OtlpSink, SentrySink

MODULE = "tests.services.chassis_shop"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_")) and k != "APP_VERSION"}
    env.update(extra)
    return env


@dataclass
class Shop:
    service: Service
    http_port: int
    web_port: int
    sentry: SentrySink
    otlp: OtlpSink

    def get(self, path: str, port: int | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(f"http://127.0.0.1:{port or self.http_port}{path}",
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def status(self, path: str) -> int:
        try:
            return self.get(path)[0]
        except OSError:  # URLError: not listening yet
            return 0

    def samples(self, accept: str | None = None) -> dict[tuple[str, frozenset[Any]], float]:
        status, headers, text = self.get("/metrics", headers={"Accept": accept} if accept else {})
        assert status == 200
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def shop(management: ManagementApi, broker: AmqpUri,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with SentrySink() as sentry, OtlpSink() as otlp, IsolatedVhost(management, broker) as vh:
        http_port, web_port = free_port(), free_port()
        config = {
            "AMQP_URI": str(vh.uri),
            "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
            "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{http_port}", "HISTORY_SIZE": 50},
            "SENTRY": {"DSN": sentry.dsn, "ENVIRONMENT": "test"},
            "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint},
        }
        proc = NamekoProcess([MODULE], config, cwd=REPO, workdir=tmp_path_factory.mktemp("shop"),
                             env=clean_env(OTEL_BSP_SCHEDULE_DELAY="100"))
        service = Service(proc, vh.uri)
        proc.start()
        try:
            shop = Shop(service, http_port, web_port, sentry, otlp)
            # nameko sets container.started before its consumers are consuming: a call made
            # earlier is unroutable and lost. Readiness says when they all are.
            wait_for(lambda: shop.status("/health/ready") == 200, timeout=30, what="readiness")
            yield shop
        finally:
            service.close()


# ---------------------------------------------------------------------------------------------
# worker bookkeeping and base RPC methods


def test_worker_start_times_and_history_reach_the_collector(shop: Shop) -> None:
    rpc = shop.service.rpc
    assert rpc.call("chassis_front", "hello", who="ann") == "hello ann"
    with pytest.raises(RpcError):
        rpc.call("chassis_front", "decline", reason="x" * 1000)
    calls = shop.service.hold(2, service="chassis_parking", tag="book")
    try:
        stamps = json.loads(shop.service.eval(
            "print(__import__('json').dumps([getattr(c, 'chassis_started_at', None) "
            "for c in runner.service_map['chassis_parking']._worker_threads]))"))
        assert len(stamps) == 2 and all(isinstance(s, float) for s in stamps)
        snap = json.loads(shop.service.eval(
            "print(__import__('json').dumps(__import__('nameko_chassis.probe.collect', "
            "fromlist=['collect']).collect(runner)))"))
    finally:
        shop.service.release("book", service="chassis_parking")
    assert [c.result() for c in calls] == ["book", "book"]

    containers = {c["service_name"]: c for c in snap["containers"]}
    workers = containers["chassis_parking"]["workers"]
    assert sorted(w["started_at"] for w in workers) == sorted(stamps)
    history = containers["chassis_front"]["history"]
    hello = next(h for h in history if h["entrypoint"] == "chassis_front.hello")
    assert hello["outcome"] == "success" and hello["exc_type"] is None
    assert hello["call_id"].startswith("chassis_front.hello.")
    assert hello["finished_at"] >= hello["started_at"] and hello["duration_s"] >= 0
    declined = next(h for h in history if h["entrypoint"] == "chassis_front.decline")
    assert declined["outcome"] == "expected_error" and declined["exc_type"] == "Declined"
    assert len(declined["exc_message"]) <= 300
    # the detail view's fields: redacted and bounded like a running worker's
    assert hello["traceback"] is None and hello["kwargs"] == {"who": "'ann'"}
    assert hello["entrypoint_type"] == "rpc" and hello["call_id_stack"][-1] == hello["call_id"]
    assert len(declined["kwargs"]["reason"]) <= 200
    assert declined["traceback"][-1]["function"] == "decline"
    assert declined["traceback"][-1]["library"] is False
    assert any(f["library"] for f in declined["traceback"])  # nameko's frames above it


def test_ping_describe_and_set_log_level(shop: Shop) -> None:
    rpc = shop.service.rpc
    assert rpc.call("chassis_front", "ping") == "pong"
    described = rpc.call("chassis_front", "describe")
    assert described["name"] == "chassis_front" and described["version"] == "1.2.3"
    kinds = {e["method"]: e["type"] for e in described["entrypoints"]}
    assert kinds["hello"] == "rpc" and kinds["web"] == "http" and kinds["warm_up"] == "timer"
    assert kinds["handle_job"] == "consumer" and kinds["ping"] == "rpc"
    explode = next(e for e in described["entrypoints"] if e["method"] == "explode")
    assert explode["details"]["sensitive_arguments"] == ["password"]
    back = rpc.call("chassis_back", "describe")
    assert {e["method"]: e["type"] for e in back["entrypoints"]}["on_happened"] == "event_handler"

    changed = rpc.call("chassis_front", "set_log_level", "chassis.test.logger", "debug")
    assert changed == {"logger": "chassis.test.logger", "previous": "NOTSET", "level": "DEBUG"}
    assert shop.service.eval("__import__('logging').getLogger('chassis.test.logger').level") == "10"
    with pytest.raises(RpcError) as err:
        rpc.call("chassis_front", "set_log_level", "x", "LOUD")
    assert err.value.exc_type == "ValueError"


def test_a_subclass_switches_base_methods_and_providers_off(shop: Shop) -> None:
    rpc = shop.service.rpc
    assert rpc.call("chassis_quiet", "ping") == "pong"
    with pytest.raises(RpcError) as err:
        rpc.call("chassis_quiet", "set_log_level", "x", "INFO")
    assert err.value.exc_type == "MethodNotFound"
    deps = shop.service.eval(
        "sorted(type(d).__name__ for d in runner.service_map['chassis_quiet'].dependencies)")
    assert "SentryReporter" not in deps and "WorkerBookkeeping" in deps
    # the base class is not a service of its own although the module imports it
    assert shop.service.eval("sorted(runner.service_map)") == \
        "['chassis_back', 'chassis_front', 'chassis_parking', 'chassis_quiet', " \
        "'chassis_standalone']"


# ---------------------------------------------------------------------------------------------
# Prometheus


def test_metrics_count_calls_by_outcome_exactly(shop: Shop) -> None:
    rpc = shop.service.rpc
    before = shop.samples()
    for _ in range(3):
        rpc.call("chassis_front", "hello")
    for _ in range(2):
        with pytest.raises(RpcError):
            rpc.call("chassis_front", "decline")
    with pytest.raises(RpcError):
        rpc.call("chassis_front", "explode", "bob", "pw")
    for n in (1, 2):
        assert shop.get(f"/front/{n}", port=shop.web_port)[0] == 200
    rpc.call("chassis_front", "count_sale", "kettle")
    rpc.call("chassis_front", "count_sale", "kettle")
    rpc.call("chassis_standalone", "hi")  # a plain service with the provider on its own
    after = shop.samples()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    front = {"service": "chassis_front", "entrypoint_type": "rpc"}
    calls = "nameko_worker_calls_total"
    assert delta(calls, **front, entrypoint="hello", outcome="success") == 3
    assert delta(calls, **front, entrypoint="decline", outcome="expected_error") == 2
    assert delta(calls, **front, entrypoint="explode", outcome="error") == 1
    assert delta(calls, service="chassis_front", entrypoint="web", entrypoint_type="http",
                 outcome="success") == 2
    hist = "nameko_worker_duration_seconds_count"
    assert delta(hist, **front, entrypoint="hello") == 3
    assert delta(hist, **front, entrypoint="decline") == 2
    assert delta("nameko_worker_duration_seconds_bucket", **front, entrypoint="hello",
                 le="+Inf") == 3
    assert value(after, "nameko_workers_in_flight", **front, entrypoint="hello") == 0
    assert value(after, "nameko_max_workers", service="chassis_front") == 10
    info = [labels for (name, labels) in after if name == "nameko_service_info"
            and ("service", "chassis_front") in labels]
    assert info and ("version", "1.2.3") in info[0]
    assert delta("chassis_test_sales_total", item="kettle") == 2
    assert delta(calls, service="chassis_standalone", entrypoint="hi", entrypoint_type="rpc",
                 outcome="success") == 1
    # every entrypoint type is counted: the eager timer fired once at start
    assert value(after, calls, service="chassis_front", entrypoint="warm_up",
                 entrypoint_type="timer", outcome="success") == 1


def test_metrics_for_events_and_consumers(shop: Shop) -> None:
    rpc = shop.service.rpc
    before = shop.samples()
    assert rpc.call("chassis_front", "relay", 4) == 8
    rpc.call("chassis_front", "enqueue", "job-1")
    wait_for(lambda: len(rpc.call("chassis_back", "seen")["jobs"]) >= 1, what="consumer ran")
    wait_for(lambda: rpc.call("chassis_back", "seen")["events"], what="event handled")
    after = shop.samples()
    assert value(after, "nameko_worker_calls_total", service="chassis_back",
                 entrypoint="on_happened", entrypoint_type="event_handler",
                 outcome="success") - value(before, "nameko_worker_calls_total",
                                            service="chassis_back", entrypoint="on_happened",
                                            entrypoint_type="event_handler",
                                            outcome="success") == 1
    assert value(after, "nameko_worker_calls_total", service="chassis_front",
                 entrypoint="handle_job", entrypoint_type="consumer", outcome="success") >= 1


def test_metrics_workers_in_flight(shop: Shop) -> None:
    park = {"service": "chassis_parking", "entrypoint": "park", "entrypoint_type": "rpc"}
    calls = shop.service.hold(2, service="chassis_parking", tag="gauge")
    try:
        assert value(shop.samples(), "nameko_workers_in_flight", **park) == 2
    finally:
        shop.service.release("gauge", service="chassis_parking")
    assert [c.result() for c in calls] == ["gauge", "gauge"]
    wait_for(lambda: value(shop.samples(), "nameko_workers_in_flight", **park) == 0,
             what="in-flight gauge back to 0")


def test_metrics_content_negotiation(shop: Shop) -> None:
    status, headers, text = shop.get("/metrics")  # no Accept header at all
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "nameko_worker_calls_total" in text
    status, headers, text = shop.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in parse_openmetrics(text)}
    assert {"nameko_worker_calls", "nameko_worker_duration_seconds", "nameko_service"} <= names
    assert shop.get("/nothing")[0] == 404


# ---------------------------------------------------------------------------------------------
# Sentry


def test_sentry_reports_unexpected_errors_once_tagged_and_redacted(shop: Shop) -> None:
    rpc = shop.service.rpc
    with pytest.raises(RpcError):
        rpc.call("chassis_front", "explode", "carol", password="hunter2-secret",
                 context={"auth_token": "tok-very-secret", "user_id": "u-7"})
    with pytest.raises(RpcError):
        rpc.call("chassis_front", "decline", reason="not reported")
    events = wait_for(lambda: [e for e in shop.sentry.events_for("Boom")
                               if "carol" in json.dumps(e)], what="the Boom event")
    event = events[0]
    tags = event["tags"]
    assert tags["service"] == "chassis_front" and tags["method"] == "explode"
    assert tags["entrypoint"] == "chassis_front.explode"
    assert tags["call_id"].startswith("chassis_front.explode.")
    assert event["environment"] == "test"
    nameko = event["contexts"]["nameko"]
    assert nameko["kwargs"]["password"] == "'********'"
    assert nameko["kwargs"]["user"] == "'carol'"
    assert nameko["context_data"]["auth_token"] == "********"
    assert nameko["context_data"]["user_id"] == "u-7"
    text = json.dumps(event)
    assert "hunter2-secret" not in text and "tok-very-secret" not in text
    crumbs = event.get("breadcrumbs", {}).get("values", [])
    assert any(c.get("message") == "about to explode" for c in crumbs)

    # give a duplicate (through the logging integration) time to arrive, then count
    rpc.call("chassis_front", "ping")
    import time
    time.sleep(1.0)
    assert len([e for e in shop.sentry.events_for("Boom") if "carol" in json.dumps(e)]) == 1
    assert shop.sentry.events_for("Declined") == []


def test_sentry_breadcrumbs_and_tags_stay_in_their_worker(shop: Shop) -> None:
    """Each worker reports from a scope of its own (greenlet gives each worker greenthread an
    empty context, and sentry-sdk a fresh isolation scope in it): what one worker added never
    shows in another's event."""
    rpc = shop.service.rpc
    for user in ("erin", "frank"):
        with pytest.raises(RpcError):
            rpc.call("chassis_front", "explode", user, password="pw-isolation")
    for user, other in (("erin", "frank"), ("frank", "erin")):
        event = wait_for(lambda u=user: [e for e in shop.sentry.events_for("Boom")
                                         if f"exploded for {u}" in json.dumps(e)],
                         what=f"{user}'s event")[0]
        crumbs = [c for c in event.get("breadcrumbs", {}).get("values", [])
                  if c.get("message") == "about to explode"]
        assert [c["data"]["user"] for c in crumbs] == [user]
        assert other not in json.dumps(event)
        assert event["tags"]["call_id"] == event["contexts"]["nameko"]["call_id"]


def test_sentry_reports_http_errors(shop: Shop) -> None:
    status, _, _ = shop.get("/broken", port=shop.web_port)
    assert status == 500
    event = wait_for(lambda: [e for e in shop.sentry.events_for("Boom")
                              if e["tags"].get("method") == "broken"], what="the HTTP event")[0]
    assert event["tags"]["entrypoint_type"] == "http"
    shop.service.rpc.call("chassis_front", "ping")
    import time
    time.sleep(1.0)  # a duplicate through nameko.web's or the logging integration's path
    assert len([e for e in shop.sentry.events_for("Boom")
                if e["tags"].get("method") == "broken"]) == 1


# ---------------------------------------------------------------------------------------------
# OpenTelemetry

SERVER, CLIENT, CONSUMER, INTERNAL = 2, 3, 5, 1
STATUS_ERROR = 2


def test_one_trace_across_an_rpc_hop_and_an_event(shop: Shop) -> None:
    rpc = shop.service.rpc
    assert rpc.call("chassis_front", "relay", 21) == 42
    front = wait_for(lambda: shop.otlp.find(name="chassis_front/relay", status_code=0),
                     what="the relay span")[-1]
    trace_id = front["trace_id"]
    assert front["service"] == "chassis_front" and front["kind"] == SERVER
    assert front["attributes"]["rpc.system"] == "nameko"
    assert front["attributes"]["rpc.method"] == "relay"
    # each hop is a span of its own (CLIENT, PRODUCER) between the two workers' spans
    call = wait_for(lambda: shop.otlp.find(name="chassis_back/double", trace_id=trace_id,
                                           kind=CLIENT), what="the call span")[0]
    assert call["service"] == "chassis_front" and call["parent_span_id"] == front["span_id"]
    back = wait_for(lambda: shop.otlp.find(name="chassis_back/double", trace_id=trace_id,
                                           kind=SERVER), what="the double span")[0]
    assert back["service"] == "chassis_back" and back["parent_span_id"] == call["span_id"]
    event = wait_for(lambda: shop.otlp.find(name="process chassis_front.happened",
                                            trace_id=trace_id), what="the event span")[0]
    assert event["service"] == "chassis_back" and event["kind"] == CONSUMER
    dispatch = wait_for(lambda: shop.otlp.find(name="publish chassis_front.events",
                                               trace_id=trace_id), what="the dispatch span")[0]
    assert dispatch["parent_span_id"] == front["span_id"]
    assert event["parent_span_id"] == dispatch["span_id"]
    assert event["attributes"]["messaging.system"] == "rabbitmq"


def test_spans_continue_incoming_trace_context(shop: Shop) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = f"00-{trace_id}-{parent}-01"
    shop.service.rpc.call("chassis_front", "hello", who="traced",
                          context={"traceparent": traceparent})
    span = wait_for(lambda: shop.otlp.find(name="chassis_front/hello", trace_id=trace_id),
                    what="the hello span")[0]
    assert span["parent_span_id"] == parent
    status, _, _ = shop.get("/front/7", port=shop.web_port, headers={"traceparent": traceparent})
    assert status == 200
    web = wait_for(lambda: shop.otlp.find(name="GET /front/<int:n>", trace_id=trace_id),
                   what="the http span")[0]
    assert web["kind"] == SERVER and web["parent_span_id"] == parent
    assert web["attributes"]["http.route"] == "/front/<int:n>"
    assert web["attributes"]["http.response.status_code"] == 200
    assert web["attributes"]["url.path"] == "/front/7"


def test_span_kinds_errors_and_resources(shop: Shop) -> None:
    rpc = shop.service.rpc
    with pytest.raises(RpcError):
        rpc.call("chassis_front", "explode", "dan", "pw")
    failed = wait_for(lambda: [s for s in shop.otlp.find(name="chassis_front/explode")
                               if s["status_code"] == STATUS_ERROR
                               and "dan" in s["status_message"]], what="the failed span")[0]
    exc = next(e for e in failed["events"] if e["name"] == "exception")
    assert exc["attributes"]["exception.type"].endswith("Boom")
    assert "exploded for dan" in exc["attributes"]["exception.message"]
    timer = wait_for(lambda: shop.otlp.find(name="chassis_front.warm_up"), what="timer span")[0]
    assert timer["kind"] == INTERNAL and timer["parent_span_id"] == ""
    rpc.call("chassis_front", "enqueue", "job-2")
    job = wait_for(lambda: shop.otlp.find(name="process chassis-jobs"), what="consumer span")[0]
    assert job["kind"] == CONSUMER
    enqueue = wait_for(lambda: shop.otlp.find(name="chassis_front/enqueue",
                                              trace_id=job["trace_id"]), what="enqueue span")[0]
    publish = wait_for(lambda: shop.otlp.find(name="publish chassis-jobs",
                                              trace_id=job["trace_id"]), what="publish span")[0]
    assert publish["parent_span_id"] == enqueue["span_id"]  # the hop is a span of its own
    assert job["parent_span_id"] == publish["span_id"]
    assert {s["resource"]["service.name"] for s in shop.otlp.find()} >= {
        "chassis_front", "chassis_back"}
    assert failed["resource"]["service.version"] == "1.2.3"


def test_the_chassis_http_port_is_not_shared_by_a_second_process(
        shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> None:
    def start_time() -> float:
        return value(shop.samples(), "process_start_time_seconds")

    first = start_time()
    config = dict(shop.service.process.config)
    second = NamekoProcess([MODULE], config, cwd=REPO, workdir=tmp_path_factory.mktemp("second"),
                           env=clean_env())
    second.start()
    try:
        wait_for(lambda: "cannot listen on" in second.log_text(), timeout=30,
                 what="the second process to report the busy port")
        assert "Address already in use" in second.log_text()
        # every scrape still reaches the first process: no SO_REUSEPORT split
        assert {start_time() for _ in range(20)} == {first}
    finally:
        second.stop()
