"""Screenshots of the live console attached to the real demo shop (``make screenshots``).

Starts the demo services (as ``chassis-console --demo`` does), drives the real app with Textual's
Pilot and saves, into this folder:

- ``console-main.svg``: the main screen while the shop is busy;
- ``console-worker.svg``: the detail of a payments worker waiting on the card processor;
- ``console-blocked.svg``: the hub blocked by a payments worker that never yields (the next
  charge is made to run a CPU-bound "fraud check", installed over the backdoor for one call);
- ``console-groups.svg``: the workers grouped by entrypoint and where (``g``);
- ``console-rates.svg``: rates and latency per entrypoint over the last minute (``e``);
- ``console-finished.svg``: a failed call opened from "recently finished", with its traceback;
- ``console-logs.svg``: the log tail (``l``) with the shop's own records, then (``l`` again)
  only the selected payments worker's;
- ``console-backlog.svg``: a burst of charges sent straight to ``payments`` (with the project's
  RpcClient), more than its pool takes: the pool gauge with its backlog line, growing;
- ``console-disconnected.svg``: the same console right after the service was killed.

Each also as PNG when ``rsvg-convert`` (Debian: librsvg2-bin) or ``cairosvg`` is available.
Regenerate rather than edit: the images are whatever the app draws.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from chassis_console.demo import demo_services  # noqa: E402
from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.live.app import ChassisConsole  # noqa: E402
from chassis_console.live.detail import WorkerDetailScreen  # noqa: E402
from chassis_console.live.history import FinishedRef, HistoryPanel, find_finished  # noqa: E402
from chassis_console.live.logs import LogPanel  # noqa: E402
from chassis_console.live.poller import ConsoleOptions  # noqa: E402
from chassis_console.live.rates import RatesTable  # noqa: E402
from chassis_console.live.workers import WorkersTable  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient  # noqa: E402

from nameko_chassis.amqp.rpc import RpcClient  # noqa: E402
from nameko_chassis.view.text import backlog_summary  # noqa: E402

SIZE = (150, 42)

# Installed in the demo process over the backdoor: the next payments.charge burns the CPU for
# 6 s without yielding, in a function of its own (its source registered with linecache, so the
# stack shows the line), then the original comes back.
_HOG_FILE = "<demo: a CPU-bound fraud check>"
_HOG = """\
def score_fraud_risk(self, seconds):
    Payments._wait_for_processor = _original
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # never yields to the eventlet hub
        pass
"""
_INSTALL = (
    "exec(" + repr(
        "import linecache, time\n"
        "from nameko_chassis.demo.shop import Payments\n"
        f"src = {_HOG!r}\n"
        f"linecache.cache[{_HOG_FILE!r}] = (len(src), None, src.splitlines(True), {_HOG_FILE!r})\n"
        "ns = {'Payments': Payments, 'time': time, '_original': Payments._wait_for_processor}\n"
        f"exec(compile(src, {_HOG_FILE!r}, 'exec'), ns)\n"
        "Payments._wait_for_processor = ns['score_fraud_risk']\n") + ", {})"
)


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise SystemExit(f"make_screenshots: timed out after {timeout}s waiting for {what}")


def to_png(svg: Path) -> Path | None:
    """Convert with whatever converter is installed; None when there is none."""
    png = svg.with_suffix(".png")
    # rsvg collapses the runs of spaces that keep terminal columns aligned unless told not to
    text = svg.read_text().replace("<svg class=", '<svg xml:space="preserve" class=', 1)
    fixed = svg.with_suffix(".tmp.svg")
    fixed.write_text(text)
    try:
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", "--zoom", "1", str(fixed), "-o", str(png)],
                           check=True)
            return png
        try:
            import cairosvg  # type: ignore[import-not-found]
        except ImportError:
            return None
        cairosvg.svg2png(url=str(fixed), write_to=str(png))
        return png
    finally:
        fixed.unlink(missing_ok=True)


def save(app: ChassisConsole, name: str, written: list[Path]) -> None:
    svg = HERE / f"{name}.svg"
    app.save_screenshot(svg.name, str(HERE))
    written.append(svg)
    png = to_png(svg)
    if png is not None:
        written.append(png)


async def shoot_logs(app: ChassisConsole, pilot: Any, written: list[Path]) -> None:
    """The log tail: every record, then the selected payments worker's."""
    panel = app.query_one(LogPanel)
    table = app.query_one(WorkersTable)
    await pilot.press("l")
    await until(pilot, lambda: len(panel.shown_lines()) >= 40
                and any("card=********" in ln for ln in panel.shown_lines()), 60,
                "the shop's log records")
    await pilot.pause(0.3)
    save(app, "console-logs", written)

    # a payments worker that has said more than one thing (a slow charge: "charging", then
    # "card processor slow"), under the cursor, while it still runs
    def slow_charge() -> str | None:
        counts: dict[str, int] = {}
        for tail in panel.tails.values():
            for r in tail.records:
                if r.call_id and r.call_id.startswith("payments.charge."):
                    counts[r.call_id] = counts.get(r.call_id, 0) + 1
        return next((k for k in table.keys() if "|payments.charge." in k
                     and counts.get(k.rsplit("|", 1)[-1], 0) >= 2), None)

    key = await until(pilot, slow_charge, 90, "a slow payments worker that logged")
    table.move_cursor(row=table.get_row_index(key))
    await pilot.press("l")
    await until(pilot, lambda: panel.mode == "worker" and len(panel.shown_lines()) >= 2, 10,
                "the worker's records")
    await pilot.pause(0.3)
    save(app, "console-logs-worker", written)
    await pilot.press("l")


def charge_stream(uri: str, stop: threading.Event, per_s: float = 25.0) -> None:
    """Charges sent straight to payments, faster than its pool takes them (nameko's default
    prefetch of 10 messages bounds it, below the demo's max_workers; a charge takes 0.2-2.5 s,
    one in ten 8-15 s: about 7 a second), until ``stop``; then waits for their answers."""
    rpc = RpcClient(uri, timeout=300)
    pending = []
    try:
        for k in range(400):
            if stop.is_set():
                break
            pending.append(rpc.call_async("payments", "charge", 9000 + k, 12.5,
                                          "4111111111111111"))
            time.sleep(1 / per_s)
        for call in pending:
            try:
                call.result()
            except Exception:  # a declined card is part of the demo
                pass
    finally:
        rpc.close()


async def shoot_backlog(app: ChassisConsole, pilot: Any, process: NamekoProcess,
                        written: list[Path]) -> None:
    status = app.pollers[0].status

    def payments():
        snap = status.snapshot
        return next((c for c in snap.containers if c.service_name == "payments"), None) \
            if snap is not None else None

    def piling() -> bool:
        c = payments()
        summary = backlog_summary(c.backlog) if c is not None else None
        return summary is not None and (summary.ready or 0) >= 40 and summary.growing

    stop = threading.Event()
    stream = threading.Thread(target=charge_stream, args=(str(process.amqp_uri), stop),
                              daemon=True)
    stream.start()
    try:
        await until(pilot, piling, 60, "a growing backlog behind the payments pool")
        await pilot.pause(0.3)
        save(app, "console-backlog", written)
    finally:
        stop.set()

    def drained() -> bool:
        c = payments()
        summary = backlog_summary(c.backlog) if c is not None else None
        return summary is not None and not summary.ready and not stream.is_alive()

    await until(pilot, drained, 180, "the backlog to drain")


async def shoot(process: NamekoProcess) -> list[Path]:
    written: list[Path] = []
    client = BackdoorClient(process.address)
    app = ChassisConsole([client], ConsoleOptions(interval=1.0), demo=process)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(WorkersTable)
        status = app.pollers[0].status

        def busy(oldest: float, rows: int) -> bool:
            snap = status.snapshot
            if snap is None or table.row_count < rows:
                return False
            ages = sorted((w.age_s for _, w in snap.workers), reverse=True)
            return ages[0] >= oldest and any(c.service_name == "payments" and c.workers
                                             for c in snap.containers)

        # best: a slow payment (one charge in ten takes 8-15 s; the shopper waits for it, so
        # fewer workers are in flight meanwhile)
        try:
            await until(pilot, lambda: busy(app.options.slow + 1, 4), 90, "a slow worker")
        except SystemExit:
            await until(pilot, lambda: busy(3.0, 8), 60, "a busy shop")
        await pilot.pause(0.3)
        save(app, "console-main", written)

        # the oldest payments worker, waiting on the (pretend) card processor; it may finish
        # before its stack arrives: then take the next one
        for _attempt in range(20):
            rows = [k for k in table.keys() if "|payments.charge." in k]
            if rows:
                table.move_cursor(row=table.get_row_index(rows[0]))
            await pilot.press("enter")
            screen = app.screen
            if not isinstance(screen, WorkerDetailScreen):
                await pilot.pause(0.5)
                continue
            try:
                await until(pilot, lambda s=screen: s.worker is not None and s.worker.stack
                            and s.state == "running", 5, "the worker's stack")
                break
            except SystemExit:
                await pilot.press("escape")
        else:
            raise SystemExit("make_screenshots: no payments worker lived long enough")
        await pilot.pause(0.3)
        save(app, "console-worker", written)
        await pilot.press("escape")

        # a worker that never yields: the watchdog answers, the console shows the blocked hub
        def install() -> None:
            with BackdoorClient(process.address) as side:
                side.conn.command(_INSTALL)
        await asyncio.to_thread(install)
        await until(pilot, lambda: status.state == "blocked" and status.blocked is not None
                    and (status.blocked_for or 0) > 2.5, 60, "the blocked hub")
        await pilot.pause(0.3)
        save(app, "console-blocked", written)
        await until(pilot, lambda: status.state == "live", 30, "the hub to come free")
        await pilot.press("g")
        await pilot.pause(0.5)
        save(app, "console-groups", written)
        await pilot.press("g")

        await pilot.press("e")
        await until(pilot, lambda: app.query_one(RatesTable).row_count >= 3, 30, "rates")
        await pilot.pause(0.5)
        save(app, "console-rates", written)
        await pilot.press("e")

        # a failure from the history (a declined card, one order in a few)
        history = app.query_one(HistoryPanel)

        def failed() -> str | None:
            return next((k for k in history.keys() if "|orders.place." in k
                         and (e := find_finished(app.statuses, FinishedRef.from_key(k)))
                         and e.worker.outcome == "error"), None)

        key = await until(pilot, failed, 60, "a failed order in the history")
        history.focus()
        history.move_cursor(row=history.get_row_index(key))
        await pilot.press("enter")
        await pilot.pause(0.3)
        save(app, "console-finished", written)
        await pilot.press("escape")

        await shoot_logs(app, pilot, written)
        await shoot_backlog(app, pilot, process, written)

        await asyncio.to_thread(process.kill)
        await until(pilot, lambda: status.failures >= 2, 20, "the console to notice")
        await pilot.pause(0.3)
        save(app, "console-disconnected", written)
    return written


def main() -> int:
    with demo_services() as process:
        written = asyncio.run(shoot(process))
    for path in written:
        print(path.relative_to(HERE.parent))
    if not any(p.suffix == ".png" for p in written):
        print("no SVG converter found (apt-get install librsvg2-bin): SVG only",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
