"""Inspection that never harms: what a hostile value in a worker costs the service, this tree
against an earlier revision, side by side in one run.

For each hostile value — a ``__repr__`` that waits for ever (a socket read), one that burns the
CPU for ever, 50 MB of bytes, and an ordinary object for reference — and for each tree (this one,
and REV checked out into bench/.rev-<sha> with a virtualenv of its own, as bench/vs_rev.py does),
a fresh plain ``nameko run`` service (tests/services/reprs.py, copied into a folder of its own)
parks one worker carrying it; that tree's own ``BackdoorClient`` (shipping its own probe) then
attaches: once, then ``--attempts`` more times on fresh connections. Printed per case and tree:
the first attach's round trip and stall (or "no reply" after the client's 5 s), the median of
the later ones, the service's open fds after the attempts minus before them, and whether the
service still answers an RPC afterwards.

    .ci/with-broker .venv/bin/python bench/inspection.py [REV] [--attempts 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from vs_rev import tree_for  # noqa: E402  (bench/ is this script's folder)

CASES = ("fine", "huge", "waits", "burns")
TIMEOUT = 5.0

# Runs inside each tree's own venv, in the folder holding reprs.py.
CLIENT = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
try:
    from chassis_console.targets.backdoor import BackdoorClient
    from chassis_console.launch import NamekoProcess
    from nameko_chassis.amqp.rpc import RpcClient
except ImportError:  # the flat layout of earlier revisions
    from chassis_console.client import BackdoorClient
    from chassis_console.launch import NamekoProcess
    from nameko_chassis.rpcclient import RpcClient
uri, kind, attempts, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[5])
proc = NamekoProcess(["reprs"], {"AMQP_URI": uri}, cwd=os.getcwd())
proc.start()
out = {"first": None, "first_stall": None, "later": [], "fds": None, "alive": False}
try:
    rpc = RpcClient(uri, timeout=10)
    for _ in range(100):
        try:
            rpc.call("reprs", "ping")
            break
        except Exception:
            time.sleep(0.1)
    rpc.call_async("reprs", "park", kind=kind)
    time.sleep(1.0)
    fds = lambda: len(os.listdir(f"/proc/{proc.pid}/fd"))

    def attach():
        client = BackdoorClient(proc.address, timeout=timeout, connect_timeout=timeout)
        t0 = time.perf_counter()
        try:
            client.connect()
            client.collect(stacks="none")
            return (time.perf_counter() - t0) * 1000, getattr(client, "last_stall_ms", None)
        except Exception:
            return None, None
        finally:
            client.close()

    out["first"], out["first_stall"] = attach()
    before = fds()
    for _ in range(attempts):
        took, _stall = attach()
        out["later"].append(took)
        if took is None and len(out["later"]) >= 2:
            break  # the service is gone for good: no need to wait out every attempt
    time.sleep(0.5)
    out["fds"] = fds() - before
    try:
        rpc.call("reprs", "ping")
        out["alive"] = True
    except Exception:
        out["alive"] = False
finally:
    print(json.dumps(out), flush=True)
    proc.stop()
'''


def run(tree: Path, uri: str, kind: str, attempts: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="chassis-inspection-"))
    try:
        shutil.copy(REPO / "tests" / "services" / "reprs.py", folder / "reprs.py")
        out = subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", CLIENT, uri, kind,
                              str(attempts), str(tree), str(TIMEOUT)], cwd=folder,
                             capture_output=True, text=True, timeout=600)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"{tree} {kind}: {out.stderr[-2000:]}")
        return dict(json.loads(lines[-1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ms(value: object) -> str:
    return f"{value:.1f} ms" if isinstance(value, (int, float)) else f"no reply ({TIMEOUT:.0f} s)"


def main() -> int:
    sys.path.insert(0, str(REPO))
    from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", default="c67de0b")
    parser.add_argument("--attempts", type=int, default=20)
    args = parser.parse_args()
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    trees = {"this tree": REPO, args.rev: tree_for(args.rev)}
    print(f"\n## Hostile values in a worker: this tree vs {args.rev} ({args.attempts} attaches "
          "after the first, fresh connections)\n")
    print("| value | tree | first attach | its stall | later attaches (median) "
          "| fds after − before | service answers after |")
    print("|---|---|---:|---:|---:|---:|---|")
    for kind in CASES:
        for name, tree in trees.items():
            vhost = f"chassis-bench-{uuid.uuid4().hex[:8]}"
            api.create_vhost(vhost)
            try:
                r = run(tree, str(base.with_vhost(vhost)), kind, args.attempts)
            finally:
                api.delete_vhost(vhost)
            attempts = list(r["later"])  # type: ignore[call-overload]  # JSON list
            later = [t for t in attempts if isinstance(t, (int, float))]
            # any attempt without a reply: the median of what did reply would flatter it
            median = statistics.median(later) if later and len(later) == len(attempts) else None
            print(f"| {kind} | {name} | {ms(r['first'])} | "
                  f"{ms(r['first_stall']) if r['first_stall'] is not None else '—'} | "
                  f"{ms(median)} | {r['fds']:+d} | {'yes' if r['alive'] else 'NO'} |")
    print("\nwaits: a __repr__ reading a socket nobody writes to; burns: a __repr__ looping on "
          "the CPU; huge: 50 MB of bytes; fine: an ordinary __repr__. A repr that burns for "
          "ever holds the hub for ever without a budget: the service then answers nothing. "
          "This tree's +1 fd, where it shows, is the backlog sampler's broker connection, "
          "opened once while a console asks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
