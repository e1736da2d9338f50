"""Prometheus metrics for every entrypoint, served at ``GET /metrics`` by the chassis HTTP server.

The chassis families live once per process in one registry (prometheus_client's default
``REGISTRY`` unless told otherwise), labelled by ``service`` and ``entrypoint``, so several
services in one process share them without colliding:

=====================================  =========  ==============================================
``nameko_worker_calls_total``          counter    service, entrypoint, entrypoint_type, outcome
``nameko_worker_duration_seconds``     histogram  service, entrypoint, entrypoint_type
``nameko_workers_in_flight``           gauge      service, entrypoint, entrypoint_type
``nameko_max_workers``                 gauge      service
``nameko_service_info``                info       service, version, nameko_version, chassis_version
=====================================  =========  ==============================================

``outcome`` is ``success``, ``error`` or ``expected_error``. An application metric is one line,
in a worker: ``self.metrics.counter("shop_orders_total", "Orders placed", ["item"])``
(get-or-create, so it is safe in every call) — or any ``prometheus_client`` metric made at import
time, which lands in the same default registry.

**Legacy families** (``CHASSIS.LEGACY_METRICS``): nameko-prometheus's, which nameko-chassis 3.2.0
recorded — ``<prefix>_rpc_requests_total``, ``<prefix>_http_request_latency_seconds`` and the rest
(:class:`LegacyMetrics`), prefix = the service name or ``PROMETHEUS: {<service>: {prefix: ...}}``
— recorded beside ours, so dashboards built on them keep working during a move.

**/metrics on nameko's own web server**: :func:`metrics_route` (``Service.serve_metrics``) answers
``GET /metrics`` there when the service has a web server anyway (HTTP entrypoints of its own) or
legacy metrics are on (3.2.0 served it on every service's ``WEB_SERVER_ADDRESS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.web.handlers import HttpRequestHandler
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder

from .. import __version__
from ..config import legacy_metrics_prefix, load_settings, nameko_config
from ..probe.entrypoints import kind_of
from . import privates
from .bookkeeping import ERROR, EXPECTED_ERROR, KILLED, SUCCESS, outcome_of
from .http import ChassisHttpServer
from .tracing import http_status

log = logging.getLogger(__name__)

#: Duration buckets (seconds): sub-millisecond RPCs up to minute-long batch workers.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0)

_LABELS = ("service", "entrypoint", "entrypoint_type")


class ChassisMetrics:
    """The chassis metric families of one registry (one instance per registry per process)."""

    _by_registry: dict[int, ChassisMetrics] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.calls = Counter("nameko_worker_calls", "Finished workers, by outcome",
                             [*_LABELS, "outcome"], registry=registry)
        self.duration = Histogram("nameko_worker_duration_seconds",
                                  "Worker duration from setup to result", _LABELS,
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.in_flight = Gauge("nameko_workers_in_flight", "Workers running now", _LABELS,
                               registry=registry)
        self.max_workers = Gauge("nameko_max_workers", "The container's max_workers",
                                 ["service"], registry=registry)
        self.info = Info("nameko_service", "Service and library versions",
                         ["service"], registry=registry)
        self.app: dict[str, Any] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ChassisMetrics:
        metrics = cls._by_registry.get(id(registry))
        if metrics is None:
            metrics = cls._by_registry[id(registry)] = cls(registry)
        return metrics

    def render(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        return 200, [("Content-Type", content_type)], encoder(self.registry)

    def _app_metric(self, kind: type, name: str, documentation: str, labelnames: Sequence[str],
                    **kwargs: Any) -> Any:
        metric = self.app.get(name)
        if metric is None:
            metric = self.app[name] = kind(name, documentation, list(labelnames),
                                           registry=self.registry, **kwargs)
        elif not isinstance(metric, kind):
            raise ValueError(f"metric {name!r} is already a {type(metric).__name__}, "
                             f"not a {kind.__name__}")
        return metric


class _Running:
    """Workers of one label set running now: a plain count on the hub, read by the
    ``nameko_workers_in_flight`` child at scrape time (a gauge's ``inc``/``dec`` take a lock
    each, twice per worker)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> float:
        return float(self.n)


#: label values -> the running count its gauge child reads (shared by every provider of the
#: process with those labels, as the child is)
_running: dict[tuple[int, tuple[str, ...]], _Running] = {}


@dataclass
class _EntrypointMetrics:
    calls: dict[str, Any]
    duration: Any
    in_flight: _Running


class MetricsHandle:
    """What a worker sees as ``self.metrics``: get-or-create application metrics."""

    def __init__(self, metrics: ChassisMetrics) -> None:
        self._metrics = metrics

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._metrics._app_metric(Counter, name, documentation, labelnames)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._metrics._app_metric(Gauge, name, documentation, labelnames)

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = DURATION_BUCKETS) -> Histogram:
        return self._metrics._app_metric(Histogram, name, documentation, labelnames,
                                         buckets=tuple(buckets))

    def expose_metrics(self, request: Any) -> Any:
        """The registry as a werkzeug ``Response`` for an ``@http`` entrypoint (nameko-prometheus's
        name, which 3.2.0's ``serve_metrics`` called): Prometheus text, or OpenMetrics when the
        ``Accept`` header asks for it; ``?name=<family>`` (repeatable) restricts the output."""
        from werkzeug.wrappers import Response

        registry: Any = self._metrics.registry
        names = request.args.getlist("name") if getattr(request, "args", None) else []
        if names:
            registry = registry.restricted_registry(names)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        try:
            return Response(encoder(registry), status=200, content_type=content_type)
        except Exception:
            log.exception("chassis: rendering /metrics failed")
            return Response("Failed to generate metrics", status=500)


#: Default histogram buckets of prometheus_client, which nameko-prometheus's families used.
LEGACY_BUCKETS = Histogram.DEFAULT_BUCKETS

#: uptime of the legacy ``<prefix>_service_uptime_seconds`` counts from here (3.2.0's START_TIME)
START_TIME = time.time()


class LegacyMetrics:
    """nameko-prometheus's families for one prefix (once per registry and prefix per process).

    Same names, types, labels and buckets as nameko-prometheus 1.6 (what 3.2.0 recorded); the
    state gauges are read at scrape time instead of after each worker, so they are never stale.
    """

    _by_key: dict[tuple[int, str], LegacyMetrics] = {}

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        p, r = prefix, registry
        self.prefix = prefix
        self.service_info = Gauge(f"{p}_service_info", "Always 1; the labels carry the versions",
                                  ["service_version", "python_version"], registry=r)
        self.uptime = Gauge(f"{p}_service_uptime_seconds", "Uptime of service in seconds",
                            registry=r)
        self.max_workers = Gauge(f"{p}_service_max_workers",
                                 "Maximum number of available nameko workers", registry=r)
        self.running_workers = Gauge(f"{p}_service_running_workers",
                                     "Number of currently running nameko workers", registry=r)
        http = ["http_method", "endpoint", "status_code"]
        self.http_total = Counter(f"{p}_http_requests", "Total number of HTTP requests", http,
                                  registry=r)
        self.http_latency = Histogram(f"{p}_http_request_latency_seconds",
                                      "HTTP request duration in seconds", http, registry=r,
                                      buckets=LEGACY_BUCKETS)
        self.rpc_total = Counter(f"{p}_rpc_requests", "Total number of RPC requests",
                                 ["method_name"], registry=r)
        self.rpc_latency = Histogram(f"{p}_rpc_request_latency_seconds",
                                     "RPC request duration in seconds", ["method_name"],
                                     registry=r, buckets=LEGACY_BUCKETS)
        events = ["source_service", "event_type"]
        self.events_total = Counter(f"{p}_events", "Total number of handled events", events,
                                    registry=r)
        self.events_latency = Histogram(f"{p}_events_latency_seconds",
                                        "Event handler duration in seconds", events, registry=r,
                                        buckets=LEGACY_BUCKETS)
        self.timer_total = Counter(f"{p}_timer_requests", "Total number of timer_requests",
                                   ["method_name"], registry=r)
        self.timer_latency = Histogram(f"{p}_timer_request_latency_seconds",
                                       "Timer request duration in seconds", ["method_name"],
                                       registry=r, buckets=LEGACY_BUCKETS)
        self.consumer_total = Counter(f"{p}_consumer_requests",
                                      "Total number of consumer requests", ["method_name"],
                                      registry=r)
        self.consumer_latency = Histogram(f"{p}_consumer_request_latency_seconds",
                                          "Consumer request duration in seconds", ["method_name"],
                                          registry=r, buckets=LEGACY_BUCKETS)
        self.uptime.set_function(lambda: time.time() - START_TIME)

    @classmethod
    def of(cls, prefix: str, registry: CollectorRegistry) -> LegacyMetrics:
        key = (id(registry), prefix)
        metrics = cls._by_key.get(key)
        if metrics is None:
            metrics = cls._by_key[key] = cls(prefix, registry)
        return metrics

    def bind(self, container: Any, version: str) -> None:
        """Report ``container``'s state in the state gauges (the last one bound wins, as with
        one service per prefix)."""
        import platform

        self.service_info.labels(version or "unknown", platform.python_version()).set(1)
        self.max_workers.set(container.max_workers)

        def running() -> float:
            return float(privates.running_workers(container))

        self.running_workers.set_function(running)

    def observe(self, worker_ctx: Any, duration: float, result: Any, exc_info: Any) -> None:
        ep = worker_ctx.entrypoint
        kind = kind_of(ep)
        if kind == "rpc":
            self.rpc_total.labels(ep.method_name).inc()
            self.rpc_latency.labels(ep.method_name).observe(duration)
        elif kind == "http":
            labels = (ep.method, ep.url, http_status(worker_ctx, result, exc_info))
            self.http_total.labels(*labels).inc()
            self.http_latency.labels(*labels).observe(duration)
        elif kind == "event_handler":
            events = (ep.source_service, ep.event_type)
            self.events_total.labels(*events).inc()
            self.events_latency.labels(*events).observe(duration)
        elif kind == "timer":
            self.timer_total.labels(ep.method_name).inc()
            self.timer_latency.labels(ep.method_name).observe(duration)
        elif kind == "consumer":
            self.consumer_total.labels(ep.method_name).inc()
            self.consumer_latency.labels(ep.method_name).observe(duration)


class MetricsRoute(HttpRequestHandler):
    """``GET /metrics`` on nameko's own web server (``WEB_SERVER_ADDRESS``), as 3.2.0 served it.

    Bound only where it costs nothing new or was asked for: when the service has HTTP
    entrypoints of its own (its web server runs anyway) or ``CHASSIS.LEGACY_METRICS`` is on.
    Otherwise the bound entrypoint is inert — no web server, no port — so a service without
    HTTP entrypoints does not start listening on port 8000 just for this, and several such
    services still share one process.
    """

    active = True

    def bind(self, container: Any, method_name: str) -> Any:
        key = self.server.sharing_key
        had_server = key in container.shared_extensions
        instance = super().bind(container, method_name)
        if not serves_web_metrics(container.service_cls):
            instance.active = False
            instance.server = None  # shadows the class's prototype: no web server is bound
            if not had_server:
                container.shared_extensions.pop(key, None)
        return instance

    def setup(self) -> None:
        if self.active:
            super().setup()

    def stop(self) -> None:
        if self.active:
            super().stop()
        else:
            super(HttpRequestHandler, self).stop()


metrics_route = MetricsRoute.decorator


def _has_own_http(service_cls: type) -> bool:
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

    for name in dir(service_cls):
        member = getattr(service_cls, name, None)
        for ep in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()) or ():
            if isinstance(ep, HttpRequestHandler) and not isinstance(ep, MetricsRoute):
                return True
    return False


def serves_web_metrics(service_cls: type) -> bool:
    """Whether ``service_cls``'s :class:`MetricsRoute` answers on nameko's web server."""
    try:
        if load_settings().chassis.legacy_metrics:
            return True
    except Exception:
        log.exception("chassis: reading CHASSIS.LEGACY_METRICS failed")
    return _has_own_http(service_cls)


class PrometheusMetrics(DependencyProvider):
    """Calls, durations, workers in flight, max workers and versions of one service.

    Records when ``CHASSIS.METRICS`` is true, which it is by default once
    ``CHASSIS.HTTP_ADDRESS`` is set (the address ``/metrics`` is served on). Otherwise every
    hook returns at once. Never raises into a worker.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry
        self.enabled = False
        self.server: ChassisHttpServer | None = None
        self._metrics: ChassisMetrics | None = None
        self._starts: dict[Any, tuple[_EntrypointMetrics, float]] = {}
        self._address: tuple[str, int] | None = None
        self._by_entrypoint: dict[Any, _EntrypointMetrics] = {}
        self._handle: MetricsHandle | None = None
        self.legacy: LegacyMetrics | None = None

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<PrometheusMetrics [{service}] {'on' if self.enabled else 'off'}>"

    @property
    def metrics(self) -> ChassisMetrics:
        if self._metrics is None:
            self._metrics = ChassisMetrics.of(self.registry or REGISTRY)
        return self._metrics

    def setup(self) -> None:
        try:
            settings = load_settings()
            # /metrics on nameko's web server (Service.serve_metrics) records too, unless
            # CHASSIS.METRICS says false
            self.enabled = settings.chassis.metrics or (
                settings.chassis.metrics_switch is None and
                _serves_route(self.container.service_cls))
            if not self.enabled:
                return
            name = self.container.service_name
            version = getattr(self.container.service_cls, "version", "") or \
                settings.chassis.version
            m = self.metrics
            m.max_workers.labels(name).set(self.container.max_workers)
            m.info.labels(name).info({
                "version": version,
                "nameko_version": _nameko_version(),
                "chassis_version": __version__,
            })
            self._address = settings.chassis.http_address
            if settings.chassis.legacy_metrics:
                prefix = legacy_metrics_prefix(nameko_config(), name)
                self.legacy = LegacyMetrics.of(prefix, self.registry or REGISTRY)
                self.legacy.bind(self.container, version)
        except Exception:
            log.exception("chassis: Prometheus metrics off for %s", self.container.service_name)
            self.enabled = False

    def start(self) -> None:
        if not self.enabled or self._address is None:
            return
        try:
            self.server = ChassisHttpServer.acquire(self._address)
            self.server.add_route("/metrics", self.metrics.render)
        except Exception:
            log.exception("chassis: /metrics unavailable for %s", self.container.service_name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.release()
            self.server = None

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> MetricsHandle:
        if self._handle is None:  # one per provider: it holds no per-worker state
            self._handle = MetricsHandle(self.metrics)
        return self._handle

    def _children(self, entrypoint: Any, service_name: str) -> _EntrypointMetrics:
        # labels() takes a lock and hashes the label values: resolve them once per entrypoint
        children = self._by_entrypoint.get(entrypoint)
        if children is None:
            labels = (service_name, entrypoint.method_name, kind_of(entrypoint))
            m = self.metrics
            children = self._by_entrypoint[entrypoint] = _EntrypointMetrics(
                calls={outcome: m.calls.labels(*labels, outcome)
                       for outcome in (SUCCESS, ERROR, EXPECTED_ERROR, KILLED)},
                duration=m.duration.labels(*labels),
                in_flight=self._running(m, labels),
            )
        return children

    @staticmethod
    def _running(m: ChassisMetrics, labels: tuple[str, ...]) -> _Running:
        key = (id(m.registry), labels)
        running = _running.get(key)
        if running is None:
            running = _running[key] = _Running()
            m.in_flight.labels(*labels).set_function(running)
        return running

    def worker_setup(self, worker_ctx: Any) -> None:
        if not self.enabled:
            return
        try:
            children = self._by_entrypoint.get(worker_ctx.entrypoint) or \
                self._children(worker_ctx.entrypoint, worker_ctx.service_name)
            children.in_flight.n += 1
            # the worker's label children travel with its start: one lookup per worker
            self._starts[worker_ctx] = (children, time.perf_counter())
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        if not self.enabled:
            return
        try:
            started = self._starts.get(worker_ctx)
            if started is None:
                children = self._children(worker_ctx.entrypoint, worker_ctx.service_name)
                elapsed = None
            else:
                children, elapsed = started[0], time.perf_counter() - started[1]
                children.duration.observe(elapsed)
            children.calls[outcome_of(worker_ctx, exc_info) if exc_info else SUCCESS].inc()
            if self.legacy is not None and elapsed is not None:
                self.legacy.observe(worker_ctx, elapsed, result, exc_info)
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)

    def worker_teardown(self, worker_ctx: Any) -> None:
        if not self.enabled:
            return
        try:
            started = self._starts.pop(worker_ctx, None)
            if started is not None:
                started[0].in_flight.n -= 1
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)


def _serves_route(service_cls: type) -> bool:
    """Whether the service has an active :class:`MetricsRoute` (``serve_metrics``)."""
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

    for name in dir(service_cls):
        member = getattr(service_cls, name, None)
        if any(isinstance(ep, MetricsRoute) for ep in
               getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()) or ()):
            return serves_web_metrics(service_cls)
    return False


def _nameko_version() -> str:
    try:
        from importlib.metadata import version

        return version("nameko")
    except Exception:
        return "unknown"
