"""Load for the per-call benches (overhead, watchdog): a process's CPU time, an echo RPC
driven at a fixed concurrency, one-at-a-time latencies, percentiles."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _schedstat_ns(path: str) -> int:
    return int(Path(path).read_text().split()[0])  # time on a CPU, in nanoseconds


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU seconds of a process (every live thread), or of one of its threads (``tid=pid``: the
    main thread, where a nameko service's eventlet hub runs). From ``schedstat`` (nanoseconds)
    where the kernel has it, else ``stat``'s utime + stime (clock ticks, 10 ms)."""
    try:
        if tid is not None:
            return _schedstat_ns(f"/proc/{pid}/task/{tid}/schedstat") / 1e9
        return sum(_schedstat_ns(str(task / "schedstat"))
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def wait_answering(client: Any, timeout_error: type[Exception], warm_up: int = 200) -> None:
    """nameko marks containers started before their consumers consume: wait for a real answer,
    then warm up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            client.call("bench", "echo", 1, timeout=1)
            break
        except timeout_error:
            if time.monotonic() > deadline:
                raise
    for _ in range(warm_up):
        client.call("bench", "echo", 1)


def throughput(client: Any, pid: int, calls: int, concurrency: int,
               method: str = "echo") -> tuple[float, float]:
    """(calls per second, service CPU seconds per call) for ``calls`` RPCs of ``bench.<method>``
    (one argument) kept ``concurrency`` in flight."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    pending = [client.call_async("bench", method, i) for i in range(concurrency)]
    sent = concurrency
    while pending:
        pending.pop(0).result()
        if sent < calls:
            pending.append(client.call_async("bench", method, sent))
            sent += 1
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return calls / elapsed, cpu / calls


def latencies(client: Any, calls: int) -> list[float]:
    """Milliseconds of ``calls`` echo RPCs made one at a time."""
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        client.call("bench", "echo", i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
