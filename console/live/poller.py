"""One poller per target: the blocking client runs on a thread of its own, polls never overlap.

A :class:`TargetPoller` owns one :class:`~chassis_console.client.Target` and one daemon thread
that makes every call to it (the client is blocking and serves one request at a time, so kills
queue behind polls instead of racing them). Its loop polls, then sleeps until one interval after
that poll was due (at least half an interval; or until woken by "refresh now"), so the next poll
is armed only when the previous one has finished. On a failure it keeps the last snapshot (now
stale), closes the connection and tries again with exponential backoff.

A poll that has not come back after :data:`BLOCKED_CHECK_AFTER` asks the target, on a connection
of its own, whether the service's hub watchdog says the hub is blocked; if so the state is
``blocked`` (with the watchdog's incident) until the poll comes back, and a fresh connection
refused by a blocked hub is retried every :data:`BLOCKED_RETRY` seconds, not backed off.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from nameko_chassis.view.model import Incident, Snapshot, SnapshotError

from ..errors import (
    BlockedError,
    ConsoleError,
    UnreachableError,
    UnresponsiveError,
)
from ..targets import Target

T = TypeVar("T")

#: Backoff between reconnection attempts: doubles from BACKOFF_FIRST up to BACKOFF_MAX seconds.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
#: How many refreshes a note ("service restarted: pid 1 → 2") stays in the header.
NOTE_POLLS = 30
#: Seconds a poll may take before the console asks whether the hub is blocked, and between asks.
BLOCKED_CHECK_AFTER = 1.0
#: A poll unanswered this long (or two intervals, whichever is longer) shows *not answering*.
SILENT_AFTER = 2.0
#: Seconds a pid counts as one of the processes answering on a shared port after its last reply.
SHARED_WINDOW = 600.0

#: What the console knows of a target: connecting, live (answering), blocked (its hub watchdog
#: says a worker holds the hub), unresponsive (no reply in time), down (unreachable), error.
TargetState = Literal["connecting", "live", "blocked", "down", "unresponsive", "error"]
#: Seconds between attempts while a blocked hub refuses fresh connections.
BLOCKED_RETRY = 1.0


#: The shortest refresh interval (seconds) the console offers: the fastest it sustains at 1000
#: in-flight workers (bench/console.py's interval table: 10.0/s at 0.1 s, about 18% of a core).
#: ``-`` stops there and ``--interval`` takes nothing shorter; ConsoleOptions itself takes any
#: interval (tests poll faster).
MIN_INTERVAL = 0.1


@dataclass
class ConsoleOptions:
    """What the command line says about the live console (see ``chassis-console --help``)."""

    interval: float = 1.0
    slow: float = 10.0
    timeout: float = 10.0
    allow_actions: bool = False
    max_workers: int = 1000

    @classmethod
    def from_args(cls, args: Any) -> ConsoleOptions:
        defaults = cls()
        return cls(**{name: getattr(args, name, getattr(defaults, name))
                      for name in ("interval", "slow", "timeout", "allow_actions",
                                   "max_workers")})


@dataclass
class TargetStatus:
    """What the console knows about one target; widgets draw it."""

    label: str
    index: int
    state: TargetState = "connecting"
    snapshot: Snapshot | None = None
    error: str | None = None
    failures: int = 0  # consecutive
    retry_in: float | None = None
    retry_at: float | None = None  # monotonic time of the next attempt (the header counts down)
    round_trip_ms: float | None = None
    received_at: float | None = None  # wall clock of the last good snapshot
    note: str | None = None  # e.g. "service restarted (pid 1 -> 2)"
    note_until: int = 0  # the note shows until this many polls
    polls: int = 0
    #: while blocked: the hub watchdog's incident, and when (wall clock) it was received
    blocked: Incident | None = None
    blocked_seen_at: float | None = None
    #: pid -> when (monotonic) it last answered, over the last :data:`SHARED_WINDOW` seconds
    pids_seen: dict[int, float] = field(default_factory=dict)
    #: several processes answer on this one port (SO_REUSEPORT): their pids, sorted; empty
    #: until a pid answers again after another one did (a restart never brings a pid back)
    shared_pids: tuple[int, ...] = ()

    @property
    def shared_note(self) -> str | None:
        """``"two processes answer on this port: pid 1 and pid 2"``, or ``None``."""
        return shared_port_note(self.shared_pids)

    @property
    def blocked_for(self) -> float | None:
        """How long the hub has been blocked by now (counting on from the watchdog's answer)."""
        if self.blocked is None or self.blocked_seen_at is None:
            return None
        return self.blocked.duration_s + max(0.0, time.time() - self.blocked_seen_at)

    @property
    def stale(self) -> bool:
        return self.state != "live" and self.snapshot is not None

    @property
    def ok(self) -> bool:
        return self.state == "live"


def shared_port_note(pids: tuple[int, ...]) -> str | None:
    if len(pids) < 2:
        return None
    count = {2: "two", 3: "three", 4: "four"}.get(len(pids), str(len(pids)))
    listed = ", ".join(f"pid {p}" for p in pids[:-1]) + f" and pid {pids[-1]}"
    return (f"{count} processes answer on this port: {listed} "
            "(SO_REUSEPORT): each refresh shows one of them")


def track_pid(status: TargetStatus, previous: int | None, pid: int, now: float) -> bool:
    """Record that ``pid`` answered; ``True`` when that reveals (or keeps) a shared port: a
    pid answering again after another one did. A fleet (pid 0) is left alone."""
    if not pid:
        return False
    seen = status.pids_seen
    returning = previous is not None and pid != previous and pid in seen
    seen[pid] = now
    for old in [p for p, at in seen.items() if now - at > SHARED_WINDOW]:
        del seen[old]
    if returning or status.shared_pids:
        status.shared_pids = tuple(sorted(seen)) if len(seen) > 1 else ()
    return bool(status.shared_pids)


class _CallThread:
    """A daemon thread that runs blocking calls one at a time, results delivered to asyncio.

    Daemon, so that a call stuck on an unresponsive service never holds up quitting.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, loop, future = job
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            if loop is None:
                continue
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop has closed: the app quit meanwhile
                pass

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return await future

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` after the calls already queued, without waiting for it."""
        self._jobs.put((fn, None, None))

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class TargetPoller:
    """Polls one target until cancelled; calls ``on_change(status)`` after every change."""

    def __init__(self, target: Target, index: int, options: ConsoleOptions,
                 on_change: Callable[[TargetStatus], None]) -> None:
        self.target = target
        self.options = options
        self.status = TargetStatus(label=target.label, index=index)
        self.on_change = on_change
        self.watched: set[str] = set()  # call ids whose full stack the screen shows
        self.paused = False
        self._connected = False
        self._due: float | None = None  # when the next refresh is due (monotonic)
        self._wake = asyncio.Event()
        self._calls = _CallThread(f"chassis-poll {target.label}")

    def __repr__(self) -> str:
        return f"<TargetPoller {self.status.label} {self.status.state}>"

    def wake(self) -> None:
        """Poll now (also once while paused)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            forced = self._wake.is_set()
            self._wake.clear()
            if self.paused and not forced:
                await self._wake.wait()
                continue
            delay = await self.poll_once()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def poll_once(self) -> float:
        """One refresh (connecting first when needed); returns the delay before the next.

        After a refresh, the next starts one interval after this one was due to start (a
        refresh every interval, not every interval plus a round trip: 10/s asked is 10/s had),
        but never sooner than half an interval after this one ended: a service slower to
        answer than its interval still gets a pause between two polls, and polls never
        overlap."""
        status = self.status
        started = time.monotonic()
        try:
            if not self._connected:
                await self._calls.call(self.target.connect)
                self._connected = True
            stacks: str | frozenset[str] = frozenset(self.watched) if self.watched else "none"
            max_workers = self.options.max_workers
            snapshot = await self._while_checking(self._calls.call(
                lambda: self.target.snapshot(stacks=stacks, max_workers=max_workers)))
        except Exception as exc:  # every failure is shown, none crashes the app
            return self._failed(exc)
        previous = status.snapshot
        shared = track_pid(status, previous.pid if previous is not None else None,
                           snapshot.pid, time.monotonic())
        if previous is not None and previous.pid != snapshot.pid and shared:
            if (status.note or "").startswith("service restarted"):
                status.note = None  # it was not a restart: the header says what it is
        elif previous is not None and previous.pid != snapshot.pid:
            status.note = f"service restarted: pid {previous.pid} → {snapshot.pid}"
            status.note_until = status.polls + NOTE_POLLS
        elif status.state == "blocked" and status.blocked is not None:
            culprit = status.blocked.culprit
            status.note = (f"hub was blocked for {status.blocked_for or 0:.1f}s by "
                           f"{culprit.name if culprit else 'something unseen'}")
            status.note_until = status.polls + NOTE_POLLS
        elif status.state != "live" and status.failures:
            status.note = f"reconnected after {status.failures} failed attempt" + (
                "s" if status.failures > 1 else "")
            status.note_until = status.polls + NOTE_POLLS
        elif status.polls >= status.note_until:
            status.note = None
        status.state = "live"
        status.blocked = status.blocked_seen_at = None
        status.snapshot = snapshot
        status.error = None
        status.failures = 0
        status.retry_in = None
        status.round_trip_ms = getattr(self.target, "last_round_trip_ms", None)
        status.received_at = time.time()
        status.polls += 1
        self.on_change(status)
        # on the grid of the refreshes before (a start a little late, as the UI thread was
        # busy, is made up for by the next wait), unless woken early or far behind
        interval, due, now = self.options.interval, self._due, time.monotonic()
        base = due if due is not None and 0 <= started - due < interval else started
        self._due = max(base + interval, now + interval / 2)
        return self._due - now

    async def _while_checking(self, call: Any) -> Any:
        """Await ``call``; while it is slow, ask the target (on the side) whether its hub is
        blocked, and show it."""
        task = asyncio.ensure_future(call)
        check = getattr(self.target, "check_blocked", None)
        started = time.monotonic()
        while True:
            done, _pending = await asyncio.wait({task}, timeout=BLOCKED_CHECK_AFTER)
            if done:
                return await task
            self._mark_silent(time.monotonic() - started)
            if check is None:
                continue
            answer = await asyncio.to_thread(check)
            if task.done():
                return await task
            if answer is not None and self._show_blocked(answer):
                self.on_change(self.status)

    def _mark_silent(self, waited: float) -> None:
        """No reply for two intervals (at least :data:`SILENT_AFTER`): say *not answering* now,
        not when the request finally times out, and keep the last snapshot (stale)."""
        status = self.status
        if status.state != "live" or waited < max(SILENT_AFTER, 2 * self.options.interval):
            return
        status.state = "unresponsive"
        status.error = (f"no reply for {waited:.0f}s (still waiting, up to --timeout "
                        f"{self.options.timeout:g}s) — the service may be busy, stopped or "
                        "cut off")
        status.retry_in = status.retry_at = None
        self.on_change(status)

    def _show_blocked(self, answer: dict[str, Any], error: str | None = None) -> bool:
        try:
            incident = Incident.from_dict(answer.get("blocked"), "blocked")
        except SnapshotError:
            return False
        status = self.status
        status.state = "blocked"
        status.blocked = incident
        status.blocked_seen_at = time.time()
        status.error = error or "the eventlet hub is blocked: the hub watchdog answered"
        status.retry_in = None
        return True

    def _failed(self, exc: Exception) -> float:
        status = self.status
        self._connected = False
        self._calls.submit(self._close_quietly)
        status.failures += 1
        status.note = None
        if isinstance(exc, BlockedError) and self._show_blocked(exc.answer, str(exc)):
            self.on_change(status)
            return BLOCKED_RETRY
        if isinstance(exc, UnresponsiveError) and status.state == "blocked":
            # the poll timed out while the watchdog said the hub is blocked: still blocked
            # (a fresh connection will say so, or come back live)
            self.on_change(status)
            return BLOCKED_RETRY
        status.blocked = status.blocked_seen_at = None
        if isinstance(exc, UnresponsiveError):  # incl. a busy hub that sends no banner
            status.state = "unresponsive"
        elif isinstance(exc, UnreachableError):
            status.state = "down"
        else:
            status.state = "error"
        if isinstance(exc, ConsoleError):
            status.error = str(exc)
        else:
            status.error = f"{type(exc).__name__}: {exc}"
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (status.failures - 1))
        status.retry_in = delay
        status.retry_at = time.monotonic() + delay
        self.on_change(status)
        return delay

    def _close_quietly(self) -> None:
        try:
            self.target.close()
        except Exception:  # closing a broken connection may fail; nothing to do
            pass

    async def kill_worker(self, call_id: str) -> bool:
        """Kill one worker, queued behind any poll in progress."""
        def kill() -> bool:
            if not self._connected:
                self.target.connect()
                self._connected = True
            return self.target.kill_worker(call_id)
        return await self._calls.call(kill)

    async def request(self, op: str, **kwargs: Any) -> Any:
        """One agent operation (the log tail's ``logs``, ``log_level``) on this target's
        connection, queued behind any poll in progress. A target without agent operations
        (the fleet, the in-memory one) raises :class:`ConsoleError`."""
        send = getattr(self.target, "request", None)
        if send is None:
            raise ConsoleError(f"{self.status.label}: {op} needs a backdoor target")

        def call() -> Any:
            if not self._connected:
                self.target.connect()
                self._connected = True
            return send(op, **kwargs)
        return await self._calls.call(call)

    def stop(self) -> None:
        """Close the connection and let the thread end (without waiting for a stuck call)."""
        self._calls.submit(self._close_quietly)
        self._calls.stop()
