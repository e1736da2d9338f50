"""Live console benchmark: 1000 in-flight workers, refreshing every second.

Runs the real app headless (Textual's ``run_test``) attached over a real backdoor to
``tests/services/parking.py`` holding 1000 workers (broker at $AMQP_URI, a vhost of its own), and
prints one table:

- keypress-to-repaint latency: from sending a key to the first frame the compositor renders
  after it (cursor move, sort of 1000 rows, opening and closing the worker detail);
- the console's CPU use while it refreshes every second (process CPU time / wall time);
- per refresh: time spent redrawing the widgets, round trip, and the service stall (the time the
  request held the service's eventlet hub, as the agent reports it; the collector's part is the
  snapshot's ``took_ms``). Target: stall <= 1 ms at 1000 workers.

Run with ``.ci/with-broker .venv/bin/python bench/console.py [--workers N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.live.app import ChassisConsole  # noqa: E402
from chassis_console.live.detail import WorkerDetailScreen  # noqa: E402
from chassis_console.live.poller import ConsoleOptions, TargetStatus  # noqa: E402
from chassis_console.live.workers import WorkersTable  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float], unit: str = "ms") -> str:
    if not values:
        return f"| {name} | – | – | – | 0 |"
    return (f"| {name} | {statistics.median(values):.1f} {unit} | {pct(values, 0.95):.1f} {unit} "
            f"| {max(values):.1f} {unit} | {len(values)} |")


async def measure(target: str, workers: int, seconds: float) -> list[str]:
    client = BackdoorClient(target, timeout=30)
    app = ChassisConsole([client], ConsoleOptions(interval=1.0, max_workers=workers))
    frames: list[float] = []
    original_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            frames.append(time.perf_counter())
        original_display(screen, renderable)

    app._display = display  # type: ignore[method-assign]
    redraw_ms: list[float] = []
    original_redraw = app.redraw

    def redraw() -> None:
        t0 = time.perf_counter()
        original_redraw()
        redraw_ms.append((time.perf_counter() - t0) * 1000)

    app.redraw = redraw  # type: ignore[method-assign]
    polls: list[tuple[float, float, float]] = []  # round trip, stall, took_ms
    poller = app.pollers[0]
    notify = poller.on_change

    def on_change(status: TargetStatus) -> None:
        if status.state == "live" and status.snapshot is not None:
            polls.append((status.round_trip_ms or 0.0, getattr(client, "last_stall_ms", 0.0)
                          or 0.0, status.snapshot.took_ms))
        notify(status)

    poller.on_change = on_change
    lines: list[str] = []
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(WorkersTable)
        deadline = time.monotonic() + 60
        while table.row_count < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {table.row_count} of {workers} workers on screen")
            await pilot.pause(0.1)

        async def latency(*keys: str) -> float:
            await pilot.pause(0.05)
            before = len(frames)
            t0 = time.perf_counter()
            for key in keys:
                await pilot.press(key)
            while len(frames) == before:
                await asyncio.sleep(0.001)
            return (frames[before] - t0) * 1000

        # steady state: CPU over `seconds` of 1 Hz refreshes, no keys pressed
        polls.clear()
        redraw_ms.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
        steady_polls, steady_redraws = list(polls), list(redraw_ms)

        moves = [await latency("down" if i % 2 else "up") for i in range(20)]
        sorts = [await latency("s") for _ in range(8)]
        opens: list[float] = []
        closes: list[float] = []
        detail_polls_from = len(polls)
        for _ in range(5):
            opens.append(await latency("enter"))
            screen = app.screen
            assert isinstance(screen, WorkerDetailScreen)
            await pilot.pause(1.2)  # a refresh with the one worker's full stack
            closes.append(await latency("escape"))
        detail_polls = polls[detail_polls_from:]

    lines.append(f"\n## Live console, {workers} in-flight workers, refresh every 1 s\n")
    lines.append("| what | median | p95 | max | n |")
    lines.append("|---|---:|---:|---:|---:|")
    lines.append(row("keypress → repaint: cursor ↑/↓", moves))
    lines.append(row("keypress → repaint: `s` (re-sort 1000 rows)", sorts))
    lines.append(row("keypress → repaint: enter (open worker detail)", opens))
    lines.append(row("keypress → repaint: esc (back to the table)", closes))
    lines.append(row("redraw of every widget per refresh", steady_redraws))
    lines.append(row("refresh round trip (backdoor)", [p[0] for p in steady_polls]))
    lines.append(row("service stall per refresh (hub held, agent)", [p[1] for p in steady_polls]))
    lines.append(row("  of which collect() (snapshot took_ms)", [p[2] for p in steady_polls]))
    lines.append(row("service stall per refresh, detail open (1 stack)",
                     [p[1] for p in detail_polls]))
    lines.append(f"\nconsole CPU while refreshing (no keys): {cpu:.1f}% of one core over "
                 f"{seconds:g} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-bench-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    uri = base.with_vhost(vhost)
    n = args.workers
    config = {"AMQP_URI": str(uri), "max_workers": n + 100, "PREFETCH_COUNT": n + 100,
              "LOGGING": {"version": 1, "root": {"level": "WARNING"}}}
    proc = NamekoProcess(["tests.services.parking"], config, cwd=REPO)
    try:
        proc.start()
        rpc = RpcClient(str(uri))
        for _ in range(n):
            rpc.call_async("parking", "park", tag="bench")
        lines = asyncio.run(measure(proc.target, n, args.seconds))
        rpc.call("parking", "release", tag="bench")
        rpc.close()
    finally:
        proc.stop()
        api.delete_vhost(vhost)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
