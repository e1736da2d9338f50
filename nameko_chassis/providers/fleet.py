"""Fleet introspection: every chassis process answers read-only snapshot requests over AMQP.

One :class:`FleetResponder` per PROCESS (several services may share a ``nameko run``): its own
kombu connection to nameko's ``AMQP_URI``, in one greenthread, consuming one exclusive,
auto-delete queue bound to the vhost's fanout exchange ``chassis.introspect`` (wire format:
:mod:`nameko_chassis.amqp.fleet`). A request is answered with the same collector and redaction
as the backdoor path (:func:`nameko_chassis.probe.collect.collect`), bounded by the request's
limits, to the request's ``reply_to`` queue.

Only ``hello`` and ``collect`` exist here: nothing on this path changes the service (killing a
worker and the REPL stay on the backdoor). Who may ask is who may publish to the exchange on
that vhost: see docs/fleet.md.

Settings (nameko config, else environment): ``CHASSIS.FLEET`` / ``$CHASSIS_FLEET`` (default
on; ``false`` switches the responder off) and ``CHASSIS.FLEET_RATE`` / ``$CHASSIS_FLEET_RATE``
(requests answered per second per process, default :data:`DEFAULT_RATE`; a burst of as many is
allowed; beyond it one ``rate_limited`` reply per second is sent and other requests are
dropped).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import eventlet
import kombu
from nameko.extensions import DependencyProvider

from .. import __version__
from ..amqp import fleet as wire
from ..config import ConfigError, nameko_config
from ..probe import privates
from ..probe.collect import Holds, collect, note_slices, warm
from ..probe.wire import share_frames

log = logging.getLogger(__name__)

#: Requests answered per second per process (and the burst allowed).
DEFAULT_RATE = 10.0
#: Seconds between two reconnection attempts, at most.
RECONNECT_MAX = 30.0
#: Whether a request hands the hub back between slices of a refresh's per-new-worker work
#: (:func:`nameko_chassis.probe.collect.warm`).
SLICES = True
#: When this process imported the chassis: its uptime's origin.
PROCESS_STARTED = time.time()

_STRUCTURE_KEYS = ("entrypoints", "dependencies", "subextensions")


def _setting(config: Mapping[str, Any], key: str, env: str) -> Any:
    section = config.get("CHASSIS") or {}
    value = section.get(key) if isinstance(section, Mapping) else None
    if value in (None, ""):
        value = os.environ.get(env)
    return None if value in (None, "") else value


def fleet_settings(config: Mapping[str, Any]) -> tuple[bool, float]:
    """``(enabled, rate)`` from the nameko config and the environment."""
    enabled = _setting(config, "FLEET", "CHASSIS_FLEET")
    if enabled is None:
        on = True
    elif isinstance(enabled, bool):
        on = enabled
    elif str(enabled).strip().lower() in ("1", "true", "yes", "on"):
        on = True
    elif str(enabled).strip().lower() in ("0", "false", "no", "off"):
        on = False
    else:
        raise ConfigError(f"CHASSIS.FLEET: expected true or false, got {enabled!r}")
    rate = _setting(config, "FLEET_RATE", "CHASSIS_FLEET_RATE")
    try:
        per_second = DEFAULT_RATE if rate is None else float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"CHASSIS.FLEET_RATE: expected a number, got {rate!r}") from None
    if per_second <= 0:
        raise ConfigError(f"CHASSIS.FLEET_RATE: must be > 0, got {rate!r}")
    return on, per_second


class RateLimit:
    """A token bucket: ``rate`` requests per second, bursts of ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()
        self.last_refusal = 0.0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def refusal_due(self) -> bool:
        """One "rate limited" reply per second at most; other refused requests get none."""
        now = time.monotonic()
        if now - self.last_refusal >= 1.0:
            self.last_refusal = now
            return True
        return False


class FleetResponder:
    """The process-wide responder. Providers :meth:`acquire` it in ``start()`` with their
    container and :meth:`release` it in ``stop()``; it answers while any container holds it."""

    _instance: FleetResponder | None = None

    def __init__(self, amqp_uri: str, *, rate: float = DEFAULT_RATE, ssl: Any = None) -> None:
        self.amqp_uri = amqp_uri
        self.ssl = ssl
        self.limit = RateLimit(rate)
        self.containers: list[Any] = []
        self.boot = uuid.uuid4().hex[:8]
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._gt: Any = None
        self._connection: Any = None
        self._producer: Any = None
        self._nameko: str | None = None
        self._structures: dict[int, tuple[Any, str]] = {}
        #: what the last requests cost: (hub stall ms, reply bytes), for tests and the bench
        self.answered = 0
        self.refused = 0
        self.last_stall_ms: float | None = None

    def __repr__(self) -> str:
        state = "answering" if self._gt is not None else "stopped"
        names = ",".join(str(getattr(c, "service_name", "?")) for c in self.containers)
        return f"<FleetResponder {self.host}:{self.pid} {state} services={names}>"

    @classmethod
    def acquire(cls, container: Any, amqp_uri: str, *, rate: float = DEFAULT_RATE,
                ssl: Any = None) -> FleetResponder:
        responder = cls._instance
        if responder is None:
            responder = cls._instance = cls(amqp_uri, rate=rate, ssl=ssl)
        elif responder.amqp_uri != amqp_uri:
            log.warning("chassis: fleet responder already on another AMQP_URI; %s answers there",
                        getattr(container, "service_name", "?"))
        if container not in responder.containers:
            responder.containers.append(container)
        if responder._gt is None:
            responder._gt = eventlet.spawn(responder._run)
        return responder

    def release(self, container: Any) -> None:
        if container in self.containers:
            self.containers.remove(container)
        self._structures.pop(id(container), None)
        if not self.containers:
            self.close()
            if FleetResponder._instance is self:
                FleetResponder._instance = None

    def close(self) -> None:
        gt, self._gt = self._gt, None
        if gt is not None:
            gt.kill()
        self._close_connection()

    def _close_connection(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # a broken connection may fail to close; it is gone anyway
                pass

    # -- the consuming greenthread -------------------------------------------------------------

    def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                self._connection = conn = kombu.Connection(self.amqp_uri, heartbeat=60,
                                                           ssl=self.ssl)
                channel = conn.channel()
                channel.basic_qos(0, 1, False)
                queue = wire.request_queue(self.host, self.pid, self.boot)
                consumer = kombu.Consumer(channel, queues=[queue], on_message=self._on_request,
                                          no_ack=False)
                consumer.consume()
                self._producer = kombu.Producer(conn.channel())
                log.info("chassis: fleet introspection on %s (exchange %s)",
                         queue.name, wire.EXCHANGE)
                delay = 1.0
                while True:
                    try:
                        conn.drain_events(timeout=1.0)
                    except TimeoutError:
                        conn.heartbeat_check()
            except Exception as exc:  # broker gone or refusing: try again, never die
                log.warning("chassis: fleet introspection lost its broker connection (%s: %s); "
                            "retrying in %gs", type(exc).__name__, exc, delay)
                self._close_connection()
                eventlet.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    def _on_request(self, message: Any) -> None:
        try:
            message.ack()
        except Exception:  # the channel broke: the reconnect loop sees it next
            return
        reply_to = message.properties.get("reply_to")
        correlation_id = message.properties.get("correlation_id")
        if not reply_to:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        # this greenthread may hand the hub back between slices of a refresh's work: the
        # request's figures are the sum of its holds (time away left out)
        holds = Holds(t0, privates.hub_pause() if SLICES else None)
        if not self.limit.allow():
            self.refused += 1
            if not self.limit.refusal_due():
                return
            reply: dict[str, Any] = {"v": wire.PROTOCOL, "op": "refused", "rate_limited": True,
                                     "replica": self.identity(),
                                     "rate": self.limit.rate}
        else:
            try:
                reply = self.answer(wire.parse_request(message.body), holds)
            except Exception as exc:  # a bad request gets an error reply, never a crash
                reply = {"v": wire.PROTOCOL, "op": "error", "replica": self.identity(),
                         "error": f"{type(exc).__name__}: {exc}"[:500]}
        body, encoding = wire.encode_reply(reply)
        stall_ms = holds.total(time.perf_counter()) * 1000
        cpu_ms = (time.thread_time() - c0) * 1000
        self.last_stall_ms = stall_ms
        self.answered += 1
        self._producer.publish(
            body, exchange="", routing_key=reply_to, correlation_id=correlation_id,
            content_type="application/json", content_encoding="binary",
            headers={wire.HEADER_ENCODING: encoding, wire.HEADER_STALL: round(stall_ms, 3),
                     wire.HEADER_CPU: round(cpu_ms, 3), wire.HEADER_BYTES: len(body)},
            delivery_mode=1, retry=False)

    # -- answers ---------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        now = time.time()
        services, versions = [], {}
        for c in list(self.containers):
            name = str(getattr(c, "service_name", "?"))
            services.append(name)
            versions[name] = str(getattr(getattr(c, "service_cls", None), "version", "") or "")
        if self._nameko is None:  # importlib.metadata reads files: once, not per request
            self._nameko = privates.library_versions().get("nameko") or "?"
        return {"id": f"{self.host}:{self.pid}:{self.boot}", "host": self.host, "pid": self.pid,
                "services": services, "versions": versions, "chassis": __version__,
                "nameko": self._nameko, "python": sys.version.split()[0],
                "started_at": PROCESS_STARTED, "uptime_s": round(now - PROCESS_STARTED, 3)}

    def answer(self, req: dict[str, Any], holds: Holds | None = None) -> dict[str, Any]:
        reply: dict[str, Any] = {"v": wire.PROTOCOL, "op": req["op"], "rate_limited": False,
                                 "replica": self.identity()}
        if req["op"] == "hello":
            return reply
        if holds is not None and holds.hand_back is not None:
            # the new workers' static parts first, in slices of at most SLICE_BUDGET_S, the
            # hub handed back between two (this responder's own greenthread: nothing else
            # uses its connection meanwhile); the collection then finds them cached
            try:
                warm(list(self.containers), holds.pause, holds.start,
                     max_workers=req["max_workers"])
            except Exception:
                pass  # the collection does what is missing
        stacks = req["stacks"]
        snapshot: Any = collect(list(self.containers),
                                stacks=frozenset(stacks) if isinstance(stacks, list) else stacks,
                                max_workers=req["max_workers"])
        known = req["structures"]
        by_name = {str(getattr(c, "service_name", "?")): c for c in self.containers}
        for raw in snapshot["containers"]:
            container = by_name.get(raw["service_name"])
            if container is None:
                continue
            structure = self._structure(container, raw)
            raw["structure"] = structure
            if structure in known:
                for key in _STRUCTURE_KEYS:
                    raw.pop(key, None)
            if req["history"] is not None and raw.get("history"):
                raw["history"] = raw["history"][-req["history"]:] if req["history"] else []
        if holds is not None:
            note_slices(snapshot, holds)
        reply["snapshot"] = share_frames(snapshot)
        return reply

    def _structure(self, container: Any, raw: dict[str, Any]) -> str:
        """A hash of what does not change while a container runs: every replica of a service
        has the same one, so the console needs it once per service."""
        cached = self._structures.get(id(container))
        if cached is not None and cached[0] is container:
            return cached[1]
        text = json.dumps([raw.get("service_class"), raw.get("max_workers"),
                           *(raw.get(k) for k in _STRUCTURE_KEYS)], sort_keys=True, default=str)
        digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
        self._structures[id(container)] = (container, digest)
        return digest


class FleetIntrospection(DependencyProvider):
    """Registers its container with the process's :class:`FleetResponder` in ``start()``.

    A no-op when ``CHASSIS.FLEET`` is false or ``AMQP_URI`` is not configured. Injects nothing
    (``None``). Never raises into the container: a broken fleet path only logs.
    """

    def __init__(self) -> None:
        self.responder: FleetResponder | None = None

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<FleetIntrospection [{service}] {'on' if self.responder else 'off'}>"

    def start(self) -> None:
        try:
            config = nameko_config()
            enabled, rate = fleet_settings(config)
            uri = config.get("AMQP_URI")
            if not enabled or not uri:
                return
            self.responder = FleetResponder.acquire(self.container, str(uri), rate=rate,
                                                    ssl=config.get("AMQP_SSL"))
        except Exception:
            log.exception("chassis: fleet introspection unavailable for %s",
                          self.container.service_name)

    def stop(self) -> None:
        responder, self.responder = self.responder, None
        if responder is not None:
            responder.release(self.container)

    def kill(self) -> None:
        # "Extensions should not raise during kill": release() only logs
        try:
            self.stop()
        except Exception:
            log.exception("chassis: fleet introspection failed to stop")

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
