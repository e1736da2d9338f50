"""The fleet target: every replica of every chassis service on a vhost, through the broker.

:class:`FleetTarget` is a :class:`~chassis_console.targets.Target` like the backdoor client,
so the live app, ``--json`` and ``--once`` take it as they are. One refresh is ONE publish to
the vhost's fanout exchange (:class:`nameko_chassis.amqp.fleet.Broadcast`); replies are gathered
until every replica that answered last time has answered again, or the deadline passes.

Replicas are merged into one :class:`~nameko_chassis.view.model.Snapshot` whose containers are
named ``service@host:pid``, so every existing screen shows them (the tree, the pool gauges, the
workers table sorted oldest first across the fleet, the worker detail), and selecting one in
the tree filters the table to that replica.

- A replica that answers for the first time appears; one that misses a refresh keeps its last
  snapshot, its containers renamed ``service@host:pid(silent)`` and a line in the snapshot's
  errors; after :data:`FORGET_AFTER` seconds of silence it is dropped.
- Services seen on the broker (:mod:`nameko_chassis.amqp.discovery`, every
  :data:`DISCOVER_EVERY` seconds) that no replica runs are listed as ``NAME (no chassis)``,
  "attach with HOST:PORT".
- Past :data:`SUMMARY_OVER` replicas, a live refresh asks each replica for its oldest worker
  only (counts stay exact): the table lists the oldest worker of every replica.
- Read-only: :meth:`FleetTarget.kill_worker` refuses; killing stays on the backdoor.

Errors: :class:`~chassis_console.errors.UnreachableError` when the broker cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from nameko_chassis.amqp import fleet as wire
from nameko_chassis.amqp.discovery import DiscoveredService, services_from_queues
from nameko_chassis.amqp.management import AmqpUri, ManagementApi, ManagementError
from nameko_chassis.probe.backlog import ReadyRate
from nameko_chassis.probe.privates import pool_waiter_method
from nameko_chassis.probe.schema import SCHEMA_VERSION
from nameko_chassis.view.model import (
    Container,
    Entrypoint,
    QueueBacklog,
    Snapshot,
    SnapshotError,
)

from ..errors import ConsoleError, UnreachableError, UsageError

#: Seconds a refresh waits for replies (the console's --deadline).
DEFAULT_DEADLINE = 0.5
#: Seconds of silence after which a replica is no longer shown.
FORGET_AFTER = 60.0
#: Seconds between two looks at the broker's queues for services without the chassis.
DISCOVER_EVERY = 10.0
#: Recently finished workers asked per container and refresh (the live history panel).
LIVE_HISTORY = 10
#: With more replicas than this, a live refresh asks each for its oldest worker only (and no
#: history): per-service summaries first; a watched worker's stack still comes on drill-down.
SUMMARY_OVER = 100
#: Seconds between two passive declares of the services' queues (the backlog column).
BACKLOG_EVERY = 2.0
BROKER_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
NO_CHASSIS = "no chassis: attach with HOST:PORT"


def is_broker_uri(text: str) -> bool:
    return text.strip().lower().startswith(BROKER_SCHEMES)


def parse_broker(text: str) -> AmqpUri:
    try:
        return AmqpUri.parse(text.strip())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def fleet_label(uri: AmqpUri) -> str:
    vhost = "" if uri.vhost == "/" else uri.vhost
    return f"fleet {uri.username}@{uri.host}:{uri.port}/{vhost}"


@dataclass
class Replica:
    """One process that answered: who it is and what it said last."""

    id: str
    host: str
    pid: int
    identity: dict[str, Any]
    data: dict[str, Any] | None = None  # its last snapshot, as received (frames as indexes)
    snapshot: Snapshot | None = None
    last_reply: float = 0.0  # time.monotonic()
    last_reply_wall: float = 0.0
    missed: int = 0  # consecutive refreshes without an answer
    rate_limited: bool = False
    error: str | None = None
    stall_ms: float | None = None
    cpu_ms: float | None = None
    size: int = 0

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def answering(self) -> bool:
        return self.missed == 0

    @property
    def state(self) -> str:
        if not self.answering:
            return "silent"
        if self.rate_limited:
            return "rate_limited"
        if self.error:
            return "error"
        return "live"

    @property
    def services(self) -> list[str]:
        return [str(s) for s in self.identity.get("services", [])]


@dataclass
class ServiceSummary:
    """One service across the fleet: what the live header and --once print first."""

    name: str
    replicas: list[Replica] = field(default_factory=list)
    running: int = 0
    max_workers: int = 0
    oldest_age: float | None = None
    oldest_on: str | None = None
    versions: set[str] = field(default_factory=set)
    #: its queues' messages ready in the broker, and their change per second (None: unknown)
    backlog_ready: int | None = None
    backlog_rate: float | None = None

    @property
    def silent(self) -> int:
        return sum(1 for r in self.replicas if not r.answering)

    def line(self) -> str:
        text = f"{self.name} ×{len(self.replicas)}"
        if self.silent:
            text += f" ({self.silent} silent)"
        text += f" {self.running} running"
        if self.oldest_age is not None:
            text += f", oldest {self.oldest_age:.0f}s on {self.oldest_on}"
        if self.backlog_ready:
            text += f", {self.backlog_text()}"
        return text

    def backlog_text(self) -> str:
        """``381 waiting +12.5/s`` (empty when nothing was sampled)."""
        if self.backlog_ready is None:
            return ""
        text = f"{self.backlog_ready} waiting"
        if self.backlog_rate is not None:
            text += f" {self.backlog_rate:+.1f}/s" if self.backlog_rate else " ±0/s"
        return text


@dataclass
class QueueSample:
    """The console's last passive declare of one queue, and the ready counts before it."""

    queue: str
    service: str
    kind: str
    methods: set[str]
    ready: int | None = None
    consumers: int | None = None
    error: str | None = None
    sampled_at: float = 0.0
    rate: ReadyRate = field(default_factory=ReadyRate)

    @property
    def rate_per_s(self) -> float | None:
        return self.rate.per_s

    def record(self, answer: tuple[int, int] | str, now: float) -> None:
        self.sampled_at = time.time()
        if isinstance(answer, str):
            self.ready = self.consumers = None
            self.error = answer
            return
        self.ready, self.consumers = answer
        self.error = None
        self.rate.add(now, self.ready)


def _held(container: Container, methods: set[str]) -> int:
    """Messages of these entrypoints one replica holds unacknowledged: its running workers and
    the messages parked waiting for a worker (nameko's ``wait_for_worker_pool`` threads)."""
    held = sum(1 for w in container.workers if w.entrypoint.rsplit(".", 1)[-1] in methods)
    held += sum(1 for t in container.managed_threads
                if pool_waiter_method(t.identifier) in methods)
    return held


def expand_frames(data: dict[str, Any]) -> dict[str, Any]:
    """A wire snapshot with every stack written out (what ``--json`` prints)."""
    frames = data.pop("frames", None)
    if frames is not None:
        for container in data.get("containers", []):
            for item in container.get("workers", []) + container.get("managed_threads", []):
                if item.get("stack"):
                    item["stack"] = [frames[i] for i in item["stack"]]
    return data


class FleetTarget:
    """A :class:`Target` over a broker vhost: one publish per refresh, replies merged."""

    def __init__(self, uri: AmqpUri | str, *, deadline: float = DEFAULT_DEADLINE,
                 timeout: float = 10.0, forget_after: float = FORGET_AFTER,
                 discover_every: float | None = DISCOVER_EVERY,
                 management: ManagementApi | None = None,
                 summary_over: int = SUMMARY_OVER) -> None:
        self.uri = uri if isinstance(uri, AmqpUri) else parse_broker(uri)
        self.label = fleet_label(self.uri)
        self.deadline = deadline
        self.timeout = timeout
        self.forget_after = forget_after
        self.discover_every = discover_every
        self.management = management
        self.summary_over = summary_over
        self.replicas: dict[str, Replica] = {}
        self.plain: list[DiscoveredService] = []
        self.summary: str = ""  # one line per refresh, for the live app's title
        self.last_round_trip_ms: float | None = None
        #: broker bytes of the last refresh: the request, and the replies' bodies
        self.last_bytes = 0
        self._broadcast: wire.Broadcast | None = None
        self._structures: dict[str, dict[str, Any]] = {}
        self._discovered_at: float | None = None
        self._seen_services: set[str] = set()
        #: queue -> the last passive declare of it (the backlog column), every BACKLOG_EVERY
        self.queues: dict[str, QueueSample] = {}
        self._sampled_at: float | None = None

    def __repr__(self) -> str:
        live = sum(1 for r in self.replicas.values() if r.answering)
        return f"<FleetTarget {self.label} replicas={live}/{len(self.replicas)}>"

    # -- Target --------------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        try:
            self._broadcast = wire.Broadcast(str(self.uri), connect_timeout=self.timeout)
        except Exception as exc:  # kombu and amqp raise several kinds
            raise UnreachableError(f"cannot reach the broker at {self.uri.redacted()}: "
                                   f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        broadcast, self._broadcast = self._broadcast, None
        if broadcast is not None:
            broadcast.close()

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot:
        history: int | None = LIVE_HISTORY
        if len(self.replicas) > self.summary_over:
            max_workers, history = min(max_workers, 1), 0
        self.refresh(stacks=stacks, max_workers=max_workers, history=history)
        return self.merged()

    def kill_worker(self, call_id: str) -> bool:
        replica = next((r for r in self.replicas.values() if r.snapshot is not None
                        and r.snapshot.find_worker(call_id) is not None), None)
        where = f" ({replica.label})" if replica is not None else ""
        raise ConsoleError(f"the fleet view is read-only: kill {call_id} through its replica's "
                           f"backdoor{where} with chassis-console HOST:PORT --allow-actions")

    # -- one refresh -----------------------------------------------------------------------------

    def refresh(self, *, stacks: str | Iterable[str] = "none", max_workers: int = 1000,
                history: int | None = LIVE_HISTORY) -> None:
        """Ask every replica once and update :attr:`replicas` (and, now and then, the plain
        services seen on the broker)."""
        if self._broadcast is None:
            self.connect()
        assert self._broadcast is not None
        expected = {r.id for r in self.replicas.values() if r.answering}
        wire_stacks: Any = stacks if isinstance(stacks, str) else sorted(stacks)
        body = wire.request("collect", stacks=wire_stacks, max_workers=max_workers,
                            history=history, structures=sorted(self._structures))
        t0 = time.perf_counter()
        try:
            replies = self._broadcast.ask(
                body, deadline=self.deadline,
                done=lambda got: bool(expected) and expected <= {r.replica_id for r in got})
        except Exception as exc:  # the broker went away mid-refresh
            self.close()
            raise UnreachableError(f"lost the broker at {self.uri.redacted()}: "
                                   f"{type(exc).__name__}: {exc}") from None
        self.last_round_trip_ms = (time.perf_counter() - t0) * 1000
        self.last_bytes = self._broadcast.request_bytes + sum(r.size for r in replies)
        now = time.monotonic()
        answered: set[str] = set()
        # late answers to an earlier request first, so this request's answers win
        current = self._broadcast.last_correlation_id
        for reply in sorted(replies, key=lambda r: (r.correlation_id == current, r.received)):
            self._take(reply, now)
            answered.add(reply.replica_id)
        for replica in list(self.replicas.values()):
            if replica.id not in answered:
                replica.missed += 1
                if now - replica.last_reply > self.forget_after:
                    del self.replicas[replica.id]
        for replica in self.replicas.values():
            self._seen_services.update(replica.services)
        self._sample_queues(now)
        self._discover()

    def _sample_queues(self, now: float) -> None:
        """Passive declares of every queue the replicas' services consume, on the console's
        own connection, at most every :data:`BACKLOG_EVERY` seconds."""
        if self._broadcast is None or (self._sampled_at is not None
                                       and now - self._sampled_at < BACKLOG_EVERY):
            return
        self._sampled_at = now
        wanted: dict[str, QueueSample] = {}
        for replica in self.replicas.values():
            for c in replica.snapshot.containers if replica.snapshot is not None else ():
                found = wire.consumed_queues(
                    c.service_name, ((e.method, e.type, e.details) for e in c.entrypoints))
                for queue, (kind, methods) in found.items():
                    sample = wanted.get(queue) or self.queues.get(queue) or QueueSample(
                        queue, c.service_name, kind, set())
                    sample.methods |= methods
                    wanted[queue] = sample
        try:
            answers = self._broadcast.declare_passive(sorted(wanted))
        except Exception as exc:  # the broker went away: the next refresh reconnects
            for sample in wanted.values():
                sample.record(f"{type(exc).__name__}: {exc}"[:200], now)
            answers = {}
        for queue, answer in answers.items():
            wanted[queue].record(answer, now)
        self.queues = wanted

    def backlog_of(self, container: Container, service: str) -> list[QueueBacklog] | None:
        """One replica's container's queues, as the console last sampled them."""
        queues = [q for q in self.queues.values() if q.service == service]
        if not queues:
            return None
        return [QueueBacklog(queue=q.queue, kind=q.kind, entrypoints=sorted(q.methods),
                             ready=q.ready, consumers=q.consumers,
                             unacked=_held(container, q.methods), rate_per_s=q.rate_per_s,
                             sampled_at=q.sampled_at, error=q.error)
                for q in sorted(queues, key=lambda q: (q.kind != "rpc", q.queue))]

    def _take(self, reply: wire.Reply, now: float) -> None:
        data = reply.data
        identity = data["replica"]
        rid = reply.replica_id
        replica = self.replicas.get(rid)
        if replica is None:
            replica = self.replicas[rid] = Replica(
                id=rid, host=str(identity.get("host", "?")), pid=int(identity.get("pid") or 0),
                identity=identity)
        replica.identity = identity
        replica.last_reply, replica.last_reply_wall = now, time.time()
        replica.missed = 0
        replica.size = reply.size
        replica.stall_ms = reply.stall_ms
        replica.cpu_ms = reply.cpu_ms
        replica.rate_limited = bool(data.get("rate_limited"))
        if replica.rate_limited:
            return  # keep what it said before
        if data.get("error"):
            replica.error = str(data["error"])
            return
        snapshot = data.get("snapshot")
        try:
            if not isinstance(snapshot, dict):
                raise SnapshotError("the reply has no snapshot")
            self._fill_structures(snapshot)
            replica.snapshot = Snapshot.from_wire(snapshot)
            replica.data = snapshot
            replica.error = None
        except (SnapshotError, KeyError, TypeError) as exc:
            replica.error = f"invalid snapshot: {exc}"

    def _fill_structures(self, snapshot: dict[str, Any]) -> None:
        for container in snapshot.get("containers", []):
            structure = container.get("structure")
            if not isinstance(structure, str):
                continue
            if "entrypoints" in container:
                if len(self._structures) < 1000:
                    self._structures[structure] = {
                        k: container.get(k, []) for k in ("entrypoints", "dependencies",
                                                          "subextensions")}
            elif structure in self._structures:
                container.update(self._structures[structure])
            else:
                raise SnapshotError(f"container {container.get('service_name')!r} refers to "
                                    f"structure {structure!r} this console never received")

    def _discover(self) -> None:
        if self.discover_every is None:
            return
        now = time.monotonic()
        if self._discovered_at is not None and now - self._discovered_at < self.discover_every:
            return
        self._discovered_at = now
        api = self.management or ManagementApi(self.uri, timeout=min(self.timeout, 5.0))
        try:
            found = services_from_queues(api.queues(self.uri.vhost), self.uri.vhost)
        except (ManagementError, ValueError, TypeError):
            return  # no management API: the fleet works without the plain-service list
        # a name seen only on a reply queue is a client (an RPC proxy, a console), not a
        # service one could attach to
        self.plain = [s for s in found if s.name not in self._seen_services
                      and (s.rpc_queue or s.event_handlers)]

    # -- what the screens show ---------------------------------------------------------------------

    def ordered(self) -> list[Replica]:
        return sorted(self.replicas.values(),
                      key=lambda r: (r.services[:1], r.host, r.pid))

    def summaries(self) -> list[ServiceSummary]:
        by_name: dict[str, ServiceSummary] = {}
        for replica in self.ordered():
            for name in replica.services:
                by_name.setdefault(name, ServiceSummary(name)).replicas.append(replica)
                version = replica.identity.get("versions", {}).get(name)
                if version:
                    by_name[name].versions.add(str(version))
            if replica.snapshot is None:
                continue
            for c in replica.snapshot.containers:
                summary = by_name.setdefault(c.service_name, ServiceSummary(c.service_name))
                summary.running += c.workers_running
                summary.max_workers += c.max_workers
                if c.workers and (summary.oldest_age is None
                                  or c.workers[0].age_s > summary.oldest_age):
                    summary.oldest_age = c.workers[0].age_s
                    summary.oldest_on = replica.label
        for q in self.queues.values():
            of = by_name.get(q.service)
            if of is None or q.ready is None:
                continue
            of.backlog_ready = (of.backlog_ready or 0) + q.ready
            if q.rate_per_s is not None:
                of.backlog_rate = round((of.backlog_rate or 0.0) + q.rate_per_s, 2)
        return sorted(by_name.values(), key=lambda s: s.name)

    def merged(self) -> Snapshot:
        """Every replica's containers in one snapshot, named ``service@host:pid``."""
        containers: list[Container] = []
        errors: list[str] = []
        took = 0.0
        for replica in self.ordered():
            if not replica.answering:
                ago = max(0.0, time.time() - replica.last_reply_wall)
                errors.append(f"{replica.label}: not answering for {ago:.0f}s "
                              f"({replica.missed} refresh{'es' * (replica.missed > 1)} missed); "
                              "its last snapshot is kept")
            elif replica.rate_limited:
                errors.append(f"{replica.label}: rate-limited (other consoles asking too?); "
                              "its last snapshot is kept")
            if replica.error:
                errors.append(f"{replica.label}: {replica.error}")
            snap = replica.snapshot
            if snap is None:
                continue
            took = max(took, replica.stall_ms or snap.took_ms)
            errors += [f"{replica.label}: {e}" for e in snap.errors]
            mark = "" if replica.answering else "(silent)"
            containers += [replace(c, service_name=f"{c.service_name}@{replica.label}{mark}",
                                   backlog=self.backlog_of(c, c.service_name))
                           for c in snap.containers]
        for service in self.plain:
            entrypoints = [Entrypoint(m, "event_handler") for m in service.event_handlers]
            if service.rpc_queue:
                entrypoints.insert(0, Entrypoint("?", "rpc"))
            containers.append(Container(
                service_name=f"{service.name} (no chassis)", service_class=NO_CHASSIS,
                started=True, max_workers=0, workers_running=0, entrypoints=entrypoints,
                dependencies=[], subextensions=[], workers=[], managed_threads=[],
                history=None))
        if not self.replicas:
            errors.insert(0, f"no chassis process answered on vhost {self.uri.vhost!r} "
                             f"within {self.deadline:g}s")
        lines = [s.line() for s in self.summaries()]
        lines += [f"{s.name}: {NO_CHASSIS}" for s in self.plain]
        self.summary = " · ".join(lines)
        live = sum(1 for r in self.replicas.values() if r.answering)
        return Snapshot(schema=SCHEMA_VERSION, pid=0,
                        host=f"{live}/{len(self.replicas)} replicas answering",
                        python="", nameko="", time=time.time(), took_ms=round(took, 3),
                        errors=errors, containers=containers)

    def collect(self, *, stacks: str | Iterable[str] = "all", max_workers: int = 1000
                ) -> dict[str, Any]:
        """``--json``: one refresh as a plain object (see docs/fleet.md)."""
        self.refresh(stacks=stacks, max_workers=max_workers, history=None)
        replicas = []
        for replica in self.ordered():
            entry: dict[str, Any] = {**replica.identity, "state": replica.state,
                                     "stall_ms": replica.stall_ms, "bytes": replica.size}
            if replica.error:
                entry["error"] = replica.error
            entry["snapshot"] = (expand_frames(_copy(replica.data))
                                 if replica.data is not None else None)
            replicas.append(entry)
        return {
            "fleet": self.uri.redacted(),
            "vhost": self.uri.vhost,
            "time": time.time(),
            "deadline_s": self.deadline,
            "replicas": replicas,
            "services": [{"name": s.name, "replicas": len(s.replicas), "running": s.running,
                          "oldest_age_s": s.oldest_age, "oldest_on": s.oldest_on,
                          "versions": sorted(s.versions),
                          "backlog": self._backlog_json(s.name)} for s in self.summaries()],
            "plain_services": [{"name": s.name, "instances": s.instances or s.event_instances,
                                "note": NO_CHASSIS} for s in self.plain],
        }


    def _backlog_json(self, service: str) -> list[dict[str, Any]]:
        """``--json``: the service's queues, as the console's passive declares saw them (the
        broker's view: ``ready`` across every replica; ``unacked`` summed over the replicas)."""
        out = []
        for q in sorted(self.queues.values(), key=lambda q: (q.kind != "rpc", q.queue)):
            if q.service != service:
                continue
            held = sum(_held(c, q.methods) for r in self.replicas.values()
                       if r.snapshot is not None for c in r.snapshot.containers
                       if c.service_name == service)
            out.append({"queue": q.queue, "kind": q.kind, "entrypoints": sorted(q.methods),
                        "ready": q.ready, "consumers": q.consumers, "unacked": held,
                        "rate_per_s": q.rate_per_s, "sampled_at": q.sampled_at,
                        "error": q.error})
        return out


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


__all__ = ["FleetTarget", "Replica", "ServiceSummary", "is_broker_uri", "parse_broker"]
