"""A typed model of snapshot schema v1 (what ``collect()`` returns and ``--json`` prints).

``Snapshot.from_dict(data)`` validates as it parses and raises :class:`SnapshotError` naming the
path of the first bad field (``containers[0].workers[3].age_s: expected a number, got 'x'``).
Standard library only: the console and the service side both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class SnapshotError(ValueError):
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
    def from_dict(cls, data: Any, path: str = "") -> Worker:
        r = _Reader(data, path)
        where = r.get("where", dict, optional=True)
        stack = r.get("stack", list, optional=True)
        return cls(
            call_id=r.text("call_id"),
            call_id_stack=[str(c) for c in r.array("call_id_stack")],
            entrypoint=r.text("entrypoint"),
            entrypoint_type=r.text("entrypoint_type"),
            args=[str(a) for a in r.array("args")],
            kwargs={str(k): str(v) for k, v in r.mapping("kwargs").items()},
            context_data=r.mapping("context_data"),
            started_at=r.number("started_at", optional=True),
            first_seen=r.number("first_seen"),
            age_s=r.number("age_s"),
            where=Frame.from_dict(where, f"{r._p('where')}") if where is not None else None,
            stack=None if stack is None else r.items("stack", Frame),
        )

    @property
    def args_preview(self) -> str:
        parts = list(self.args) + [f"{k}={v}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


@dataclass(frozen=True)
class ManagedThread:
    identifier: str
    target: str | None
    stack: list[Frame] | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> ManagedThread:
        r = _Reader(data, path)
        stack = r.get("stack", list, optional=True)
        return cls(r.text("identifier"), r.text("target", optional=True),
                   None if stack is None else r.items("stack", Frame))


@dataclass(frozen=True)
class FinishedWorker:
    call_id: str
    entrypoint: str
    started_at: float
    finished_at: float
    duration_s: float
    outcome: str  # "success" | "error" | "expected_error"
    exc_type: str | None = None
    exc_message: str | None = None

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> FinishedWorker:
        r = _Reader(data, path)
        return cls(r.text("call_id"), r.text("entrypoint"), r.number("started_at"),
                   r.number("finished_at"), r.number("duration_s"), r.text("outcome"),
                   r.text("exc_type", optional=True), r.text("exc_message", optional=True))


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
    workers: list[Worker]
    managed_threads: list[ManagedThread]
    history: list[FinishedWorker] | None  # None: the service keeps no history

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Container:
        r = _Reader(data, path)
        history = r.get("history", list, optional=True)
        workers = r.items("workers", Worker)
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
            managed_threads=r.items("managed_threads", ManagedThread),
            history=None if history is None else r.items("history", FinishedWorker),
        )

    def oldest_workers(self, n: int | None = None) -> list[Worker]:
        ordered = sorted(self.workers, key=lambda w: -w.age_s)
        return ordered if n is None else ordered[:n]

    @property
    def saturation(self) -> float:
        return self.workers_running / self.max_workers if self.max_workers else 0.0


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

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Snapshot:
        r = _Reader(data, path)
        schema = r.integer("schema")
        if schema != SCHEMA_VERSION:
            raise SnapshotError(f"schema: version {schema} is not supported (expected 1)")
        return cls(
            schema=schema,
            pid=r.integer("pid"),
            host=r.text("host"),
            python=r.text("python"),
            nameko=r.text("nameko"),
            time=r.number("time"),
            took_ms=r.number("took_ms"),
            errors=[str(e) for e in r.array("errors")],
            containers=r.items("containers", Container),
        )

    @property
    def workers(self) -> list[tuple[Container, Worker]]:
        return [(c, w) for c in self.containers for w in c.workers]

    def oldest_worker(self) -> tuple[Container, Worker] | None:
        pairs = self.workers
        return max(pairs, key=lambda cw: cw[1].age_s) if pairs else None

    def find_worker(self, call_id: str) -> tuple[Container, Worker] | None:
        for c, w in self.workers:
            if w.call_id == call_id:
                return c, w
        return None

    def __repr__(self) -> str:
        n = sum(len(c.workers) for c in self.containers)
        names = ",".join(c.service_name for c in self.containers)
        return f"<Snapshot pid={self.pid} {names} workers={n} took={self.took_ms:.2f}ms>"
