"""The chassis HTTP server (one per process) and the health provider.

:class:`ChassisHttpServer` serves the chassis routes (``/metrics``, ``/health/live``,
``/health/ready``) on ``CHASSIS.HTTP_ADDRESS``, apart from nameko's own web server: it is shared
by every service in the process, so several services never fight over a port, and scrapes and
probes never appear as workers.

:class:`Health` adds ``GET /health/live`` (the process is up and its hub answers) and
``GET /health/ready`` (every container registered in this process is started and its broker
consumers are connected; ``503`` with the reasons otherwise).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.wsgi
from nameko.extensions import DependencyProvider

from .config import load_settings

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

    @classmethod
    def current(cls) -> ChassisHttpServer | None:
        return cls._instance

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
            self._sock = eventlet.listen(self.address)
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


# ---------------------------------------------------------------------------------------------
# readiness


class _ConsumerWatch:
    """Follows one kombu ``ConsumerMixin`` (nameko's consumers) through its connection hooks."""

    def __init__(self, owner: str, consumer: Any) -> None:
        self.owner = owner
        self.consumer = consumer
        ready = getattr(consumer, "ready", None)
        self.connected = bool(ready is not None and ready.is_set())
        self.error: str | None = None
        self.since = time.time()
        on_ready = consumer.on_consume_ready
        on_error = consumer.on_connection_error

        def on_consume_ready(*args: Any, **kwargs: Any) -> Any:
            self.connected, self.error, self.since = True, None, time.time()
            return on_ready(*args, **kwargs)

        def on_connection_error(exc: Any, interval: Any) -> Any:
            self.connected, self.error, self.since = False, str(exc) or type(exc).__name__, \
                time.time()
            return on_error(exc, interval)

        # instance attributes shadow the methods kombu calls as self.on_...
        consumer.on_consume_ready = on_consume_ready
        consumer.on_connection_error = on_connection_error

    def problem(self) -> str | None:
        if getattr(self.consumer, "should_stop", False):
            return f"{self.owner}: consumer stopped"
        if self.error:
            return f"{self.owner}: broker connection failing ({self.error})"
        if not self.connected:
            return f"{self.owner}: not connected to the broker yet"
        return None


class _ContainerHealth:
    def __init__(self, container: Any) -> None:
        self.container = container
        self.stopped = False
        self.watches: list[_ConsumerWatch] = []
        seen: set[int] = set()
        for ext in list(container.extensions):
            consumer = getattr(ext, "consumer", None)
            if consumer is None or id(consumer) in seen:
                continue
            if not (hasattr(consumer, "on_consume_ready") and hasattr(consumer,
                                                                      "on_connection_error")):
                continue
            seen.add(id(consumer))
            self.watches.append(_ConsumerWatch(type(ext).__name__, consumer))

    def problems(self) -> list[str]:
        c = self.container
        if self.stopped or not getattr(c, "started", False):
            return ["container stopped"]
        if getattr(c, "_being_killed", False):
            return ["container being killed"]
        return [p for p in (w.problem() for w in self.watches) if p]


class HealthRegistry:
    """The containers of this process that answer ``/health/ready``."""

    def __init__(self) -> None:
        self.containers: dict[str, _ContainerHealth] = {}

    def live(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        body = json.dumps({"status": "live", "time": time.time()}).encode()
        return 200, [("Content-Type", "application/json")], body

    def ready(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        problems = {name: state.problems() for name, state in sorted(self.containers.items())}
        services = {name: {"ready": not p, "problems": p} for name, p in problems.items()}
        ok = bool(services) and not any(problems.values())
        reason = "; ".join(f"{name}: {', '.join(p)}" for name, p in problems.items() if p)
        if not services:
            reason = "no services registered"
        body = {"status": "ready" if ok else "not ready", "services": services}
        if not ok:
            body["reason"] = reason
        return (200 if ok else 503), [("Content-Type", "application/json")], \
            json.dumps(body).encode()


REGISTRY = HealthRegistry()


class Health(DependencyProvider):
    """``/health/live`` and ``/health/ready`` on the chassis HTTP server.

    A no-op unless ``CHASSIS.HTTP_ADDRESS`` (or ``$CHASSIS_HTTP_ADDRESS``) is set. Injects
    nothing useful into workers (``None``); its work happens in ``start()``/``stop()`` only.
    """

    def __init__(self) -> None:
        self.server: ChassisHttpServer | None = None
        self.state: _ContainerHealth | None = None

    def __repr__(self) -> str:
        return f"<Health [{getattr(getattr(self, 'container', None), 'service_name', '?')}]>"

    def start(self) -> None:
        try:
            address = load_settings().chassis.http_address
            if address is None:
                return
            self.state = _ContainerHealth(self.container)
            REGISTRY.containers[self.container.service_name] = self.state
            self.server = ChassisHttpServer.acquire(address)
            self.server.add_route("/health/live", REGISTRY.live)
            self.server.add_route("/health/ready", REGISTRY.ready)
        except Exception:
            log.exception("chassis: health endpoints unavailable for %s",
                          self.container.service_name)

    def stop(self) -> None:
        # the container stays registered, reported as stopped: a container that stops while
        # the process lives on is exactly what readiness must reveal
        if self.state is not None:
            self.state.stopped = True
        if self.server is not None:
            self.server.release()
            self.server = None

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
