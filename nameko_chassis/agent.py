"""The request dispatcher that the console ships into a backdoor, next to the collector.

The console sends one line per request::

    __chassis__.handle(globals(), "collect", "<base64 JSON of keyword arguments>")

``handle`` runs the operation and writes exactly one frame to ``sys.stdout`` (the backdoor's
socket) in a single write, then returns None so the console prints nothing more::

    \\x1e\\x1eCHASSIS <kind> <length> <stall_ms>\\n<payload>\\n

``kind`` is ``j`` (JSON), ``z`` (zlib-compressed JSON, base64) or ``e`` (error: JSON with
``type``, ``message``, ``traceback``). The payload is ASCII, so ``length`` counts bytes and
characters alike. Every ``BaseException`` — ``SystemExit`` and ``KeyboardInterrupt`` included —
becomes an error frame: nothing a request does can stop the service through this path.

Standard library only. Shipped as source; operations of other shipped modules register through
their module-level ``OPS`` dict (see :func:`install`).
"""

from __future__ import annotations

import base64
import json
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from typing import Any

FRAME_MARK = "\x1e\x1eCHASSIS "
COMPRESS_OVER = 128 * 1024
VERSION = "dev"  # replaced by the client with a hash of the shipped sources

#: Operations: name -> fn(namespace, **kwargs) -> JSON-serialisable result.
OPS: dict[str, Callable[..., Any]] = {}
#: The shipped modules by name, set by the bootstrap.
modules: dict[str, Any] = {}
_state: dict[str, Any] = {"socket_tuned": False}


def op(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        OPS[name] = fn
        return fn

    return register


def install(shipped: dict[str, Any]) -> None:
    """Called by the bootstrap with the shipped modules: merge their ``OPS``."""
    modules.update(shipped)
    for module in shipped.values():
        extra = getattr(module, "OPS", None)
        if isinstance(extra, dict) and module is not sys.modules.get(__name__):
            for name, fn in extra.items():
                OPS.setdefault(name, fn)


def encode_frame(kind: str, payload: str, stall_ms: float) -> str:
    return f"{FRAME_MARK}{kind} {len(payload)} {stall_ms:.3f}\n{payload}\n"


def _result_frame(result: Any, t0: float) -> str:
    text = json.dumps(result, separators=(",", ":"), default=str)
    kind = "j"
    if len(text) > COMPRESS_OVER:
        text = base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")
        kind = "z"
    return encode_frame(kind, text, (time.perf_counter() - t0) * 1000)


def _error_frame(exc: BaseException, t0: float) -> str:
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        tb = ""
    body = {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-20000:]}
    return encode_frame("e", json.dumps(body), (time.perf_counter() - t0) * 1000)


def _write(text: str) -> None:
    out = sys.stdout
    out.write(text)
    try:
        out.flush()
    except BaseException:
        pass


def handle(namespace: dict[str, Any], name: str, arguments: str = "") -> None:
    """Run operation ``name`` and write one frame. Never raises."""
    t0 = time.perf_counter()
    try:
        kwargs = json.loads(base64.b64decode(arguments)) if arguments else {}
        fn = OPS.get(name)
        if fn is None:
            raise LookupError(f"unknown operation {name!r}")
        frame = _result_frame(fn(namespace, **kwargs), t0)
    except BaseException as exc:
        frame = _error_frame(exc, t0)
    try:
        _write(frame)
    except BaseException:
        pass


def _tune_socket() -> bool:
    """Set TCP_NODELAY on this backdoor connection's socket (server side), so a reply's last
    segment is not held back by Nagle waiting for the client's delayed ACK (~40 ms).

    The socket is found by its peer address among the process's file descriptors: socket
    options belong to the socket, so setting one through a duplicate descriptor is enough. That
    costs one probe per open descriptor, where a search of the heap (``gc``) would stall the hub
    in proportion to the whole service's memory. Platforms without ``/proc/self/fd`` go without.
    """
    import _socket  # the C module: eventlet never patches it
    import os

    try:
        import greenlet

        peer = getattr(greenlet.getcurrent(), "hostport", None)
    except BaseException:  # noqa: BLE001
        peer = None
    if not peer:
        return False
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return False
    want = tuple(peer)[:2]
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:  # already gone
            continue
        try:
            dup = _socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        try:
            if dup.family in (_socket.AF_INET, _socket.AF_INET6) and \
                    dup.getpeername()[:2] == want:
                dup.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                return True
        except OSError:
            continue
        finally:
            dup.close()
    return False


@op("hello")
def hello(namespace: dict[str, Any]) -> dict[str, Any]:
    """Once per connection: tune the socket, find the containers, describe the process."""
    import os
    import socket

    tuned = _tune_socket()
    introspection = modules["introspection"]
    containers, how = introspection.find_containers(namespace)
    _state["containers"] = containers
    _state["how"] = how
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "found": how,
        "services": [str(getattr(c, "service_name", "?")) for c in containers],
        "nodelay": tuned,
    }


def _containers(namespace: dict[str, Any]) -> list[Any]:
    introspection = modules["introspection"]
    runner = namespace.get("runner")
    if runner is not None and introspection._is_runner(runner):
        return list(runner.service_map.values())
    cached = _state.get("containers")
    if cached is None:
        cached, _state["how"] = introspection.find_containers(namespace)
        _state["containers"] = cached
    return list(cached)


#: Per client session: call id -> the ``where`` object last sent for it. Bounded.
_sessions: dict[str, dict[str, Any]] = {}
MAX_SESSIONS = 32


@op("collect")
def collect(namespace: dict[str, Any], session: str | None = None,
            **limits: Any) -> dict[str, Any]:
    """A snapshot. With ``session`` (a client-chosen id, one per connection), workers already
    sent in that session whose ``where`` has not changed come back only as call ids in their
    container's ``unchanged`` list, which the client merges with what it has: at 1000 parked
    workers, encoding full workers, not collecting them, would dominate the hub stall."""
    introspection = modules["introspection"]
    stacks = limits.pop("stacks", "all")
    if isinstance(stacks, list):
        stacks = frozenset(stacks)
    if not session:
        return _share_frames(introspection.collect(_containers(namespace), stacks=stacks, **limits))
    sent = _sessions.pop(session, None)
    if sent is None:
        sent = {}
        while len(_sessions) >= MAX_SESSIONS:
            _sessions.pop(next(iter(_sessions)))
    _sessions[session] = sent  # most recently used last
    snapshot = introspection.collect(_containers(namespace), stacks=stacks, known=sent, **limits)
    current: dict[str, Any] = {}
    for container in snapshot["containers"]:
        for call_id in container["unchanged"]:
            current[call_id] = sent[call_id]
        for worker in container["workers"]:
            current[worker["call_id"]] = worker["where"]
    _sessions[session] = current
    return _share_frames(snapshot)


def _share_frames(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Send each distinct stack frame once: stacks become lists of indexes into a top-level
    ``frames`` table. Parked workers share most frames (the collector hands out one dict per
    code location), so at 1000 workers this cuts the JSON — the hub's main cost — by ~10x.
    The client expands it back to schema v1."""
    index: dict[int, int] = {}
    frames: list[Any] = []

    def refs(stack: list[Any]) -> list[int]:
        out = []
        for frame in stack:
            i = index.get(id(frame))
            if i is None:
                i = index[id(frame)] = len(frames)
                frames.append(frame)
            out.append(i)
        return out

    for container in snapshot["containers"]:
        for item in container["workers"] + container["managed_threads"]:
            if item.get("stack"):
                item["stack"] = refs(item["stack"])
    if frames:
        snapshot["frames"] = frames
    return snapshot


@op("kill_worker")
def kill_worker(namespace: dict[str, Any], call_id: str) -> dict[str, Any]:
    """Kill one worker greenthread by call id. Only sent by the console with --allow-actions
    after the user confirmed; the container handles the GreenletExit like any killed worker."""
    for container in _containers(namespace):
        for ctx, gt in list((getattr(container, "_worker_threads", None) or {}).items()):
            if str(getattr(ctx, "call_id", "")) == call_id:
                gt.kill()
                return {"killed": True, "service": str(container.service_name)}
    return {"killed": False, "service": None}
