"""Process basics for the header: CPU %, memory, open files, greenthreads, uptime and the hub's
recent lag. Standard library only; Linux ``/proc`` where it exists, else what is there.

Cheap by design (it runs on the hub with every snapshot): a few small ``/proc`` reads, the fd
count at most once per :data:`FD_COUNT_EVERY` seconds, greenthreads counted from the containers'
own tables (workers and managed threads), no heap walk.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from . import privates
from .schema import ProcessDict

#: Seconds between two counts of the open file descriptors (a listdir of /proc/self/fd).
FD_COUNT_EVERY = 5.0

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_state: dict[str, Any] = {}


def _read(path: str) -> str | None:
    # os.open/read/close: a /proc file on every refresh, without the io objects of open()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _started_at() -> float | None:
    """Wall-clock start of this process (``/proc/self/stat`` start time after boot)."""
    cached = _state.get("started_at")
    if cached is not None:
        return float(cached)
    stat, boot = _read("/proc/self/stat"), _read("/proc/stat")
    if stat is None or boot is None:
        return None
    try:
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in boot.splitlines()
                     if line.startswith("btime"))
    except (IndexError, ValueError, StopIteration):
        return None
    _state["started_at"] = started = btime + ticks / _CLK_TCK
    return started


def _rss_bytes() -> int | None:
    statm = _read("/proc/self/statm")
    try:
        return int(statm.split()[1]) * _PAGE if statm else None
    except (IndexError, ValueError):
        return None


def _open_fds(now: float) -> int | None:
    last = _state.get("fds")
    if last is not None and now - last[0] < FD_COUNT_EVERY:
        return int(last[1])
    try:
        count = len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
    _state["fds"] = (now, count)
    return count


def _hub_lag_ms() -> float | None:
    """The largest delay the watchdog's heartbeat saw since the last snapshot took it."""
    running = getattr(sys, "_nameko_chassis_watchdog", None)
    take = getattr(running, "take_lag", None)
    if take is None or getattr(running, "stopped", True):
        return None
    try:
        return round(float(take()) * 1000, 1)
    except BaseException:
        return None


def basics(containers: Iterable[Any]) -> ProcessDict:
    """This process, now. ``cpu_percent`` is over the time since the previous call (None the
    first time), as ``top`` shows it: 100 is one core."""
    now, cpu = time.monotonic(), _cpu_seconds()
    last = _state.get("cpu")
    _state["cpu"] = (now, cpu)
    percent = None
    if last is not None and now > last[0]:
        percent = round((cpu - last[1]) / (now - last[0]) * 100, 1)
    greenthreads = 0
    for container in containers:
        try:
            greenthreads += len(privates.worker_table(container))  # no copy: 10,000 workers
            greenthreads += len(privates.managed_threads(container))
        except BaseException:
            continue
    started = _started_at()
    return {
        "uptime_s": round(time.time() - started, 1) if started is not None else None,
        "cpu_percent": percent,
        "rss_bytes": _rss_bytes(),
        "open_fds": _open_fds(now),
        "greenthreads": greenthreads,
        "hub_lag_ms": _hub_lag_ms(),
    }


def descriptors() -> list[int] | None:
    """This process's open file descriptors (``/proc/self/fd``), or None where it has none."""
    try:
        return [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return None


def socket_of(fd: int) -> Any:
    """A socket object over a duplicate of descriptor ``fd`` — the caller closes it — or None
    when ``fd`` is gone or is not a socket. Built on ``_socket``, the C module eventlet never
    patches: usable on the hub and from the watchdog's OS thread alike. Options set through it
    belong to the socket itself, shared with ``fd``."""
    import _socket

    try:
        copy = os.dup(fd)
    except OSError:  # already gone
        return None
    try:
        return _socket.socket(fileno=copy)
    except OSError:  # not a socket
        os.close(copy)
        return None
