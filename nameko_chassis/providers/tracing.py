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
default. Export happens on a real OS thread (:mod:`.export`): spans are encoded and sent off the
hub, and a missing collector never reaches a worker.
Within a worker, ``opentelemetry.trace.get_current_span()`` is the worker's span, and
``self.tracing`` is a tracer for child spans.

Outgoing hops get spans of their own: a ``CLIENT`` span per RPC call a worker makes through a
``ClusterRpc``/``ServiceRpc`` dependency (from the request until the reply is read) and a
``PRODUCER`` span per event dispatched (``EventDispatcher``) or message published
(``Publisher``); their context, not the worker's, goes out in the message headers, so the
receiving worker's span is the hop's child. The provider wraps those dependencies' publishers in
its own container only (in ``start()``), never nameko's classes.

**opentelemetry-instrumentation-nameko.** When its ``NamekoInstrumentor`` is instrumented (or
nameko's worker hooks are wrapped the way it wraps them), it traces the workers and the hops,
and this provider adds no span at all: it checks at every worker, so instrumenting later is
covered too. One log line per container says which one traces. If no global tracer provider is
set by then, the chassis' own becomes the global one, so the instrumentation's spans are
exported to the configured endpoint.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from typing import Any

from nameko.extensions import DependencyProvider
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__
from ..config import TracingSettings, load_settings
from ..probe import entrypoints
from ..probe.redaction import exception_attributes, exception_text
from . import privates
from .bookkeeping import EXPECTED_ERROR, outcome_of
from .export import OffHubSpanProcessor
from .spans import SpanFactory

log = logging.getLogger(__name__)

#: Milliseconds the provider waits for queued spans when a container stops; an export still
#: running then is abandoned (its spans are lost: the endpoint did not take them in time).
FLUSH_TIMEOUT_MS = 1500

#: Milliseconds the process waits at exit for the export thread's last export. The SDK's own
#: default is 30 s, and an export to an endpoint that never answers lasts its whole timeout.
EXIT_TIMEOUT_MS = 500


def bounded_flush(provider: TracerProvider, timeout_ms: int = FLUSH_TIMEOUT_MS) -> bool:
    """``provider.force_flush(timeout_ms)``: the export runs on the export thread
    (:class:`~nameko_chassis.providers.export.OffHubSpanProcessor`), the hub only waits for it,
    in green sleeps, for at most ``timeout_ms``. ``True`` when the flush finished in time."""
    if provider.force_flush(timeout_ms):
        return True
    log.warning("chassis: spans not exported within %d ms at stop: dropped", timeout_ms)
    return False


TRACER_NAME = "nameko_chassis"
_NO_OP_TRACER = trace.NoOpTracer()

_providers: dict[tuple[Any, ...], TracerProvider] = {}
#: each provider's export processor, which the worker spans are handed to as they end
_processors: dict[TracerProvider, OffHubSpanProcessor] = {}

#: W3C trace context (``traceparent``/``tracestate``), used directly: the composite global
#: propagator would also carry baggage, at a cost on every call
W3C = TraceContextTextMapPropagator()


#: Outgoing RPC calls whose reply is awaited at most, per container (older ones end unanswered).
MAX_PENDING_CALLS = 10_000

# nameko sends context data as headers under this prefix (nameko.constants.HEADER_PREFIX)
_HEADER_PREFIX = "nameko."

INSTRUMENTATION = "opentelemetry-instrumentation-nameko"


def nameko_instrumented() -> bool:
    """Whether opentelemetry-instrumentation-nameko traces this process's workers.

    Public means only: its ``NamekoInstrumentor`` (a singleton) reports
    ``is_instrumented_by_opentelemetry`` — asked only when the package has been imported, as
    instrumenting it needs — or nameko's ``ServiceContainer._worker_setup`` /
    ``_worker_result`` are wrapped (``wrapt`` wrappers expose ``__wrapped__``), which is how it
    (or a tool patching nameko like it) opens a span per worker.
    """
    module = sys.modules.get("nameko_opentelemetry")
    instrumentor = getattr(module, "NamekoInstrumentor", None)
    if instrumentor is not None:
        try:
            if instrumentor().is_instrumented_by_opentelemetry:
                return True
        except Exception:
            pass
    return privates.worker_hooks_wrapped(privates.container_class_dict())


class _InstrumentationWatch:
    """:func:`nameko_instrumented`, recomputed only when nameko's worker hook object changes
    (instrumenting or uninstrumenting replaces it): one dict lookup per worker."""

    def __init__(self) -> None:
        self._hooks = privates.container_class_dict()  # a live view: instrumenting changes it
        self._hook: Any = object()
        self._active = False

    def active(self) -> bool:
        hook = self._hooks.get("_worker_setup")
        if hook is not self._hook:
            self._hook = hook
            self._active = nameko_instrumented()
        return self._active


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
        processor = OffHubSpanProcessor(exporter, exit_timeout_ms=EXIT_TIMEOUT_MS)
        provider.add_span_processor(processor)
        _processors[provider] = processor
        _providers[key] = provider
    return provider


class _EntrypointSpan:
    """What every span of one entrypoint shares, worked out once: its kind, span kind, name and
    the attributes that do not change between workers (all but the call id, for every kind
    but HTTP, whose request is per worker)."""

    __slots__ = ("kind", "span_kind", "name", "attributes")

    def __init__(self, worker_ctx: Any) -> None:
        self.kind = entrypoints.kind_of(worker_ctx.entrypoint)
        self.span_kind = SpanKind[entrypoints.span_kind(self.kind)]
        self.name, self.attributes = (("", {}) if self.kind == "http" else
                                      _span_name_and_attributes(worker_ctx, self.kind))
        self.attributes.pop("nameko.call_id", None)

    def name_and_attributes(self, worker_ctx: Any) -> tuple[str, dict[str, Any]]:
        if self.kind == "http":
            return _span_name_and_attributes(worker_ctx, self.kind)
        # the constant part is built once per entrypoint; only the call id is new
        return self.name, {**self.attributes, "nameko.call_id": str(worker_ctx.call_id)}


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


def http_status(worker_ctx: Any, result: Any, exc_info: Any) -> int | None:
    """The status nameko's HttpRequestHandler answers with (it builds the response after the
    worker's result reaches the providers); ``None`` for a worker of another kind.

    A failed worker's status is the entrypoint's own ``response_from_exception``: nameko's
    answers 400 for an expected exception and 500 otherwise, and a handler subclass that maps,
    say, werkzeug's ``NotFound`` to its ``code`` answers 404 — which is then what is recorded.
    """
    if entrypoints.kind_of(worker_ctx.entrypoint) != "http":
        return None
    if exc_info:
        try:
            status = worker_ctx.entrypoint.response_from_exception(exc_info[1]).status_code
            if isinstance(status, int):
                return status
        except Exception:
            pass  # a broken custom mapping: fall back to what nameko's own one answers
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
        self._worker_spans: SpanFactory | None = None  # the entrypoint spans' maker
        self._active: dict[Any, tuple[Any, Any]] = {}
        #: correlation id -> CLIENT span of an RPC call whose reply is not read yet
        self._calls: OrderedDict[str, Any] = OrderedDict()
        self._watch = _InstrumentationWatch()
        self._spans: dict[Any, _EntrypointSpan] = {}  # entrypoint -> its spans' static part
        self._instrumented = False
        self._told = False  # which one traces has been logged

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
            self._worker_spans = SpanFactory(self.tracer, _processors[self.provider],
                                             InstrumentationScope(TRACER_NAME, __version__))
            privates.warn_untested()
            self.instrumented()  # logs which one traces
        except Exception:
            log.exception("chassis: tracing off for %s", self.container.service_name)
            self.provider = self.tracer = self._worker_spans = None

    def instrumented(self) -> bool:
        """Whether opentelemetry-instrumentation-nameko traces this container's workers now (then
        this provider adds no spans). Logs one line whenever the answer changes."""
        active = self._watch.active()
        if active != self._instrumented or not self._told:
            self._told = True
            self._instrumented = active
            name = self.container.service_name
            if active:
                if self.provider is not None and isinstance(trace.get_tracer_provider(),
                                                            trace.ProxyTracerProvider):
                    # its spans go through the global provider: make that ours, exporting
                    trace.set_tracer_provider(self.provider)
                log.info("chassis: %s traces %s (NamekoInstrumentor is instrumented); "
                         "chassis tracing adds no spans", INSTRUMENTATION, name)
            else:
                log.info("chassis: nameko_chassis traces %s", name)
        return active

    def start(self) -> None:
        if self.tracer is None:
            return
        try:
            for dependency in list(self.container.dependencies):
                self._trace_outgoing(dependency)
        except Exception:
            log.exception("chassis: tracing outgoing calls failed for %s",
                          self.container.service_name)

    def _trace_outgoing(self, dependency: Any) -> None:
        names = {c.__name__ for c in type(dependency).__mro__}
        if "ClusterRpc" in names:
            kind = "rpc"
        elif "EventDispatcher" in names:
            kind = "event"
        elif "Publisher" in names and type(dependency).__module__.startswith("nameko."):
            kind = "message"
        else:
            return
        publisher = privates.dependency_publisher(dependency)
        if publisher is None or isinstance(publisher, _TracedPublisher):
            return
        privates.set_dependency_publisher(dependency, _TracedPublisher(publisher, self, kind))
        listener = privates.reply_listener(dependency) if kind == "rpc" else None
        if listener is not None and not getattr(listener, "_chassis_traced", False):
            listener.register_for_reply = self._traced_register(listener.register_for_reply)
            listener._chassis_traced = True

    def _traced_register(self, register: Any) -> Any:
        def register_for_reply(correlation_id: str) -> Any:
            get_reply = register(correlation_id)

            def traced_get_reply(*args: Any, **kwargs: Any) -> Any:
                try:
                    body = get_reply(*args, **kwargs)
                except BaseException as exc:
                    self._end_call(correlation_id, error=type(exc).__name__)
                    raise
                error = body.get("error") if isinstance(body, dict) else None
                self._end_call(correlation_id, error=(error or {}).get("exc_type") or
                               ("RemoteError" if error else None))
                return body

            return traced_get_reply

        return register_for_reply

    def _end_call(self, correlation_id: str, error: str | None = None) -> None:
        span = self._calls.pop(correlation_id, None)
        if span is None:
            return
        try:
            if error:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()
        except Exception:
            log.exception("chassis: ending an RPC client span failed")

    def outgoing_span(self, kind: str, publisher: Any, kwargs: dict[str, Any]) -> Any:
        """A CLIENT/PRODUCER span for a message about to be published from a traced worker
        (``None`` outside one), its context written into the message's headers."""
        if self.tracer is None or not self._active or self.instrumented():
            return None
        parent = trace.get_current_span()
        if not parent.get_span_context().is_valid:
            return None  # not inside a traced worker
        routing_key = str(kwargs.get("routing_key") or "")
        # a messaging Publisher's exchange is one of its core publisher's publish options
        exchange = kwargs.get("exchange") or privates.publish_options(publisher).get("exchange")
        destination = str(getattr(exchange, "name", "") or "")
        if kind == "rpc":
            service, _, method = routing_key.rpartition(".")
            name = f"{service}/{method}"
            attrs: dict[str, Any] = {"rpc.system": "nameko", "rpc.service": service,
                                     "rpc.method": method}
            span_kind = SpanKind.CLIENT
        else:
            name = f"publish {destination or routing_key}"
            attrs = {"messaging.system": "rabbitmq", "messaging.operation.type": "send",
                     "messaging.destination.name": destination or routing_key,
                     "messaging.rabbitmq.destination.routing_key": routing_key}
            span_kind = SpanKind.PRODUCER
        span = self.tracer.start_span(name, kind=span_kind, attributes=attrs)
        carrier: dict[str, str] = {}
        W3C.inject(carrier, context=trace.set_span_in_context(span))
        headers = dict(kwargs.get("extra_headers") or {})
        headers.update({_HEADER_PREFIX + k: v for k, v in carrier.items()})
        kwargs["extra_headers"] = headers
        if kind == "rpc":
            correlation_id = kwargs.get("correlation_id")
            if correlation_id:
                self._calls[str(correlation_id)] = span
                while len(self._calls) > MAX_PENDING_CALLS:
                    self._calls.popitem(last=False)[1].end()
        return span

    def stop(self) -> None:
        if self.provider is not None:
            try:
                bounded_flush(self.provider)
            except Exception:
                log.exception("chassis: flushing spans failed")

    def get_dependency(self, worker_ctx: Any) -> trace.Tracer:
        return self.tracer or _NO_OP_TRACER

    def worker_setup(self, worker_ctx: Any) -> None:
        worker_spans = self._worker_spans
        if worker_spans is None or self.instrumented():
            return
        try:
            static = self._spans.get(worker_ctx.entrypoint)
            if static is None:
                static = self._spans[worker_ctx.entrypoint] = _EntrypointSpan(worker_ctx)
            name, attributes = static.name_and_attributes(worker_ctx)
            span = worker_spans.start(name, _parent_context(worker_ctx, static.kind),
                                      static.span_kind, attributes)
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
            status_code = http_status(worker_ctx, result, exc_info)
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
        if self._calls:
            self._end_unanswered(span)
        try:
            span.end()
        except Exception:
            log.exception("chassis: ending a span failed for %r", worker_ctx)
        try:
            otel_context.detach(token)
        except Exception:
            log.exception("chassis: detaching the trace context failed for %r", worker_ctx)

    def _end_unanswered(self, worker_span: Any) -> None:
        # RPC calls the worker made and never read the reply of (call_async, then gone)
        span_id = worker_span.get_span_context().span_id
        for correlation_id, span in list(self._calls.items()):
            parent = getattr(span, "parent", None)
            if parent is not None and parent.span_id == span_id:
                self._end_call(correlation_id)


class _TracedPublisher:
    """Stands in for an RPC, event or message dependency's nameko ``Publisher`` (nothing else
    changes): a publish from inside a traced worker gets a CLIENT or PRODUCER span whose
    context replaces the worker's in the message headers."""

    def __init__(self, publisher: Any, tracing: Tracing, kind: str) -> None:
        self._publisher = publisher
        self._tracing = tracing
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)

    def __repr__(self) -> str:
        return f"<traced {self._kind} {self._publisher!r}>"

    def publish(self, payload: Any, **kwargs: Any) -> Any:
        try:
            span = self._tracing.outgoing_span(self._kind, self._publisher, kwargs)
        except Exception:
            log.exception("chassis: starting an outgoing span failed")
            span = None
        if span is None:
            return self._publisher.publish(payload, **kwargs)
        try:
            result = self._publisher.publish(payload, **kwargs)
        except BaseException as exc:
            if self._kind == "rpc":
                self._tracing._calls.pop(str(kwargs.get("correlation_id")), None)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
            span.end()
            raise
        if self._kind != "rpc":
            span.end()
        return result
