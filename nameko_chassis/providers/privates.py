"""Every private (or undocumented) attribute of nameko, kombu and py-amqp that the providers
read, in one place — the providers' counterpart of :mod:`nameko_chassis.probe.privates`.

Each reach is a small function that cannot raise. ``TESTED_WITH`` names the versions they were
written and checked against; :func:`shape_problems` checks each reach against the libraries
installed (tests/providers/test_privates.py runs it, so an upgrade that moves one fails a test
rather than a health check in production), and :func:`warn_untested` logs once per process when
the service runs other versions.

OpenTelemetry: one. The OTLP/HTTP span exporter's HTTP client (``_client``), which
:mod:`.export` hands a request encoded by :mod:`.otlp` (the exporter's public ``export()``
encodes with the SDK's slower encoder); without it, spans go through ``export()``. The SDK's
batch processor's private ``_batch_processor`` (reached to bound its exit wait) is gone: spans
are exported by :mod:`.export`. sentry-sdk: none.
"""

from __future__ import annotations

import logging
from importlib.metadata import version as dist_version
from typing import Any

log = logging.getLogger(__name__)

#: The library versions the reaches below were checked against.
TESTED_WITH: dict[str, tuple[str, ...]] = {
    "nameko": ("3.0.0rc11",),
    "kombu": ("5.7.0",),
    "amqp": ("5.4.2",),
    "opentelemetry-exporter-otlp-proto-http": ("1.45.2",),
}


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TESTED_WITH:
        try:
            out[name] = dist_version(name)
        except Exception:
            out[name] = None
    return out


def untested_versions() -> list[str]:
    """``["kombu 5.8.0 (tested: 5.7.0)"]`` for every library at a version not checked here."""
    return [f"{name} {version} (tested: {', '.join(TESTED_WITH[name])})"
            for name, version in library_versions().items()
            if version is not None and version not in TESTED_WITH[name]]


_warned = False


def warn_untested() -> None:
    """Log, once per process, the libraries whose version these reaches were not checked on."""
    global _warned
    if _warned:
        return
    _warned = True
    untested = untested_versions()
    if untested:
        log.warning("chassis: providers read internals of %s; checked on other versions: "
                    "readiness, legacy metrics or RPC client spans may degrade",
                    ", ".join(untested))


# -- kombu / py-amqp: readiness under a silent broker (health.py) ----------------------------


def amqp_connection(connection: Any) -> Any:
    """The py-amqp ``Connection`` under a kombu ``Connection``, or None: kombu's private
    ``_connection`` (the public ``.connection`` would connect when it is not)."""
    return getattr(connection, "_connection", None)


def heartbeat_state(amqp: Any) -> tuple[float, int, float] | None:
    """``(negotiated heartbeat s, frames received, monotonic time of the last heartbeat)`` of
    a py-amqp connection (``heartbeat``, ``bytes_recv`` — a frame count, despite the name —
    ``last_heartbeat_received``); None without heartbeats or when the shape differs."""
    heartbeat = getattr(amqp, "heartbeat", None) or 0
    recv = getattr(amqp, "bytes_recv", None)
    if not heartbeat or not isinstance(recv, int):
        return None
    last = getattr(amqp, "last_heartbeat_received", 0) or 0
    try:
        return float(heartbeat), recv, float(last)
    except (TypeError, ValueError):
        return None


# -- nameko ----------------------------------------------------------------------------------


def running_workers(container: Any) -> int:
    """How many workers ``container`` runs now: ``len(container._worker_threads)`` (legacy
    metrics' ``running_workers`` gauge); 0 for a container gone (a dead weak proxy)."""
    try:
        return len(getattr(container, "_worker_threads", None) or ())
    except ReferenceError:  # extensions hold their container by weak proxy
        return 0


#: ``ServiceContainer``'s worker hooks, which opentelemetry-instrumentation-nameko wraps.
WORKER_HOOKS = ("_worker_setup", "_worker_result")


def container_class_dict() -> Any:
    """``ServiceContainer.__dict__`` (a live view): where its worker hooks are looked up."""
    from nameko.containers import ServiceContainer

    return ServiceContainer.__dict__


def worker_hooks_wrapped(hooks: Any) -> bool:
    """Whether a ``wrapt``-style wrapper (``__wrapped__``) stands in for a worker hook."""
    return any(hasattr(hooks.get(name), "__wrapped__") for name in WORKER_HOOKS)


def dependency_publisher(dependency: Any) -> Any:
    """The ``nameko.amqp.publish.Publisher`` an RPC, event or messaging dependency publishes
    through (``.publisher``, undocumented), or None."""
    return getattr(dependency, "publisher", None)


def set_dependency_publisher(dependency: Any, publisher: Any) -> None:
    dependency.publisher = publisher


def reply_listener(dependency: Any) -> Any:
    """An RPC dependency's ``ReplyListener`` (``.reply_listener``; its
    ``register_for_reply(correlation_id)`` returns the reply getter), or None."""
    return getattr(dependency, "reply_listener", None)


def publish_options(publisher: Any) -> dict[str, Any]:
    """A nameko ``Publisher``'s default publish options (``.publish_kwargs``: the messaging
    ``Publisher``'s exchange is one)."""
    options = getattr(publisher, "publish_kwargs", None)
    return options if isinstance(options, dict) else {}


# -- opentelemetry-exporter-otlp-proto-http: a request encoded elsewhere (export.py) -------------


class RefusedBatch(Exception):
    """A span batch the exporter's own checks refuse (see :func:`otlp_poster`)."""


def otlp_poster(exporter: Any) -> Any:
    """``post(data: bytes) -> bool``: the OTLP/HTTP span exporter's own HTTP client
    (``exporter._client.export``: its endpoint, headers, compression, TLS, timeout and retries)
    sending an ExportTraceServiceRequest encoded elsewhere, after the exporter's own checks
    (shut down, or larger than its ``_max_request_size``: :class:`RefusedBatch`). None
    for an exporter without that client (any other exporter: it gets ``export(spans)``)."""
    client = getattr(exporter, "_client", None)
    send = getattr(client, "export", None)
    if not callable(send) or not hasattr(exporter, "_shutdown"):
        return None

    def post(data: bytes) -> bool:
        # no logging here: this runs on the export thread, whose records export.py holds
        if getattr(exporter, "_shutdown", False):
            raise RefusedBatch("the span exporter is shut down")
        limit = getattr(exporter, "_max_request_size", 0)
        if isinstance(limit, int) and 0 < limit < len(data):
            raise RefusedBatch(f"a span batch of {len(data)} bytes is larger than the "
                               f"exporter's max_request_size ({limit} bytes)")
        return bool(getattr(send(data), "success", False))

    return post


# -- the shape check -------------------------------------------------------------------------


def shape_problems() -> list[str]:
    """What the installed libraries lack of the shape above (an empty list: all there). Builds
    a few objects and connects nothing."""
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    try:
        import amqp  # type: ignore[import-untyped]
        import kombu

        need("_connection" in vars(kombu.Connection), "kombu.Connection._connection")
        conn = amqp.Connection(host="127.0.0.1:1", heartbeat=10)  # not connected
        for attr in ("heartbeat", "bytes_recv", "last_heartbeat_received"):
            need(hasattr(conn, attr), f"amqp.Connection.{attr}")
        need(isinstance(getattr(conn, "bytes_recv", None), int), "amqp bytes_recv is an int")
    except Exception as exc:
        problems.append(f"kombu/amqp: {type(exc).__name__}: {exc}")
    try:
        import inspect

        from nameko.amqp.publish import Publisher
        from nameko.containers import ServiceContainer
        from nameko.events import EventDispatcher
        from nameko.messaging import Publisher as MessagePublisher
        from nameko.rpc import ClusterRpc, ReplyListener, rpc

        hooks = container_class_dict()
        for name in WORKER_HOOKS:
            need(callable(hooks.get(name)), f"ServiceContainer.{name}")

        class _Shape:
            name = "privates_shape"

            @rpc
            def noop(self) -> None:
                pass

        container = ServiceContainer(_Shape)  # binds its extensions, connects nothing
        need(isinstance(getattr(container, "_worker_threads", None), dict),
             "ServiceContainer._worker_threads")
        # the dependencies' setup() makes their publisher (and ClusterRpc's waits for its reply
        # listener's queue): read where they set it
        for cls in (ClusterRpc, MessagePublisher):
            need("self.publisher = " in inspect.getsource(cls),
                 f"{cls.__module__}.{cls.__name__}.publisher")
        need(issubclass(EventDispatcher, MessagePublisher), "EventDispatcher is a Publisher")
        need(isinstance(vars(ClusterRpc).get("reply_listener"), ReplyListener),
             "ClusterRpc.reply_listener")
        need(list(inspect.signature(ReplyListener.register_for_reply).parameters) ==
             ["self", "correlation_id"], "ReplyListener.register_for_reply(correlation_id)")
        need("publish_kwargs" in vars(Publisher(None)), "Publisher.publish_kwargs")
    except Exception as exc:
        problems.append(f"nameko: {type(exc).__name__}: {exc}")
    try:
        import inspect

        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:1/v1/traces")  # sends nothing
        send = getattr(getattr(exporter, "_client", None), "export", None)
        need(callable(send) and list(inspect.signature(send).parameters) == ["data"],
             "OTLPSpanExporter._client.export(data)")
        need(getattr(exporter, "_shutdown", None) is False, "OTLPSpanExporter._shutdown")
        need(isinstance(getattr(exporter, "_max_request_size", None), int),
             "OTLPSpanExporter._max_request_size")
        need("_client.export(serialized_data)" in inspect.getsource(OTLPSpanExporter.export),
             "OTLPSpanExporter.export posts through _client.export")
        exporter.shutdown()
    except Exception as exc:
        problems.append(f"opentelemetry-exporter-otlp-proto-http: {type(exc).__name__}: {exc}")
    return problems
