"""Snapshot schema v1 as ``TypedDict``s: what the collector returns, the wire carries and the
console's model parses (``snapshot.schema.json`` beside this file is the JSON Schema of it, and
docs/schema.md its prose). Optional fields added within v1 are ``NotRequired`` (no postponed
annotations here, so ``__optional_keys__`` is right).
"""


from typing import Literal, NotRequired, TypedDict

SCHEMA_VERSION = 1

#: How a finished worker ended.
Outcome = Literal["success", "error", "expected_error", "killed"]
OUTCOMES: tuple[Outcome, ...] = ("success", "error", "expected_error", "killed")


class FrameDict(TypedDict):
    file: str
    line: int
    function: str
    code: str
    library: bool


class EntrypointDict(TypedDict):
    method: str
    type: str
    details: dict[str, object]


class DependencyDict(TypedDict):
    attr: str
    type: str


class SubextensionDict(TypedDict):
    type: str
    details: dict[str, object]


class WorkerDict(TypedDict):
    call_id: str
    call_id_stack: list[str]
    entrypoint: str  # "service.method"
    entrypoint_type: str
    args: list[str]
    kwargs: dict[str, str]
    context_data: dict[str, object]
    started_at: float | None
    first_seen: float
    age_s: float
    where: FrameDict | None
    stack: list[FrameDict] | None


class ManagedThreadDict(TypedDict):
    identifier: str
    target: str | None
    stack: list[FrameDict] | None


class FinishedWorkerDict(TypedDict):
    call_id: str
    entrypoint: str
    started_at: float
    finished_at: float
    duration_s: float
    outcome: Outcome
    exc_type: str | None
    exc_message: str | None
    # recorded by the chassis bookkeeping since it keeps details (absent in older services):
    entrypoint_type: NotRequired[str]
    call_id_stack: NotRequired[list[str]]
    args: NotRequired[list[str]]  # redacted like WorkerDict.args
    kwargs: NotRequired[dict[str, str]]
    context_data: NotRequired[dict[str, object]]  # redacted like WorkerDict.context_data
    traceback: NotRequired[list[FrameDict] | None]  # failures only: outermost first, bounded


class QueueBacklogDict(TypedDict):
    """One queue a container consumes from, as the backlog sampler last saw it (backlog.py)."""

    queue: str  # rpc-<service>, an event handler's or a @consume queue
    kind: str  # the entrypoint kind consuming it: rpc, event_handler, consume, ...
    entrypoints: list[str]  # method names
    ready: int | None  # messages waiting in the broker (None: the declare failed)
    consumers: int | None  # consumers of the queue, every replica
    unacked: int  # delivered to THIS process, not acknowledged: running + waiting for a worker
    rate_per_s: float | None  # change of `ready` per second over the last ~10 s
    sampled_at: float  # wall clock
    error: str | None  # why `ready` is missing


class ContainerDict(TypedDict):
    service_name: str
    service_class: str
    started: bool
    max_workers: int
    workers_running: int
    entrypoints: list[EntrypointDict]
    dependencies: list[DependencyDict]
    subextensions: list[SubextensionDict]
    workers: list[WorkerDict]
    managed_threads: list[ManagedThreadDict]
    history: list[FinishedWorkerDict] | None
    unchanged: NotRequired[list[str]]  # wire only: see wire.py
    unchanged_except: NotRequired[list[str]]  # wire only: see wire.py
    backlog: NotRequired[list[QueueBacklogDict]]  # while a console is attached (added within v1)


#: What held the hub during a block: a worker, a container's managed thread, or another greenlet.
CulpritKind = Literal["worker", "managed_thread", "greenlet"]
CULPRIT_KINDS: tuple[CulpritKind, ...] = ("worker", "managed_thread", "greenlet")


class CulpritDict(TypedDict):
    kind: CulpritKind
    service: str | None
    call_id: str | None  # workers only, like the fields up to context_data
    call_id_stack: list[str]
    entrypoint: str | None  # "service.method"
    entrypoint_type: str | None
    args: list[str]
    kwargs: dict[str, str]
    context_data: dict[str, object]
    target: str | None  # managed threads and greenlets: what they run
    where: FrameDict | None
    stack: list[FrameDict]


class IncidentDict(TypedDict):
    """One block of the eventlet hub longer than the watchdog's threshold."""

    started_at: float  # wall clock: when the hub's heartbeat was due
    duration_s: float  # how late the heartbeat was (so far, while ongoing)
    ongoing: bool  # only in a blocked answer: the hub is still blocked
    culprit: CulpritDict | None  # None: the watchdog could not see (e.g. C code held the GIL)


class ProcessDict(TypedDict):
    uptime_s: float | None
    cpu_percent: float | None  # since the previous snapshot; 100 is one core
    rss_bytes: int | None
    open_fds: int | None
    greenthreads: int  # workers and managed threads of the containers
    hub_lag_ms: float | None  # largest heartbeat delay since the previous snapshot (watchdog)


class SlicesDict(TypedDict):
    holds: int  # the hub holds before the collection's (each at most collect.SLICE_BUDGET_S)
    longest_ms: float  # the longest of them
    total_ms: float  # their sum


class SnapshotDict(TypedDict):
    schema: int
    pid: int
    host: str
    python: str
    nameko: str
    time: float
    took_ms: float
    errors: list[str]
    containers: list[ContainerDict]
    frames: NotRequired[list[FrameDict]]  # wire only: see wire.py
    incidents: NotRequired[list[IncidentDict]]  # with a hub watchdog running: oldest first
    process: NotRequired[ProcessDict]  # process basics (added within v1)
    # a request that handed the hub back between slices of its work (added within v1)
    slices: NotRequired[SlicesDict]
