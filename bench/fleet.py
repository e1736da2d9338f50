"""Fleet benchmark: 1, 10 and 30 replica processes of one chassis service on one vhost.

Starts N real ``nameko run tests.services.chassis_parking`` processes (broker at $AMQP_URI, a
vhost of its own), answers 20 pings per replica (a history of finished workers), parks
``--workers`` RPC workers in each (the shared RPC queue spreads them),
then refreshes a :class:`~chassis_console.targets.fleet.FleetTarget` ``--refreshes`` times at
``--rate`` Hz (below the responders' default rate limit of 10/s) and prints one table:

- refresh latency p50/p99: publish to the last expected reply (every replica that answered
  the previous refresh), merged snapshot built;
- broker bytes per refresh: the request plus every reply body as it travelled (compressed
  when large), steady state (structures known) and the first refresh (structures included);
- console CPU per refresh (process CPU time of publish + gather + decode + parse + merge), and
  what that is as a share of one core at a 1 Hz refresh;
- service stall per request: how long building the reply held a replica's hub, as each
  replica measured it (collect + redact + encode), p50/p99/max over all replies, wall clock
  and the CPU time of the same (on a loaded machine the wall clock includes time the OS gave
  to other processes while the hub was busy).

Run with ``.ci/with-broker .venv/bin/python bench/fleet.py [--replicas 1,10,30]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.targets.fleet import FleetTarget  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_all(n: int, uri: str) -> list[NamekoProcess]:
    procs = [NamekoProcess(["tests.services.chassis_parking"], {"AMQP_URI": uri}, cwd=REPO)
             for _ in range(n)]
    errors: list[BaseException] = []

    def start(p: NamekoProcess) -> None:
        try:
            p.start(ready_timeout=240)
        except BaseException as exc:  # reported below, after the others were started
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for p in procs:
            p.stop()
        raise SystemExit(f"bench/fleet: a replica did not start: {errors[0]}")
    return procs


def measure(n: int, workers: int, refreshes: int, rate: float, summary: bool = False
            ) -> dict[str, float]:
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-bench-fleet-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    uri = base.with_vhost(vhost)
    procs: list[NamekoProcess] = []
    try:
        t0 = time.monotonic()
        procs = start_all(n, str(uri))
        print(f"  {n} replicas started in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        rpc = RpcClient(str(uri), timeout=60)
        # finished workers first, so each replica has a history to report (10 per refresh)
        for call in [rpc.call_async("parking", "ping") for _ in range(20 * n)]:
            call.result()
        for _ in range(workers * n):
            rpc.call_async("parking", "park", seconds=600)
        target = FleetTarget(uri, deadline=5.0, discover_every=None,
                             summary_over=0 if summary else 10_000)
        target.connect()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every replica, every worker in flight
            target.refresh()
            running = sum(c.workers_running for r in target.replicas.values()
                          if r.snapshot is not None for c in r.snapshot.containers)
            if len(target.replicas) == n and running >= workers * n:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"bench/fleet: saw {len(target.replicas)} of {n} replicas")
        # the first refresh of a console: structures travel in full
        fresh = FleetTarget(uri, deadline=5.0, discover_every=None,
                            summary_over=0 if summary else 10_000)
        fresh.connect()
        fresh.snapshot()
        first_bytes = fresh.last_bytes
        fresh.close()
        latency, cpu, sizes, stalls, hub_cpu, missing = [], [], [], [], [], 0
        for _ in range(refreshes):
            started, c0 = time.perf_counter(), time.process_time()
            target.snapshot()
            latency.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            sizes.append(target.last_bytes)
            answered = [r for r in target.replicas.values() if r.answering]
            missing += n - len(answered)
            stalls += [r.stall_ms for r in answered if r.stall_ms is not None]
            hub_cpu += [r.cpu_ms for r in answered if r.cpu_ms is not None]
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
        target.close()
        rpc.close()
        return {"replicas": n, "workers": workers * n, "p50": statistics.median(latency),
                "p99": pct(latency, 0.99), "bytes": statistics.median(sizes),
                "first_bytes": first_bytes, "cpu": statistics.median(cpu),
                "stall50": statistics.median(stalls), "stall99": pct(stalls, 0.99),
                "stallmax": max(stalls), "cpu50": statistics.median(hub_cpu),
                "cpu99": pct(hub_cpu, 0.99), "missing": missing}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.remove_workdir()
        api.delete_vhost(vhost)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", default="1,10,30")
    p.add_argument("--workers", type=int, default=5, help="parked workers per replica")
    p.add_argument("--refreshes", type=int, default=40)
    p.add_argument("--rate", type=float, default=4.0, help="refreshes per second")
    p.add_argument("--summary", action="store_true",
                   help="measure the summary refresh (oldest worker per replica, no history) "
                        "that the console switches to past SUMMARY_OVER replicas")
    args = p.parse_args()
    rows = []
    for n in (int(x) for x in args.replicas.split(",")):
        print(f"bench/fleet: {n} replicas…", file=sys.stderr)
        rows.append(measure(n, args.workers, args.refreshes, args.rate, args.summary))
    print("| replicas | workers | refresh p50 | refresh p99 | broker bytes / refresh "
          "(first) | console CPU / refresh | (share of a core at 1 Hz) | service stall "
          "p50 / p99 / max | of which CPU p50 / p99 | missed replies |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['replicas']:.0f} | {r['workers']:.0f} | {r['p50']:.1f} ms "
              f"| {r['p99']:.1f} ms | {r['bytes'] / 1024:.1f} KiB ({r['first_bytes'] / 1024:.1f}"
              f" KiB) | {r['cpu']:.1f} ms | {r['cpu'] / 10:.2f}% | {r['stall50']:.2f} / "
              f"{r['stall99']:.2f} / {r['stallmax']:.2f} ms | {r['cpu50']:.2f} / "
              f"{r['cpu99']:.2f} ms | {r['missing']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
