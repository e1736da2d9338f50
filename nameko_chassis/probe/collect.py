"""Collect a snapshot (schema v1) of what nameko containers are doing right now.

``collect(target)`` reads runners, containers, entrypoints, dependencies, worker greenthreads and
their stacks, duck-typed over nameko's internals (every private it reads is in
:mod:`.privates`). It runs on the eventlet hub, where no worker runs while it works: every loop
is bounded by a named limit, and per-worker data that cannot change (arguments, context data,
call ids) is computed once per worker and cached. Redaction (:mod:`.redaction`) happens here,
before anything leaves the service.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from . import backlog, entrypoints, privates, process
from .frames import (
    DEFAULT_MAX_FRAMES,
    innermost_user_frame,
    managed_target,
    package_dirs,
    stack_of,
)
from .redaction import (
    DEFAULT_REPR_LIMIT,
    SECRET_KEY_PATTERNS,
    policy_for,
    redact_mapping,
    redacted_arguments,
)
from .schema import (
    SCHEMA_VERSION,
    ContainerDict,
    DependencyDict,
    EntrypointDict,
    FinishedWorkerDict,
    FrameDict,
    IncidentDict,
    ManagedThreadDict,
    SnapshotDict,
    SubextensionDict,
    WorkerDict,
)

#: Workers listed per container, oldest first; the rest are counted in ``workers_running``.
DEFAULT_MAX_WORKERS = 1000
#: The attribute of ``sys`` holding the process's hub watchdog (see watchdog.py), if any.
WATCHDOG_MARKER = "_nameko_chassis_watchdog"
#: Objects inspected at most when searching for runners with ``gc`` (no ``runner`` name).
DEFAULT_GC_SCAN_LIMIT = 5_000_000


# ---------------------------------------------------------------------------------------------
# finding runners and containers


def find_containers(
    namespace: Mapping[str, Any] | None = None, *, gc_scan_limit: int = DEFAULT_GC_SCAN_LIMIT
) -> tuple[list[Any], str]:
    """Containers to inspect, and how they were found (``"runner"`` or ``"gc"``, ``"none"``).

    Uses the backdoor's ``runner`` when it is a ServiceRunner, else scans ``gc`` (bounded) for
    ServiceRunner objects and then for containers not owned by any runner.
    """
    runner = namespace.get("runner") if namespace is not None else None
    if runner is not None and privates.is_runner(runner):
        return privates.runner_containers(runner), "runner"
    runners, containers = [], []
    for i, obj in enumerate(gc.get_objects()):
        if i >= gc_scan_limit:
            break
        try:
            if privates.is_runner(obj):
                runners.append(obj)
            elif privates.is_container(obj):
                containers.append(obj)
        except BaseException:
            continue
    seen: dict[int, Any] = {}
    for r in runners:
        for c in privates.runner_containers(r):
            seen[id(c)] = c
    for c in containers:
        seen.setdefault(id(c), c)
    return list(seen.values()), ("gc" if seen else "none")


def _resolve(target: Any, namespace: Mapping[str, Any] | None) -> tuple[list[Any], str]:
    if target is None:
        return find_containers(namespace)
    if privates.is_runner(target):
        return privates.runner_containers(target), "runner"
    if isinstance(target, (list, tuple)):
        out: list[Any] = []
        for t in target:
            out.extend(_resolve(t, namespace)[0])
        return out, "given"
    return [target], "given"


# ---------------------------------------------------------------------------------------------
# workers

# Per-worker data that does not change while it runs is computed once and kept on the
# WorkerContext itself, under this attribute: it dies with the worker, and reading an attribute
# is much cheaper on the hub than a weak-keyed lookup.
_CACHE_ATTR = "_chassis_snapshot_cache"


def _worker_static(ctx: Any, container_name: str, opts: dict[str, Any],
                   now: float) -> tuple[dict[str, Any], float]:
    """(fields that do not change, first-seen time) for a worker context."""
    key = (opts["repr_limit"], opts["secret_patterns"])
    cached = getattr(ctx, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    first_seen = cached[2] if cached is not None else now
    ep = getattr(ctx, "entrypoint", None)
    method = getattr(ep, "method_name", None) or "?"
    kind = entrypoints.kind_of(ep) if ep is not None else "unknown"
    policy = opts["secret_patterns"]
    args, kwargs = redacted_arguments(ep, entrypoints.shown_args(kind, getattr(ctx, "args", ())),
                                      getattr(ctx, "kwargs", {}), limit=opts["repr_limit"],
                                      policy=policy)
    data = getattr(ctx, "data", None) or {}
    context = ({k: v for k, v in data.items() if k != "call_id_stack"}
               if isinstance(data, dict) else {})
    try:
        call_id_stack = [str(c) for c in (getattr(ctx, "call_id_stack", None) or [])]
    except BaseException:
        call_id_stack = []
    static = {
        "call_id": str(getattr(ctx, "call_id", "") or ""),
        "call_id_stack": call_id_stack,
        "entrypoint": f"{container_name}.{method}",
        "entrypoint_type": kind,
        "args": args,
        "kwargs": kwargs,
        "context_data": redact_mapping(context, policy, limit=opts["repr_limit"]),
    }
    try:
        setattr(ctx, _CACHE_ATTR, (key, static, first_seen))
    except (AttributeError, TypeError):
        pass
    return static, first_seen


def _collect_workers(container: Any, name: str, now: float, opts: dict[str, Any],
                     errors: list[str]) -> tuple[list[WorkerDict], int]:
    try:
        items = privates.worker_threads(container)
    except BaseException as exc:
        errors.append(f"{name}: cannot read worker threads: {type(exc).__name__}: {exc}")
        return [], 0
    rows = []
    for ctx, gt in items:
        try:
            static, first = _worker_static(ctx, name, opts, now)
        except BaseException as exc:  # one odd worker never hides the others
            errors.append(f"{name}: cannot read a worker: {type(exc).__name__}: {exc}")
            continue
        started = getattr(ctx, "chassis_started_at", None)
        if not isinstance(started, (int, float)):
            started = None
        rows.append((started if started is not None else first, started, first, static, gt))
    rows.sort(key=_since)  # oldest first
    own = package_dirs(getattr(container, "service_cls", None))
    stacks = opts["stacks"]
    all_stacks = stacks == "all"
    some_stacks = not isinstance(stacks, str)
    max_frames = opts["max_frames"]
    known = opts["known"]
    unchanged = opts["unchanged"]
    workers: list[WorkerDict] = []
    for since, started, first, static, gt in rows[: opts["max_workers"]]:
        frame = privates.greenthread_frame(gt)
        if known is not None:
            call_id = static["call_id"]
            where = _where(frame, static, own) if frame is not None else None
            if (call_id in known and known[call_id] is where and not all_stacks
                    and not (some_stacks and call_id in stacks)):
                unchanged.append(call_id)
                continue
        worker = static.copy()
        worker.pop("_where_memo", None)
        worker["started_at"] = started
        worker["first_seen"] = first
        worker["age_s"] = round(now - since if now > since else 0.0, 3)
        worker["where"] = _where(frame, static, own) if frame is not None else None
        if all_stacks or (some_stacks and static["call_id"] in stacks):
            worker["stack"] = stack_of(frame, max_frames) if frame is not None else []
        else:
            worker["stack"] = None
        workers.append(cast(WorkerDict, worker))
    return workers, len(items)


def _where(frame: Any, static: dict[str, Any], own: tuple[str, ...] = ()) -> FrameDict | None:
    """innermost_user_frame(), remembered per worker while it stays parked on the same line:
    a parked greenthread keeps the same innermost frame object between refreshes."""
    memo = static.get("_where_memo")
    if memo is not None and memo[0] is frame and memo[1] == frame.f_lineno:
        return cast(FrameDict | None, memo[2])
    where = innermost_user_frame(frame, own=own)
    static["_where_memo"] = (frame, frame.f_lineno, where)
    return where


def _since(row: tuple[Any, ...]) -> Any:
    return row[0]


def _qualified(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


#: In a set of ``stacks``, ``managed:<target>`` asks for the stacks of the managed threads
#: running ``<target>`` (as their ``target`` field names it: ``ConsumerMixin.run``).
MANAGED = "managed:"


def _collect_managed(container: Any, name: str, opts: dict[str, Any],
                     errors: list[str]) -> list[ManagedThreadDict]:
    out: list[ManagedThreadDict] = []
    try:
        items = privates.managed_threads(container)
    except BaseException as exc:
        errors.append(f"{name}: cannot read managed threads: {type(exc).__name__}: {exc}")
        return out
    stacks = opts["stacks"]
    all_stacks = stacks == "all"
    some = not isinstance(stacks, str) and any(s.startswith(MANAGED) for s in stacks)
    for gt, identifier in items[: opts["max_workers"]]:
        frame = privates.greenthread_frame(gt)
        target = managed_target(frame) if frame is not None else None
        wanted = all_stacks or (some and f"{MANAGED}{target}" in stacks)
        out.append({
            "identifier": str(identifier),
            "target": target,
            "stack": stack_of(frame, opts["max_frames"]) if wanted and frame is not None
            else None,
        })
    return out


def _history(container: Any) -> list[FinishedWorkerDict] | None:
    for dep in getattr(container, "dependencies", ()) or ():
        history = getattr(dep, "chassis_history", None)
        if history is not None:
            try:
                return [cast(FinishedWorkerDict, dict(h)) for h in list(history)]
            except BaseException:
                return []
    return None


def _collect_container(container: Any, now: float, opts: dict[str, Any],
                       errors: list[str]) -> ContainerDict:
    name = str(getattr(container, "service_name", "?"))
    cls = getattr(container, "service_cls", None)
    eps: list[EntrypointDict] = []
    for ep in list(getattr(container, "entrypoints", ()) or ()):
        try:
            kind = entrypoints.kind_of(ep)
            eps.append({"method": str(getattr(ep, "method_name", "?")), "type": kind,
                                "details": entrypoints.details(ep, kind)})
        except BaseException as exc:
            errors.append(f"{name}: cannot read an entrypoint: {type(exc).__name__}: {exc}")
    eps.sort(key=lambda e: (e["type"], e["method"]))
    dependencies: list[DependencyDict] = [{"attr": attr, "type": kind} for attr, kind in sorted(
        (str(getattr(d, "attr_name", "?")), _qualified(d))
        for d in list(getattr(container, "dependencies", ()) or ()))]
    subextensions: list[SubextensionDict] = [{"type": kind, "details": {}} for kind in sorted(
        _qualified(s) for s in list(getattr(container, "subextensions", ()) or ()))]
    unchanged: list[str] = []
    opts["unchanged"] = unchanged
    workers, running = _collect_workers(container, name, now, opts, errors)
    max_workers = getattr(container, "max_workers", 0)
    result: ContainerDict = {
        "service_name": name,
        "service_class": f"{cls.__module__}.{cls.__qualname__}" if cls is not None else "?",
        "started": bool(getattr(container, "started", False)),
        "max_workers": int(max_workers) if isinstance(max_workers, int) else 0,
        "workers_running": running,
        "entrypoints": eps,
        "dependencies": dependencies,
        "subextensions": subextensions,
        "workers": workers,
        "managed_threads": _collect_managed(container, name, opts, errors),
        "history": _history(container),
    }
    if opts["known"] is not None:
        result["unchanged"] = unchanged
    if (queues := backlog.of(container)) is not None:  # the sampler's last: a dict lookup
        result["backlog"] = queues
    return result


def _options(*, stacks: Any = "all", max_workers: int = DEFAULT_MAX_WORKERS,
             max_frames: int = DEFAULT_MAX_FRAMES, repr_limit: int = DEFAULT_REPR_LIMIT,
             secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS,
             known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(stacks, str):
        stacks = frozenset(str(s) for s in stacks)
    elif stacks not in ("all", "none"):
        raise ValueError(f"stacks must be 'all', 'none' or a set of call ids, not {stacks!r}")
    return {"stacks": stacks, "max_workers": max(int(max_workers), 0),
            "max_frames": max(int(max_frames), 1), "repr_limit": max(int(repr_limit), 8),
            # one RedactionPolicy object per settings: per-worker cache keys compare by identity
            "secret_patterns": policy_for(secret_patterns), "known": known, "unchanged": []}


_NAMEKO_VERSION: str | None = None


def collect(target: Any = None, *, namespace: Mapping[str, Any] | None = None,
            stacks: Any = "all", max_workers: int = DEFAULT_MAX_WORKERS,
            max_frames: int = DEFAULT_MAX_FRAMES, repr_limit: int = DEFAULT_REPR_LIMIT,
            secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS,
            known: Mapping[str, Any] | None = None) -> SnapshotDict:
    """A schema-v1 snapshot of ``target``: a ServiceRunner, a ServiceContainer, a list of them,
    or None to find them (the ``runner`` in ``namespace``, else a bounded ``gc`` search).

    ``stacks``: ``"all"`` (every worker's full stack), ``"none"`` (only each worker's innermost
    user frame, ``where``), or a set of call ids whose full stacks to include; in the set,
    ``managed:<target>`` adds the stacks of the managed threads running ``<target>``.
    Limits: ``max_workers`` listed per container (oldest first), ``max_frames`` per stack,
    ``repr_limit`` characters per repr. ``secret_patterns``: names to redact (arguments, keys) —
    by default the process's policy; ``"+name"``/``"-name"`` entries edit it, other names
    replace its names (see :func:`.redaction.policy_for` and docs/security.md).

    ``known`` (the wire's delta refresh, used by the agent): call id -> the ``where`` object
    sent for it before. A listed worker whose ``where`` is still that very object, and whose
    stack was not asked for, is left out of ``workers`` and its call id put in the container's
    ``unchanged`` list instead; the console reuses what it has (see ``wire``).
    """
    global _NAMEKO_VERSION
    t0 = time.perf_counter()
    opts = _options(stacks=stacks, max_workers=max_workers, max_frames=max_frames,
                    repr_limit=repr_limit, secret_patterns=secret_patterns, known=known)
    errors: list[str] = []
    containers, _how = _resolve(target, namespace)
    now = time.time()
    out: list[ContainerDict] = []
    for container in containers:
        try:
            out.append(_collect_container(container, now, opts, errors))
        except BaseException as exc:
            name = getattr(container, "service_name", "?")
            errors.append(f"{name}: cannot read container: {type(exc).__name__}: {exc}")
    if _NAMEKO_VERSION is None:
        _NAMEKO_VERSION = privates.library_versions()["nameko"] or "unknown"
    snapshot: SnapshotDict = {
        "schema": SCHEMA_VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "nameko": _NAMEKO_VERSION,
        "time": now,
        "took_ms": round((time.perf_counter() - t0) * 1000, 3),
        "errors": errors,
        "containers": out,
    }
    incidents = _incidents()
    if incidents is not None:
        snapshot["incidents"] = incidents
    try:
        snapshot["process"] = process.basics(containers)
    except BaseException as exc:  # process basics never break a snapshot
        errors.append(f"process basics: {type(exc).__name__}: {exc}")
    return snapshot


def _incidents() -> list[IncidentDict] | None:
    """The hub watchdog's incidents, oldest first, when one runs in this process."""
    running = getattr(sys, WATCHDOG_MARKER, None)
    if running is None or getattr(running, "stopped", True):
        return None
    try:
        return [cast(IncidentDict, dict(i)) for i in running.recent()]
    except BaseException:
        return []
