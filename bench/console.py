"""Live console benchmark: the console's own cost per refresh, this tree against an earlier
revision side by side in one run, and keypress latencies at 1000 workers.

1. **This tree vs REV** (default ``c67de0b``, the tree before the console's refresh work; checked
   out into bench/.rev-<sha> with a virtualenv of its own, as bench/vs_rev.py does). For each of
   100, 1000 and 5000 in-flight workers and each tree, a real ``nameko run`` of
   ``tests/services/parking.py`` holds the workers (broker at $AMQP_URI, a vhost of its own) and
   that tree's real app runs headless (Textual's ``run_test``, 160x45) attached over a real
   backdoor, refreshing every second. Measured in the console process, the trees taking turns:
   - parse alone: ``Snapshot.from_wire`` of the last refresh (a delta: 1000 unchanged workers)
     again against the snapshot before it, after the app has closed (median of 200);
   - parse in app: ``Snapshot.from_wire`` per refresh (median CPU time of the poller's thread,
     while the UI thread takes turns on the GIL);
   - redraw: the app's ``redraw()`` of every panel per refresh (median);
   - TUI CPU: the console process's CPU time over wall time while it refreshes at 1 Hz and no key
     is pressed (the compositor's painting, the backdoor client's thread and parsing included).
   Targets (issue 13): parse <= 2 ms and TUI CPU <= 3% at 1000 workers.
   At 1000 workers (``--workers``), each tree's run then presses keys: keypress → repaint for
   cursor moves, ``s``, enter and esc, in the same turns (skipped with ``--no-latency``).
2. **Fastest refresh** at 1000 workers, this tree: refreshes per second reached at intervals of
   0.1, 0.25 and 0.5 s; an interval is sustained when at least 90% of the refreshes asked for
   happen (the console's floor, ``poller.MIN_INTERVAL``, should be the shortest one sustained).
3. **Keypress → repaint** at 1000 workers, this tree only: from sending a key to the first frame
   the compositor renders after it; round trip and service stall per refresh.
   (``--no-latency`` skips this part and the keypresses of part 1.)

Run with ``.ci/with-broker .venv/bin/python bench/console.py [--rev REV] [--seconds S]
[--sizes 100,1000,5000] [--no-latency]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
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


# Runs inside each tree's own venv (cwd: the tree): a service holding N workers, that tree's app
# attached to it headless, one JSON line of figures on stdout.
CHILD = r"""
import asyncio, json, statistics, sys, time
sys.path.insert(0, ".")
from chassis_console.launch import NamekoProcess
from chassis_console.live.app import ChassisConsole
from chassis_console.live.poller import ConsoleOptions
from chassis_console.live.workers import WorkersTable
from chassis_console.targets.backdoor import BackdoorClient
from nameko_chassis.amqp.rpc import RpcClient
from nameko_chassis.view import model

uri, n, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
with_keys = sys.argv[5:] == ["keys"]
parse_ms = []
from_wire = model.Snapshot.from_wire.__func__

def timed(cls, *a, **k):
    t0 = time.thread_time()  # CPU of the poller's thread: not the GIL waits on the UI thread
    try:
        return from_wire(cls, *a, **k)
    finally:
        parse_ms.append((time.thread_time() - t0) * 1000)

timed.__wrapped__ = from_wire
model.Snapshot.from_wire = classmethod(timed)
proc = NamekoProcess(["tests.services.parking"], {"AMQP_URI": uri, "max_workers": n + 100,
                     "PREFETCH_COUNT": n + 100,
                     "LOGGING": {"version": 1, "root": {"level": "WARNING"}}}, cwd=".")
proc.start()
rpc = RpcClient(uri)
for _ in range(n):
    rpc.call_async("parking", "park", tag="bench")

client = BackdoorClient(proc.address, timeout=60)
last = []
collect = client._collect

def keep(*a, **k):
    data = collect(*a, **k)
    last[:] = [data]
    return data

client._collect = keep


def parse_alone():
    # the last refresh parsed again against the snapshot before it, the app gone: the parsing
    # itself, without the UI thread taking turns on the GIL
    data, previous = last[0], client._previous
    import gc
    gc.collect()  # the closed app's garbage is not collected during the timed parses
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.Snapshot.from_wire.__func__.__wrapped__(model.Snapshot, data, previous)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)

async def keypresses(app, pilot, frames):
    # keypress -> the first frame the compositor renders after it (as in latency() below)
    from chassis_console.live.detail import WorkerDetailScreen

    async def latency(*keys):
        await pilot.pause(0.05)
        before = len(frames)
        t0 = time.perf_counter()
        for key in keys:
            await pilot.press(key)
        while len(frames) == before:
            await asyncio.sleep(0.001)
        return (frames[before] - t0) * 1000

    out = {"move": [await latency("down" if i % 2 else "up") for i in range(20)],
           "sort": [await latency("s") for _ in range(8)], "open": [], "close": []}
    for _ in range(5):
        out["open"].append(await latency("enter"))
        assert isinstance(app.screen, WorkerDetailScreen)
        await pilot.pause(1.2)  # a refresh with the one worker's full stack
        out["close"].append(await latency("escape"))
    return out

async def measure():
    app = ChassisConsole([client],
                         ConsoleOptions(interval=interval, max_workers=n))
    frames = []
    display = app._display

    def displayed(screen, renderable):
        if renderable is not None:
            frames.append(time.perf_counter())
        display(screen, renderable)

    app._display = displayed
    redraw_ms = []
    original = app.redraw

    def redraw():
        t0 = time.perf_counter()
        original()
        redraw_ms.append((time.perf_counter() - t0) * 1000)

    app.redraw = redraw
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(WorkersTable)
        deadline = time.monotonic() + 120
        while table.row_count < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {table.row_count} of {n} workers on screen")
            await pilot.pause(0.2)
        await asyncio.sleep(2.0)  # the refreshes that follow the last new worker
        parse_ms.clear()
        redraw_ms.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
        wall = time.perf_counter() - wall0
        figures = {"parse_ms": statistics.median(parse_ms),
                   "redraw_ms": statistics.median(redraw_ms), "cpu": cpu,
                   "per_s": len(parse_ms) / wall}
        if with_keys:
            figures["keys"] = await keypresses(app, pilot, frames)
        return figures

try:
    figures = asyncio.run(measure())
    figures["parse_alone_ms"] = parse_alone()
    print(json.dumps(figures), flush=True)
    rpc.call("parking", "release", tag="bench")
    rpc.close()
finally:
    proc.stop()
"""


def run_child(tree: Path, workers: int, seconds: float, interval: float = 1.0,
              keys: bool = False) -> dict[str, Any]:
    """One tree's console attached to a service of ``workers`` parked workers (a vhost of its
    own) for ``seconds`` of refreshes every ``interval``; with ``keys``, then the keypress
    latencies (lists of ms under ``"keys"``)."""
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-bench-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    try:
        out = subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", CHILD,
                              str(base.with_vhost(vhost)), str(workers), str(seconds),
                              str(interval), *(["keys"] if keys else [])], cwd=tree,
                             check=True, capture_output=True,
                             text=True, timeout=600)
    finally:
        api.delete_vhost(vhost)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def versus(rev: str, sizes: list[int], seconds: float, rounds: int,
           keys_at: int | None = None) -> list[str]:
    """The per-refresh cost table, this tree against ``rev``, turn by turn; with ``keys_at``
    (a size of ``sizes``), the keypress latencies at that size too, in the same turns."""
    from vs_rev import tree_for

    trees = {"this tree": REPO, rev: tree_for(rev)}
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n in sizes:
        for _ in range(rounds):
            for name, tree in trees.items():  # turns: the same noise for both
                results.setdefault((name, n), []).append(
                    run_child(tree, n, seconds, keys=n == keys_at))
    lines = [f"\n## Console cost per refresh at 1 Hz: this tree vs {rev} (median of {rounds} "
             f"run(s) of {seconds:g} s each, taken in turns)\n",
             f"| workers | parse alone (this) | ({rev}) | ratio | parse in app (this) | ({rev}) "
             f"| ratio | redraw (this) | ({rev}) | ratio | TUI CPU (this) | ({rev}) | ratio |",
             "|---:" * 13 + "|"]
    for n in sizes:
        ours, theirs = results[("this tree", n)], results[(rev, n)]
        cells = [f"{n}"]
        for field, unit, fmt in (("parse_alone_ms", " ms", ".2f"), ("parse_ms", " ms", ".2f"),
                                 ("redraw_ms", " ms", ".1f"), ("cpu", "%", ".1f")):
            a = statistics.median(r[field] for r in ours)
            b = statistics.median(r[field] for r in theirs)
            cells += [f"{a:{fmt}}{unit}", f"{b:{fmt}}{unit}", f"{a / b:.2f}x" if b else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nparse alone: Snapshot.from_wire of the last refresh again, the app closed "
                 "(median of 200); parse in app: per refresh, CPU time of the poller's thread "
                 "while the UI thread runs; "
                 "redraw: every panel's update per refresh; TUI CPU: console process CPU time "
                 "/ wall time, painting included. "
                 "Targets at 1000 workers: parse <= 2 ms, TUI CPU <= 3%.")
    if keys_at in sizes:
        lines += keys_table(rev, keys_at, rounds, results[("this tree", keys_at)],
                            results[(rev, keys_at)])
    return lines


#: The keys of the keypress table: (what, key in the child's figures).
KEYS = (("cursor ↑/↓", "move"), ("`s` (re-sort every row)", "sort"),
        ("enter (open worker detail)", "open"), ("esc (back to the table)", "close"))


def keys_table(rev: str, workers: int, rounds: int, ours: list[dict[str, Any]],
               theirs: list[dict[str, Any]]) -> list[str]:
    """Keypress -> repaint, this tree against ``rev``: every press of every round pooled."""
    lines = [f"\n## Keypress → repaint at {workers} workers, refresh every 1 s: this tree vs "
             f"{rev} ({rounds} run(s) each, taken in turns)\n",
             f"| key | median (this) | ({rev}) | ratio | p95 (this) | ({rev}) | ratio | n |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for what, key in KEYS:
        a = [v for r in ours for v in r["keys"][key]]
        b = [v for r in theirs for v in r["keys"][key]]
        ma, mb, pa, pb = statistics.median(a), statistics.median(b), pct(a, 0.95), pct(b, 0.95)
        lines.append(f"| {what} | {ma:.1f} ms | {mb:.1f} ms | {ma / mb:.2f}x | {pa:.1f} ms "
                     f"| {pb:.1f} ms | {pa / pb:.2f}x | {len(a)} |")
    lines.append("\nkeypress → repaint: from sending the key to the first frame the compositor "
                 "renders after it (headless, 160x45).")
    return lines


def fastest(workers: int, intervals: list[float], seconds: float) -> list[str]:
    """Refreshes per second reached at each interval (this tree): the console sustains an
    interval when it reaches at least SUSTAINED of the rate asked for."""
    lines = [f"\n## Fastest refresh at {workers} workers (this tree, {seconds:g} s each)\n",
             "| interval | asked | reached | TUI CPU | redraw | sustained |",
             "|---:|---:|---:|---:|---:|---|"]
    for interval in intervals:
        r = run_child(REPO, workers, seconds, interval)
        asked = 1 / interval
        ok = r["per_s"] >= SUSTAINED * asked
        lines.append(f"| {interval:g} s | {asked:.1f}/s | {r['per_s']:.1f}/s | {r['cpu']:.1f}% "
                     f"| {r['redraw_ms']:.1f} ms | {'yes' if ok else 'no'} |")
    from chassis_console.live.poller import MIN_INTERVAL

    lines.append(f"\nsustained: at least {SUSTAINED:.0%} of the refreshes asked for. The console's "
                 f"floor (poller.MIN_INTERVAL, the `-` key and --interval): {MIN_INTERVAL:g} s.")
    return lines


#: Share of the asked refresh rate an interval must reach to count as sustained.
SUSTAINED = 0.9


def latency(workers: int, seconds: float) -> list[str]:
    """Keypress latencies and per-refresh figures at ``workers``, this tree only."""
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-bench-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    uri = base.with_vhost(vhost)
    n = workers
    config = {"AMQP_URI": str(uri), "max_workers": n + 100, "PREFETCH_COUNT": n + 100,
              "LOGGING": {"version": 1, "root": {"level": "WARNING"}}}
    proc = NamekoProcess(["tests.services.parking"], config, cwd=REPO)
    try:
        proc.start()
        rpc = RpcClient(str(uri))
        for _ in range(n):
            rpc.call_async("parking", "park", tag="bench")
        lines = asyncio.run(measure(proc.target, n, seconds))
        rpc.call("parking", "release", tag="bench")
        rpc.close()
    finally:
        proc.stop()
        api.delete_vhost(vhost)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="c67de0b",
                        help="the revision to compare with (default c67de0b)")
    parser.add_argument("--sizes", default="100,1000,5000",
                        help="in-flight worker counts, comma-separated (default 100,1000,5000)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of 1 Hz refreshes measured per run (default 10)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per tree and size (default 2)")
    parser.add_argument("--workers", type=int, default=1000, help="workers of the latency part")
    parser.add_argument("--intervals", default="0.1,0.25,0.5",
                        help="intervals of the fastest-refresh table (default 0.1,0.25,0.5)")
    parser.add_argument("--no-latency", action="store_true", help="skip the keypress latencies")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    lines = versus(args.rev, [int(n) for n in args.sizes.split(",")], args.seconds, args.rounds,
                   keys_at=None if args.no_latency else args.workers)
    print("\n".join(lines), flush=True)
    if args.intervals:
        print("\n".join(fastest(args.workers, [float(i) for i in args.intervals.split(",")],
                                 args.seconds)), flush=True)
    if not args.no_latency:
        print("\n".join(latency(args.workers, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
