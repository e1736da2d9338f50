"""Snapshot benchmark: service stall and round trip at 10, 100 and 1000 in-flight workers.

Prints two tables, measured side by side in one run:

1. in-process, on the same container: our collector (live refresh = stacks "none", full dump =
   stacks "all", and live + JSON encoding as the agent sends it) against nameko-chassis 3.2.0's
   ``ServiceState.from_container`` and ``debug_runner`` (installed into bench/.venv-ref, a
   bench-only virtualenv: it uses the same import name, so it never mixes with the project);
2. over a real backdoor (``nameko run`` on the broker at $AMQP_URI): ``--json``-style round trip
   and the service-side stall reported by the agent.

Run with ``make bench``. Targets: live <= 1 ms and full <= 10 ms at 1000 workers;
round trip <= 10 ms at 10 workers.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _reference import ensure_ref_venv  # noqa: E402  (bench/ is this script's folder)
from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient  # noqa: E402

SIZES = (10, 100, 1000)


def inprocess(python: Path, n: int, mode: str) -> dict[str, float]:
    out = subprocess.run([str(python), str(REPO / "bench" / "_inprocess.py"), str(n), mode,
                          str(REPO)], capture_output=True, text=True, cwd=str(REPO), timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:8.2f}"


def table_inprocess() -> None:
    ref_python = ensure_ref_venv()
    print("\n## In-process, same container (median ms; lower is better)\n")
    print("| workers | live (ours) | live+JSON (ours) | full (ours) | debug_runner (ours) "
          "| 3.2.0 from_container | 3.2.0 debug_runner | from_container / live | "
          "3.2.0 debug / ours |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in SIZES:
        ours = inprocess(Path(sys.executable), n, "ours")
        ref = inprocess(ref_python, n, "ref") if ref_python else {}
        state, debug = ref.get("ref_state"), ref.get("ref_debug")
        ratio = f"{state / ours['live']:.0f}x" if state else "—"
        dratio = f"{debug / ours['debug']:.0f}x" if debug and ours.get("debug") else "—"
        print(f"| {n} | {fmt(ours['live'])} | {fmt(ours['live_json'])} | {fmt(ours['full'])} | "
              f"{fmt(ours.get('debug'))} | {fmt(state)} | {fmt(debug)} | {ratio} | {dratio} |")
        if n == SIZES[-1]:
            print(f"\noutput of debug_runner at {n} workers: ours {ours.get('debug_bytes', 0):,} "
                  f"bytes, 3.2.0 {int(ref.get('ref_debug_bytes', 0)):,} bytes")


def table_backdoor() -> None:
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-bench-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    uri = base.with_vhost(vhost)
    config = {"AMQP_URI": str(uri), "max_workers": 1100, "PREFETCH_COUNT": 1100}
    proc = NamekoProcess(["tests.services.parking"], config, cwd=REPO)
    print("\n## Over a real backdoor (median ms of 20 requests)\n")
    print("| workers | live round trip | live stall | full round trip | full stall | payload KB (full) |")
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        proc.start()
        rpc = RpcClient(str(uri))
        client = BackdoorClient(proc.address, timeout=30)
        client.connect()
        held = 0
        for n in SIZES:
            for _ in range(n - held):
                rpc.call_async("parking", "park", tag="bench")
            held = n
            deadline = time.monotonic() + 60
            while client.snapshot().containers[0].workers_running < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only some of {n} workers started")
                time.sleep(0.2)
            row = []
            for stacks in ("none", "all"):
                rts, stalls = [], []
                for _ in range(20):
                    client.collect(stacks=stacks)
                    rts.append(client.last_round_trip_ms or 0)
                    stalls.append(client.last_stall_ms or 0)
                row += [statistics.median(rts), statistics.median(stalls)]
            kb = client.last_payload_bytes / 1024
            print(f"| {n} | {fmt(row[0])} | {fmt(row[1])} | {fmt(row[2])} | {fmt(row[3])} | {kb:8.1f} |")
        rpc.call("parking", "release", tag="bench")
        client.close()
        rpc.close()
    finally:
        proc.stop()
        api.delete_vhost(vhost)
    print("\nstall = time the request held the eventlet hub (collect + JSON + compression), as "
          "reported by the agent; round trip adds the socket and the client's parsing.")


if __name__ == "__main__":
    if "--backdoor-only" not in sys.argv:
        table_inprocess()
    table_backdoor()
