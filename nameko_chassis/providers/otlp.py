"""OTLP protobuf for a batch of spans, written directly: :func:`encode_request`.

The SDK's encoder builds a protobuf object for every span, attribute and value before
serialising them (~25 µs a span here, on the export thread, holding the GIL the hub waits for).
A plain worker span — its attributes plain values, no events, no links, the common case — is
written here straight from its facts as bytes; the bytes of each (resource, scope) group, and of
each attribute seen before (an entrypoint's constant ones), are made once. Any other span (the
SDK's own spans, a worker span with events, links or values to clean) goes through the SDK's
encoder, so the request is the one ``encode_spans(spans)`` makes, field for field
(tests/providers/test_otlp_encoding.py holds the two to the same decoded message).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from .spans import WorkerSpan

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack

# SpanFlags: HAS_IS_REMOTE (0x100), IS_REMOTE (0x200)
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32(0x100)  # field 16, fixed32
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x300)

#: string attribute (key, value) -> its KeyValue field bytes: an entrypoint's constant attributes
#: are written once (bounded; call ids are not kept)
_ATTRIBUTE_CACHE: dict[tuple[str, str], bytes] = {}
MAX_CACHED_ATTRIBUTES = 4096


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes | None:
    """An AnyValue's bytes for a plain value; None for a value this module leaves to the SDK.
    The oneof field is written even when it holds its default ("", False, 0): a set oneof has
    presence, and the SDK's AnyValue writes it."""
    kind = type(value)
    if kind is str:
        return _field(1, value.encode("utf-8"))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if not -(1 << 63) <= value < (1 << 63):
            return None  # the SDK's encoder drops it (and logs why)
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    return None


def _key_value(key: str, value: Any) -> bytes | None:
    """A span's ``attributes`` field (9) holding one KeyValue, or None (see _any_value)."""
    # only strings are cached: 1, 1.0 and True, or 0.0 and -0.0, are equal keys
    cacheable = type(value) is str and key != "nameko.call_id"  # a call id is never seen twice
    if cacheable:
        cached = _ATTRIBUTE_CACHE.get((key, value))
        if cached is not None:
            return cached
    encoded = _any_value(value)
    if encoded is None:
        return None
    out = _field(9, _field(1, key.encode("utf-8")) + _field(2, encoded))
    if cacheable and len(_ATTRIBUTE_CACHE) < MAX_CACHED_ATTRIBUTES:
        _ATTRIBUTE_CACHE[(key, value)] = out
    return out


def _plain_span(span: WorkerSpan) -> bytes | None:
    """A worker span's Span message written directly, or None when the SDK must write it
    (events, links, values to clean, limits that would apply)."""
    if span._events or span._links:
        return None
    attributes = span._attributes
    limits = span._factory.limits
    if limits.max_span_attributes is not None and len(attributes) > limits.max_span_attributes:
        return None
    longest = limits.max_span_attribute_length
    parts = []
    for key, value in attributes.items():
        if not key or type(key) is not str:
            return None
        if longest is not None and type(value) is str and len(value) > longest:
            return None
        encoded = _key_value(key, value)
        if encoded is None:
            return None
        parts.append(encoded)
    context = span.context
    state = context.trace_state
    parent = span.parent
    status = span.status
    name = span.name.encode("utf-8")
    out = [
        b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
        b"\x12\x08", context.span_id.to_bytes(8, "big"),
    ]
    if state:
        out.append(_field(3, ",".join(f"{k}={v}" for k, v in state.items()).encode("utf-8")))
    if parent is not None:
        out += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    if name:
        out.append(_field(5, name))
    kind = span.kind.value + 1  # OTLP numbers kinds from 1 (0 is UNSPECIFIED)
    out += (b"\x30", _varint(kind), b"\x39", _FIXED64(span.start_time),
            b"\x41", _FIXED64(span.end_time or 0))
    out += parts
    code = status.status_code.value
    description = status.description
    out.append(_field(15, (_field(2, description.encode("utf-8")) if description else b"") +
                      (b"\x18" + _varint(code) if code else b"")))
    out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return _field(2, b"".join(out))


#: (resource, scope) -> (ResourceSpans head bytes, ScopeSpans head bytes, schema urls)
_GROUPS: dict[tuple[Any, Any], tuple[bytes, bytes, bytes, bytes]] = {}


def _group_bytes(resource: Any, scope: Any) -> tuple[bytes, bytes, bytes, bytes]:
    """The fields of a ResourceSpans and of a ScopeSpans around their spans, made once per
    (resource, scope) with the SDK's encoder: (resource field, resource schema url field,
    scope field, scope schema url field)."""
    key = (resource, scope)
    found = _GROUPS.get(key)
    if found is None:
        made = encode_spans([_Stub(resource, scope)]).resource_spans[0]  # type: ignore[list-item]
        head = ResourceSpans(resource=made.resource).SerializeToString()
        url = ResourceSpans(schema_url=made.schema_url).SerializeToString()
        scoped = made.scope_spans[0]
        scope_head = ScopeSpans(scope=scoped.scope).SerializeToString()
        scope_url = ScopeSpans(schema_url=scoped.schema_url).SerializeToString()
        found = _GROUPS[key] = (head, url, scope_head, scope_url)
        if len(_GROUPS) > 64:  # resources are few; never let them grow without bound
            _GROUPS.clear()
    return found


class _Stub:
    """The least span the SDK's encoder accepts, to encode a (resource, scope) group."""

    def __init__(self, resource: Any, scope: Any) -> None:
        from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanKind, Status, StatusCode

        self.resource, self.instrumentation_scope = resource, scope
        self.context, self.parent, self.name = INVALID_SPAN_CONTEXT, None, ""
        self.kind, self.start_time, self.end_time = SpanKind.INTERNAL, 0, 0
        self.attributes: dict[str, Any] = {}
        self.events: tuple[Any, ...] = ()
        self.links: tuple[Any, ...] = ()
        self.status = Status(StatusCode.UNSET)
        self.dropped_attributes = self.dropped_events = self.dropped_links = 0

    def get_span_context(self) -> Any:
        return self.context


def _sdk_span(span: Any) -> tuple[Any, Any, bytes]:
    """(resource, scope, Span field bytes) of a span the SDK's encoder writes."""
    readable = span.readable() if type(span) is WorkerSpan else span
    request = encode_spans([readable])
    scoped = request.resource_spans[0].scope_spans[0]
    return (readable.resource, readable.instrumentation_scope or None,
            b"".join(_field(2, s.SerializeToString()) for s in scoped.spans))


def encode_request(spans: Sequence[Any], pause: Callable[[], None] | None = None,
                   pause_every: int = 64) -> bytes:
    """The ExportTraceServiceRequest of ``spans`` (WorkerSpans and SDK ReadableSpans), as the
    SDK's ``encode_spans(spans).SerializePartialToString()`` would decode: spans grouped by
    resource, then by instrumentation scope, in the order first seen. ``pause()`` is called
    after every ``pause_every`` spans (the export thread hands the GIL over there)."""
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    for n, span in enumerate(spans, 1):
        if pause is not None and not n % pause_every:
            pause()
        encoded = _plain_span(span) if type(span) is WorkerSpan else None
        if encoded is None:
            resource, scope, encoded = _sdk_span(span)
        else:
            resource, scope = span.resource, span._factory.scope
        groups.setdefault(resource, {}).setdefault(scope, []).append(encoded)
    return b"".join(_resource_spans(resource, scopes) for resource, scopes in groups.items())


def _resource_spans(resource: Any, scopes: dict[Any, list[bytes]]) -> bytes:
    body: list[bytes] = []
    url = b""
    for scope, encoded in scopes.items():
        head, url, scope_head, scope_url = _group_bytes(resource, scope)
        if not body:
            body.append(head)
        body.append(_field(2, scope_head + b"".join(encoded) + scope_url))
    body.append(url)
    return _field(1, b"".join(body))


def spans_of(batch: Iterable[Any]) -> list[Any]:
    """``batch`` as the SDK's ``ReadableSpan``s (what an exporter other than OTLP/HTTP is
    given)."""
    return [span.readable() if type(span) is WorkerSpan else span for span in batch]
