"""This tree against an earlier revision, side by side in one run: the hub's stall and the
console's cost per refresh at 1000 parked workers.

For each tree (this one, and REV checked out into bench/.rev-<sha> with a virtualenv of its own),
a real ``nameko run`` of tests/services/parking.py holds the same number of workers; one client
per tree (each tree's own ``BackdoorClient``, shipping its own probe) then takes turns, request
by request, spaced like a 1 Hz console, so both sides see the same machine noise.

    .ci/with-broker .venv/bin/python bench/vs_rev.py REV [--workers 1000] [--rounds 20]

Prints one table: median stall (as each tree's agent reports it: this tree's is the whole
hold, read to write; earlier revisions left part of it out) and client time per request
(round trip + parsing) for live refreshes, full dumps, first refreshes of a new connection and
``--json`` full dumps, and the ratio this/REV.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside each tree's own venv: a service holding N workers, then requests on stdin.
CLIENT = r'''
import json, sys, time
sys.path.insert(0, ".")
try:
    from chassis_console.targets.backdoor import BackdoorClient
    from chassis_console.launch import NamekoProcess
    from nameko_chassis.amqp.rpc import RpcClient
except ImportError:  # the flat layout of earlier revisions
    from chassis_console.client import BackdoorClient
    from chassis_console.launch import NamekoProcess
    from nameko_chassis.rpcclient import RpcClient
uri, n = sys.argv[1], int(sys.argv[2])
proc = NamekoProcess(["tests.services.parking"], {"AMQP_URI": uri, "max_workers": n + 100,
                     "PREFETCH_COUNT": n + 100}, cwd=".")
proc.start()
rpc = RpcClient(uri)
for _ in range(n):
    rpc.call_async("parking", "park", tag="bench")
client = BackdoorClient(proc.address, timeout=60)
client.connect()
deadline = time.monotonic() + 120
while client.snapshot().containers[0].workers_running < n:
    if time.monotonic() > deadline:
        raise SystemExit("workers did not start")
    time.sleep(0.2)
print("ready", flush=True)
for line in sys.stdin:
    stacks = line.strip()
    t0 = time.perf_counter()
    if stacks == "first":  # the first refresh of a new connection
        other = BackdoorClient(proc.address, timeout=60)
        other.connect()
        t0 = time.perf_counter()
        other.snapshot(stacks="none")
        took = (time.perf_counter() - t0) * 1000
        print(json.dumps([other.last_stall_ms, took]), flush=True)
        other.close()
        continue
    if stacks == "json":  # --json: every worker and stack in full, no session
        client.collect(stacks="all")
    else:
        client.snapshot(stacks=stacks)
    took = (time.perf_counter() - t0) * 1000
    print(json.dumps([client.last_stall_ms, took]), flush=True)
rpc.call("parking", "release", tag="bench")
client.close()
proc.stop()
'''


#: Requests, by what the client sends its helper: a live refresh, a full dump on the live
#: session, the first refresh of a new connection, a full dump as --json asks it.
CASES = {"none": "live refresh", "all": "full dump (session)", "first": "first refresh",
         "json": "full dump (--json)"}


def tree_for(rev: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = REPO / "bench" / f".rev-{sha}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO,
                       check=True, capture_output=True)
    if not (tree / ".venv" / "bin" / "python").exists():
        subprocess.run(["make", "venv"], cwd=tree, check=True, capture_output=True)
    return tree


def start(tree: Path, uri: str, n: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(tree / ".venv" / "bin" / "python"), "-c", CLIENT, uri, str(n)],
                            cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{tree}: the bench service did not start")
    return proc


def ask(proc: subprocess.Popen[str], stacks: str) -> tuple[float, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stacks + "\n")
    proc.stdin.flush()
    stall, took = json.loads(proc.stdout.readline())
    return float(stall), float(took)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhosts = [f"chassis-bench-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    trees = {"this tree": REPO, args.rev: tree_for(args.rev)}
    procs = {}
    try:
        for vhost, (name, tree) in zip(vhosts, trees.items(), strict=True):
            api.create_vhost(vhost)
            procs[name] = start(tree, str(base.with_vhost(vhost)), args.workers)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for stacks in CASES:
            for _ in range(args.rounds):
                for name, proc in procs.items():  # turns: the same noise for both
                    results.setdefault((name, stacks), []).append(ask(proc, stacks))
                    time.sleep(0.5)
        print(f"\n## This tree vs {args.rev}: {args.workers} parked workers, median of "
              f"{args.rounds} requests each, taken in turns\n")
        print(f"| request | stall (this) | stall ({args.rev}) | ratio | client time (this) "
              f"| client time ({args.rev}) | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for stacks, label in CASES.items():
            ours = results[("this tree", stacks)]
            theirs = results[(args.rev, stacks)]
            s1, s2 = (statistics.median(v[0] for v in r) for r in (ours, theirs))
            c1, c2 = (statistics.median(v[1] for v in r) for r in (ours, theirs))
            print(f"| {label} | {s1:.2f} ms | {s2:.2f} ms | {s1 / s2:.2f}x | {c1:.2f} ms "
                  f"| {c2:.2f} ms | {c1 / c2:.2f}x |")
        print("\nstall: what the agent reports holding the hub; client time: snapshot() in the "
              "console process, round trip and parsing included.")
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(60)
        for vhost in vhosts:
            api.delete_vhost(vhost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
