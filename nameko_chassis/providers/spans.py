"""A worker's entrypoint span, kept light on the hub: :class:`WorkerSpan`.

The SDK's span does on the hub what only the exported copy needs: four (green) locks, a
``BoundedAttributes`` that checks every attribute of every span, an event list and a link list,
then a ``ReadableSpan`` copy at the end. A worker span records the facts instead — ids, name,
kind, parent, times, attributes as given, events, links, status — and the export thread
(:mod:`.export`) writes it: straight to OTLP protobuf when it is plain (:mod:`.otlp`), else as
the SDK's ``ReadableSpan`` with the same limits and checks (:meth:`WorkerSpan.readable`), off
the hub.

It is a ``opentelemetry.trace.Span``: ``trace.get_current_span()`` in a worker returns it, user
code may set attributes, add events and links, record exceptions and set the status on it as on
any span, and child spans made by any tracer take it as their parent. Sampling is the
provider's own sampler, asked exactly as the SDK asks it (:func:`start_worker_span`).

Only spans the chassis opens itself are worker spans; child spans, and the CLIENT/PRODUCER spans
of outgoing calls, are the SDK's.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from time import time_ns
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger(__name__)

#: attribute values kept as given; any other is cleaned on the hub when it is set, as the SDK
#: cleans it (a user's ``__str__`` must not run later on the export thread)
_PLAIN = frozenset((str, int, float, bool, bytes, type(None)))


def _cleaned(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` as a dict of its own, values the SDK would clean (sequences, mappings,
    other objects) cleaned now by the SDK's ``BoundedAttributes`` (limits apply at export)."""
    if all(type(value) in _PLAIN for value in attributes.values()):
        return dict(attributes)
    return dict(BoundedAttributes(None, attributes, immutable=False))


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class SpanFactory:
    """What every worker span of one tracer shares: the tracer's sampler, id generator,
    resource and scope, the limits, and the processor its ended spans go to."""

    __slots__ = ("tracer", "processor", "limits", "scope")

    def __init__(self, tracer: Any, processor: SpanProcessor, scope: InstrumentationScope,
                 limits: SpanLimits | None = None) -> None:
        self.tracer = tracer
        self.processor = processor
        self.scope = scope
        #: the provider's own are SpanLimits() too (it is made without limits): the same
        #: OTEL_SPAN_*/OTEL_ATTRIBUTE_* environment variables
        self.limits = limits or SpanLimits()

    def start(self, name: str, context: Any, kind: SpanKind,
              attributes: dict[str, Any]) -> trace.Span:
        """A started span, as ``tracer.start_span(name, context, kind, attributes)`` would
        sample and identify it: a :class:`WorkerSpan` when the sampler records it, else a
        ``NonRecordingSpan`` that still carries its context to the next hop."""
        tracer = self.tracer
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        ids = tracer.id_generator
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            random_trace_id = ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        result = tracer.sampler.should_sample(context, trace_id, name, kind, attributes, ())
        flags = _SAMPLED if result.decision.is_sampled() else _NOT_SAMPLED
        if random_trace_id:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        span_context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                   trace_flags=flags, trace_state=result.trace_state)
        if not result.decision.is_recording():
            return trace.NonRecordingSpan(span_context)
        # the span's attributes are the sampler's (the ones given, unless it changed them)
        return WorkerSpan(self, name, span_context, parent, kind, dict(result.attributes))


class WorkerSpan(trace.Span):
    """A recording span whose checks and SDK objects are made at export (see the module).
    Not thread-safe, like everything on the hub: one worker's greenthread uses it."""

    __slots__ = ("_factory", "name", "context", "parent", "kind", "start_time", "end_time",
                 "_attributes", "_events", "_links", "status", "resource")

    def __init__(self, factory: SpanFactory, name: str, context: SpanContext,
                 parent: SpanContext | None, kind: SpanKind, attributes: dict[str, Any]) -> None:
        self._factory = factory
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self._attributes = attributes  # a dict of its own
        self._events: list[tuple[str, Any, int]] | None = None
        self._links: list[Link] | None = None
        self.status = Status(StatusCode.UNSET)
        self.resource: Resource = factory.tracer.resource
        self.end_time: int | None = None
        self.start_time = time_ns()

    def __repr__(self) -> str:
        return f'WorkerSpan(name="{self.name}", context={self.context})'

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The attributes set so far, read-only (as the SDK's span's; limits apply at export)."""
        return MappingProxyType(self._attributes)

    # -- the API ------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def _ended(self, what: str) -> bool:
        if self.end_time is not None:
            log.warning("%s on ended span.", what)
            return True
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        if self._ended("Setting attribute"):
            return
        if type(value) in _PLAIN:
            self._attributes[key] = value
        else:
            self._attributes.update(_cleaned({key: value}))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None
                  ) -> None:
        if self._ended("Calling add_event"):
            return
        if self._events is None:
            self._events = []
        self._events.append((name, _cleaned(attributes) if attributes else None,
                             timestamp if timestamp is not None else time_ns()))

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return  # what the SDK drops
        if self._ended("Calling add_link"):
            return
        if self._links is None:
            self._links = []
        self._links.append(Link(context, _cleaned(attributes) if attributes else None))

    def update_name(self, name: str) -> None:
        if not self._ended("Calling update_name"):
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("Calling set_status"):
            return
        # as the SDK: OK is final, UNSET is ignored
        if self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                log.warning("Description %s ignored. Use either `Status` or "
                            "`(StatusCode, Description)`", description)
            self.status = status
        elif status is not StatusCode.UNSET:
            self.status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        facts: dict[str, Any] = {
            "exception.type": (f"{module}.{qualname}" if module and module != "builtins"
                               else qualname),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            facts.update(attributes)
        self.add_event("exception", facts, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended("Calling end()"):
            return
        self.end_time = end_time if end_time is not None else time_ns()
        self._factory.processor.on_end(self)  # type: ignore[arg-type]  # see readable()

    # -- on the export thread -----------------------------------------------------------

    def readable(self) -> ReadableSpan:
        """The SDK's ``ReadableSpan`` of this ended span, attributes, events and links checked
        and bounded by the limits as the SDK's span checks them."""
        limits = self._factory.limits
        attributes = BoundedAttributes(limits.max_span_attributes, self._attributes,
                                       immutable=True,
                                       max_value_len=limits.max_span_attribute_length)
        events: BoundedList = BoundedList(limits.max_events)
        for name, attrs, timestamp in self._events or ():
            events.append(Event(name, BoundedAttributes(
                limits.max_event_attributes, attrs, immutable=True,
                max_value_len=limits.max_attribute_length), timestamp))
        links: BoundedList = BoundedList(limits.max_links)
        for link in self._links or ():
            links.append(Link(link.context, BoundedAttributes(
                limits.max_link_attributes, link.attributes, immutable=True,
                max_value_len=limits.max_attribute_length)))
        return ReadableSpan(name=self.name, context=self.context, parent=self.parent,
                            resource=self.resource, attributes=attributes, events=events,
                            links=links, kind=self.kind, status=self.status,
                            start_time=self.start_time, end_time=self.end_time,
                            instrumentation_scope=self._factory.scope)
