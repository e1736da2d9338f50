"""Local HTTP sinks for the chassis tests: what the real sentry-sdk transport and the real OTLP/HTTP
exporter send, received and decoded.

- :class:`SentrySink` accepts envelopes (``POST /api/<project>/envelope/``, gzip or plain) and
  keeps the decoded events.
- :class:`OtlpSink` accepts ``POST /v1/traces`` (protobuf ``ExportTraceServiceRequest``) and keeps
  every span as a flat dict with its resource's ``service.name``.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in items}


class _Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                status, reply, ctype = sink.handle(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        raise NotImplementedError


class SentrySink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/42"

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        from sentry_sdk.envelope import Envelope

        envelope = Envelope.deserialize(body)
        with self.lock:
            for item in envelope.items:
                if item.type == "event" and item.payload.json is not None:
                    self.events.append(item.payload.json)
        return 200, b"{}", "application/json"

    def events_for(self, exc_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events
                    if any(v.get("type") == exc_type
                           for v in (e.get("exception") or {}).get("values", []))]


class OtlpSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append({
                        "service": resource.get("service.name"),
                        "resource": resource,
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": _attributes(span.attributes),
                        "status_code": span.status.code,
                        "status_message": span.status.message,
                        "events": [{"name": e.name, "attributes": _attributes(e.attributes)}
                                   for e in span.events],
                    })
        with self.lock:
            self.spans.extend(found)
        return 200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"

    def find(self, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            spans = list(self.spans)
        out = []
        for span in spans:
            attrs = match.get("attributes", {})
            if all(span.get(k) == v for k, v in match.items() if k != "attributes") and \
                    all(span["attributes"].get(k) == v for k, v in attrs.items()):
                out.append(span)
        return out


def _os_level(name: str) -> Any:
    """The unpatched module when eventlet has monkey-patched this process: the proxy's sockets
    and threads then live outside the hub, so closing them mid-read cannot leave stale hub
    listeners behind (which make a later reused descriptor fail with "Second simultaneous
    read"). Without eventlet, the ordinary module."""
    import importlib
    import sys

    if "eventlet" in sys.modules:
        from eventlet.patcher import original

        return original(name)
    return importlib.import_module(name)


class Blackhole:
    """A TCP port that accepts connections (in the kernel's backlog) and never answers: the
    worst kind of dead backend, which hangs a client until its timeout."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class TcpProxy:
    """Forwards a local port to ``upstream``; :meth:`cut` drops every connection and refuses new
    ones (the broker looks unreachable), :meth:`restore` listens again on the same port.
    :meth:`blackhole` keeps every socket open and accepts new connections, but forwards nothing
    either way (a broker gone silent: a partition, a hung host); :meth:`unblackhole` closes the
    connections whose bytes were dropped and forwards again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        socket = _os_level("socket")

        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener: Any = None
        self.conns: list[Any] = []
        self.holding = False
        self.lock = _os_level("threading").Lock()

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def restore(self) -> None:
        socket = _os_level("socket")

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        _os_level("threading").Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        socket = _os_level("socket")

        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def blackhole(self) -> None:
        self.holding = True

    def unblackhole(self) -> None:
        socket = _os_level("socket")

        with self.lock:
            self.holding = False
            conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: Any) -> None:
        socket = _os_level("socket")

        while True:
            try:
                client, _ = listener.accept()
            except (OSError, EOFError):
                return
            with self.lock:
                if self.holding:  # accepted, and never answered
                    self.conns.append(client)
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                _os_level("threading").Thread(target=self._pump, args=(a, b),
                                                daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.holding:
                    dst.sendall(data)
        except (OSError, EOFError):  # eventlet raises EOFError when cut() closes the socket
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
