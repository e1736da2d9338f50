"""The backlog of each container's queues: messages waiting in the broker (ready), messages this
process holds unacknowledged, and how fast the ready count changes. Standard library only.

A saturated pool (``10/10 FULL``) says new work waits, not how much; this says how much, per
queue the container consumes: ``rpc-<service>``, each ``@event_handler``'s and ``@consume``'s.

How, and what keeps it cheap and safe:

- A **sampler greenthread** of the probe's own (not a container's managed thread) is started by
  the first console request (:func:`touch`, called by the agent's ``collect``) and ends by
  itself :data:`IDLE_AFTER` seconds after the last one; ``CHASSIS_BACKLOG=0`` in the service's
  environment keeps it from starting.
- Every :data:`SAMPLE_EVERY` seconds it makes one **passive** ``queue.declare`` per queue (it
  never creates a queue) on a **broker connection of its own**, built from the settings the
  service's own consumers use, each round bounded by :data:`TIMEOUT`. It runs as a greenthread:
  while it waits for the broker, workers run; its own work on the hub is a few dict reads.
- ``unacked`` is what *this process* holds: messages delivered to it and not acknowledged yet,
  i.e. the workers running from that queue plus the messages waiting for a free worker (nameko
  parks each in a ``wait_for_worker_pool`` managed thread). The broker's count over every
  replica needs the management API; passive declares do not return it.
- The snapshot path (:func:`of`) only reads the last sample: no I/O, no wait.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from . import entrypoints, privates
from .schema import QueueBacklogDict

#: Seconds between two samples.
SAMPLE_EVERY = 2.0
#: The sampler stops this many seconds after the last console request.
IDLE_AFTER = 30.0
#: Seconds a sampling round (connect, every declare) may take before it is given up.
TIMEOUT = 3.0
#: The rate of change is measured over (at most) this many seconds of samples.
RATE_WINDOW = 10.0
#: Queues sampled per container at most.
MAX_QUEUES = 50
#: The environment variable that turns the sampler off (``0``), and the one that sets
#: :data:`IDLE_AFTER` (seconds).
ENVIRONMENT = "CHASSIS_BACKLOG"
IDLE_ENVIRONMENT = "CHASSIS_BACKLOG_IDLE_S"


def enabled_by_environment() -> bool:
    return os.environ.get(ENVIRONMENT, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_after_from_environment() -> float:
    try:
        return max(float(os.environ.get(IDLE_ENVIRONMENT, IDLE_AFTER)), 0.5)
    except ValueError:
        return IDLE_AFTER


class Sampler:
    """One per process (see :func:`touch`): samples every container's queues while asked."""

    def __init__(self, *, every: float = SAMPLE_EVERY, idle_after: float = IDLE_AFTER,
                 timeout: float = TIMEOUT) -> None:
        self.every = every
        self.idle_after = idle_after
        self.timeout = timeout
        self.containers: list[Any] = []
        self.asked_at = time.monotonic()
        self.running = False
        #: (service name, queue) -> its recent ready counts, for the rate
        self._rates: dict[tuple[str, str], ReadyRate] = {}
        #: service name -> the last sample of its queues
        self.last: dict[str, list[QueueBacklogDict]] = {}
        self.error: str | None = None
        self.rounds = 0
        #: milliseconds the last round spent reading the container's tables (held the hub)
        self.hub_ms: float | None = None
        self._conn: Any = None
        self._channel: Any = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<backlog.Sampler {state} rounds={self.rounds} services={sorted(self.last)}>"

    def start(self) -> None:
        self.running = True
        privates.spawn_greenthread(self._run)

    def _run(self) -> None:
        try:
            while time.monotonic() - self.asked_at < self.idle_after:
                started = time.monotonic()
                try:
                    with privates.green_timeout(self.timeout):
                        self.sample()
                    self.error = None
                except BaseException as exc:  # a broker hiccup never ends the sampler
                    self.error = f"{type(exc).__name__}: {exc}"[:300]
                    self._close()
                self.rounds += 1
                privates.green_sleep(max(self.every - (time.monotonic() - started), 0.05))
        finally:
            self.running = False
            self._close()

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except BaseException:
                pass

    def sample(self) -> None:
        """One round: every container's queues, declared passively."""
        spent = 0.0
        for container in list(self.containers):
            name = str(getattr(container, "service_name", "?"))
            t0 = time.perf_counter()  # the round's own work on the hub, without broker waits
            queues = queues_of(container)
            held = _held(container, queues)
            spent += time.perf_counter() - t0
            out: list[QueueBacklogDict] = []
            for queue, (kind, methods, consumer) in list(queues.items())[:MAX_QUEUES]:
                row: QueueBacklogDict = {
                    "queue": queue, "kind": kind, "entrypoints": sorted(methods),
                    "ready": None, "consumers": None, "unacked": held.get(queue, 0),
                    "rate_per_s": None, "sampled_at": time.time(), "error": None}
                try:
                    ready, consumers = self._declare(queue, consumer)
                except BaseException as exc:
                    if _is_timeout(exc):
                        raise
                    row["error"] = f"{type(exc).__name__}: {exc}"[:200]
                    out.append(row)
                    continue
                row["ready"], row["consumers"] = ready, consumers
                row["rate_per_s"] = self._rate(name, queue, ready)
                out.append(row)
            out.sort(key=lambda q: (q["kind"] != "rpc", q["queue"]))
            self.last[name] = out
        self.hub_ms = round(spent * 1000, 3)

    def _declare(self, queue: str, consumer: Any) -> tuple[int, int]:
        if self._conn is None:
            settings = privates.broker_settings(consumer)
            if settings is None:
                raise LookupError("no broker settings on the queue's consumer")
            self._conn = privates.broker_connection(*settings, timeout=self.timeout)
        self._channel, ready, consumers = privates.passive_declare(self._conn, self._channel,
                                                                   queue)
        return ready, consumers

    def _rate(self, service: str, queue: str, ready: int) -> float | None:
        rate = self._rates.get((service, queue))
        if rate is None:
            rate = self._rates[(service, queue)] = ReadyRate()
        rate.add(time.monotonic(), ready)
        return rate.per_s


class ReadyRate:
    """The rate a queue's ready count changes, over the samples of the last
    :data:`RATE_WINDOW` seconds (the probe's sampler and the fleet console's declares both)."""

    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=64)

    def add(self, now: float, ready: int) -> None:
        samples = self.samples
        samples.append((now, ready))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()

    @property
    def per_s(self) -> float | None:
        """None until the samples span half a second."""
        if len(self.samples) < 2:
            return None
        (t0, r0), (t1, r1) = self.samples[0], self.samples[-1]
        return None if t1 - t0 < 0.5 else round((r1 - r0) / (t1 - t0), 2)


def _is_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "Timeout" and type(exc).__module__.startswith("eventlet")


def queues_of(container: Any) -> dict[str, tuple[str, set[str], Any]]:
    """queue name -> (entrypoint kind, its entrypoints' method names, a consumer of it)."""
    out: dict[str, tuple[str, set[str], Any]] = {}
    for ep in list(getattr(container, "entrypoints", ()) or ()):
        found = privates.entrypoint_queue(ep)
        if found is None:
            continue
        queue, consumer = found
        method = str(getattr(ep, "method_name", "?"))
        if queue in out:
            out[queue][1].add(method)
        else:
            out[queue] = (entrypoints.kind_of(ep), {method}, consumer)
    return out


def _held(container: Any, queues: dict[str, tuple[str, set[str], Any]]) -> dict[str, int]:
    """queue -> messages this process holds unacknowledged: running workers of its entrypoints
    and messages parked waiting for a worker."""
    by_method = {m: q for q, (_kind, methods, _c) in queues.items() for m in methods}
    held: dict[str, int] = {}
    for ctx, _gt in privates.worker_threads(container):
        queue = by_method.get(str(getattr(getattr(ctx, "entrypoint", None), "method_name", "")))
        if queue is not None:
            held[queue] = held.get(queue, 0) + 1
    for _gt, identifier in privates.managed_threads(container):
        method = privates.pool_waiter_method(identifier)
        queue = by_method.get(method) if method is not None else None
        if queue is not None:
            held[queue] = held.get(queue, 0) + 1
    return held


_state: dict[str, Sampler | None] = {"sampler": None}


def current() -> Sampler | None:
    return _state["sampler"]


def touch(containers: Iterable[Any]) -> Sampler | None:
    """A console asked: keep the sampler running (start it when it is not), for these
    containers. Cheap: a time stamp, and a greenthread spawned at most once per idle period."""
    sampler = _state["sampler"]
    if sampler is None:
        if not enabled_by_environment():
            return None
        sampler = _state["sampler"] = Sampler(idle_after=idle_after_from_environment())
    sampler.asked_at = time.monotonic()
    sampler.containers = list(containers)
    if not sampler.running:
        try:
            sampler.start()
        except BaseException as exc:  # no eventlet (a plain thread runner): no backlog
            sampler.error = f"{type(exc).__name__}: {exc}"[:300]
            sampler.running = False
    return sampler


def of(container: Any) -> list[QueueBacklogDict] | None:
    """The last sample of ``container``'s queues (None: none yet, or no sampler runs). The
    snapshot's path: a dict lookup, nothing more."""
    sampler = _state["sampler"]
    if sampler is None or not sampler.running:
        return None
    return sampler.last.get(str(getattr(container, "service_name", "?")))


def _op_backlog(namespace: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
    """The ``backlog`` operation: keep the sampler running and return the last sample of every
    container; with ``wait`` (seconds, at most 10), wait — yielding the hub — for a first sample
    when there is none yet (``--once`` and ``--json`` take one snapshot)."""
    runner = namespace.get("runner")
    if runner is not None and privates.is_runner(runner):
        containers = privates.runner_containers(runner)
    else:  # no runner in the namespace: the containers the agent's collect last passed
        known = _state["sampler"]
        containers = known.containers if known is not None else []
    sampler = touch(containers)
    deadline = time.monotonic() + min(max(float(wait), 0.0), 10.0)
    while sampler is not None and sampler.running and sampler.rounds == 0 and \
            time.monotonic() < deadline:
        privates.green_sleep(0.05)
    return {
        "running": bool(sampler is not None and sampler.running),
        "error": sampler.error if sampler is not None else "off (CHASSIS_BACKLOG=0)",
        "every_s": sampler.every if sampler is not None else None,
        "hub_ms": sampler.hub_ms if sampler is not None else None,
        "services": dict(sampler.last) if sampler is not None else {},
    }


OPS = {"backlog": _op_backlog}
