"""Snapshot benchmark: what a console's requests cost the service's hub, side by side in one run.

Prints three tables:

1. **in-process**, one container with N workers parked 14-16 frames deep, requests spaced like a
   1 Hz console (bench/_inprocess.py): this tree's agent, the agent of revision ``--rev``
   (default c67de0b: its probe sources, loaded the same way), nameko-chassis 3.2.0's
   ``ServiceState.from_container`` + JSON (bench/.venv-ref), and a bare frame walk + JSON of
   the same workers; at 1000 workers (1000 listed) and 5000 (all listed);
2. **bootstrap**: the hub's hold for each line that ships the probe on a first attach (the
   largest and the total), compiled by the console vs source compiled in the service, in the
   chunks this tree ships and in one chunk;
3. **over a real backdoor**: ``bench/vs_rev.py`` — this tree against ``--rev``, each on a real
   ``nameko run`` with 1000 parked workers, taking turns, spaced like a 1 Hz console (this
   tree's stall is the whole hold; the revision's as it reported it, which left part out).

    .ci/with-broker .venv/bin/python bench/snapshot.py [--rev c67de0b] [--skip-backdoor]

Goals (issue 13, 1000 workers): full dump <= 0.5x a bare walk + JSON and <= 0.08x 3.2.0;
live refresh <= 1 ms; first refresh <= 3 ms; churn <= 10 ms; bootstrap <= 5 ms a line. The
turnover row is the live refresh of a busy service (10 young workers came and went since the last).
A refresh that finds many new workers hands the hub back between slices of its work (at most
``SLICE_BUDGET_S``, 2 ms, each; probe/collect.py ``warm``): its rows say the sum of its holds
(the hub time it cost, what ``took_ms`` reports) and the longest single hold (what a worker can
wait); a revision without slices holds the hub in one piece, both figures the same.
"""

from __future__ import annotations

import argparse
import code
import contextlib
import importlib
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _reference import ensure_ref_venv  # noqa: E402  (bench/ is this script's folder)


def probe_sources(rev: str, into: Path) -> Path:
    """The probe package of ``rev``, as files in ``into`` (it is standard library only)."""
    folder = into / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:nameko_chassis/probe"],
                           cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith((".py", ".json")):
            text = subprocess.run(["git", "show", f"{rev}:nameko_chassis/probe/{name}"],
                                  cwd=REPO, check=True, capture_output=True, text=True).stdout
            (folder / name).write_text(text)
    return folder


def model_sources(rev: str, into: Path) -> Path:
    """The snapshot model of ``rev`` (view/model.py and the two modules it imports), as a
    package of its own name in ``into``: parsed side by side with this tree's in one process."""
    package = into / "rev_chassis"
    for name in ("__init__.py", "errors.py", "view/__init__.py", "view/model.py",
                 "probe/__init__.py", "probe/schema.py"):
        target = package / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = "" if name.endswith("__init__.py") else subprocess.run(
            ["git", "show", f"{rev}:nameko_chassis/{name}"], cwd=REPO, check=True,
            capture_output=True, text=True).stdout
        target.write_text(text)
    return package


def parse_times(model: Any, payloads: dict[str, str], repeat: int = 200) -> dict[str, float]:
    """Median ms of ``Snapshot.from_wire`` for each refresh a console parses (the frame decoded
    first, as the console's reader does; the decoding is not timed): a new connection's first
    refresh, its live refresh, and a refresh where every worker is new (churn)."""
    from nameko_chassis.probe.wire import decode_frame

    def decoded(name: str) -> Any:
        return decode_frame(payloads[name].encode(), 0)[1]

    snapshot = model.Snapshot.from_wire
    first = snapshot(decoded("first"))
    live = snapshot(decoded("live"), first)
    cases = {"first": (decoded("first"), None), "live": (decoded("live"), first)}
    if "churn" in payloads:
        before = snapshot(decoded("before_churn"), live)
        cases["churn"] = (decoded("churn"), before)
    out = {}
    for name, (data, previous) in cases.items():
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            snapshot(data, previous)
            samples.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(samples)
    return out


def inprocess(python: Path, n: int, *args: str) -> dict[str, float]:
    out = subprocess.run([str(python), str(REPO / "bench" / "_inprocess.py"), str(n), *args],
                         capture_output=True, text=True, cwd=str(REPO), timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}x"


def table_inprocess(rev: str) -> None:
    ref_python = ensure_ref_venv()
    with tempfile.TemporaryDirectory() as tmp:
        before = probe_sources(rev, Path(tmp))
        print(f"\n## In-process: one container, workers parked 14-16 frames deep (median ms, "
              f"requests spaced {0.25} s)\n")
        print(f"| workers (listed) | request | this tree | {rev} | this / {rev} | "
              "bare walk + JSON | this / bare | 3.2.0 from_container + JSON | this / 3.2.0 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        live: dict[tuple[str, int], float] = {}
        sys.path.insert(0, tmp)
        models = {"this": importlib.import_module("nameko_chassis.view.model"),
                  "old": importlib.import_module(
                      f"{model_sources(rev, Path(tmp)).name}.view.model")}
        parses: dict[tuple[str, int], dict[str, float]] = {}
        for n, extra in ((1000, ()), (5000, ("--all-listed",)), (10_000, ("--no-churn",))):
            ours = inprocess(Path(sys.executable), n, "probe",
                             str(REPO / "nameko_chassis" / "probe"), *extra,
                             "--payloads", f"{tmp}/this-{n}.json")
            old = inprocess(Path(sys.executable), n, "probe", str(before), *extra,
                            "--payloads", f"{tmp}/old-{n}.json")
            for side in ("this", "old"):  # in turns, as the agents were
                payloads = json.loads(Path(f"{tmp}/{side}-{n}.json").read_text())
                parses[(side, n)] = parse_times(models[side], payloads)
            ref = inprocess(ref_python, n, "ref") if ref_python else {}
            bare = statistics.median([ours["bare"], old["bare"]] +
                                     ([ref["bare"]] if ref else []))
            listed = n if "--all-listed" in extra else 1000
            label = f"{n} ({listed})"
            if listed == 1000:
                live[("this", n)], live[("old", n)] = ours["live"], old["live"]
            for key, name in (("live", "live refresh"),
                              ("turnover", "live, 10 young workers replaced (+10 listed)"),
                              ("first", "first refresh (sum of holds)"),
                              ("first_longest", "first refresh, longest hold"),
                              ("churn", "churn (every worker new; sum of holds)"),
                              ("churn_longest", "churn, longest hold"),
                              ("full", "full dump, JSON included")):
                if ours.get(key) is None and old.get(key) is None:
                    continue
                full = key == "full"
                print(f"| {label} | {name} | {ms(ours.get(key))} | {ms(old.get(key))} | "
                      f"{ratio(ours.get(key), old.get(key))} | {ms(bare) if full else ''} | "
                      f"{ratio(ours[key], bare) if full else ''} | "
                      f"{ms(ref.get('ref_full')) if full else ''} | "
                      f"{ratio(ours[key], ref.get('ref_full')) if full else ''} |")
            print(f"| {label} | full dump bytes | {ours['full_bytes']:,.0f} | "
                  f"{old['full_bytes']:,.0f} | {ratio(ours['full_bytes'], old['full_bytes'])} "
                  "| | | | |")
        print(f"\n10,000 workers with 1000 listed, live refresh: this tree "
              f"{ms(live[('this', 10_000)])} ms = "
              f"{ratio(live[('this', 10_000)], live[('this', 1000)])} of its 1000-worker "
              f"refresh; {rev} {ms(live[('old', 10_000)])} ms = "
              f"{ratio(live[('old', 10_000)], live[('old', 1000)])} of its own.")
        print("\n## Console: Snapshot.from_wire per refresh (median ms of 200; each tree "
              "parses what its own agent sent)\n")
        print(f"| workers (listed) | refresh parsed | this tree | {rev} | this / {rev} |")
        print("|---|---|---:|---:|---:|")
        for n, listed in ((1000, 1000), (5000, 5000), (10_000, 1000)):
            for key, name in (("live", "live refresh"), ("first", "first refresh"),
                              ("churn", "churn (every worker new)")):
                a, b = parses[("this", n)].get(key), parses[("old", n)].get(key)
                print(f"| {n} ({listed}) | {name} | {ms(a)} | {ms(b)} | {ratio(a, b)} |")
    print("\nlive/first/churn: a session refresh (stacks \"none\"); full: every stack, as "
          "--json asks it; each through the agent and its wire encoding (JSON, compression), "
          "timed in the service's process (not the socket).")


def _push_timed(namespace: dict[str, object], line: str) -> tuple[float, str]:
    """One bootstrap line as eventlet's backdoor runs it, and the hub's hold for it (ms): read
    from a socket whose buffer already holds it, then ``InteractiveConsole.push`` (the
    backdoor's compile of the line, then its exec) — what the line prints, too."""
    reader, writer = socket.socketpair()
    with reader, writer, reader.makefile("rb") as lines:
        sender = threading.Thread(target=writer.sendall, args=(line.encode() + b"\n",))
        sender.start()
        time.sleep(0.05)  # all of it in the socket buffers: reading it is not waiting for it
        out = io.StringIO()
        t0 = time.perf_counter()
        text = lines.readline().decode("utf-8").replace("\r\n", "\n")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code.InteractiveConsole(namespace).push(text.rstrip("\n"))
        took = (time.perf_counter() - t0) * 1000
        sender.join()
    return took, out.getvalue()


def table_bootstrap(rounds: int = 7) -> None:
    """Every line of a first attach's bootstrap, each timed as the hold it is: the largest
    line's hold and the total, as this tree ships the probe (in chunks) and in one chunk."""
    from chassis_console.targets.backdoor import _Payload, _shipped_sources

    sources = _shipped_sources()
    variants = {
        "compiled by the console, in chunks (this tree)": (_Payload(sources), True),
        "compiled by the console, one chunk": (_Payload(sources, chunk_bytes=1 << 30), True),
        "source, compiled in the service, in chunks": (_Payload(sources), False),
        "source, compiled in the service, one chunk": (
            _Payload(sources, chunk_bytes=1 << 30), False),
    }
    holds: dict[str, list[list[float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (payload, compiled) in variants.items():
            for key in [k for k in sys.modules
                        if k == payload.root or k.startswith(payload.root + ".")]:
                del sys.modules[key]
            namespace: dict[str, object] = {}
            samples = []
            for line in payload.lines("bench", compiled=compiled):
                took, out = _push_timed(namespace, line)
                assert not out.strip(), out
                samples.append(took)
            assert "__chassis__" in namespace
            holds[name].append(samples)
        time.sleep(0.2)
    print(f"\n## Bootstrap: the hub's hold for each line that ships the probe on a first attach "
          f"(median ms of {rounds}; each line read from a socket, compiled and run as the "
          "backdoor does)\n")
    print("| probe shipped as | lines | largest line bytes | largest line's hold | total hold |")
    print("|---|---:|---:|---:|---:|")
    for name, (payload, compiled) in variants.items():
        lines = payload.lines("bench", compiled=compiled)
        per_line = [statistics.median(col) for col in zip(*holds[name], strict=True)]
        total = statistics.median(sum(r) for r in holds[name])
        print(f"| {name} | {len(lines)} | {max(map(len, lines)):,} | {ms(max(per_line))} | "
              f"{ms(total)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="c67de0b")
    parser.add_argument("--skip-backdoor", action="store_true")
    args = parser.parse_args()
    table_inprocess(args.rev)
    table_bootstrap()
    if not args.skip_backdoor:
        sys.stdout.flush()
        subprocess.run([sys.executable, str(REPO / "bench" / "vs_rev.py"), args.rev],
                       cwd=REPO, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
