"""The chassis' entrypoint spans (:class:`nameko_chassis.providers.spans.WorkerSpan`) export what
the SDK's own span exports for the same calls: in-process against the SDK's span with the same
provider, sampler and limits; and from a real ``nameko run`` worker that uses its span as users
do, exported over OTLP/HTTP into a sink that decodes protobuf."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nameko_chassis.providers.spans import SpanFactory, WorkerSpan
from tests.harness import wait_for
from tests.services.chassis_sinks import OtlpSink

SERVER, INTERNAL = SpanKind.SERVER.value + 1, SpanKind.INTERNAL.value + 1  # OTLP's numbers


class Keep(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.ended.append(span)


def pair(sampler: otel_sampling.Sampler = otel_sampling.ALWAYS_ON,
         limits: SpanLimits | None = None) -> tuple[Any, SpanFactory, Keep]:
    """An SDK tracer and a worker-span factory on the same provider, each with its processor."""
    provider = TracerProvider(sampler=sampler, span_limits=limits or SpanLimits())
    sdk = Keep()
    provider.add_span_processor(sdk)
    tracer = provider.get_tracer("t", "1")
    ours = Keep()
    return tracer, SpanFactory(tracer, ours, InstrumentationScope("t", "1"), limits), ours


def facts(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name, "kind": span.kind, "parent": span.parent,
        "trace_flags": span.context.trace_flags, "trace_state": span.context.trace_state,
        "attributes": dict(span.attributes or {}), "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [(link.context, dict(link.attributes or {})) for link in span.links],
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource, "scope": span.instrumentation_scope,
    }


def _exception() -> ValueError:
    try:
        raise ValueError("no")
    except ValueError as exc:
        return exc


LINKED = SpanContext(0x1234, 0x99, is_remote=True, trace_flags=TraceFlags(1))

#: what a worker may do with its span, each applied to the SDK's span and to ours
USES: dict[str, Callable[[Any], None]] = {
    "nothing": lambda span: None,
    "attributes": lambda span: (span.set_attribute("a", "x" * 50), span.set_attribute("n", 3),
                                span.set_attributes({"f": 1.5, "l": [1, 2], "bad": object(),
                                                     "m": {"x": [1]}}),
                                span.set_attribute("none", None)),
    "too many attributes": lambda span: [span.set_attribute(f"k{i}", i) for i in range(12)],
    "events": lambda span: [span.add_event(f"e{i}", {"i": i, "s": "y" * 40}) for i in range(6)],
    "exception": lambda span: span.record_exception(_exception(), {"extra": True},
                                                    escaped=True),
    "links": lambda span: (span.add_link(LINKED, {"why": "batch"}),
                           span.add_link(trace.INVALID_SPAN_CONTEXT)),
    "status": lambda span: (span.set_status(Status(StatusCode.ERROR, "bad")),
                            span.set_status(StatusCode.UNSET)),
    "ok is final": lambda span: (span.set_status(StatusCode.OK),
                                 span.set_status(StatusCode.ERROR, "later")),
    "renamed": lambda span: span.update_name("renamed"),
}


@pytest.mark.parametrize("use", list(USES))
def test_a_worker_span_exports_what_the_sdk_span_exports(use: str) -> None:
    limits = SpanLimits(max_span_attributes=8, max_events=4, max_attribute_length=20)
    tracer, factory, ours = pair(limits=limits)
    parent = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    attributes = {"nameko.entrypoint_type": "rpc", "nameko.call_id": "s.m.1"}
    sdk_span = tracer.start_span("s/m", context=parent, kind=SpanKind.SERVER,
                                 attributes=dict(attributes))
    span = factory.start("s/m", parent, SpanKind.SERVER, dict(attributes))
    assert isinstance(span, WorkerSpan) and span.is_recording()
    for one in (sdk_span, span):
        USES[use](one)
        one.end()
    assert not span.is_recording()
    span.set_attribute("after", "end")  # ignored, as on the SDK's span
    assert ours.ended == [span]
    assert dict(span.attributes).keys() >= attributes.keys()  # readable as on the SDK's span
    expected = facts(sdk_span)
    got = facts(span.readable())
    assert got == expected
    assert span.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert span.parent is not None and span.parent.span_id == 0xb7ad6b7169203331


def test_sampling_is_the_providers_sampler_as_the_sdk_asks_it() -> None:
    _, never, ours = pair(otel_sampling.ALWAYS_OFF)
    span = never.start("s/m", None, SpanKind.SERVER, {})
    assert not isinstance(span, WorkerSpan) and not span.is_recording()
    assert span.get_span_context().is_valid and not span.get_span_context().trace_flags.sampled
    span.end()
    assert ours.ended == []
    # parent-based: an unsampled parent gives an unsampled child in the same trace
    _, parented, _ = pair(otel_sampling.ParentBased(otel_sampling.ALWAYS_ON))
    unsampled = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    child = parented.start("s/m", unsampled, SpanKind.SERVER, {})
    assert not child.is_recording()
    assert child.get_span_context().trace_id == 0x0af7651916cd43dd8448eb211c80319c
    root = parented.start("s/m", None, SpanKind.SERVER, {})
    assert isinstance(root, WorkerSpan) and root.parent is None
    assert root.context.trace_flags.sampled


def test_a_child_span_of_a_worker_span_is_its_child() -> None:
    tracer, factory, _ = pair()
    span = factory.start("s/m", None, SpanKind.SERVER, {})
    with trace.use_span(span):
        child = tracer.start_span("inner")
    assert child.parent == span.get_span_context()
    assert child.get_span_context().trace_id == span.context.trace_id


@pytest.fixture
def otlp() -> Iterator[OtlpSink]:
    with OtlpSink() as sink:
        yield sink


def test_a_worker_using_its_span_exports_it_whole(start_service: Any, otlp: OtlpSink) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_",
                                                                      "CHASSIS_"))}
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    service = start_service("tests.providers.services_spans", env=env, config={
        "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint}})
    service.wait_answering("spans")
    assert service.rpc.call("spans", "annotate", "tea", timeout=20) == "tea"
    worker = wait_for(lambda: otlp.find(name="spans/annotated"), timeout=15,
                      what="the worker's span")[0]
    child = wait_for(lambda: otlp.find(name="pack"), timeout=15, what="the child span")[0]
    assert worker["kind"] == SERVER and child["kind"] == INTERNAL
    assert child["parent_span_id"] == worker["span_id"]
    assert child["trace_id"] == worker["trace_id"]
    assert child["attributes"] == {"shop.box": "small"}
    attributes = worker["attributes"]
    assert attributes["shop.item"] == "tea"
    assert attributes["nameko.entrypoint_type"] == "rpc"
    assert attributes["nameko.call_id"].startswith("spans.annotate.")
    assert attributes["shop.sizes"] == [1, 2, 3]
    assert attributes["shop.bad"] is None  # an invalid value: what the SDK's span keeps
    assert [e["name"] for e in worker["events"]] == ["picked", "exception"]
    assert worker["events"][0]["attributes"] == {"shop.shelf": 7}
    exception = worker["events"][1]["attributes"]
    assert exception["exception.type"] == "KeyError" and exception["shop.handled"] is True
    assert worker["status_code"] == StatusCode.ERROR.value and worker["status_message"] == \
        "partly"
    assert worker["service"] == "spans"


class Tagging(otel_sampling.Sampler):
    """Samples everything and adds an attribute of its own, as a sampler may."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Any = None, trace_state: Any = None
                      ) -> otel_sampling.SamplingResult:
        return otel_sampling.SamplingResult(otel_sampling.Decision.RECORD_AND_SAMPLE,
                                            {**(attributes or {}), "sampled.by": "tagging"})

    def get_description(self) -> str:
        return "Tagging"


def test_a_samplers_own_attributes_are_the_spans_as_with_the_sdk() -> None:
    tracer, factory, _ = pair(Tagging())
    sdk_span = tracer.start_span("s/m", kind=SpanKind.SERVER, attributes={"a": "1"})
    span = factory.start("s/m", None, SpanKind.SERVER, {"a": "1"})
    for one in (sdk_span, span):
        one.end()
    assert isinstance(span, WorkerSpan)
    assert facts(span.readable())["attributes"] == facts(sdk_span)["attributes"] == {
        "a": "1", "sampled.by": "tagging"}
