"""One table of entrypoint kinds: how to recognise each, what to record, how to label it, and
which span kind traces it. The collector, the chassis providers (metrics, Sentry, tracing) and
the views all read this table; a new kind is one row.

Kinds are recognised by class name along the entrypoint's MRO (no nameko import), so a subclass
of ``Rpc`` is still ``rpc``; any other entrypoint is its lower-cased class name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .redaction import safe_repr


@dataclass(frozen=True)
class EntrypointKind:
    #: the ``type`` of the snapshot's entrypoints and workers
    name: str
    #: nameko class names this kind recognises
    classes: tuple[str, ...]
    #: OpenTelemetry span kind of its workers (``opentelemetry.trace.SpanKind`` member name)
    span_kind: str
    #: (detail key, entrypoint attribute) recorded in the snapshot
    details: tuple[tuple[str, str], ...] = ()
    #: how views label an entrypoint inline, from its details (``""``: no label)
    label: str = ""


KINDS: tuple[EntrypointKind, ...] = (
    EntrypointKind("rpc", ("Rpc",), "SERVER"),
    EntrypointKind("http", ("HttpRequestHandler",), "SERVER",
                   (("http_method", "method"), ("url", "url")), "{http_method} {url}"),
    EntrypointKind("event_handler", ("EventHandler",), "CONSUMER",
                   (("source_service", "source_service"), ("event_type", "event_type"),
                    ("handler_type", "handler_type")), "{source_service} {event_type}"),
    EntrypointKind("consumer", ("Consumer",), "CONSUMER", (("queue", "queue"),), "{queue}"),
    EntrypointKind("timer", ("Timer",), "INTERNAL",
                   (("interval", "interval"), ("eager", "eager")), "every {interval}s"),
)
BY_NAME: dict[str, EntrypointKind] = {k.name: k for k in KINDS}
_BY_CLASS: dict[str, EntrypointKind] = {c: k for k in KINDS for c in k.classes}
#: Span kind of entrypoints of no known kind.
DEFAULT_SPAN_KIND = "INTERNAL"

_kind_by_type: dict[type, str] = {}


def kind_of(entrypoint: Any) -> str:
    """``rpc``, ``http``, ``event_handler``, ``consumer``, ``timer`` or the lower-cased class
    name of any other entrypoint. Cached per class: the providers call it for every worker."""
    t = type(entrypoint)
    kind = _kind_by_type.get(t)
    if kind is None:
        kind = next((_BY_CLASS[c.__name__].name for c in t.__mro__ if c.__name__ in _BY_CLASS),
                    t.__name__.lower())
        _kind_by_type[t] = kind
    return kind


def span_kind(kind: str) -> str:
    row = BY_NAME.get(kind)
    return row.span_kind if row is not None else DEFAULT_SPAN_KIND


def _qualified(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, list)) or value is None:
        return value
    return safe_repr(value)


def details(entrypoint: Any, kind: str | None = None) -> dict[str, Any]:
    """What the snapshot records of an entrypoint: its class, the details of its kind,
    ``sensitive_arguments`` and ``expected_exceptions``."""
    kind = kind or kind_of(entrypoint)
    attrs = getattr(entrypoint, "__dict__", None)
    get = attrs.get if isinstance(attrs, dict) else (lambda k, v=None: v)
    d: dict[str, Any] = {"class": _qualified(entrypoint)}
    row = BY_NAME.get(kind)
    for key, attr in (row.details if row is not None else ()):
        value = get(attr)
        if key == "queue" and value is not None:
            value = getattr(value, "name", None)
        elif key == "handler_type":
            value = str(value)
        d[key] = value
    sensitive = get("sensitive_arguments")
    if sensitive:
        d["sensitive_arguments"] = list(sensitive) if not isinstance(sensitive, str) else [sensitive]
    expected = get("expected_exceptions")
    if expected:
        exp = expected if isinstance(expected, tuple) else (expected,)
        d["expected_exceptions"] = [getattr(e, "__name__", str(e)) for e in exp]
    return {k: _json_safe(v) for k, v in d.items()}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def label(kind: str, details: Mapping[str, Any]) -> str:
    """The inline label of an entrypoint (``GET /orders/<int:id>``, ``every 1.0s``), or ``""``
    when its details say nothing (missing values, an unknown kind)."""
    row = BY_NAME.get(kind)
    if row is None or not row.label:
        return ""
    values = {k: ("" if v is None else str(v)) for k, v in details.items()}
    if not any(values.get(key) for key, _ in row.details):
        return ""
    return row.label.format_map(_Blank(values)).strip()


class _RequestLabel:
    """Stands in for an HTTP worker's request object in its arguments: ``GET /orders/3``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def shown_args(kind: str, args: Any) -> Any:
    """A worker's positional arguments as views show them: an HTTP worker's request (a
    werkzeug ``Request``, whose repr is mostly the host) becomes its method and path."""
    if kind != "http" or not args:
        return args
    request = args[0]
    method, path = getattr(request, "method", None), getattr(request, "full_path", None) or \
        getattr(request, "path", None)
    if not isinstance(method, str) or not isinstance(path, str):
        return args
    return (_RequestLabel(f"<{method} {path.rstrip('?')}>"), *tuple(args)[1:])
