"""The hub watchdog: a real OS thread that notices when the eventlet hub stops running, names
the greenthread holding it, and answers consoles on the backdoor's port meanwhile.

Two halves share one :class:`Watchdog` object:

- a **heartbeat** greenthread on the hub stamps ``beat`` every ``heartbeat`` seconds; when it
  wakes more than ``threshold`` late it records an *incident* (start, duration, culprit) in a
  bounded ring and calls the listeners (the chassis' metrics and Sentry) — on the hub;
- a **watcher** OS thread (``eventlet.patcher.original("threading")``) sees the beat go late,
  reads the hub thread's current frame (``sys._current_frames()``) and maps it to the worker
  greenthread that is running: the one whose ``gr_frame`` is None. While the hub stays blocked
  it accepts on the backdoor's listening socket (loopback or unix only) and answers every line
  with a ``hello``-like frame carrying ``blocked``, so a fresh console learns in milliseconds
  what it would otherwise wait its whole timeout for.

The watcher only reads (frames, dicts, attributes: atomic under the GIL) and calls nothing of
eventlet, greenlet, logging or the service's objects: no lock the hub holds, no greenlet switch,
no user ``__repr__`` (arguments not yet redacted by the collector are shown by type unless they
are plain data). It cannot run while C code holds the GIL; the incident is then recorded by the
heartbeat afterwards, without a culprit.

One watchdog per process: it is kept on ``sys`` under :data:`MARKER`, so the copies of this
module that consoles ship (one per probe version) and the chassis' imported one share it.
:func:`ensure` reuses a running one of the same or a newer :data:`API`, and replaces an older
one (carrying over its incidents, listeners, containers and backdoors).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from . import collect, entrypoints, privates, process, wire
from .frames import innermost_user_frame, stack_of
from .redaction import SECRET_KEY_PATTERNS, redact_mapping, redacted_arguments
from .schema import CulpritDict, IncidentDict

#: Bumped when the object's shape or behaviour changes: an older running watchdog is replaced.
API = 1
#: The attribute of ``sys`` holding the process's watchdog.
MARKER = collect.WATCHDOG_MARKER
#: The watcher thread's name (``ps -T``, py-spy).
THREAD_NAME = "chassis-hub-watchdog"

#: A heartbeat later than this (seconds) is a block.
DEFAULT_THRESHOLD = 0.25
#: Seconds between heartbeats.
DEFAULT_HEARTBEAT = 0.1
#: Incidents kept (the oldest are dropped).
MAX_INCIDENTS = 20
#: Frames kept per culprit stack (the innermost).
MAX_FRAMES = 30
#: Seconds one answered connection may take (banner, a few lines, close).
ANSWER_SECONDS = 2.0
#: Seconds a waiting connection is left to the hub before the watchdog takes it (see _serve).
ACCEPT_GRACE = 0.02
#: Lines answered per connection.
MAX_LINES = 4
#: Bytes of one request line read at most (the rest of a longer line is skipped).
MAX_LINE_BYTES = 1 << 16
#: Environment variables: ``CHASSIS_WATCHDOG=0`` stops consoles starting one; the threshold and
#: heartbeat in milliseconds.
ENV_ENABLED = "CHASSIS_WATCHDOG"
ENV_THRESHOLD_MS = "CHASSIS_WATCHDOG_THRESHOLD_MS"
ENV_HEARTBEAT_MS = "CHASSIS_WATCHDOG_HEARTBEAT_MS"

Listener = Callable[[IncidentDict], Any]


def current() -> Any:
    """The process's running watchdog (of any probe version), or None."""
    found = getattr(sys, MARKER, None)
    return found if found is not None and not getattr(found, "stopped", True) else None


def enabled_by_environment(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "no", "off")


def _ms_setting(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return max(float(environ[name]) / 1000.0, 0.01)
    except (KeyError, ValueError):
        return default


def ensure(*, containers: Iterable[Any] = (), backdoor: Any = None,
           threshold: float | None = None, heartbeat: float | None = None,
           version: str = wire.DEV_VERSION, listener: Listener | None = None) -> Any:
    """Start the process's watchdog, or reuse the running one; returns it. Runs on the hub.

    ``containers`` are remembered for naming culprits; ``backdoor`` (``(host, port)``, a port,
    or a unix path) is a listening address to answer on while blocked. ``threshold`` and
    ``heartbeat`` (seconds) default to :data:`ENV_THRESHOLD_MS` / :data:`ENV_HEARTBEAT_MS`, else
    :data:`DEFAULT_THRESHOLD` / :data:`DEFAULT_HEARTBEAT`; given to a running watchdog they
    replace its own. ``listener(incident)`` is called on the hub after each block.
    """
    found = getattr(sys, MARKER, None)
    running: Any = found
    if found is None or getattr(found, "stopped", True) or getattr(found, "api", 0) < API:
        running = Watchdog(
            threshold=_ms_setting(os.environ, ENV_THRESHOLD_MS, DEFAULT_THRESHOLD),
            heartbeat=_ms_setting(os.environ, ENV_HEARTBEAT_MS, DEFAULT_HEARTBEAT),
            version=version)
        if found is not None:  # an older version, or one whose heartbeat was killed
            found.stop()
            running.adopt(found)
        running.start()
        setattr(sys, MARKER, running)
    running.configure(containers=containers, backdoor=backdoor, threshold=threshold,
                      heartbeat=heartbeat, listener=listener)
    return running


# -- reading the culprit from the watcher thread -------------------------------------------------

_PLAIN = (str, bytes, int, float, bool, complex, type(None))


class _Opaque:
    """Stands in for a value whose own ``__repr__`` the watcher must not call."""

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        t = type(value)
        self.text = f"<{t.__module__}.{t.__qualname__} object>"

    def __repr__(self) -> str:
        return self.text

    def __deepcopy__(self, memo: Any) -> _Opaque:  # nameko's get_redacted_args deep-copies
        return self


def _plainly(value: Any, depth: int = 0) -> Any:
    """``value`` with everything but plain data (str, numbers, None and lists, tuples, dicts,
    sets of them) replaced by its type name, bounded: safe to repr from another thread."""
    t = type(value)
    if t in _PLAIN:
        return value
    if depth >= 3:
        return _Opaque(value)
    if t in (list, tuple):
        items = [_plainly(v, depth + 1) for v in list(value)[:12]]
        return items if t is list else tuple(items)
    if t is dict:
        return {(k if type(k) in _PLAIN else _Opaque(k)): _plainly(v, depth + 1)
                for k, v in list(value.items())[:12]}
    if t in (set, frozenset):
        return t(_plainly(v, depth + 1) for v in list(value)[:12] if type(v) in _PLAIN)
    return _Opaque(value)


def _worker_fields(ctx: Any, service: str) -> dict[str, Any]:
    """A worker's identity and redacted arguments: the collector's cached copy when a console
    collected it before, else computed here from plain data only (never cached)."""
    cached = getattr(ctx, collect._CACHE_ATTR, None)
    if cached is not None:
        static = dict(cached[1])
        static.pop("_where_memo", None)
        return static
    ep = getattr(ctx, "entrypoint", None)
    method = getattr(ep, "method_name", None) or "?"
    args, kwargs = redacted_arguments(ep, _plainly(tuple(getattr(ctx, "args", ()) or ())),
                                      _plainly(dict(getattr(ctx, "kwargs", {}) or {})))
    data = getattr(ctx, "data", None)
    context = {k: _plainly(v) for k, v in list(data.items())
               if k != "call_id_stack"} if type(data) is dict else {}
    return {
        "call_id": str(getattr(ctx, "call_id", "") or ""),
        "call_id_stack": [str(c) for c in list(getattr(ctx, "call_id_stack", None) or [])],
        "entrypoint": f"{service}.{method}",
        "entrypoint_type": entrypoints.kind_of(ep) if ep is not None else "unknown",
        "args": args,
        "kwargs": kwargs,
        "context_data": redact_mapping(context, SECRET_KEY_PATTERNS),
    }


def _bottom(frame: Any) -> Any:
    depth = 0
    while frame.f_back is not None and depth < 1000:
        frame = frame.f_back
        depth += 1
    return frame


def _greenlet_target(frame: Any) -> str:
    """What a greenlet that is no worker runs, from code names alone (no ``f_locals`` from
    another thread): the outermost function above eventlet's ``GreenThread.main``."""
    chain = []
    depth = 0
    while frame is not None and depth < 1000:
        chain.append(frame)
        frame = frame.f_back
        depth += 1
    chain.reverse()
    for f in chain:
        if not privates.is_greenthread_bottom(f):
            return f"{f.f_code.co_qualname} ({os.path.basename(f.f_code.co_filename)})"
    return "?"


def culprit_of(frame: Any, containers: Iterable[Any]) -> CulpritDict:
    """Who runs ``frame`` (the hub thread's current frame): the worker or managed thread whose
    greenlet is running, else an anonymous greenlet. Safe from another OS thread."""
    culprit: dict[str, Any] = {
        "kind": "greenlet", "service": None, "call_id": None, "call_id_stack": [],
        "entrypoint": None, "entrypoint_type": None, "args": [], "kwargs": {},
        "context_data": {}, "target": None,
        "where": innermost_user_frame(frame), "stack": stack_of(frame, MAX_FRAMES),
    }
    for container in containers:
        service = str(getattr(container, "service_name", "?"))
        for ctx, gt in privates.worker_threads(container):
            if privates.greenlet_is_running(gt):
                culprit.update(_worker_fields(ctx, service))
                culprit["kind"] = "worker"
                culprit["service"] = service
                return cast(CulpritDict, culprit)
        for gt, identifier in privates.managed_threads(container):
            if privates.greenlet_is_running(gt):
                culprit.update(kind="managed_thread", service=service,
                               target=f"{identifier}: {_greenlet_target(frame)}")
                return cast(CulpritDict, culprit)
    culprit["target"] = _greenlet_target(frame)
    return cast(CulpritDict, culprit)


# -- finding the backdoor's listening socket -----------------------------------------------------


def backdoor_from_argv(argv: Iterable[str]) -> int | None:
    """The port of ``nameko run --backdoor-port [HOST:]PORT``, if given."""
    args = list(argv)
    for i, arg in enumerate(args):
        value = None
        if arg == "--backdoor-port" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--backdoor-port="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return int(value.rpartition(":")[2])
            except ValueError:
                return None
    return None


def _is_loopback(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = str(address[0]) if isinstance(address, tuple) else ""
    return host.startswith("127.") or host in ("::1", "localhost") or \
        host.startswith("::ffff:127.")


def _listening_sockets(wanted: Iterable[Any]) -> list[Any]:
    """Duplicates of this process's listening sockets whose address is one of ``wanted`` (ports,
    ``(host, port)`` pairs or unix paths), loopback or unix only. The caller closes them."""
    import _socket  # the C module: eventlet never patches it

    ports = {w if isinstance(w, int) else w[1] for w in wanted if not isinstance(w, str)}
    paths = {w for w in wanted if isinstance(w, str)}
    if not ports and not paths:
        return []
    found = []
    for fd in process.descriptors() or ():
        dup = process.socket_of(fd)
        if dup is None:
            continue
        keep = False
        try:
            if dup.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
                address = dup.getsockname()
                if isinstance(address, str):
                    keep = address in paths
                else:
                    keep = address[1] in ports and _is_loopback(dup.family, address)
        except OSError:
            pass
        if keep:
            found.append(dup)
        else:
            dup.close()
    return found


# -- the watchdog -----------------------------------------------------------------------------


class Watchdog:
    """The process's hub watchdog. Create it with :func:`ensure`, not directly."""

    api = API

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD,
                 heartbeat: float = DEFAULT_HEARTBEAT, version: str = wire.DEV_VERSION) -> None:
        self.threshold = threshold
        self.heartbeat = heartbeat
        self.version = version
        self.incidents: deque[IncidentDict] = deque(maxlen=MAX_INCIDENTS)
        self.listeners: list[Listener] = []
        self.containers: list[Any] = []
        self.backdoors: list[Any] = []
        self.beat = time.monotonic()
        self.max_late = 0.0  # the largest heartbeat delay since take_lag() last read it
        self.seq = 0  # heartbeats so far: tags what the watcher saw with the beat it was late for
        self.blocked: tuple[int, IncidentDict] | None = None  # (seq, incident): set by the watcher
        self.stopped = False
        self.started_at = time.time()
        self.answered = 0
        self.recorded = 0  # incidents recorded so far (the ring keeps the latest)
        self.hub_thread: int | None = None
        self.heartbeat_lost = False
        self._sleep: Callable[[float], None] = time.sleep
        self._poll: Any = None
        self._thread: Any = None

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("blocked" if self.blocked else "watching")
        return (f"<Watchdog {state} threshold={self.threshold * 1000:.0f}ms "
                f"incidents={len(self.incidents)} version={self.version}>")

    # -- on the hub ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat greenthread and the watcher thread. Call on the hub."""
        import eventlet
        from eventlet import patcher

        threading = patcher.original("threading")
        self._sleep = patcher.original("time").sleep  # time.sleep itself is green
        self._poll = getattr(patcher.original("select"), "poll", None)  # green select has none
        self.hub_thread = threading.get_ident()
        self.beat = time.monotonic()
        eventlet.spawn_n(self._beat)
        self._thread = threading.Thread(target=self._watch, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Both halves end within a heartbeat or a second."""
        self.stopped = True

    def adopt(self, older: Any) -> None:
        """Take over what an older watchdog (another probe version) collected."""
        for name in ("threshold", "heartbeat", "recorded"):
            value = getattr(older, name, None)
            if isinstance(value, (int, float)):
                setattr(self, name, value)
        for name in ("incidents", "listeners", "containers", "backdoors"):
            try:
                getattr(self, name).extend(list(getattr(older, name)))
            except BaseException:
                pass

    def configure(self, *, containers: Iterable[Any] = (), backdoor: Any = None,
                  threshold: float | None = None, heartbeat: float | None = None,
                  listener: Listener | None = None) -> None:
        for container in containers:
            if not any(c is container for c in self.containers):
                self.containers.append(container)
        if backdoor is not None and backdoor not in self.backdoors:
            self.backdoors.append(backdoor)
        if threshold is not None:
            self.threshold = max(float(threshold), 0.01)
        if heartbeat is not None:
            self.heartbeat = max(float(heartbeat), 0.01)
        if listener is not None and listener not in self.listeners:
            self.listeners.append(listener)

    def _beat(self) -> None:
        import eventlet

        while not self.stopped:
            expected = self.beat + self.heartbeat
            eventlet.sleep(self.heartbeat)
            now = time.monotonic()
            seq = self.seq
            seen = self.blocked
            self.beat = now
            self.seq = seq + 1
            self.heartbeat_lost = False
            late = now - expected
            if late > self.max_late:
                self.max_late = late
            if late > self.threshold:
                self._record(late, seen[1] if seen is not None and seen[0] == seq else None)

    def take_lag(self) -> float:
        """The largest heartbeat delay (seconds) since the last call: the hub's recent lag."""
        late, self.max_late = max(self.max_late, 0.0), 0.0
        return late

    def _record(self, late: float, seen: IncidentDict | None) -> None:
        incident: IncidentDict = {
            "started_at": round(time.time() - late, 3),
            "duration_s": round(late, 3),
            "ongoing": False,
            "culprit": seen["culprit"] if seen is not None else None,
        }
        self.incidents.append(incident)
        self.recorded += 1
        for listener in list(self.listeners):
            try:
                listener(incident)
            except BaseException:  # a listener never stops the heartbeat
                pass

    def recent(self) -> list[IncidentDict]:
        """The incidents, oldest first (for snapshots; call on the hub)."""
        return list(self.incidents)

    def describe(self) -> dict[str, Any]:
        return {"threshold_ms": round(self.threshold * 1000), "version": self.version,
                "heartbeat_ms": round(self.heartbeat * 1000), "api": self.api,
                "incidents": len(self.incidents), "answered": self.answered,
                "backdoors": [str(b) for b in self.backdoors]}

    # -- on the watcher thread: read only, never a lock or an eventlet call ---------------------

    def _watch(self) -> None:
        while not self.stopped:
            try:
                self._tick()
            except BaseException:  # the watcher never dies of what it reads
                self._sleep(1.0)

    def _hub_frame(self) -> Any:
        return sys._current_frames().get(self.hub_thread) if self.hub_thread else None

    def _tick(self) -> None:
        now = time.monotonic()
        beat, seq = self.beat, self.seq
        due = beat + self.heartbeat + self.threshold
        if now < due:
            self._sleep(min(due - now, 1.0) + 0.002)
            return
        frame = self._hub_frame()
        if frame is None or privates.hub_is_waiting(frame):
            # the hub is free, yet no beat: the heartbeat greenthread is gone (killed);
            # the next console's hello starts a new one
            self.heartbeat_lost = True
            self._sleep(self.heartbeat)
            return
        seen = self.blocked
        if seen is None or seen[0] != seq:
            self._look(frame, seq, beat, now)
        self._serve(seq, 0.05)

    def _look(self, frame: Any, seq: int, beat: float, now: float) -> IncidentDict:
        late = now - (beat + self.heartbeat)
        incident: IncidentDict = {
            "started_at": round(time.time() - late, 3),
            "duration_s": round(late, 3),
            "ongoing": True,
            "culprit": culprit_of(frame, list(self.containers)),
        }
        if self.seq == seq:  # still the same block (else the heartbeat ignores a stale look)
            self.blocked = (seq, incident)
        return incident

    def _serve(self, seq: int, seconds: float) -> None:
        """Accept on the backdoor's listening sockets for up to ``seconds`` while blocked.

        A connection is taken only while the hub is still held :data:`ACCEPT_GRACE` after it
        arrived: a hub that has just come free (its heartbeat not yet beaten) is left to accept
        it itself — else a console connecting right after a long but finished request would be
        told the hub is blocked."""
        listeners = _listening_sockets(self.backdoors) if self.backdoors else []
        if not listeners:
            self._sleep(seconds)
            return
        try:
            deadline = time.monotonic() + seconds
            poller = self._poll() if self._poll is not None else None
            if poller is not None:
                for listener in listeners:
                    poller.register(listener.fileno(), 1)  # POLLIN
            while self.seq == seq and not self.stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if poller is not None:
                    if not poller.poll(remaining * 1000):
                        continue
                    # a connection waits: give a hub finishing a long request a moment to
                    # beat and take it itself; a real block lasts far longer than this
                    self._sleep(ACCEPT_GRACE)
                    frame = self._hub_frame()
                    if self.seq != seq or frame is None or privates.hub_is_waiting(frame):
                        continue
                for listener in listeners:
                    # with a poller, only a connection already waiting; else wait for one
                    listener.settimeout(0.0 if poller is not None else
                                        remaining / len(listeners))  # the fd stays non-blocking
                    try:
                        fd, _peer = listener._accept()
                    except OSError:  # none waiting, timed out, or the hub took it first
                        continue
                    self._answer(listener, fd, seq)
        finally:
            for listener in listeners:
                listener.close()

    def _answer(self, listener: Any, fd: int, seq: int) -> None:
        import _socket

        conn = _socket.socket(listener.family, _socket.SOCK_STREAM, 0, fd)
        try:
            conn.settimeout(ANSWER_SECONDS)
            deadline = time.monotonic() + ANSWER_SECONDS
            conn.sendall(self._banner(seq).encode("utf-8", "replace") + b">>> ")
            buffer = b""
            lines = 0
            while lines < MAX_LINES and time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer and lines < MAX_LINES:
                    _line, buffer = buffer.split(b"\n", 1)
                    lines += 1
                    conn.sendall(self._reply(seq).encode("ascii") + b">>> ")
                if len(buffer) > MAX_LINE_BYTES:
                    buffer = buffer[-1:]
            self.answered += 1
        except OSError:
            pass
        finally:
            conn.close()

    def _status(self, seq: int) -> IncidentDict | None:
        """The block as of now: looked at again (the culprit may have moved on)."""
        frame = self._hub_frame()
        if frame is None or self.seq != seq:
            seen = self.blocked
            if seen is not None and seen[0] == seq:
                ended: IncidentDict = dict(seen[1])  # type: ignore[assignment]
                ended["ongoing"] = False
                return ended
            return None
        return self._look(frame, seq, self.beat, time.monotonic())

    def _banner(self, seq: int) -> str:
        incident = self._status(seq)
        text = f"nameko-chassis hub watchdog (pid {os.getpid()}): the eventlet hub is blocked"
        if incident is not None:
            text += f" for {incident['duration_s']:.1f}s"
            culprit = incident["culprit"]
            if culprit is not None:
                who = culprit["entrypoint"] or culprit["target"] or "?"
                text += f" by {who}"
                where = culprit["where"]
                if where is not None:
                    text += f" at {where['file']}:{where['line']} in {where['function']}"
        return text + ". Read-only answers until it is free.\n"

    def _reply(self, seq: int) -> str:
        import _socket

        t0 = time.perf_counter()
        payload = {
            "version": self.version,
            "pid": os.getpid(),
            "host": _socket.gethostname(),
            "python": sys.version.split()[0],
            "services": [str(getattr(c, "service_name", "?")) for c in list(self.containers)],
            "watchdog": self.describe(),
            "blocked": self._status(seq),
        }
        text = json.dumps(payload, separators=(",", ":"), default=str)
        return wire.encode_frame("j", text, (time.perf_counter() - t0) * 1000)


__all__ = ["Watchdog", "backdoor_from_argv", "culprit_of", "current", "ensure"]
