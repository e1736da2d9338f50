"""The chassis' OTLP encoder (:func:`nameko_chassis.providers.otlp.encode_request`) writes the
request the SDK's ``encode_spans`` writes: both decoded by protobuf and compared whole, for
worker spans written directly, worker spans the SDK writes, the SDK's own spans, several
resources and scopes in one batch, and every plain attribute value at its edges."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nameko_chassis.providers import otlp
from nameko_chassis.providers.spans import SpanFactory, WorkerSpan
from tests.providers.test_worker_spans import USES, Keep

EDGES: dict[str, Any] = {
    "empty": "", "text": "tea ☕ \u0000", "long": "x" * 300, "false": False, "true": True,
    "zero": 0, "one": 1, "negative": -5, "min": -(1 << 63), "max": (1 << 63) - 1,
    "huge": 1 << 70, "float zero": 0.0, "negative zero": -0.0, "float": -2.5e-300,
    "nan": float("nan"), "inf": float("inf"), "tuple": ("a", "b"), "ints": (1, 2),
    "bytes": b"\x00\xff", "none": None,
}


def factory(resource: Resource, scope: str = "t", limits: SpanLimits | None = None
            ) -> tuple[Any, SpanFactory]:
    provider = TracerProvider(resource=resource, span_limits=limits or SpanLimits())
    keep = Keep()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer(scope, "1")
    return tracer, SpanFactory(tracer, keep, InstrumentationScope(scope, "1"), limits)


def decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def same(spans: list[Any]) -> None:
    ours = decoded(otlp.encode_request(spans))
    theirs = decoded(encode_spans(otlp.spans_of(spans)).SerializePartialToString())
    # NaN != NaN: compare the bytes of each decoded message, re-serialised deterministically
    assert ours.SerializeToString(deterministic=True) == \
        theirs.SerializeToString(deterministic=True)
    assert len(ours.resource_spans) == len(theirs.resource_spans)


PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("value", list(EDGES), ids=list(EDGES))
def test_every_plain_value_is_written_as_the_sdk_writes_it(value: str) -> None:
    _, spans = factory(Resource.create({"service.name": "s"}))
    span = spans.start("s/m", None, SpanKind.SERVER, {"v": EDGES[value], "k": "same"})
    span.end()
    same([span])
    # plain values take the direct path; the rest is the SDK's to write
    direct = type(EDGES[value]) in (str, bool, int, float) and value != "huge"
    assert isinstance(span, WorkerSpan) and (otlp._plain_span(span) is not None) == direct


@pytest.mark.parametrize("use", list(USES))
def test_worker_spans_used_every_way(use: str) -> None:
    limits = SpanLimits(max_span_attributes=8, max_events=4, max_attribute_length=20)
    _, spans = factory(Resource.create({"service.name": "s", "n": 3}), limits=limits)
    parent = TraceContextTextMapPropagator().extract({"traceparent": PARENT,
                                                      "tracestate": "a=1,b=2"})
    span = spans.start("s/m", parent, SpanKind.CONSUMER,
                       {"nameko.call_id": "s.m.1", "nameko.entrypoint_type": "rpc"})
    USES[use](span)
    span.end()
    assert isinstance(span, WorkerSpan)
    same([span])


def test_a_mixed_batch_keeps_the_sdks_grouping() -> None:
    one = Resource.create({"service.name": "one"})
    sdk_tracer, spans = factory(one)
    other_tracer, other = factory(Resource.create({"service.name": "two", "list": ("x",)}),
                                  scope="u")
    batch: list[Any] = []
    for i in range(5):
        span = spans.start("s/m", None, SpanKind.SERVER, {"nameko.call_id": f"c{i}", "i": i})
        if i == 3:
            span.set_status(Status(StatusCode.ERROR, "broken"))
        span.end()
        child = sdk_tracer.start_span("child", kind=SpanKind.CLIENT, attributes={"i": i})
        child.end()
        elsewhere = other.start("o/m", None, SpanKind.INTERNAL, {"x": "y"})
        elsewhere.end()
        sdk_other = other_tracer.start_span("sdk-o")
        sdk_other.add_event("e", {"a": 1})
        sdk_other.end()
        batch += [span, child, elsewhere, sdk_other]
    same(batch)
    request = decoded(otlp.encode_request(batch))
    names = [{kv.key: kv.value.string_value for kv in r.resource.attributes}["service.name"]
             for r in request.resource_spans]
    assert names == ["one", "two"]
    assert [len(r.scope_spans) for r in request.resource_spans] == [1, 1]
    assert sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans) == 20


def test_the_encoder_pauses_every_so_many_spans_and_writes_the_same() -> None:
    _, spans = factory(Resource.create({"service.name": "s"}))
    batch = []
    for i in range(130):
        span = spans.start("s/m", None, SpanKind.SERVER, {"nameko.call_id": f"c{i}"})
        span.end()
        batch.append(span)
    pauses: list[int] = []
    paused = otlp.encode_request(batch, lambda: pauses.append(1), pause_every=64)
    assert len(pauses) == 2  # after the 64th and the 128th
    assert paused == otlp.encode_request(batch)
    same(batch)
