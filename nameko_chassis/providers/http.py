"""The chassis HTTP server: one per process, for the chassis routes (``/metrics``,
``/health/live``, ``/health/ready``) on ``CHASSIS.HTTP_ADDRESS``, apart from nameko's own web
server. Shared by every service in the process, so several services never fight over a port,
and scrapes and probes never appear as workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.wsgi

log = logging.getLogger(__name__)

#: ``handler(environ) -> (status_code, headers, body)``
Route = Callable[[dict[str, Any]], tuple[int, list[tuple[str, str]], bytes]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


class _QuietLog:
    """eventlet.wsgi writes an access line per request; scrapes every few seconds are noise."""

    def write(self, data: str) -> None:
        pass


class ChassisHttpServer:
    """The process-wide HTTP server for chassis routes. Providers :meth:`acquire` it in
    ``start()`` and :meth:`release` it in ``stop()``; it listens while anyone holds it."""

    _instance: ChassisHttpServer | None = None

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.routes: dict[str, Route] = {}
        self._holders = 0
        self._sock: Any = None
        self._gt: Any = None

    def __repr__(self) -> str:
        state = f"listening on {self.bound_address}" if self._sock is not None else "stopped"
        return f"<ChassisHttpServer {state} routes={sorted(self.routes)}>"

    @classmethod
    def acquire(cls, address: tuple[str, int]) -> ChassisHttpServer:
        server = cls._instance
        if server is None:
            server = cls._instance = cls(address)
        elif server.address != address:
            log.warning("chassis: HTTP server already on %s; ignoring %s", server.address, address)
        server._holders += 1
        if server._sock is None:
            server._listen()
        return server

    def release(self) -> None:
        self._holders -= 1
        if self._holders <= 0:
            self._holders = 0
            self.close()

    @property
    def bound_address(self) -> tuple[str, int] | None:
        if self._sock is None:
            return None
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _listen(self) -> None:
        try:
            # exclusive: eventlet.listen would set SO_REUSEPORT, and a second process on the
            # same port would then take half the scrapes, with counters of its own
            self._sock = eventlet.listen(self.address, reuse_port=False)
        except OSError as exc:
            # a busy port must not stop the service: it runs without the chassis endpoints
            log.error("chassis: cannot listen on %s:%s for /metrics and /health: %s",
                      self.address[0], self.address[1], exc)
            self._sock = None
            return
        self._gt = eventlet.spawn(eventlet.wsgi.server, self._sock, self.wsgi_app,
                                  log=_QuietLog(), log_output=False, debug=False)
        log.info("chassis: /metrics and /health on http://%s:%s", *self.bound_address or ("?", 0))

    def close(self) -> None:
        gt, sock = self._gt, self._sock
        self._gt = self._sock = None
        if gt is not None:
            gt.kill()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def add_route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        handler = self.routes.get(path.rstrip("/") or "/")
        if handler is None:
            status, headers, body = 404, [("Content-Type", "text/plain")], b"not found\n"
        elif environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            status, headers, body = 405, [("Content-Type", "text/plain"), ("Allow", "GET")], \
                b"method not allowed\n"
        else:
            try:
                status, headers, body = handler(environ)
            except Exception:
                log.exception("chassis: %s failed", path)
                status, headers, body = 500, [("Content-Type", "text/plain")], b"internal error\n"
        start_response(f"{status} {_REASONS.get(status, '')}".rstrip(),
                       [*headers, ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


