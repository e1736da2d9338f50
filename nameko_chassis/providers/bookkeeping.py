"""Worker bookkeeping: exact worker start times and a ring buffer of recently finished workers.

:class:`WorkerBookkeeping` stamps ``worker_ctx.chassis_started_at`` (epoch seconds) in
``worker_setup`` — the collector (``nameko_chassis.probe.collect``) reads it so worker ages are
exact — and keeps ``chassis_history``, a bounded deque of plain dicts describing finished workers,
which snapshots include as ``history``: each entry says who the worker was (entrypoint, call
chain), with what (arguments and context data, redacted exactly as the collector redacts a
running worker's) and how it ended (duration, outcome, and for a failure the exception with a
bounded traceback). It also holds the helpers the other providers share:
:func:`entrypoint_name` and :func:`outcome_of`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
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


#: Seconds the providers keep the redaction policy before reading the settings again.
POLICY_TTL = 1.0

_policy: tuple[float, Any] | None = None


def current_policy() -> Any:
    """The probe's :func:`~nameko_chassis.probe.redaction.active_policy`, read again at most
    every :data:`POLICY_TTL` seconds: it reads the nameko config and the environment each call
    (~10 µs), which every worker would pay. A change of ``CHASSIS.REDACT`` /
    ``$CHASSIS_REDACT_*`` in a running service applies within that second."""
    global _policy
    now = time.monotonic()
    if _policy is None or now - _policy[0] >= POLICY_TTL:
        _policy = (now, active_policy())
    return _policy[1]


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


class WorkerBookkeeping(DependencyProvider):
    """Start times and recently finished workers, for the introspection console.

    ``history_size`` (default: ``CHASSIS.HISTORY_SIZE``, else 100) bounds ``chassis_history``.
    The dependency it injects is the provider itself, which gives a worker its ``container``
    (``Service.describe()`` uses it). Never raises into a worker: every hook catches and logs.
    """

    def __init__(self, history_size: int | None = None) -> None:
        self.history_size = history_size
        self.chassis_history: deque[dict[str, Any]] = deque(maxlen=DEFAULT_HISTORY_SIZE)

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
        self.chassis_history = deque(maxlen=max(int(size), 0))

    def get_dependency(self, worker_ctx: Any) -> WorkerBookkeeping:
        return self

    def worker_setup(self, worker_ctx: Any) -> None:
        worker_ctx.chassis_started_at = time.time()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        try:
            finished = time.time()
            started = getattr(worker_ctx, "chassis_started_at", None) or finished
            exc = exc_info[1] if exc_info else None
            entry: dict[str, Any] = {
                "call_id": str(worker_ctx.call_id),
                "entrypoint": entrypoint_name(worker_ctx),
                "started_at": started,
                "finished_at": finished,
                "duration_s": round(finished - started, 6),
                "outcome": outcome_of(worker_ctx, exc_info),
                "exc_type": type(exc).__name__ if exc is not None else None,
                "exc_message": _exc_message(exc) if exc is not None else None,
            }
            entry.update(_details(worker_ctx, exc_info))
            self.chassis_history.append(entry)
        except Exception:
            log.exception("chassis: worker bookkeeping failed for %r", worker_ctx)


def _details(worker_ctx: Any, exc_info: Any) -> dict[str, Any]:
    """What a finished worker's detail view shows: its entrypoint type and call chain, its
    arguments and context data (through the collector's redaction: the entrypoint's
    ``sensitive_arguments`` and secret-looking context keys hidden, every repr bounded) and, for
    a failure, the traceback (the innermost :data:`TRACEBACK_FRAMES`, source lines cut).
    Costs a few microseconds per worker; the traceback only on failures."""
    ep = getattr(worker_ctx, "entrypoint", None)
    kind = entrypoints.kind_of(ep) if ep is not None else "unknown"
    policy = current_policy()
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
