"""Worker bookkeeping: exact worker start times and a ring buffer of recently finished workers.

:class:`WorkerBookkeeping` stamps ``worker_ctx.chassis_started_at`` (epoch seconds) in
``worker_setup`` — the collector (``nameko_chassis.probe.collect``) reads it so worker ages are
exact — and keeps ``chassis_history``, a bounded history of plain dicts describing finished
workers, which snapshots include as ``history``: each entry says who the worker was (entrypoint,
call chain), with what (arguments and context data, redacted exactly as the collector redacts a
running worker's) and how it ended (duration, outcome, and for a failure the exception with a
bounded traceback). A successful worker's entry is made when the history is read or within a
second (:class:`FinishedWorkers`), so a busy service redacts only what stays in the history.
It also holds the helpers the other providers share: :func:`entrypoint_name` and :func:`outcome_of`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from nameko.extensions import DependencyProvider

from ..config import DEFAULT_HISTORY_SIZE, load_settings
from ..probe import entrypoints
from ..probe.frames import TRACEBACK_FRAMES, traceback_frames
from ..probe.redaction import active_policy, exception_text, redact_mapping, redacted_arguments
from ..probe.schema import Outcome

log = logging.getLogger(__name__)

#: Characters kept of a finished worker's exception message.
EXC_MESSAGE_LIMIT = 300

SUCCESS: Outcome = "success"
ERROR: Outcome = "error"
EXPECTED_ERROR: Outcome = "expected_error"
KILLED: Outcome = "killed"
#: The exception the console's kill raises in a worker (probe/agent.py; matched by name, since
#: the probe the console ships is not this import of it).
KILLED_BY_OPERATOR = "WorkerKilled"


#: Seconds the bookkeeping keeps the redaction policy before reading the settings again: a
#: change of ``CHASSIS.REDACT`` / ``$CHASSIS_REDACT_*`` in a running service applies within it.
POLICY_TTL = 1.0


def entrypoint_name(worker_ctx: Any) -> str:
    return f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}"


def outcome_of(worker_ctx: Any, exc_info: Any) -> Outcome:
    """``success``, ``killed`` (an operator killed it from the console), ``expected_error``
    (listed in the entrypoint's ``expected_exceptions``) or ``error``."""
    if not exc_info:
        return SUCCESS
    if type(exc_info[1]).__name__ == KILLED_BY_OPERATOR:
        return KILLED
    expected = getattr(worker_ctx.entrypoint, "expected_exceptions", ()) or ()
    try:
        if expected and isinstance(exc_info[1], expected):
            return EXPECTED_ERROR
    except TypeError:  # a malformed expected_exceptions must not break bookkeeping
        pass
    return ERROR


#: Seconds a finished worker's entry may wait before its arguments are redacted into it.
MATERIALISE_AFTER = 1.0

#: While a console reads the history (within the last :data:`WATCHED_FOR` seconds), entries are
#: made this soon instead: in small steps between workers, rather than all at once inside the
#: console's next refresh, which holds the hub (at 10 Hz and ~1000 calls/s, ~80 entries a read).
MATERIALISE_WATCHED_AFTER = 0.02
WATCHED_FOR = 5.0


class _Finished:
    """One finished worker, as recorded on its way out: what its history entry is made of.

    A successful worker's arguments and context data are redacted into its entry later — when
    the history is read, or within :data:`MATERIALISE_AFTER` — so a busy service pays the
    redaction for the entries that stay in the bounded history, not for every call. Until then
    it holds the worker's argument objects (at most ``history_size`` workers' worth, for at
    most that second). A failed worker's entry is made at once: its traceback must not keep
    the frames alive.
    """

    __slots__ = ("worker_ctx", "finished", "outcome", "entry")

    def __init__(self, worker_ctx: Any, finished: float, outcome: Outcome,
                 entry: dict[str, Any] | None = None) -> None:
        self.worker_ctx = worker_ctx
        self.finished = finished
        self.outcome = outcome
        self.entry = entry

    def materialise(self) -> dict[str, Any]:
        entry = self.entry
        if entry is None:
            try:
                entry = _entry(self.worker_ctx, self.finished, self.outcome, None)
            except Exception:  # e.g. its container is gone (extensions hold it by weak proxy)
                log.exception("chassis: worker bookkeeping failed for %r", self.worker_ctx)
                entry = {"call_id": "?", "entrypoint": "?", "started_at": self.finished,
                         "finished_at": self.finished, "duration_s": 0.0,
                         "outcome": self.outcome, "exc_type": None, "exc_message": None}
            self.entry = entry
            self.worker_ctx = None  # the arguments are reprs now: let the objects go
        return entry


class FinishedWorkers:
    """The bounded history of finished workers (``chassis_history``): iterating it gives each
    entry as a plain dict, what the collector reads."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque[_Finished] = deque(maxlen=maxlen)
        self._scheduled = False
        self._read_at = float("-inf")  # monotonic time of the last read

    @property
    def maxlen(self) -> int | None:
        return self._items.maxlen

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._read_at = time.monotonic()
        return iter([item.materialise() for item in list(self._items)])

    def append(self, item: _Finished | dict[str, Any]) -> None:
        if isinstance(item, dict):
            item = _Finished(None, item.get("finished_at") or time.time(),
                             item.get("outcome") or SUCCESS, item)
        self._items.append(item)
        if item.entry is None and not self._scheduled:
            self._scheduled = True
            watched = time.monotonic() - self._read_at < WATCHED_FOR
            _later(MATERIALISE_WATCHED_AFTER if watched else MATERIALISE_AFTER, self.materialise)

    def materialise(self) -> None:
        """Make every pending entry now: a green timer calls this within a second, and lets
        other greenthreads run between every :data:`MATERIALISE_STEP` entries."""
        self._scheduled = False
        pending = [item for item in list(self._items) if item.entry is None]
        for i, item in enumerate(pending):
            if i and i % MATERIALISE_STEP == 0:
                _yield()
            item.materialise()


#: Entries the timer makes between two yields to the hub (~0.5 ms of redaction).
MATERIALISE_STEP = 10


def _yield() -> None:
    try:
        import eventlet

        eventlet.sleep(0)
    except Exception:
        pass


def _later(seconds: float, fn: Any) -> None:
    try:
        import eventlet

        eventlet.spawn_after(seconds, fn)
    except Exception:  # no hub to run a timer: make the entries now
        fn()


class WorkerBookkeeping(DependencyProvider):
    """Start times and recently finished workers, for the introspection console.

    ``history_size`` (default: ``CHASSIS.HISTORY_SIZE``, else 100) bounds ``chassis_history``.
    The dependency it injects is the provider itself, which gives a worker its ``container``
    (``Service.describe()`` uses it). Never raises into a worker: every hook catches and logs.
    """

    def __init__(self, history_size: int | None = None) -> None:
        self.history_size = history_size
        self.chassis_history = FinishedWorkers(DEFAULT_HISTORY_SIZE)

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<WorkerBookkeeping [{service}] history={len(self.chassis_history)}>"

    def setup(self) -> None:
        size = self.history_size
        if size is None:
            try:
                size = load_settings().chassis.history_size
            except Exception:
                log.exception("chassis: cannot read CHASSIS.HISTORY_SIZE; using %s",
                              DEFAULT_HISTORY_SIZE)
                size = DEFAULT_HISTORY_SIZE
        self.chassis_history = FinishedWorkers(max(int(size), 0))

    def get_dependency(self, worker_ctx: Any) -> WorkerBookkeeping:
        return self

    def worker_setup(self, worker_ctx: Any) -> None:
        worker_ctx.chassis_started_at = time.time()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        try:
            finished = time.time()
            outcome = outcome_of(worker_ctx, exc_info)
            entry = _entry(worker_ctx, finished, outcome, exc_info) if exc_info else None
            self.chassis_history.append(_Finished(worker_ctx, finished, outcome, entry))
        except Exception:
            log.exception("chassis: worker bookkeeping failed for %r", worker_ctx)


def _entry(worker_ctx: Any, finished: float, outcome: Outcome, exc_info: Any) -> dict[str, Any]:
    started = getattr(worker_ctx, "chassis_started_at", None) or finished
    exc = exc_info[1] if exc_info else None
    entry: dict[str, Any] = {
        "call_id": str(worker_ctx.call_id),
        "entrypoint": entrypoint_name(worker_ctx),
        "started_at": started,
        "finished_at": finished,
        "duration_s": round(finished - started, 6),
        "outcome": outcome,
        "exc_type": type(exc).__name__ if exc is not None else None,
        "exc_message": _exc_message(exc) if exc is not None else None,
    }
    entry.update(_details(worker_ctx, exc_info))
    return entry


def _details(worker_ctx: Any, exc_info: Any) -> dict[str, Any]:
    """What a finished worker's detail view shows: its entrypoint type and call chain, its
    arguments and context data (through the collector's redaction: the entrypoint's
    ``sensitive_arguments`` and secret-looking context keys hidden, every repr bounded) and, for
    a failure, the traceback (the innermost :data:`TRACEBACK_FRAMES`, source lines cut).
    Costs a few microseconds per worker; the traceback only on failures."""
    ep = getattr(worker_ctx, "entrypoint", None)
    kind = entrypoints.kind_of(ep) if ep is not None else "unknown"
    policy = active_policy(max_age=POLICY_TTL)
    args, kwargs = redacted_arguments(
        ep, entrypoints.shown_args(kind, getattr(worker_ctx, "args", ())),
        getattr(worker_ctx, "kwargs", {}), policy=policy)
    data = getattr(worker_ctx, "data", None) or {}
    context = ({k: v for k, v in data.items() if k != "call_id_stack"}
               if isinstance(data, dict) else {})
    try:
        call_id_stack = [str(c) for c in (getattr(worker_ctx, "call_id_stack", None) or [])]
    except Exception:
        call_id_stack = []
    tb = exc_info[2] if exc_info and len(exc_info) > 2 else None
    return {
        "entrypoint_type": kind,
        "call_id_stack": call_id_stack,
        "args": args,
        "kwargs": kwargs,
        # an empty mapping stays empty: redact_mapping would read the settings for nothing
        "context_data": redact_mapping(context, policy) if context else {},
        "traceback": traceback_frames(tb, TRACEBACK_FRAMES) if tb is not None else None,
    }


def _exc_message(exc: BaseException) -> str:
    return exception_text(exc, EXC_MESSAGE_LIMIT)  # bounded, secrets hidden
