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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder

from .. import __version__
from ..config import load_settings
from ..probe.entrypoints import kind_of
from .bookkeeping import ERROR, EXPECTED_ERROR, KILLED, SUCCESS, outcome_of
from .http import ChassisHttpServer

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


@dataclass
class _EntrypointMetrics:
    calls: dict[str, Any]
    duration: Any
    in_flight: Any


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
        self._starts: dict[Any, float] = {}
        self._address: tuple[str, int] | None = None
        self._by_entrypoint: dict[Any, _EntrypointMetrics] = {}

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
            self.enabled = settings.chassis.metrics
            if not self.enabled:
                return
            name = self.container.service_name
            m = self.metrics
            m.max_workers.labels(name).set(self.container.max_workers)
            m.info.labels(name).info({
                "version": getattr(self.container.service_cls, "version", "") or
                settings.chassis.version,
                "nameko_version": _nameko_version(),
                "chassis_version": __version__,
            })
            self._address = settings.chassis.http_address
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
        return MetricsHandle(self.metrics)

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
                in_flight=m.in_flight.labels(*labels),
            )
        return children

    def worker_setup(self, worker_ctx: Any) -> None:
        if not self.enabled:
            return
        try:
            self._children(worker_ctx.entrypoint, worker_ctx.service_name).in_flight.inc()
            self._starts[worker_ctx] = time.perf_counter()
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        if not self.enabled:
            return
        try:
            children = self._children(worker_ctx.entrypoint, worker_ctx.service_name)
            started = self._starts.get(worker_ctx)
            if started is not None:
                children.duration.observe(time.perf_counter() - started)
            children.calls[outcome_of(worker_ctx, exc_info)].inc()
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)

    def worker_teardown(self, worker_ctx: Any) -> None:
        if not self.enabled:
            return
        try:
            if self._starts.pop(worker_ctx, None) is not None:
                self._children(worker_ctx.entrypoint, worker_ctx.service_name).in_flight.dec()
        except Exception:
            log.exception("chassis: metrics failed for %r", worker_ctx)


def _nameko_version() -> str:
    try:
        from importlib.metadata import version

        return version("nameko")
    except Exception:
        return "unknown"
