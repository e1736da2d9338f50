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
import weakref
from collections.abc import Callable
from typing import Any

from . import backlog, privates, process, redaction, watchdog, wire
from . import collect as collector
from . import frames as frame_table

_INET, _INET6 = socket.AF_INET, socket.AF_INET6
_SOL_SOCKET, _SO_ACCEPTCONN = socket.SOL_SOCKET, socket.SO_ACCEPTCONN
_IPPROTO_TCP, _TCP_NODELAY = socket.IPPROTO_TCP, socket.TCP_NODELAY

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


#: When this process last finished writing a reply, per backdoor greenlet (see handle).
_DONE_ATTR = "_chassis_request_done"


def handle(namespace: dict[str, Any], name: str, arguments: str = "") -> None:
    """Run operation ``name`` and write one frame, then the stall trailer. Never raises.

    The stall is timed from when the hub switched this backdoor connection's greenlet in with
    the request line (:func:`.privates.stamp_switch_ins`; the first request of a connection,
    before the stamp is in place, from here), so it covers reading the line, compiling it,
    the operation, encoding, freeing the result and writing the frame: the whole time the
    request held the hub, but the backdoor's prompt that follows (one small write)."""
    t0 = time.perf_counter()
    me = privates.current_greenlet()
    start = t0
    d = getattr(me, "__dict__", None) if getattr(me, "hostport", None) is not None else None
    if d is not None:
        switched_in = d.get(privates.SWITCHED_IN_ATTR)
        # a stamp older than the previous reply was not this request's (the line was buffered)
        if switched_in is not None and switched_in > d.get(_DONE_ATTR, 0.0) and \
                t0 - switched_in < 60:
            start = switched_in
        else:
            privates.stamp_switch_ins(me, time.perf_counter)
    holds = _requests[id(me)] = collector.Holds(start)
    try:
        kwargs = json.loads(base64.b64decode(arguments)) if arguments else {}
        fn = OPS.get(name)
        if fn is None:
            raise LookupError(f"unknown operation {name!r}")
        result = fn(namespace, **kwargs)
        kind, payload = wire.result_payload(result)
        del result  # freed here, inside the figure
    except BaseException as exc:
        kind, payload = "e", wire.error_payload(exc)
    finally:
        _requests.pop(id(me), None)
    try:
        _write(wire.encode_frame(kind, payload, holds.total(time.perf_counter()) * 1000))
        del payload
        _write(wire.stall_trailer(holds.total(time.perf_counter()) * 1000))
    except BaseException:
        pass
    if d is not None:
        d[_DONE_ATTR] = time.perf_counter()


#: The request each backdoor greenlet is running (by id: a request may hand the hub back, and
#: another connection's request run meanwhile).
_requests: dict[int, collector.Holds] = {}
#: Whether the collect op hands the hub back between slices of its per-new-worker work.
SLICES = True


def _tune_socket() -> tuple[bool, Any]:
    """Set TCP_NODELAY on this backdoor connection's socket (server side), so a reply's last
    segment is not held back by Nagle waiting for the client's delayed ACK (~40 ms). Returns
    (whether it did, the backdoor's listening address).

    Done once per process: the first attach finds its connection among the process's file
    descriptors by peer address (one probe per descriptor: 12-20 ms at 15,000 fds), sets the
    option on it and on the backdoor's listening socket (the one accepting on the same local
    address); connections accepted after that inherit it (Linux copies TCP_NODELAY from the
    listener). A connection whose descriptor is known (the hub names it when it resumes the
    backdoor's greenlet, see :func:`.privates.stamp_switch_ins`) is set directly. Platforms
    without ``/proc/self/fd`` go without.
    """
    want = privates.backdoor_peer()
    if not want:
        return False, None
    me = privates.current_greenlet()
    fd = getattr(me, "__dict__", {}).get(privates.SWITCHED_FD_ATTR)
    if fd is not None:
        found = _tune_connection(fd, want)
        if found is not None:
            return True, found
    listener = _state.get("listener")
    if listener is not None:  # tuned by an earlier attach: this connection inherited it
        return bool(listener[0]), listener[1]
    _state["fd_walks"] = _state.get("fd_walks", 0) + 1
    local, listening = None, []
    for fd in process.descriptors() or ():  # one walk: this connection, and the listeners
        sock = process.socket_of(fd)
        if sock is None:
            continue
        try:
            if sock.family not in (_INET, _INET6):
                continue
            if sock.getsockopt(_SOL_SOCKET, _SO_ACCEPTCONN):
                listening.append((tuple(sock.getsockname()[:2]), fd))
            elif local is None and sock.getpeername()[:2] == want:
                sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
                local = tuple(sock.getsockname()[:2])
        except OSError:
            continue
        finally:
            sock.close()
    if local is None:
        _state["listener"] = (False, None)
        return False, None
    tuned = False
    for address, fd in listening:
        if address == local:  # the backdoor's listener: later connections inherit the option
            tuned = _set_nodelay(fd) or tuned
    _state["listener"] = (tuned, local)
    return True, local


def _tune_connection(fd: int, want: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """If ``fd`` is a TCP connection to ``want``: set TCP_NODELAY, return its local address."""
    sock = process.socket_of(fd)
    if sock is None:
        return None
    try:
        if sock.family in (_INET, _INET6) and sock.getpeername()[:2] == want:
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            return tuple(sock.getsockname()[:2])
    except OSError:
        pass
    finally:
        sock.close()
    return None


def _set_nodelay(fd: int) -> bool:
    sock = process.socket_of(fd)
    if sock is None:
        return False
    try:
        sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        return True
    except OSError:
        return False
    finally:
        sock.close()


@op("hello")
def hello(namespace: dict[str, Any]) -> dict[str, Any]:
    """Once per connection: tune the socket, find the containers, start (or reuse) the hub
    watchdog and tell it this backdoor's address, describe the process.

    Finding no nameko runner or container, the agent unlinks itself from the namespace (and
    starts no watchdog): a backdoor that is not a nameko service is left as it was. The search
    is not repeated: its verdict is kept for the process (:func:`containers_of`), and the
    package stays registered, so the next console links it again without booting it."""
    tuned, backdoor = _tune_socket()
    containers, how = _find(namespace)
    if not containers:
        if namespace.get(wire.AGENT_NAME) is sys.modules.get(__name__):
            del namespace[wire.AGENT_NAME]
        watching = None
    else:
        watching = _watchdog(containers, backdoor)
    return {
        "watchdog": watching,
        "version": VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "found": how,
        "services": [str(getattr(c, "service_name", "?")) for c in containers],
        "nodelay": tuned,
        "untested": privates.untested_versions(),
    }


def _find(namespace: dict[str, Any]) -> tuple[list[Any], str]:
    """The backdoor's ``runner``'s containers, else what one ``gc`` search of this process
    found (done once: at 3M objects it holds the hub for a second)."""
    runner = namespace.get("runner")
    if runner is not None and privates.is_runner(runner):
        return privates.runner_containers(runner), "runner"
    found = _state.get("searched")
    if found is None:
        containers, how = collector.find_containers(namespace)
        found = _state["searched"] = ([_ref(c) for c in containers], how)
    alive = [c for c in (ref() for ref in found[0]) if c is not None]
    return alive, (found[1] if alive else "none")


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


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # not weakly referenceable: held
        return lambda: obj


def containers_of(namespace: dict[str, Any]) -> list[Any]:
    """The containers to inspect: the backdoor's ``runner``'s, else those found once in this
    process by a ``gc`` search (too costly to repeat on the hub)."""
    return _find(namespace)[0]


class _Session:
    """What one client connection was sent: per container its listing of workers
    (:class:`.collect.Listed`), the watchdog's incident ring state, and per container the
    finished-worker entries."""

    __slots__ = ("listed", "incidents", "history")

    def __init__(self) -> None:
        self.listed: dict[str, Any] = {}
        self.incidents: Any = None
        self.history: dict[str, list[Any]] = {}


#: Client sessions, least recently used first. Bounded.
_sessions: dict[str, _Session] = {}
MAX_SESSIONS = 32


@op("collect")
def collect(namespace: dict[str, Any], session: str | None = None,
            **limits: Any) -> wire.Encoded:
    """A snapshot, encoded for the wire. With ``session`` (a client-chosen id, one per
    connection) it is a delta against what that session was sent: workers whose ``where`` has
    not changed are left out, their container saying which the client keeps (``unchanged``
    or ``unchanged_except``, see ``collect.collect``), finished
    workers it has seen as a count (``history_kept``), and the watchdog's ``incidents`` are left
    out while unchanged; the client merges with what it has (``Snapshot.from_wire``)."""
    stacks = limits.pop("stacks", "all")
    if isinstance(stacks, list):
        stacks = frozenset(stacks)
    containers = containers_of(namespace)
    backlog.touch(containers)  # a console is attached: keep sampling queues
    holds = _warm(containers, limits)
    if not session:
        return _encoded(containers, stacks, limits, holds)
    state = _sessions.pop(session, None)
    if state is None:
        state = _Session()
        while len(_sessions) >= MAX_SESSIONS:
            _sessions.pop(next(iter(_sessions)))
    _sessions[session] = state  # most recently used last
    listed: dict[str, Any] = {}
    snapshot = _collected(containers, stacks, limits, state.listed, listed)
    collector.note_slices(snapshot, holds)
    if "incidents" in snapshot:
        # the ring changes rarely: send it when it did, and the console keeps what it has
        running = watchdog.current()
        token = (id(running), getattr(running, "recorded", None))
        if state.incidents == token:
            del snapshot["incidents"]
        state.incidents = token
    for container in snapshot["containers"]:
        _history_delta(state, container)
    encoded = wire.encode_snapshot(snapshot)
    state.listed = listed  # only once the reply is ready: what the client gets is what it has
    return encoded


def _collected(containers: list[Any], stacks: Any, limits: dict[str, Any],
               before: dict[str, Any] | None, after: dict[str, Any] | None) -> Any:
    """collector.collect for the wire; once more if the frame table started afresh meanwhile
    (the indexes of the first pass would point into the old one)."""
    for _ in range(2):
        epoch = frame_table.table_epoch()
        snapshot = collector.collect(containers, stacks=stacks, encoded=True,
                                     session_before=before, session_after=after, **limits)
        if epoch == frame_table.table_epoch():
            break
        if after is not None:
            after.clear()
    return snapshot


def _encoded(containers: list[Any], stacks: Any, limits: dict[str, Any],
             holds: collector.Holds,
             ) -> wire.Encoded:
    snapshot = _collected(containers, stacks, limits, None, None)
    collector.note_slices(snapshot, holds)
    return wire.encode_snapshot(snapshot)


def _warm(containers: list[Any], limits: dict[str, Any]) -> collector.Holds:
    """Before the collection: the static part of the workers it would list and has not cached
    (:func:`.collect.warm`), in slices of at most :data:`.collect.SLICE_BUDGET_S` of hub time,
    the hub handed back between two. Only where that is safe (:func:`.privates.hub_pause`: a
    greenlet of a thread with an eventlet hub, not the hub's own; never the watchdog's OS
    thread) and not inside a bounded repr; elsewhere the collection does it all in one piece,
    as before. The request's holds (``handle``'s, or new ones for an in-process caller, kept
    as ``_state["holds"]`` for the bench)."""
    me = privates.current_greenlet()
    holds = _requests.get(id(me))
    if holds is None:
        holds = _state["holds"] = collector.Holds(time.perf_counter())
    if not SLICES or redaction.in_bounded():
        return holds
    pause = privates.hub_pause()
    if pause is None:
        return holds
    holds.hand_back = pause
    try:
        collector.warm(containers, holds.pause, holds.start, **limits)
    except BaseException:
        pass  # the collection does what is missing, and says what it could not read
    return holds


def _history_delta(state: _Session, container: dict[str, Any]) -> None:
    """Send a session only the finished workers it has not seen: the bookkeeping's history is
    a bounded deque appended at the end, so what the session saw is a run of the current one
    (by identity) followed by the new entries. ``history_kept`` says how many of the
    previous snapshot's to keep."""
    history = container.get("history")
    name = str(container.get("service_name"))
    if history is None:
        state.history.pop(name, None)
        return
    seen = state.history.get(name)
    state.history[name] = list(history)
    if not seen or not history:
        return
    first = history[0]
    j = next((i for i, entry in enumerate(seen) if entry is first), None)
    if j is None:
        return  # nothing in common: all of it
    kept = len(seen) - j
    if kept > len(history) or any(a is not b for a, b in zip(seen[j:], history, strict=False)):
        return
    container["history"] = history[kept:]
    container["history_kept"] = kept


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
