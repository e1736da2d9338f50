"""OpenTelemetry traces for every entrypoint, exported over OTLP/HTTP in batches.

:class:`Tracing` opens one span per worker — ``SERVER`` for RPC and HTTP, ``CONSUMER`` for events
and consumers, ``INTERNAL`` for timers — with semantic-convention attributes, records the
exception and sets the status when the worker fails. The parent comes from W3C trace context in
the incoming nameko context data (RPC, events, consumers) or HTTP headers; the worker's own span
context is written back into its context data, which nameko sends as headers with every RPC call
and event dispatch the worker makes, so a call chain across services is one trace (and stays one
through services without the chassis, which pass context data on untouched).

A ``TracerProvider`` per service name (the resource differs), built from ``Resource.create``,
which honours ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``; the nameko service name is the
default. Export happens on the SDK's batch thread: a missing collector never reaches a worker.
Within a worker, ``opentelemetry.trace.get_current_span()`` is the worker's span, and
``self.tracing`` is a tracer for child spans.
"""

from __future__ import annotations

import logging
from typing import Any

from nameko.extensions import DependencyProvider
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__
from ..config import TracingSettings, load_settings
from ..probe import entrypoints
from ..probe.redaction import exception_attributes, exception_text
from .bookkeeping import EXPECTED_ERROR, outcome_of

log = logging.getLogger(__name__)

#: Seconds the provider waits for queued spans when a container stops.
FLUSH_TIMEOUT_MS = 2000

TRACER_NAME = "nameko_chassis"

_providers: dict[tuple[Any, ...], TracerProvider] = {}

#: W3C trace context (``traceparent``/``tracestate``), used directly: the composite global
#: propagator would also carry baggage, at a cost on every call
W3C = TraceContextTextMapPropagator()


def _samplers(rate: float) -> dict[str, otel_sampling.Sampler]:
    """The ``OTEL_TRACES_SAMPLER`` names of the specification, as the SDK's public samplers."""
    return {
        "always_on": otel_sampling.ALWAYS_ON,
        "always_off": otel_sampling.ALWAYS_OFF,
        "traceidratio": otel_sampling.TraceIdRatioBased(rate),
        "parentbased_always_on": otel_sampling.ParentBased(otel_sampling.ALWAYS_ON),
        "parentbased_always_off": otel_sampling.ParentBased(otel_sampling.ALWAYS_OFF),
        "parentbased_traceidratio": otel_sampling.ParentBasedTraceIdRatio(rate),
    }


def make_sampler(settings: TracingSettings) -> otel_sampling.Sampler:
    try:
        rate = float(settings.sampler_arg) if settings.sampler_arg is not None else 1.0
    except ValueError:
        rate = 1.0
    known = _samplers(rate)
    name = settings.sampler if settings.sampler in known else "parentbased_always_on"
    if name != settings.sampler:
        log.warning("chassis: unknown OTEL_TRACES_SAMPLER %r; using %s", settings.sampler, name)
    return known[name]


class _HashOnceResource(Resource):
    """A ``Resource`` that computes its hash once. The OTLP encoder groups every exported span
    by resource, and ``Resource.__hash__`` serialises the attributes to JSON each time; a
    resource never changes, so the hash need not either."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash

    def __eq__(self, other: object) -> bool:
        return other is self or super().__eq__(other)


def make_resource(settings: TracingSettings, service_name: str, version: str = "") -> Resource:
    attributes: dict[str, Any] = dict(settings.resource_attributes)
    if settings.service_name:
        attributes[SERVICE_NAME] = settings.service_name
    if version:
        attributes.setdefault(SERVICE_VERSION, version)
    resource = Resource.create(attributes)
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return _HashOnceResource(resource.attributes, resource.schema_url)


def tracer_provider(settings: TracingSettings, service_name: str, version: str = ""
                    ) -> TracerProvider:
    """The process's provider for this service (made once, exporting to the configured
    endpoint through a batch processor)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    key = (settings.traces_endpoint, tuple(sorted(settings.headers.items())), settings.timeout,
           settings.service_name, tuple(sorted(settings.resource_attributes.items())),
           settings.sampler, settings.sampler_arg, service_name, version)
    provider = _providers.get(key)
    if provider is None:
        provider = TracerProvider(resource=make_resource(settings, service_name, version),
                                  sampler=make_sampler(settings))
        exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint,
                                    headers=settings.headers or None, timeout=settings.timeout)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _providers[key] = provider
    return provider


def _span_name_and_attributes(worker_ctx: Any, kind: str) -> tuple[str, dict[str, Any]]:
    ep = worker_ctx.entrypoint
    service, method = worker_ctx.service_name, ep.method_name
    # every attribute costs CPU on every call: service and method are in the resource and the
    # span name, the rest is what a reader needs to find the worker (call id) and its kind
    attrs: dict[str, Any] = {
        "nameko.entrypoint_type": kind,
        "nameko.call_id": str(worker_ctx.call_id),
    }
    if kind == "rpc":
        attrs.update({"rpc.system": "nameko", "rpc.service": service, "rpc.method": method})
        return f"{service}/{method}", attrs
    if kind in ("event_handler", "consumer"):
        attrs.update({"messaging.system": "rabbitmq", "messaging.operation.type": "process",
                      "messaging.operation.name": "process"})
        if kind == "event_handler":
            source, event = getattr(ep, "source_service", "?"), getattr(ep, "event_type", "?")
            destination = f"{source}.events"
            attrs.update({"messaging.destination.name": destination,
                          "messaging.rabbitmq.destination.routing_key": str(event),
                          "nameko.event.source_service": str(source),
                          "nameko.event.type": str(event)})
            return f"process {source}.{event}", attrs
        queue = getattr(getattr(ep, "queue", None), "name", None) or "?"
        attrs["messaging.destination.name"] = str(queue)
        return f"process {queue}", attrs
    if kind == "http":
        request = worker_ctx.args[0] if worker_ctx.args else None
        verb = str(getattr(ep, "method", "") or getattr(request, "method", "GET")).upper()
        route = str(getattr(ep, "url", "") or "")
        attrs.update({"http.request.method": verb, "http.route": route})
        if request is not None:
            attrs["url.path"] = str(getattr(request, "path", ""))
            attrs["url.scheme"] = str(getattr(request, "scheme", "http"))
            host = getattr(request, "host", "")
            if host:
                name, _, port = str(host).partition(":")
                attrs["server.address"] = name
                if port.isdigit():
                    attrs["server.port"] = int(port)
            agent = request.headers.get("User-Agent") if hasattr(request, "headers") else None
            if agent:
                attrs["user_agent.original"] = str(agent)
        return f"{verb} {route}".strip(), attrs
    return f"{service}.{method}", attrs


def _parent_context(worker_ctx: Any, kind: str) -> Any:
    if kind == "http":
        request = worker_ctx.args[0] if worker_ctx.args else None
        headers = getattr(request, "headers", None)
        if headers is not None:
            return W3C.extract({k.lower(): v for k, v in headers.items()})
        return None
    if kind == "timer":
        return otel_context.Context()  # a timer starts a trace of its own
    return W3C.extract(worker_ctx.data)


def _http_status(worker_ctx: Any, result: Any, exc_info: Any) -> int | None:
    """The status nameko's HttpRequestHandler will answer with (it builds the response after
    the worker's result reaches the providers)."""
    if entrypoints.kind_of(worker_ctx.entrypoint) != "http":
        return None
    if exc_info:
        return 400 if outcome_of(worker_ctx, exc_info) == EXPECTED_ERROR else 500
    status = getattr(result, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(result, tuple) and result and isinstance(result[0], int):
        return result[0]
    return 200


class Tracing(DependencyProvider):
    """One span per worker, exported over OTLP/HTTP. A no-op unless an endpoint is configured
    (``OTEL.EXPORTER_OTLP_ENDPOINT`` / ``$OTEL_EXPORTER_OTLP_ENDPOINT``). Never raises into a
    worker."""

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None
        self._active: dict[Any, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<Tracing [{service}] {'on' if self.tracer else 'off'}>"

    def setup(self) -> None:
        try:
            settings = load_settings()
            if not settings.tracing.enabled:
                return
            version = getattr(self.container.service_cls, "version", "") or \
                settings.chassis.version
            self.provider = tracer_provider(settings.tracing, self.container.service_name,
                                            version)
            self.tracer = self.provider.get_tracer(TRACER_NAME, __version__)
        except Exception:
            log.exception("chassis: tracing off for %s", self.container.service_name)
            self.provider = self.tracer = None

    def stop(self) -> None:
        if self.provider is not None:
            try:
                self.provider.force_flush(FLUSH_TIMEOUT_MS)
            except Exception:
                log.exception("chassis: flushing spans failed")

    def get_dependency(self, worker_ctx: Any) -> trace.Tracer:
        return self.tracer or trace.NoOpTracer()

    def worker_setup(self, worker_ctx: Any) -> None:
        if self.tracer is None:
            return
        try:
            kind = entrypoints.kind_of(worker_ctx.entrypoint)
            name, attributes = _span_name_and_attributes(worker_ctx, kind)
            span = self.tracer.start_span(name, context=_parent_context(worker_ctx, kind),
                                          kind=SpanKind[entrypoints.span_kind(kind)],
                                          attributes=attributes)
            ctx = trace.set_span_in_context(span)
            token = otel_context.attach(ctx)
            self._active[worker_ctx] = (span, token)
            # outgoing RPC calls and events carry the worker's context data as headers
            W3C.inject(worker_ctx.data, context=ctx)
        except Exception:
            log.exception("chassis: starting a span failed for %r", worker_ctx)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        active = self._active.get(worker_ctx)
        if active is None:
            return
        span = active[0]
        try:
            status_code = _http_status(worker_ctx, result, exc_info)
            if status_code is not None:
                span.set_attribute("http.response.status_code", status_code)
            if exc_info:
                exc = exc_info[1]
                outcome = outcome_of(worker_ctx, exc_info)
                span.record_exception(exc, attributes=exception_attributes(exc))  # redacted
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_attribute("nameko.outcome", outcome)
                span.set_status(Status(StatusCode.ERROR,
                                       f"{type(exc).__name__}: {exception_text(exc)}"[:300]))
                if outcome == EXPECTED_ERROR:
                    span.set_attribute("nameko.expected_error", True)
            elif isinstance(status_code, int) and status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("nameko.outcome", "error")
        except Exception:
            log.exception("chassis: recording a span result failed for %r", worker_ctx)

    def worker_teardown(self, worker_ctx: Any) -> None:
        active = self._active.pop(worker_ctx, None)
        if active is None:
            return
        span, token = active
        try:
            span.end()
        except Exception:
            log.exception("chassis: ending a span failed for %r", worker_ctx)
        try:
            otel_context.detach(token)
        except Exception:
            log.exception("chassis: detaching the trace context failed for %r", worker_ctx)
