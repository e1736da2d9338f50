"""nameko-chassis 3.2.0's public names, in-process on real containers on the test broker:
each importable from its 3.2.0 module path and behaving as it did for the same inputs."""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import eventlet
import nameko
import pytest
from eventlet.event import Event
from kombu import Exchange, Queue
from nameko.containers import ServiceContainer
from nameko.events import EventDispatcher, event_handler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.messaging import Publisher, consume
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcClient
from nameko.testing.services import entrypoint_hook
from nameko.timer import timer
from nameko.web.handlers import http
from nameko.web.server import WebServer
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nameko_chassis.containers import ServiceContainerWithLogging
from nameko_chassis.debug import debug_state_rich, debug_state_simple, has_rich
from nameko_chassis.dependencies import (
    ContainerProvider,
    ServiceDiscoveryProvider,
    before_send_filter,
    filter_transactions,
)
from nameko_chassis.discovery import ManagementClient, ServiceDiscovery
from nameko_chassis.health import ServiceTimeout, is_service_responsive
from nameko_chassis.providers.sentry import SentryHandle
from nameko_chassis.service import START_TIME, Service, ServiceState, WorkerState
from tests.harness import IsolatedVhost, wait_for

#: every public name of 3.2.0, by module
NAMES_320 = {
    "nameko_chassis.service": ["START_TIME", "WorkerState", "ServiceState", "Service"],
    "nameko_chassis.dependencies": ["ContainerProvider", "ServiceDiscoveryProvider",
                                    "setup_sentry_sdk", "before_send_filter",
                                    "filter_transactions", "add_sentry_service"],
    "nameko_chassis.containers": ["ServiceContainerWithLogging"],
    "nameko_chassis.health": ["ServiceTimeout", "is_service_responsive"],
    "nameko_chassis.discovery": ["ServiceDiscovery"],
    "nameko_chassis.debug": ["debug_runner", "debug_state_simple", "debug_state_rich",
                             "has_rich"],
}

_gate = Event()
PASSWORD = "hunter2-compat-secret"


class Parker(Service):
    name = "compat_parker"

    @rpc(sensitive_arguments=("password",))
    def park(self, note: str, password: str) -> str:
        _gate.wait()
        return note

    @rpc
    def whose(self) -> str:
        return self.container.service_name


class Slow(Service):
    name = "compat_slow"

    def say_hello(self) -> str:  # overrides the base method: not an entrypoint by itself
        eventlet.sleep(3)
        return "late"

    say_hello = rpc(say_hello)  # type: ignore[assignment]


class Finder(Service):
    name = "compat_finder"

    discovery = ServiceDiscoveryProvider("localhost:15672", "guest", "guest")

    @rpc
    def find(self) -> list[str]:
        return self.discovery.find_services()


class WebRoutes(Service):
    name = "compat_webroutes"

    @http("GET", "/hello")
    def hello(self, request) -> str:
        return "hello"


class Unnamed(Service):
    @rpc
    def hi(self) -> str:
        return "hi"


JOBS = Exchange("compat-jobs", type="direct")


class Busy(Service):
    name = "compat_busy"

    dispatch = EventDispatcher()
    publish = Publisher(exchange=JOBS)

    @rpc
    def go(self) -> None:
        self.dispatch("went", {})
        self.publish({"job": 1}, routing_key="jobs")

    @event_handler("compat_busy", "went")
    def on_went(self, payload: dict) -> None:
        pass

    @consume(Queue("compat-jobs", exchange=JOBS, routing_key="jobs"))
    def on_job(self, body: dict) -> None:
        pass

    @timer(interval=3600, eager=True)
    def tick(self) -> None:
        pass


@pytest.fixture
def run(vhost: IsolatedVhost) -> Iterator[Any]:
    """Start containers of a service class on the test's vhost (nameko config patched for the
    whole test); all stopped at teardown."""
    started: list[ServiceContainer] = []
    from chassis_console.launch import free_port

    cfg = {"AMQP_URI": str(vhost.uri), "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}
    with nameko.config.patch(cfg):

        def start(cls: type, container_cls: type = ServiceContainer, **config: Any
                  ) -> ServiceContainer:
            nameko.config.update(config)
            container = container_cls(cls)
            container.start()
            started.append(container)
            return container

        yield start
        for container in started:
            container.stop()


@pytest.mark.parametrize("module", sorted(NAMES_320))
def test_every_320_name_imports_from_its_module(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [n for n in NAMES_320[module] if not hasattr(imported, n)]
    assert missing == []
    assert has_rich is True and START_TIME <= __import__("time").time()


def test_service_base_keeps_320_defaults_and_has_no_entrypoints_itself() -> None:
    assert Service.name == "no name"
    for method in ("say_hello", "query_state", "serve_metrics", "set_log_level", "ping"):
        assert not getattr(Service.__dict__[method], ENTRYPOINT_EXTENSIONS_ATTR, None)
        assert getattr(getattr(Parker, method), ENTRYPOINT_EXTENSIONS_ATTR, None), method
    level = next(iter(getattr(Parker.set_log_level, ENTRYPOINT_EXTENSIONS_ATTR)))
    assert ValueError in (level.expected_exceptions if isinstance(level.expected_exceptions, tuple)
                          else (level.expected_exceptions,))
    with nameko.config.patch({}):
        assert ServiceContainer(Unnamed).service_name == "no name"


def test_say_hello_container_and_query_state_of_a_parked_worker(run: Any) -> None:
    global _gate
    _gate = Event()
    container = run(Parker)
    with entrypoint_hook(container, "say_hello") as say_hello:
        assert say_hello() == "Hello from compat_parker!"
    with entrypoint_hook(container, "whose") as whose:
        assert whose() == "compat_parker"  # Service.container is the ServiceContainer

    park = next(ep for ep in container.entrypoints if ep.method_name == "park")
    container.spawn_worker(park, ("[/tmp] note",), {"password": PASSWORD},
                           context_data={"user_agent": "compat-test"})
    eventlet.sleep(0.05)
    try:
        with entrypoint_hook(container, "query_state") as query_state:
            state = query_state()
        direct = ServiceState.from_container(container)
    finally:
        _gate.send(None)

    assert state["service_name"] == "compat_parker" and state["max_workers"] == 10
    assert state["uptime"] > 0 and state["version"] == "unknown"
    assert {"say_hello", "query_state", "park", "ping"} <= set(state["entrypoints"])
    assert {"container", "metrics", "sentry", "tracing"} <= set(state["dependencies"])
    # the parked worker, and query_state's own worker
    assert state["running_workers"] == 2
    parked = next(w for w in state["worker_states"] if w["method_name"] == "park")
    assert parked["class_name"] == "Parker"
    # redacted as nameko's get_redacted_args does: every argument by name, secrets masked
    assert parked["args"] == [] and parked["kwargs"]["note"] == "'[/tmp] note'"
    assert PASSWORD not in str(parked) and "*****" in parked["kwargs"]["password"]
    assert parked["data"]["user_agent"] == "compat-test"
    assert "call_id_stack" in parked["data"]
    assert any(line.startswith("  File ") and "in park\n" in line for line in parked["stacktrace"])
    assert any("_gate.wait()" in line for line in parked["stacktrace"])
    assert isinstance(direct.worker_states[0], WorkerState)

    plain = io.StringIO()
    debug_state_simple(direct, file=plain)
    text = plain.getvalue()
    assert "Container for service 'compat_parker'" in text
    assert "Running 1/10 worker threads:" in text and "Thread #0: Parker.park" in text
    assert PASSWORD not in text
    rich = io.StringIO()
    debug_state_rich(direct, file=rich, width=200)
    drawn = rich.getvalue()
    assert "Running 1/10 worker threads" in drawn and "Parker.park" in drawn
    assert "[/tmp] note" in drawn and PASSWORD not in drawn  # not taken for markup


def test_set_log_level_takes_320_int_levels_and_our_names(run: Any) -> None:
    container = run(Parker)
    target = logging.getLogger("compat.levels")
    target.setLevel(logging.WARNING)
    with entrypoint_hook(container, "set_log_level") as set_log_level:
        message = set_log_level("compat.levels", logging.DEBUG)
        assert target.level == logging.DEBUG
        assert "Log level changed on host" in message
        assert "n.rpc.compat_parker.set_log_level('compat.levels', 30)" in message
        again = set_log_level(logger_name="compat.levels", level=logging.INFO)
        assert "set_log_level('compat.levels', 10)" in again
        assert target.level == logging.INFO
        assert set_log_level("compat.levels", "error") == {
            "logger": "compat.levels", "previous": "INFO", "level": "ERROR"}
        with pytest.raises(ValueError, match="unknown log level 'foo'"):
            set_log_level("compat.levels", "foo")
    assert target.level == logging.ERROR


def test_container_with_logging_says_ready(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Versioned(Parker):
        name = "compat_versioned"
        version = "7.1"

    with caplog.at_level(logging.INFO, logger="nameko_chassis.containers"):
        container = run(Versioned, container_cls=ServiceContainerWithLogging)
    assert container.started
    assert "Service compat_versioned version 7.1 is ready" in caplog.text


def test_is_service_responsive_with_its_default_method(run: Any, vhost: IsolatedVhost) -> None:
    run(Parker)
    run(Slow)
    with ClusterRpcClient(uri=str(vhost.uri)) as client:
        assert is_service_responsive(client["compat_parker"]) is True
        with pytest.raises(ServiceTimeout, match="unreachable after 0.5 seconds"):
            is_service_responsive(client["compat_slow"], timeout=0.5)
        assert is_service_responsive(client["compat_slow"], fail_gracefully=True,
                                     timeout=0.5) is False
        assert is_service_responsive(client["compat_parker"], method_name="ping") is True


def test_service_discovery_over_the_management_api(run: Any, vhost: IsolatedVhost) -> None:
    container = run(Finder)
    run(Parker)
    with ClusterRpcClient(uri=str(vhost.uri)) as client:
        client["compat_parker"].ping()  # leaves an rpc.reply-... queue on the vhost
        client_queues = ManagementClient("localhost:15672", "guest", "guest").get_queues()
        ours = [q["name"] for q in client_queues if q["vhost"] == vhost.uri.vhost]
        assert any(n.startswith("rpc.reply-") for n in ours)
        found = ServiceDiscovery(ManagementClient("localhost:15672")).find_services()
    assert {"compat_finder", "compat_parker"} <= set(found)
    assert not any(name.startswith((".", "reply")) for name in found)
    with entrypoint_hook(container, "find") as find:
        assert {"compat_finder", "compat_parker"} <= set(find())


def test_sentry_filters_of_320() -> None:
    retry = logging.LogRecord("x", logging.ERROR, __file__, 1, "Retryable error: %s", ("boom",),
                              None)
    other = logging.LogRecord("x", logging.ERROR, __file__, 1, "Other error", (), None)
    event = {"message": "m"}
    assert before_send_filter(event, {"log_record": retry}) is None
    assert before_send_filter(event, {"log_record": other}) is event
    assert before_send_filter(event, {}) is event
    assert filter_transactions({"transaction": "/metrics"}, {}) is None
    kept = {"transaction": "/orders"}
    assert filter_transactions(kept, {}) is kept


def test_capture_exception_has_the_320_readme_spelling() -> None:
    handle = SentryHandle(enabled=False)
    assert SentryHandle.captureException is SentryHandle.capture_exception
    assert handle.captureException() is None  # off: a no-op, never raises


def test_metrics_route_binds_nameko_web_server_only_where_3_2_0_users_need_it(run: Any) -> None:
    rpc_only = run(Parker)
    assert WebServer not in rpc_only.shared_extensions
    with entrypoint_hook(rpc_only, "describe") as describe:
        assert "serve_metrics" not in {e["method"] for e in describe()["entrypoints"]}
    web = run(WebRoutes)
    assert WebServer in web.shared_extensions
    with entrypoint_hook(web, "describe") as describe:
        listed = {e["method"]: e for e in describe()["entrypoints"]}
    assert listed["serve_metrics"]["details"]["url"] == "/metrics"
    assert ContainerProvider is type(Parker.container)


def _legacy_samples(prefix: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.name.startswith(prefix + "_"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_legacy_families_for_events_timers_and_consumers(run: Any) -> None:
    container = run(Busy, CHASSIS={"LEGACY_METRICS": True},
                    PROMETHEUS={"compat_busy": {"prefix": "busy_legacy"}})
    with entrypoint_hook(container, "go") as go:
        go()

    def seen() -> dict:
        s = _legacy_samples("busy_legacy")
        ok = s.get(("busy_legacy_events_total", frozenset(
            {"source_service": "compat_busy", "event_type": "went"}.items())), 0) >= 1 and \
            s.get(("busy_legacy_consumer_requests_total",
                   frozenset({"method_name": "on_job"}.items())), 0) >= 1
        return s if ok else {}

    samples = wait_for(seen, timeout=10, what="event and consumer workers")
    assert samples[("busy_legacy_timer_requests_total",
                    frozenset({"method_name": "tick"}.items()))] == 1
    assert samples[("busy_legacy_rpc_requests_total",
                    frozenset({"method_name": "go"}.items()))] == 1
    assert samples[("busy_legacy_events_latency_seconds_count", frozenset(
        {"source_service": "compat_busy", "event_type": "went"}.items()))] >= 1
    assert samples[("busy_legacy_consumer_request_latency_seconds_count",
                    frozenset({"method_name": "on_job"}.items()))] >= 1
    assert samples[("busy_legacy_service_max_workers", frozenset())] == 10
    assert samples[("busy_legacy_service_uptime_seconds", frozenset())] > 0
    # legacy on: the nameko web server answers /metrics although the service has no HTTP route
    assert WebServer in container.shared_extensions
