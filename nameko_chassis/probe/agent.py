"""The request dispatcher the console talks to: one line in, one frame out (see :mod:`.wire`).

``handle(namespace, op, arguments)`` runs one operation and writes exactly one frame to
``sys.stdout`` (the backdoor's socket) in a single write, then returns None so the console prints
nothing more. Every ``BaseException`` — ``SystemExit`` and ``KeyboardInterrupt`` included —
becomes an error frame: nothing a request does can stop the service through this path.
Operations of the other probe modules register through their module-level ``OPS`` dict (see
:func:`install`).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import backlog, privates, watchdog, wire
from . import collect as collector

VERSION = wire.DEV_VERSION  # replaced by the console with a hash of the shipped sources

#: Operations: name -> fn(namespace, **kwargs) -> JSON-serialisable result.
OPS: dict[str, Callable[..., Any]] = {}
#: The shipped modules by name, set by the bootstrap.
modules: dict[str, Any] = {}
_state: dict[str, Any] = {}


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
        frame = wire.result_frame(fn(namespace, **kwargs), t0)
    except BaseException as exc:
        frame = wire.error_frame(exc, t0)
    try:
        _write(frame)
    except BaseException:
        pass


def _tune_socket() -> tuple[bool, Any]:
    """Set TCP_NODELAY on this backdoor connection's socket (server side), so a reply's last
    segment is not held back by Nagle waiting for the client's delayed ACK (~40 ms). Returns
    (whether it did, the connection's local address: the backdoor's listening address).

    The socket is found by its peer address among the process's file descriptors: socket
    options belong to the socket, so setting one through a duplicate descriptor is enough. That
    costs one probe per open descriptor, where a search of the heap (``gc``) would stall the hub
    in proportion to the whole service's memory. Platforms without ``/proc/self/fd`` go without.
    """
    import _socket  # the C module: eventlet never patches it

    want = privates.backdoor_peer()
    if not want:
        return False, None
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return False, None
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
                return True, tuple(dup.getsockname()[:2])
        except OSError:
            continue
        finally:
            dup.close()
    return False, None


@op("hello")
def hello(namespace: dict[str, Any]) -> dict[str, Any]:
    """Once per connection: tune the socket, find the containers, start (or reuse) the hub
    watchdog and tell it this backdoor's address, describe the process."""
    tuned, backdoor = _tune_socket()
    containers, how = collector.find_containers(namespace)
    _state["containers"] = containers
    return {
        "watchdog": _watchdog(containers, backdoor),
        "version": VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "found": how,
        "services": [str(getattr(c, "service_name", "?")) for c in containers],
        "nodelay": tuned,
        "untested": privates.untested_versions(),
    }


def _watchdog(containers: list[Any], backdoor: Any) -> dict[str, Any] | None:
    """The process's hub watchdog, started on the first attach (unless ``CHASSIS_WATCHDOG=0``)
    and kept until the process ends."""
    try:
        running = watchdog.current()
        if running is None and not watchdog.enabled_by_environment():
            return None
        if running is not None and getattr(running, "heartbeat_lost", False):
            running.stop()  # its heartbeat greenthread was killed: start both halves afresh
        running = watchdog.ensure(containers=containers, backdoor=backdoor, version=VERSION)
        return dict(running.describe())
    except BaseException as exc:  # no watchdog is no reason to refuse a console
        return {"error": f"{type(exc).__name__}: {exc}"}


def containers_of(namespace: dict[str, Any]) -> list[Any]:
    """The containers to inspect: the backdoor's ``runner``'s, else those found once by
    :func:`hello` (a ``gc`` search is too costly to repeat on the hub)."""
    runner = namespace.get("runner")
    if runner is not None and privates.is_runner(runner):
        return privates.runner_containers(runner)
    cached = _state.get("containers")
    if cached is None:
        cached, _how = collector.find_containers(namespace)
        _state["containers"] = cached
    return list(cached)


#: Per client session: call id -> the ``where`` object last sent for it. Bounded.
_sessions: dict[str, dict[str, Any]] = {}
MAX_SESSIONS = 32
#: Per client session: which state of the watchdog's incident ring it was last sent.
_incidents_sent: dict[str, Any] = {}


@op("collect")
def collect(namespace: dict[str, Any], session: str | None = None,
            **limits: Any) -> dict[str, Any]:
    """A snapshot. With ``session`` (a client-chosen id, one per connection), workers already
    sent in that session whose ``where`` has not changed come back only as call ids in their
    container's ``unchanged`` list, which the client merges with what it has: at 1000 parked
    workers, encoding full workers, not collecting them, would dominate the hub stall. The
    watchdog's ``incidents`` are likewise left out while unchanged since the session's last."""
    backlog.touch(containers_of(namespace))  # a console is attached: keep sampling queues
    stacks = limits.pop("stacks", "all")
    if isinstance(stacks, list):
        stacks = frozenset(stacks)
    if not session:
        snapshot: Any = collector.collect(containers_of(namespace), stacks=stacks, **limits)
        return wire.share_frames(snapshot)
    sent = _sessions.pop(session, None)
    if sent is None:
        sent = {}
        while len(_sessions) >= MAX_SESSIONS:
            _sessions.pop(next(iter(_sessions)))
    _sessions[session] = sent  # most recently used last
    snapshot = collector.collect(containers_of(namespace), stacks=stacks, known=sent, **limits)
    if "incidents" in snapshot:
        # the ring changes rarely: send it when it did, and the console keeps what it has
        running = watchdog.current()
        token = (id(running), getattr(running, "recorded", None))
        if _incidents_sent.get(session) == token:
            del snapshot["incidents"]
        _incidents_sent.pop(session, None)
        _incidents_sent[session] = token
        while len(_incidents_sent) > MAX_SESSIONS:
            _incidents_sent.pop(next(iter(_incidents_sent)))
    current: dict[str, Any] = {}
    for container in snapshot["containers"]:
        for call_id in container.get("unchanged", ()):
            current[call_id] = sent[call_id]
        for worker in container["workers"]:
            current[worker["call_id"]] = worker["where"]
    _sessions[session] = current
    return wire.share_frames(snapshot)


class WorkerKilled(Exception):
    """Raised inside a worker an operator killed from the console. An ordinary exception, not
    ``GreenletExit``: nameko handles it like any failure of the worker, so an RPC caller gets
    a ``RemoteError`` naming the kill, the message is acknowledged (not redelivered), and the
    chassis bookkeeping, metrics and history count it as ``killed``."""


@op("kill_worker")
def kill_worker(namespace: dict[str, Any], call_id: str) -> dict[str, Any]:
    """Kill one worker by call id: :class:`WorkerKilled` is raised where it waits. Only sent
    by the console with --allow-actions after the user confirmed."""
    for container in containers_of(namespace):
        for ctx, gt in privates.worker_threads(container):
            if str(getattr(ctx, "call_id", "")) == call_id:
                entrypoint = getattr(getattr(ctx, "entrypoint", None), "method_name", "?")
                gt.kill(WorkerKilled, WorkerKilled(
                    f"worker {call_id} of {container.service_name}.{entrypoint} was killed by "
                    "an operator (chassis-console)"))
                return {"killed": True, "service": str(container.service_name)}
    return {"killed": False, "service": None}
