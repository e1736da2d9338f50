"""The typed snapshot: schema v1 (:mod:`nameko_chassis.probe.schema`) as frozen dataclasses.

``Snapshot.from_dict(data)`` validates as it parses and raises :class:`SnapshotError` naming the
path of the first bad field (``containers[0].workers[3].age_s: expected a number, got 'x'``).
``Snapshot.from_wire(data, previous)`` parses what the agent sends on a live connection: stack
frames come once in a shared table and stay shared objects, and workers the agent marks
unchanged are the previous snapshot's objects with their age moved on, not parsed again.
Standard library only: the console and the service side both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import ChassisError
from ..probe.schema import CULPRIT_KINDS, OUTCOMES, SCHEMA_VERSION, Outcome


class SnapshotError(ChassisError, ValueError):
    """A snapshot does not match schema v1."""


class _Reader:
    """Typed field access over a mapping, with the path in every error message."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SnapshotError(f"{path or 'snapshot'}: expected an object, got {_kind(data)}")
        self.data = data
        self.path = path

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, types: type | tuple[type, ...], *, optional: bool = False,
            default: Any = None) -> Any:
        if key not in self.data:
            if optional:
                return default
            raise SnapshotError(f"{self._p(key)}: missing")
        value = self.data[key]
        if value is None and optional:
            return default
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise SnapshotError(f"{self._p(key)}: expected {_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise SnapshotError(f"{self._p(key)}: expected {_names(types)}, got {_kind(value)}")
        return value

    def text(self, key: str, **kw: Any) -> Any:
        return self.get(key, str, **kw)

    def number(self, key: str, **kw: Any) -> Any:
        value = self.get(key, (int, float), **kw)
        return float(value) if value is not None else value

    def integer(self, key: str, **kw: Any) -> Any:
        return self.get(key, int, **kw)

    def array(self, key: str, **kw: Any) -> list[Any]:
        return list(self.get(key, list, optional=True, default=[], **kw))

    def mapping(self, key: str) -> dict[str, Any]:
        return dict(self.get(key, dict, optional=True, default={}))

    def items(self, key: str, cls: Any) -> list[Any]:
        return [cls.from_dict(item, f"{self._p(key)}[{i}]")
                for i, item in enumerate(self.array(key))]


def _names(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
             "list": "an array", "dict": "an object"}
    return " or ".join(dict.fromkeys(names.get(t.__name__, t.__name__) for t in ts))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: repr(value)[:40], int: "an integer", float: "a number",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str
    code: str
    library: bool

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Frame:
        r = _Reader(data, path)
        return cls(r.text("file"), r.integer("line"), r.text("function"),
                   r.text("code", optional=True, default=""), r.get("library", bool))

    @property
    def short_file(self) -> str:
        """The file path from its package onwards (``.../site-packages/nameko/rpc.py`` ->
        ``nameko/rpc.py``), for narrow columns."""
        for marker in ("site-packages/", "dist-packages/"):
            if marker in self.file:
                return self.file.split(marker, 1)[1]
        parts = self.file.rsplit("/", 3)
        return "/".join(parts[-2:]) if len(parts) > 2 else self.file

    def __str__(self) -> str:
        return f"{self.short_file}:{self.line} in {self.function}"


@dataclass(frozen=True)
class Entrypoint:
    method: str
    type: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Entrypoint:
        r = _Reader(data, path)
        return cls(r.text("method"), r.text("type"), r.mapping("details"))


@dataclass(frozen=True)
class Dependency:
    attr: str
    type: str

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Dependency:
        r = _Reader(data, path)
        return cls(r.text("attr"), r.text("type"))


@dataclass(frozen=True)
class Subextension:
    type: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Subextension:
        r = _Reader(data, path)
        return cls(r.text("type"), r.mapping("details"))


def oldest_first_key(worker: Worker) -> tuple[float, str]:
    """Oldest first; ties (same age) by call id, so the order is total and stable."""
    return (-worker.age_s, worker.call_id)


class _Wire:
    """What parsing one wire snapshot shares: its frame table (parsed once) and the previous
    snapshot's workers (reused for the call ids the agent says are unchanged)."""

    def __init__(self, frames: list[Frame], previous: Snapshot | None, now: float) -> None:
        self.frames = frames
        self.snapshot = previous
        self.now = now
        self.previous_history = previous.containers if previous is not None else []
        self.wheres: dict[tuple[Any, ...], Frame] = {}

    def kept_history(self, service_name: str, kept: int, path: str) -> list[FinishedWorker]:
        """The last ``kept`` finished workers of the previous snapshot's container."""
        for c in self.previous_history:
            if c.service_name == service_name and c.history is not None \
                    and 0 <= kept <= len(c.history):
                return c.history[len(c.history) - kept:] if kept else []
        raise SnapshotError(f"{path}: keeps {kept} finished workers the previous snapshot "
                            "does not have")

    @cached_property
    def previous(self) -> dict[str, tuple[Container, Worker]]:
        """The previous snapshot's workers by call id (built only when a lookup needs it)."""
        return self.snapshot._by_call_id if self.snapshot is not None else {}

    def previous_container(self, service_name: str) -> Container | None:
        if self.snapshot is None:
            return None
        return next((c for c in self.snapshot.containers if c.service_name == service_name),
                    None)

    def where(self, data: Any) -> Frame | None:
        """A worker's ``where`` when its fields have exactly the schema's types, as one shared
        Frame per place (workers parked at the same line share it, like stack frames); None
        for anything else (Frame.from_dict then validates it)."""
        if type(data) is not dict:
            return None
        get = data.get
        file, line, function, code, library = (get("file"), get("line"), get("function"),
                                               get("code"), get("library"))
        if code is None:
            code = ""
        if type(file) is not str or type(line) is not int or type(function) is not str \
                or type(code) is not str or type(library) is not bool:
            return None
        key = (file, line, function, code, library)
        frame = self.wheres.get(key)
        if frame is None:
            frame = self.wheres[key] = Frame(file, line, function, code, library)
        return frame

    def frame(self, ref: Any, path: str) -> Frame:
        if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(self.frames):
            return self.frames[ref]
        if isinstance(ref, Mapping):
            return Frame.from_dict(ref, path)
        raise SnapshotError(f"{path}: expected a frame or an index into frames, got {_kind(ref)}")


def _stack(r: _Reader, wire: _Wire | None) -> list[Frame] | None:
    stack = r.get("stack", list, optional=True)
    if stack is None:
        return None
    path = r._p("stack")
    if wire is None:
        return [Frame.from_dict(f, f"{path}[{i}]") for i, f in enumerate(stack)]
    return [wire.frame(f, f"{path}[{i}]") for i, f in enumerate(stack)]


def _age(now: float, started: float | None, first_seen: float) -> float:
    """A worker's age at ``now``, as the collector computes it (a session's refreshes leave it
    out: the snapshot's time and the worker's start say it)."""
    age = now - (started if started is not None else first_seen)
    return round(age, 3) if age > 0 else 0.0


@dataclass(frozen=True)
class Worker:
    call_id: str
    call_id_stack: list[str]
    entrypoint: str
    entrypoint_type: str
    args: list[str]
    kwargs: dict[str, str]
    context_data: dict[str, Any]
    started_at: float | None
    first_seen: float
    age_s: float
    where: Frame | None
    stack: list[Frame] | None  # None: not collected in this snapshot (stacks="none")

    @classmethod
    def from_dict(cls, data: Any, path: str = "", wire: _Wire | None = None) -> Worker:
        r = _Reader(data, path)
        where = r.get("where", dict, optional=True)
        started = r.number("started_at", optional=True)
        first = r.number("first_seen")
        return cls(
            call_id=r.text("call_id"),
            call_id_stack=[str(c) for c in r.array("call_id_stack")],
            entrypoint=r.text("entrypoint"),
            entrypoint_type=r.text("entrypoint_type"),
            args=[str(a) for a in r.array("args")],
            kwargs={str(k): str(v) for k, v in r.mapping("kwargs").items()},
            context_data=r.mapping("context_data"),
            started_at=started,
            first_seen=first,
            age_s=(r.number("age_s") if wire is None or "age_s" in r.data
                   else _age(wire.now, started, first)),
            where=Frame.from_dict(where, f"{r._p('where')}") if where is not None else None,
            stack=_stack(r, wire),
        )

    @classmethod
    def from_wire(cls, data: Any, wire: _Wire) -> Worker | None:
        """:meth:`from_dict` of a worker as the agent sends it, when every field has exactly
        the type the agent writes (a str is a str, a number a float or int): one pass over
        the fields, ``where`` shared with the other workers parked at the same place. None
        for anything else: :meth:`from_dict` then validates it, and names what is wrong."""
        if type(data) is not dict:
            return None
        get = data.get
        call_id, entrypoint, kind = get("call_id"), get("entrypoint"), get("entrypoint_type")
        started, first = get("started_at"), get("first_seen")
        if type(call_id) is not str or type(entrypoint) is not str or type(kind) is not str \
                or not (started is None or type(started) is float or type(started) is int) \
                or not (type(first) is float or type(first) is int) \
                or get("stack") is not None:
            return None
        stack, args, kwargs, context = (get("call_id_stack", []), get("args", []),
                                        get("kwargs", {}), get("context_data", {}))
        if type(stack) is not list or type(args) is not list or type(kwargs) is not dict \
                or type(context) is not dict:
            return None
        for value in (*stack, *args, *kwargs, *kwargs.values()):
            if type(value) is not str:
                return None
        where = get("where")
        if where is not None:
            where = wire.where(where)
            if where is None:
                return None
        if started is not None:
            started = float(started)
        first = float(first)
        age = get("age_s")
        if "age_s" not in data:  # a session's refresh: the snapshot's time says it
            age = wire.now - (started if started is not None else first)
            age = round(age, 3) if age > 0 else 0.0
        elif type(age) is float or type(age) is int:
            age = float(age)
        else:
            return None
        worker = object.__new__(cls)
        worker.__dict__.update(
            call_id=call_id, call_id_stack=list(stack), entrypoint=entrypoint,
            entrypoint_type=kind, args=list(args), kwargs=dict(kwargs),
            context_data=dict(context), started_at=started, first_seen=first, age_s=age,
            where=where, stack=None)
        return worker

    def aged(self, now: float) -> Worker:
        """This worker as seen at ``now``: the same objects (arguments, where), a new age and
        no stack (the agent sends stacks only for new or watched workers)."""
        # once per worker per refresh (1000 workers: most of a refresh's parsing), so inlined
        copy = object.__new__(Worker)
        d = copy.__dict__
        d.update(self.__dict__)
        d["age_s"] = _age(now, d["started_at"], d["first_seen"])
        d["stack"] = None
        return copy

    @property
    def since(self) -> float:
        """When the worker started: the chassis' exact start time, else when the collector
        first saw it (plain services record no start time)."""
        return self.started_at if self.started_at is not None else self.first_seen

    @cached_property
    def args_preview(self) -> str:
        parts = list(self.args) + [f"{k}={v}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


@dataclass(frozen=True)
class ManagedThread:
    identifier: str
    target: str | None
    stack: list[Frame] | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "", wire: _Wire | None = None) -> ManagedThread:
        r = _Reader(data, path)
        return cls(r.text("identifier"), r.text("target", optional=True), _stack(r, wire))


@dataclass(frozen=True)
class FinishedWorker:
    call_id: str
    entrypoint: str
    started_at: float
    finished_at: float
    duration_s: float
    outcome: Outcome
    exc_type: str | None = None
    exc_message: str | None = None
    # optional within v1: what the chassis bookkeeping records for the detail view
    entrypoint_type: str | None = None
    call_id_stack: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    kwargs: dict[str, str] = field(default_factory=dict)
    context_data: dict[str, Any] = field(default_factory=dict)
    traceback: list[Frame] | None = None

    @classmethod
    def from_dict(cls, data: Any, path: str = "", wire: _Wire | None = None) -> FinishedWorker:
        r = _Reader(data, path)
        outcome = r.text("outcome")
        if outcome not in OUTCOMES:
            raise SnapshotError(f"{r._p('outcome')}: expected one of {', '.join(OUTCOMES)}, "
                                f"got {outcome!r}")
        tb = r.get("traceback", list, optional=True)
        if tb is not None:
            where = r._p("traceback")
            traceback = [wire.frame(f, f"{where}[{i}]") if wire is not None
                         else Frame.from_dict(f, f"{where}[{i}]") for i, f in enumerate(tb)]
        else:
            traceback = None
        return cls(r.text("call_id"), r.text("entrypoint"), r.number("started_at"),
                   r.number("finished_at"), r.number("duration_s"), outcome,
                   r.text("exc_type", optional=True), r.text("exc_message", optional=True),
                   entrypoint_type=r.text("entrypoint_type", optional=True),
                   call_id_stack=[str(c) for c in r.array("call_id_stack")],
                   args=[str(a) for a in r.array("args")],
                   kwargs={str(k): str(v) for k, v in r.mapping("kwargs").items()},
                   context_data=r.mapping("context_data"),
                   traceback=traceback)

    @property
    def detailed(self) -> bool:
        """Whether the service recorded arguments, context data and call chain (an older
        chassis records only the outcome): it records them all, with the entrypoint type."""
        return self.entrypoint_type is not None


@dataclass(frozen=True)
class Culprit:
    """What held the eventlet hub during a block (see :class:`Incident`)."""

    kind: str  # worker | managed_thread | greenlet
    service: str | None
    call_id: str | None
    call_id_stack: list[str]
    entrypoint: str | None
    entrypoint_type: str | None
    args: list[str]
    kwargs: dict[str, str]
    context_data: dict[str, Any]
    target: str | None
    where: Frame | None
    stack: list[Frame]

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Culprit:
        r = _Reader(data, path)
        kind = r.text("kind")
        if kind not in CULPRIT_KINDS:
            raise SnapshotError(f"{r._p('kind')}: expected one of {', '.join(CULPRIT_KINDS)}, "
                                f"got {kind!r}")
        where = r.get("where", dict, optional=True)
        return cls(
            kind=kind,
            service=r.text("service", optional=True),
            call_id=r.text("call_id", optional=True),
            call_id_stack=[str(c) for c in r.array("call_id_stack")],
            entrypoint=r.text("entrypoint", optional=True),
            entrypoint_type=r.text("entrypoint_type", optional=True),
            args=[str(a) for a in r.array("args")],
            kwargs={str(k): str(v) for k, v in r.mapping("kwargs").items()},
            context_data=r.mapping("context_data"),
            target=r.text("target", optional=True),
            where=Frame.from_dict(where, r._p("where")) if where is not None else None,
            stack=_stack(r, None) or [],
        )

    @property
    def name(self) -> str:
        """The entrypoint for a worker, else what the greenlet runs."""
        return self.entrypoint or self.target or self.kind


@dataclass(frozen=True)
class Incident:
    """One block of the eventlet hub over the watchdog's threshold (``ongoing`` while it
    lasts, in a blocked answer)."""

    started_at: float
    duration_s: float
    ongoing: bool
    culprit: Culprit | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Incident:
        r = _Reader(data, path)
        culprit = r.get("culprit", dict, optional=True)
        return cls(r.number("started_at"), r.number("duration_s"),
                   r.get("ongoing", bool, optional=True, default=False),
                   Culprit.from_dict(culprit, r._p("culprit")) if culprit is not None else None)


def _unchanged_workers(unchanged: list[Any], wire: _Wire, service_name: Any, path: str
                       ) -> list[Worker]:
    """The previous snapshot's workers named by ``unchanged``, aged to now, in the previous
    snapshot's order (oldest first: ages all move on by the same time)."""
    now = wire.now
    container = wire.previous_container(service_name)
    if container is not None:
        try:
            ids = set(unchanged)
        except TypeError:  # an id that is no string: the slow path names it
            ids = set()
        if len(ids) == len(unchanged):
            kept = _aged([w for w in container.workers if w.call_id in ids], now)
            if len(kept) == len(ids):
                return kept
    kept = []  # moved between containers, or one never sent
    previous = wire.previous
    for call_id in unchanged:
        found = previous.get(str(call_id))
        if found is None:
            raise SnapshotError(f"{path}: names worker {call_id!r} that was never sent")
        kept.append(found[1].aged(now))
    kept.sort(key=oldest_first_key)
    return kept


def _kept_but(all_but: list[Any], sent: list[Worker], wire: _Wire, service_name: Any,
              path: str) -> list[Worker]:
    """The previous snapshot's workers of this container, aged to now and in its order, but
    those named by ``all_but`` and those sent again in full (``unchanged_except``)."""
    container = wire.previous_container(service_name)
    if container is None:
        raise SnapshotError(f"{path}: keeps the workers of a container the previous snapshot "
                            "does not have")
    left = {str(c) for c in all_but}.union(w.call_id for w in sent)
    return _aged([w for w in container.workers if w.call_id not in left] if left
                 else container.workers, wire.now)


def _aged(workers: list[Worker], now: float) -> list[Worker]:
    """``[w.aged(now) for w in workers]``, inlined: once per worker per refresh, most of what
    parsing a live refresh costs."""
    out = []
    new = object.__new__
    for w in workers:
        d = w.__dict__
        since = d["started_at"]
        age = now - (since if since is not None else d["first_seen"])
        copy = new(Worker)
        c = copy.__dict__
        c.update(d)
        c["age_s"] = round(age, 3) if age > 0 else 0.0
        c["stack"] = None
        out.append(copy)
    return out


@dataclass(frozen=True)
class QueueBacklog:
    """One queue a container consumes from (``backlog``, added within v1: probe/backlog.py)."""

    queue: str
    kind: str
    entrypoints: list[str]
    ready: int | None  # waiting in the broker; None: the passive declare failed (see error)
    consumers: int | None
    unacked: int  # held by this process: running workers and messages waiting for one
    rate_per_s: float | None  # change of ready per second; None: one sample so far
    sampled_at: float
    error: str | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> QueueBacklog:
        r = _Reader(data, path)
        return cls(r.text("queue"), r.text("kind"), [str(e) for e in r.array("entrypoints")],
                   r.get("ready", int, optional=True), r.get("consumers", int, optional=True),
                   r.get("unacked", int, optional=True, default=0),
                   r.number("rate_per_s", optional=True), r.number("sampled_at"),
                   r.text("error", optional=True))


@dataclass(frozen=True)
class Container:
    service_name: str
    service_class: str
    started: bool
    max_workers: int
    workers_running: int
    entrypoints: list[Entrypoint]
    dependencies: list[Dependency]
    subextensions: list[Subextension]
    workers: list[Worker]  # oldest first
    managed_threads: list[ManagedThread]
    history: list[FinishedWorker] | None  # None: the service keeps no history
    #: the queues it consumes, last sampled; None: not sampled (no console asked, or off)
    backlog: list[QueueBacklog] | None = None

    @classmethod
    def from_dict(cls, data: Any, path: str = "", wire: _Wire | None = None) -> Container:
        r = _Reader(data, path)
        history = r.get("history", list, optional=True)
        if wire is not None:
            workers = [Worker.from_wire(w, wire)
                       or Worker.from_dict(w, f"{r._p('workers')}[{i}]", wire)
                       for i, w in enumerate(r.array("workers"))]
        else:
            workers = [Worker.from_dict(w, f"{r._p('workers')}[{i}]", wire)
                       for i, w in enumerate(r.array("workers"))]
        unchanged = r.array("unchanged")
        all_but = r.get("unchanged_except", list, optional=True)
        if unchanged or all_but is not None:
            field = "unchanged_except" if all_but is not None else "unchanged"
            if wire is None:
                raise SnapshotError(f"{r._p(field)}: a delta refresh needs the previous "
                                    "snapshot (Snapshot.from_wire)")
            if all_but is not None:
                kept = _kept_but(all_but, workers, wire, r.data.get("service_name"), r._p(field))
            else:
                kept = _unchanged_workers(unchanged, wire, r.data.get("service_name"),
                                          r._p(field))
            if workers:
                workers += kept
                workers.sort(key=oldest_first_key)
            else:  # the previous snapshot's order: still oldest first
                workers = kept
        else:
            workers.sort(key=oldest_first_key)
        return cls(
            service_name=r.text("service_name"),
            service_class=r.text("service_class"),
            started=r.get("started", bool),
            max_workers=r.integer("max_workers"),
            workers_running=r.get("workers_running", int, optional=True, default=len(workers)),
            entrypoints=r.items("entrypoints", Entrypoint),
            dependencies=r.items("dependencies", Dependency),
            subextensions=r.items("subextensions", Subextension),
            workers=workers,
            managed_threads=[ManagedThread.from_dict(t, f"{r._p('managed_threads')}[{i}]", wire)
                             for i, t in enumerate(r.array("managed_threads"))],
            history=None if history is None else (
                (wire.kept_history(r.text("service_name"), r.integer("history_kept"),
                                   r._p("history_kept"))
                 if wire is not None and "history_kept" in r.data else [])
                + [FinishedWorker.from_dict(h, f"{r._p('history')}[{i}]", wire)
                   for i, h in enumerate(history)]),
            backlog=(r.items("backlog", QueueBacklog) if "backlog" in r.data
                     and r.data["backlog"] is not None else None),
        )


@dataclass(frozen=True)
class Process:
    """Process basics (``process``, added within v1): see ``probe/process.py``."""

    uptime_s: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    open_fds: int | None
    greenthreads: int
    hub_lag_ms: float | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Process:
        r = _Reader(data, path)
        return cls(r.number("uptime_s", optional=True), r.number("cpu_percent", optional=True),
                   r.get("rss_bytes", int, optional=True), r.get("open_fds", int, optional=True),
                   r.integer("greenthreads"), r.number("hub_lag_ms", optional=True))


def _slices(data: Any) -> tuple[int, float, float] | None:
    """A snapshot's optional ``slices`` (see docs/schema.md); None when absent or malformed
    (a figure, never a reason to refuse a snapshot)."""
    if not isinstance(data, Mapping):
        return None
    try:
        holds, longest, total = data["holds"], data["longest_ms"], data["total_ms"]
        if isinstance(holds, bool) or not isinstance(holds, int) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in (longest, total)):
            return None
        return int(holds), float(longest), float(total)
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Snapshot:
    schema: int
    pid: int
    host: str
    python: str
    nameko: str
    time: float
    took_ms: float
    errors: list[str]
    containers: list[Container]
    #: the hub watchdog's incidents, oldest first; None: no watchdog runs in the service
    incidents: list[Incident] | None = None
    #: process basics (CPU, memory, fds, greenthreads, uptime, hub lag); None: not sent
    process: Process | None = None
    #: the request handed the hub back between slices of its work (added within v1): the
    #: holds before the collection's, (count, longest ms, their sum ms); None: one piece
    slices: tuple[int, float, float] | None = None

    @property
    def longest_hold_ms(self) -> float:
        """The longest the request held the hub in one piece: what a worker could wait.
        ``took_ms`` is the sum of its holds; the last one (collect, encode, write) is that sum
        less the slices' before it."""
        if self.slices is None:
            return self.took_ms
        _holds, longest, total = self.slices
        return max(longest, self.took_ms - total)

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Snapshot:
        return cls._parse(data, path, None)

    @classmethod
    def from_wire(cls, data: Any, previous: Snapshot | None = None) -> Snapshot:
        """Parse a snapshot as the agent sends it (see :mod:`nameko_chassis.probe.wire`):
        ``frames`` table, per-container ``unchanged`` call ids resolved against ``previous``;
        no ``incidents`` means the previous snapshot's (the agent sends them when they change)."""
        return cls._parse(data, "", previous, wire=True)

    @classmethod
    def _parse(cls, data: Any, path: str, previous: Snapshot | None, wire: bool = False
               ) -> Snapshot:
        r = _Reader(data, path)
        schema = r.integer("schema")
        if schema != SCHEMA_VERSION:
            raise SnapshotError(f"schema: version {schema} is not supported (expected 1)")
        now = r.number("time")
        context = None
        if wire:
            table = [Frame.from_dict(f, f"frames[{i}]") for i, f in enumerate(r.array("frames"))]
            context = _Wire(table, previous, now)
        return cls(
            schema=schema,
            pid=r.integer("pid"),
            host=r.text("host"),
            python=r.text("python"),
            nameko=r.text("nameko"),
            time=now,
            took_ms=r.number("took_ms"),
            errors=[str(e) for e in r.array("errors")],
            containers=[Container.from_dict(c, f"containers[{i}]", context)
                        for i, c in enumerate(r.array("containers"))],
            incidents=(r.items("incidents", Incident) if "incidents" in r.data
                       else previous.incidents if previous is not None else None),
            process=(Process.from_dict(r.data["process"], r._p("process"))
                     if isinstance(r.data.get("process"), Mapping) else None),
            slices=_slices(r.data.get("slices")),
        )

    @property
    def workers(self) -> list[tuple[Container, Worker]]:
        return [(c, w) for c in self.containers for w in c.workers]

    @cached_property
    def _by_call_id(self) -> dict[str, tuple[Container, Worker]]:
        return {w.call_id: (c, w) for c in self.containers for w in c.workers}

    def find_worker(self, call_id: str) -> tuple[Container, Worker] | None:
        return self._by_call_id.get(call_id)

    def __repr__(self) -> str:
        n = sum(len(c.workers) for c in self.containers)
        names = ",".join(c.service_name for c in self.containers)
        return f"<Snapshot pid={self.pid} {names} workers={n} took={self.took_ms:.2f}ms>"
