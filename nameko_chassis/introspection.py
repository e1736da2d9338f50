"""Collect a snapshot (schema v1) of what nameko containers are doing right now.

``collect(target)`` reads runners, containers, entrypoints, dependencies, worker greenthreads and
their stacks, duck-typed over nameko's internals (see DESIGN.md for the attributes it reads).

This module uses the **standard library only at import time**: the console ships its source over
the backdoor, so a service can be inspected without nameko-chassis installed. It runs on the
eventlet hub, where no worker runs while it works: every loop is bounded by a named limit, and
per-worker data that cannot change (arguments, context data, call ids) is computed once per worker
and cached.

Redaction happens here, before anything leaves the service: entrypoint ``sensitive_arguments``
(nameko's ``get_redacted_args``) and context-data keys that look secret (:data:`SECRET_KEY_PATTERNS`).
"""

from __future__ import annotations

import gc
import linecache
import os
import re
import reprlib
import socket
import sys
import sysconfig
import time
from collections.abc import Iterable, Mapping
from typing import Any

SCHEMA_VERSION = 1

#: Workers listed per container, oldest first; the rest are counted in ``workers_running``.
DEFAULT_MAX_WORKERS = 1000
#: Frames kept per stack (the innermost ones).
DEFAULT_MAX_FRAMES = 40
#: Characters kept of any one repr (arguments, context values).
DEFAULT_REPR_LIMIT = 200
#: Positional + keyword arguments shown per worker.
DEFAULT_MAX_ARGS = 20
#: Context-data keys shown per worker.
DEFAULT_MAX_CONTEXT_KEYS = 30
#: Objects inspected at most when searching for runners with ``gc`` (no ``runner`` name).
DEFAULT_GC_SCAN_LIMIT = 5_000_000

#: Context-data keys matching any of these (case-insensitive, ignoring ``-``/``_``/spaces)
#: are redacted.
SECRET_KEY_PATTERNS: tuple[str, ...] = (
    "authorization", "auth", "cookie", "password", "passwd", "pwd", "secret", "token",
    "apikey", "accesskey", "privatekey", "session", "credential", "signature", "jwt", "dsn",
)
REDACTED = "********"

_NORMALISE = re.compile(r"[-_\s.]")

ENTRYPOINT_TYPES = {
    "Rpc": "rpc",
    "EventHandler": "event_handler",
    "HttpRequestHandler": "http",
    "Timer": "timer",
    "Consumer": "consumer",
}


# ---------------------------------------------------------------------------------------------
# reprs and redaction


def _make_repr(limit: int) -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = 10
    r.maxdict = 10
    r.maxlevel = 3
    return r


_reprs: dict[int, reprlib.Repr] = {}


def safe_repr(value: Any, limit: int = DEFAULT_REPR_LIMIT) -> str:
    """A repr of ``value`` that is at most ``limit`` characters and never raises."""
    r = _reprs.get(limit)
    if r is None:
        r = _reprs[limit] = _make_repr(limit)
    try:
        text = r.repr(value)
    except BaseException as exc:
        try:
            kind = type(value).__name__
        except BaseException:
            kind = "object"
        return f"<repr of {kind} raised {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def is_secret_key(key: Any, patterns: Iterable[str] = SECRET_KEY_PATTERNS) -> bool:
    norm = _NORMALISE.sub("", str(key)).lower()
    return any(p in norm for p in patterns)


def _plain(value: Any, limit: int) -> Any:
    """JSON-safe context value: small primitives as they are, anything else as a safe repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[: max(limit - 3, 0)] + "..."
    return safe_repr(value, limit)


def redact_mapping(
    data: Mapping[Any, Any],
    patterns: Iterable[str] = SECRET_KEY_PATTERNS,
    *,
    limit: int = DEFAULT_REPR_LIMIT,
    max_keys: int = DEFAULT_MAX_CONTEXT_KEYS,
) -> dict[str, Any]:
    """A JSON-safe copy of ``data`` with secret-looking keys redacted and values bounded."""
    patterns = tuple(patterns)
    out: dict[str, Any] = {}
    try:
        items = list(data.items())
    except BaseException:
        return {"<error>": "<context data could not be read>"}
    for i, (key, value) in enumerate(items):
        if i >= max_keys:
            out["<more>"] = f"{len(items) - max_keys} more keys"
            break
        name = str(key)[:limit]
        out[name] = REDACTED if is_secret_key(name, patterns) else _plain(value, limit)
    return out


def redacted_arguments(
    entrypoint: Any, args: Any, kwargs: Any, *, limit: int = DEFAULT_REPR_LIMIT,
    max_args: int = DEFAULT_MAX_ARGS,
) -> tuple[list[str], dict[str, str]]:
    """Reprs of a worker's arguments, with the entrypoint's ``sensitive_arguments`` redacted.

    With sensitive arguments the call is bound to parameter names (nameko's
    ``get_redacted_args``), so every argument comes back as a keyword.
    """
    args = tuple(args or ())
    kwargs = dict(kwargs or {})
    if getattr(entrypoint, "sensitive_arguments", None):
        try:
            from nameko.utils import get_redacted_args  # only ever runs inside a service

            callargs = get_redacted_args(entrypoint, *args, **kwargs)
            callargs.pop("self", None)
            shown = list(callargs.items())[:max_args]
            return [], {str(k): safe_repr(v, limit) for k, v in shown}
        except BaseException as exc:
            return [f"<arguments hidden: redaction failed ({type(exc).__name__})>"], {}
    arg_reprs = [safe_repr(a, limit) for a in args[:max_args]]
    if len(args) > max_args:
        arg_reprs.append(f"<{len(args) - max_args} more>")
    kw_reprs = {str(k): safe_repr(v, limit) for k, v in list(kwargs.items())[:max_args]}
    return arg_reprs, kw_reprs


# ---------------------------------------------------------------------------------------------
# frames


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib"):
        try:
            roots.add(os.path.realpath(sysconfig.get_paths()[key]))
        except (KeyError, OSError):
            pass
    for key in ("stdlib", "platstdlib"):
        try:
            roots.add(os.path.realpath(sysconfig.get_path(key, vars={"base": sys.base_prefix,
                                                                       "platbase": sys.base_prefix})))
        except (KeyError, OSError, TypeError):
            pass
    return tuple(sorted(r.rstrip("/") + "/" for r in roots if r))


_LIB_ROOTS = _library_roots()
_LIB_MARKERS = ("/site-packages/", "/dist-packages/")
_LIB_PACKAGES = ("/nameko/", "/eventlet/", "/greenlet/", "/kombu/", "/amqp/")
_library_by_file: dict[str, bool] = {}


def is_library_file(filename: str) -> bool:
    """Standard library, site-packages/dist-packages and nameko/eventlet internals."""
    cached = _library_by_file.get(filename)
    if cached is not None:
        return cached
    if filename.startswith("<"):
        result = filename.startswith("<frozen") or filename == "<string>"
    else:
        result = (
            any(m in filename for m in _LIB_MARKERS)
            or any(m in filename for m in _LIB_PACKAGES)
            or filename.startswith(_LIB_ROOTS)
        )
    if len(_library_by_file) < 20_000:
        _library_by_file[filename] = result
    return result


_frame_cache: dict[tuple[Any, int], dict[str, Any]] = {}
_library_by_code: dict[Any, bool] = {}


def _code_is_library(code: Any) -> bool:
    cached = _library_by_code.get(code)
    if cached is None:
        cached = is_library_file(code.co_filename)
        if len(_library_by_code) < 50_000:
            _library_by_code[code] = cached
    return cached


def _frame_dict(frame: Any) -> dict[str, Any]:
    """The schema's frame object. Shared between snapshots (cached by code and line): callers
    must not mutate it."""
    code = frame.f_code
    lineno = frame.f_lineno or 0
    key = (code, lineno)
    cached = _frame_cache.get(key)
    if cached is not None:
        return cached
    filename = code.co_filename
    cached = {
        "file": filename,
        "line": lineno,
        "function": code.co_name,
        "code": linecache.getline(filename, lineno).strip()[:DEFAULT_REPR_LIMIT] if lineno else "",
        "library": _code_is_library(code),
    }
    if len(_frame_cache) > 50_000:
        _frame_cache.clear()
    _frame_cache[key] = cached
    return cached


def stack_of(frame: Any, max_frames: int = DEFAULT_MAX_FRAMES) -> list[dict[str, Any]]:
    """The frames from ``frame`` outwards, at most ``max_frames`` innermost, outermost first."""
    frames: list[dict[str, Any]] = []
    while frame is not None and len(frames) < max_frames:
        frames.append(_frame_dict(frame))
        frame = frame.f_back
    frames.reverse()
    return frames


def innermost_user_frame(frame: Any, max_depth: int = 200) -> dict[str, Any] | None:
    """Where a suspended greenthread is, in user terms: its innermost non-library frame
    (or its innermost frame when every frame is library code)."""
    first = frame
    depth = 0
    while frame is not None and depth < max_depth:
        if not _code_is_library(frame.f_code):
            return _frame_dict(frame)
        frame = frame.f_back
        depth += 1
    return _frame_dict(first) if first is not None else None


def _greenthread_frame(gt: Any) -> Any:
    try:
        return gt.gr_frame
    except BaseException:
        return None


def _managed_target(frame: Any) -> str | None:
    """Name what a managed thread runs: its bottom frame is eventlet's ``GreenThread.main``."""
    bottom = None
    depth = 0
    while frame is not None and depth < 500:
        bottom = frame
        frame = frame.f_back
        depth += 1
    if bottom is None:
        return None
    try:
        fn = bottom.f_locals.get("function") if bottom.f_code.co_name == "main" else None
    except BaseException:
        fn = None
    if fn is None:
        return f"{bottom.f_code.co_name} ({os.path.basename(bottom.f_code.co_filename)})"
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return safe_repr(fn, 120)
    if owner is not None and "." not in name:
        name = f"{type(owner).__name__}.{name}"
    return str(name)


# ---------------------------------------------------------------------------------------------
# finding runners and containers


def _type_name(obj: Any) -> str:
    return type(obj).__name__


def _is_runner(obj: Any) -> bool:
    # type(), not isinstance(): weakref proxies pass isinstance checks
    return _type_name(obj) == "ServiceRunner" and isinstance(getattr(obj, "service_map", None), dict)


def _is_container(obj: Any) -> bool:
    t = type(obj)
    return t.__name__ == "ServiceContainer" or (
        hasattr(t, "spawn_worker") and hasattr(t, "spawn_managed_thread")
        and isinstance(getattr(obj, "__dict__", None), dict) and "service_name" in obj.__dict__
    )


def find_containers(
    namespace: Mapping[str, Any] | None = None, *, gc_scan_limit: int = DEFAULT_GC_SCAN_LIMIT
) -> tuple[list[Any], str]:
    """Containers to inspect, and how they were found (``"runner"`` or ``"gc"``, ``"none"``).

    Uses the backdoor's ``runner`` when it is a ServiceRunner, else scans ``gc`` (bounded) for
    ServiceRunner objects and then for containers not owned by any runner.
    """
    runner = namespace.get("runner") if namespace is not None else None
    if runner is not None and _is_runner(runner):
        return list(runner.service_map.values()), "runner"
    runners, containers = [], []
    for i, obj in enumerate(gc.get_objects()):
        if i >= gc_scan_limit:
            break
        try:
            if _is_runner(obj):
                runners.append(obj)
            elif _is_container(obj):
                containers.append(obj)
        except BaseException:
            continue
    seen: dict[int, Any] = {}
    for r in runners:
        for c in r.service_map.values():
            seen[id(c)] = c
    for c in containers:
        seen.setdefault(id(c), c)
    return list(seen.values()), ("gc" if seen else "none")


def _resolve(target: Any, namespace: Mapping[str, Any] | None) -> tuple[list[Any], str]:
    if target is None:
        return find_containers(namespace)
    if _is_runner(target):
        return list(target.service_map.values()), "runner"
    if isinstance(target, (list, tuple)):
        out: list[Any] = []
        for t in target:
            out.extend(_resolve(t, namespace)[0])
        return out, "given"
    return [target], "given"


# ---------------------------------------------------------------------------------------------
# extensions


_type_by_class: dict[type, str] = {}


def entrypoint_type(entrypoint: Any) -> str:
    """``rpc``, ``event_handler``, ``http``, ``timer``, ``consumer`` (by the nearest known class
    in the entrypoint's MRO, by name: no nameko import), or the lower-cased class name of any
    other entrypoint. Cached per class: the chassis providers call it for every worker."""
    t = type(entrypoint)
    kind = _type_by_class.get(t)
    if kind is None:
        kind = next((ENTRYPOINT_TYPES[c.__name__] for c in t.__mro__
                     if c.__name__ in ENTRYPOINT_TYPES), t.__name__.lower())
        _type_by_class[t] = kind
    return kind


def _qualified(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def entrypoint_details(entrypoint: Any, kind: str | None = None) -> dict[str, Any]:
    kind = kind or entrypoint_type(entrypoint)
    d: dict[str, Any] = {"class": _qualified(entrypoint)}
    g = entrypoint.__dict__.get if hasattr(entrypoint, "__dict__") else (lambda k, v=None: v)
    if kind == "event_handler":
        d.update(source_service=g("source_service"), event_type=g("event_type"),
                 handler_type=str(g("handler_type")))
    elif kind == "http":
        d.update(http_method=g("method"), url=g("url"))
    elif kind == "timer":
        d.update(interval=g("interval"), eager=g("eager"))
    elif kind == "consumer":
        queue = g("queue")
        d.update(queue=getattr(queue, "name", None) if queue is not None else None)
    sensitive = g("sensitive_arguments")
    if sensitive:
        d["sensitive_arguments"] = list(sensitive) if not isinstance(sensitive, str) else [sensitive]
    expected = g("expected_exceptions")
    if expected:
        exp = expected if isinstance(expected, tuple) else (expected,)
        d["expected_exceptions"] = [getattr(e, "__name__", str(e)) for e in exp]
    return {k: (v if isinstance(v, (str, int, float, bool, list)) or v is None else safe_repr(v))
            for k, v in d.items()}


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
    kind = entrypoint_type(ep) if ep is not None else "unknown"
    args, kwargs = redacted_arguments(ep, getattr(ctx, "args", ()), getattr(ctx, "kwargs", {}),
                                      limit=opts["repr_limit"])
    data = getattr(ctx, "data", None) or {}
    context = ({k: v for k, v in data.items() if k != "call_id_stack"}
               if isinstance(data, dict) else {})
    try:
        call_id_stack = [str(c) for c in (getattr(ctx, "call_id_stack", None) or [])]
    except BaseException:  # noqa: BLE001
        call_id_stack = []
    static = {
        "call_id": str(getattr(ctx, "call_id", "") or ""),
        "call_id_stack": call_id_stack,
        "entrypoint": f"{container_name}.{method}",
        "entrypoint_type": kind,
        "args": args,
        "kwargs": kwargs,
        "context_data": redact_mapping(context, opts["secret_patterns"], limit=opts["repr_limit"]),
    }
    try:
        setattr(ctx, _CACHE_ATTR, (key, static, first_seen))
    except (AttributeError, TypeError):
        pass
    return static, first_seen


def _collect_workers(container: Any, name: str, now: float, opts: dict[str, Any],
                     errors: list[str]) -> tuple[list[dict[str, Any]], int]:
    threads = getattr(container, "_worker_threads", None) or {}
    try:
        items = list(threads.items())
    except BaseException as exc:
        errors.append(f"{name}: cannot read worker threads: {type(exc).__name__}: {exc}")
        return [], 0
    rows = []
    for ctx, gt in items:
        try:
            static, first = _worker_static(ctx, name, opts, now)
        except BaseException as exc:  # noqa: BLE001 - one odd worker never hides the others
            errors.append(f"{name}: cannot read a worker: {type(exc).__name__}: {exc}")
            continue
        started = getattr(ctx, "chassis_started_at", None)
        if not isinstance(started, (int, float)):
            started = None
        rows.append((started if started is not None else first, started, first, static, gt))
    rows.sort(key=_since)  # oldest first
    stacks = opts["stacks"]
    all_stacks = stacks == "all"
    some_stacks = not isinstance(stacks, str)
    max_frames = opts["max_frames"]
    known = opts["known"]
    unchanged = opts["unchanged"]
    workers = []
    for since, started, first, static, gt in rows[: opts["max_workers"]]:
        try:
            frame = gt.gr_frame
        except BaseException:  # noqa: BLE001
            frame = None
        if known is not None:
            call_id = static["call_id"]
            where = _where(frame, static) if frame is not None else None
            if (call_id in known and known[call_id] is where and not all_stacks
                    and not (some_stacks and call_id in stacks)):
                unchanged.append(call_id)
                continue
        worker = static.copy()
        worker.pop("_where_memo", None)
        worker["started_at"] = started
        worker["first_seen"] = first
        worker["age_s"] = round(now - since if now > since else 0.0, 3)
        worker["where"] = _where(frame, static) if frame is not None else None
        if all_stacks or (some_stacks and static["call_id"] in stacks):
            worker["stack"] = stack_of(frame, max_frames) if frame is not None else []
        else:
            worker["stack"] = None
        workers.append(worker)
    return workers, len(items)


def _where(frame: Any, static: dict[str, Any]) -> dict[str, Any] | None:
    """innermost_user_frame(), remembered per worker while it stays parked on the same line:
    a parked greenthread keeps the same innermost frame object between refreshes."""
    memo = static.get("_where_memo")
    if memo is not None and memo[0] is frame and memo[1] == frame.f_lineno:
        return memo[2]
    where = innermost_user_frame(frame)
    static["_where_memo"] = (frame, frame.f_lineno, where)
    return where


def _since(row: tuple[Any, ...]) -> Any:
    return row[0]


def _collect_managed(container: Any, name: str, opts: dict[str, Any],
                     errors: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        items = list((getattr(container, "_managed_threads", None) or {}).items())
    except BaseException as exc:
        errors.append(f"{name}: cannot read managed threads: {type(exc).__name__}: {exc}")
        return out
    with_stacks = opts["stacks"] == "all"
    for gt, identifier in items[: opts["max_workers"]]:
        frame = _greenthread_frame(gt)
        out.append({
            "identifier": str(identifier),
            "target": _managed_target(frame) if frame is not None else None,
            "stack": stack_of(frame, opts["max_frames"]) if with_stacks and frame is not None
            else None,
        })
    return out


def _history(container: Any) -> list[dict[str, Any]] | None:
    for dep in getattr(container, "dependencies", ()) or ():
        history = getattr(dep, "chassis_history", None)
        if history is not None:
            try:
                return [dict(h) for h in list(history)]
            except BaseException:
                return []
    return None


def _collect_container(container: Any, now: float, opts: dict[str, Any],
                       errors: list[str]) -> dict[str, Any]:
    name = str(getattr(container, "service_name", "?"))
    cls = getattr(container, "service_cls", None)
    entrypoints = []
    for ep in list(getattr(container, "entrypoints", ()) or ()):
        try:
            kind = entrypoint_type(ep)
            entrypoints.append({"method": str(getattr(ep, "method_name", "?")), "type": kind,
                                "details": entrypoint_details(ep, kind)})
        except BaseException as exc:
            errors.append(f"{name}: cannot read an entrypoint: {type(exc).__name__}: {exc}")
    entrypoints.sort(key=lambda e: (e["type"], e["method"]))
    dependencies = [{"attr": attr, "type": kind} for attr, kind in sorted(
        (str(getattr(d, "attr_name", "?")), _qualified(d))
        for d in list(getattr(container, "dependencies", ()) or ()))]
    subextensions: list[dict[str, Any]] = [{"type": kind, "details": {}} for kind in sorted(
        _qualified(s) for s in list(getattr(container, "subextensions", ()) or ()))]
    unchanged: list[str] = []
    opts["unchanged"] = unchanged
    workers, running = _collect_workers(container, name, now, opts, errors)
    max_workers = getattr(container, "max_workers", 0)
    result = {
        "service_name": name,
        "service_class": f"{cls.__module__}.{cls.__qualname__}" if cls is not None else "?",
        "started": bool(getattr(container, "started", False)),
        "max_workers": int(max_workers) if isinstance(max_workers, int) else 0,
        "workers_running": running,
        "entrypoints": entrypoints,
        "dependencies": dependencies,
        "subextensions": subextensions,
        "workers": workers,
        "managed_threads": _collect_managed(container, name, opts, errors),
        "history": _history(container),
    }
    if opts["known"] is not None:
        result["unchanged"] = unchanged
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
            "secret_patterns": _patterns(secret_patterns), "known": known, "unchanged": []}


_patterns_memo: dict[Any, tuple[str, ...]] = {}


def _patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    # the same tuple object each time, so per-worker cache keys compare by identity
    key = patterns if isinstance(patterns, tuple) else tuple(patterns)
    out = _patterns_memo.get(key)
    if out is None:
        out = _patterns_memo[key] = tuple(p.lower() for p in key)
    return out


def _nameko_version() -> str:
    mod = sys.modules.get("nameko")
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("nameko")
    except Exception:
        return "unknown"


_NAMEKO_VERSION: str | None = None


def collect(target: Any = None, *, namespace: Mapping[str, Any] | None = None,
            stacks: Any = "all", max_workers: int = DEFAULT_MAX_WORKERS,
            max_frames: int = DEFAULT_MAX_FRAMES, repr_limit: int = DEFAULT_REPR_LIMIT,
            secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS,
            known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A schema-v1 snapshot of ``target``: a ServiceRunner, a ServiceContainer, a list of them,
    or None to find them (the ``runner`` in ``namespace``, else a bounded ``gc`` search).

    ``stacks``: ``"all"`` (every worker's full stack), ``"none"`` (only each worker's innermost
    user frame, ``where``), or a set of call ids whose full stacks to include.
    Limits: ``max_workers`` listed per container (oldest first), ``max_frames`` per stack,
    ``repr_limit`` characters per repr. ``secret_patterns``: context-data keys to redact.

    ``known`` (the wire's delta refresh, used by the agent): call id -> the ``where`` object
    sent for it before. A listed worker whose ``where`` is still that very object, and whose
    stack was not asked for, is left out of ``workers`` and its call id put in the container's
    ``unchanged`` list instead; the client rebuilds it (see ``chassis_console.client``).
    """
    global _NAMEKO_VERSION
    t0 = time.perf_counter()
    opts = _options(stacks=stacks, max_workers=max_workers, max_frames=max_frames,
                    repr_limit=repr_limit, secret_patterns=secret_patterns, known=known)
    errors: list[str] = []
    containers, _how = _resolve(target, namespace)
    now = time.time()
    out = []
    for container in containers:
        try:
            out.append(_collect_container(container, now, opts, errors))
        except BaseException as exc:
            name = getattr(container, "service_name", "?")
            errors.append(f"{name}: cannot read container: {type(exc).__name__}: {exc}")
    if _NAMEKO_VERSION is None:
        _NAMEKO_VERSION = _nameko_version()
    return {
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
