"""The health provider: :class:`Health` adds ``GET /health/live`` (the process is up and its hub answers) and
``GET /health/ready`` (every container registered in this process is started and its broker
consumers are connected; ``503`` with the reasons otherwise).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from nameko.extensions import DependencyProvider

from ..config import load_settings
from . import privates
from .http import ChassisHttpServer

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# readiness


#: Seconds of slack on top of the negotiated heartbeat before a silent broker counts. A broker
#: that answers sends a frame at least every half heartbeat, so one heartbeat of silence is
#: already a missed beat with half a heartbeat to spare. kombu's consume loop stamps the last
#: frame received up to a second late (it checks once a second while idle), which can only
#: delay the verdict: readiness fails at most HEARTBEAT + SILENCE_SLACK + 1 s after the silence
#: begins.
SILENCE_SLACK = 0.5


class _ConsumerWatch:
    """Follows one kombu ``ConsumerMixin`` (nameko's consumers) through its connection hooks,
    and watches its live connection for a broker that stopped answering without closing it."""

    def __init__(self, owner: str, consumer: Any) -> None:
        self.owner = owner
        self.consumer = consumer
        ready = getattr(consumer, "ready", None)
        self.connected = bool(ready is not None and ready.is_set())
        self.error: str | None = None
        self.since = time.time()
        self.connection: Any = None  # the kombu Connection consuming now
        self.seen_recv: int | None = None  # its frame count at the last look
        self.seen_at = time.monotonic()
        on_ready = consumer.on_consume_ready
        on_error = consumer.on_connection_error

        def on_consume_ready(connection: Any, *args: Any, **kwargs: Any) -> Any:
            self.connected, self.error, self.since = True, None, time.time()
            self.connection, self.seen_recv, self.seen_at = connection, None, time.monotonic()
            return on_ready(connection, *args, **kwargs)

        def on_connection_error(exc: Any, interval: Any) -> Any:
            self.connected, self.error, self.since = False, str(exc) or type(exc).__name__, \
                time.time()
            self.connection = None
            return on_error(exc, interval)

        # instance attributes shadow the methods kombu calls as self.on_...
        consumer.on_consume_ready = on_consume_ready
        consumer.on_connection_error = on_connection_error

    def silence(self) -> tuple[float, float] | None:
        """``(seconds without a frame from the broker, negotiated heartbeat)`` when that is
        longer than the heartbeat (plus :data:`SILENCE_SLACK`): a broker that answers sends at
        least a heartbeat frame every half heartbeat. ``None`` when it is not, or heartbeats
        are off (``HEARTBEAT: 0``)."""
        state = privates.heartbeat_state(privates.amqp_connection(self.connection))
        if state is None:
            return None
        heartbeat, recv, last_beat = state
        now = time.monotonic()
        if recv != self.seen_recv:  # a busy consumer never runs kombu's heartbeat check
            self.seen_recv, self.seen_at = recv, now
        last = max(self.seen_at, last_beat)
        quiet = now - last
        return (quiet, float(heartbeat)) if quiet > heartbeat + SILENCE_SLACK else None

    def problem(self) -> str | None:
        if getattr(self.consumer, "should_stop", False):
            return f"{self.owner}: consumer stopped"
        if self.error:
            return f"{self.owner}: broker connection failing ({self.error})"
        if not self.connected:
            return f"{self.owner}: not connected to the broker yet"
        silent = self.silence()
        if silent is not None:
            return (f"{self.owner}: broker silent for {silent[0]:.0f}s "
                    f"(heartbeat {silent[1]:g}s)")
        return None


class _ContainerHealth:
    def __init__(self, container: Any) -> None:
        self.container = container
        self.stopped = False
        self.killed = False  # set by Health.kill(): nameko calls it when the container dies
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
        if self.killed:
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
            privates.warn_untested()
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
        if self.state is not None:
            self.state.killed = True
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
