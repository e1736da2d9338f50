"""Bench worker: an in-process nameko container with N workers parked 14-16 frames deep; times the
agent's requests on it, spaced like a 1 Hz console. Prints one JSON line of medians (ms).

    python bench/_inprocess.py N probe PROBE_FOLDER [--all-listed] [--no-churn] [--payloads FILE]
    python bench/_inprocess.py N ref

``probe``: the agent of the probe package in PROBE_FOLDER (this tree's, or an earlier
revision's sources: the probe is standard library only), loaded under a name of its own:

- ``live``: a live refresh on a session that has seen every worker (stacks "none");
- ``first``: the first refresh of a new session;
- ``full``: a full dump (every stack) as ``--json`` asks it, JSON and compression included;
- ``turnover``: a live refresh after 10 young workers finished and 10 new ones came (a busy
  service's usual refresh: 1000 parked and 10 visitors, all listed);
- ``churn``: a refresh on a session after every worker was replaced by a new one;
- ``bare``: a bare frame walk + JSON of the same workers, the floor the issue compares with.

``--payloads FILE``: the frames a console would parse, as JSON (``first`` and ``live`` of a new
connection; ``before_churn`` and ``churn`` of the same connection around the first churn).

``ref``: nameko-chassis 3.2.0's ``ServiceState.from_container`` + JSON (run in bench/.venv-ref,
which has 3.2.0 under the same import name as ours), and the same bare walk.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import dataclasses  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from eventlet.event import Event  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402

#: Frames between the worker's entrypoint method and where it waits (14-16 with nameko's own).
DEPTH = 8
#: Seconds between two requests: a console refreshing at 1 Hz leaves the hub to the service
#: in between, and caches go cold; back-to-back requests read ~40% better than real.
SPACING = 0.25


class Parking:
    name = "parking"
    release = Event()
    visitors = Event()

    @rpc
    def park(self, seconds, note=None):
        descend(DEPTH, Parking.release)

    @rpc
    def visit(self, note=None):
        descend(DEPTH, Parking.visitors)


def descend(n, event):
    if n <= 0:
        event.wait()
    else:
        descend(n - 1, event)


def load_probe(folder: Path) -> types.ModuleType:
    """A probe package from its source folder, under a name of its own."""
    spec = importlib.util.spec_from_file_location("bench_probe", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench_probe"] = package
    spec.loader.exec_module(package)
    importlib.import_module("bench_probe.agent")
    return package


def park(container: ServiceContainer, n: int, generation: int = 0) -> None:
    """``n`` workers parked; their argument and context values are new in each
    ``generation`` (a churn's new workers carry values never seen before, as real calls do:
    no memo of an earlier refresh may answer for them)."""
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "park"]
    for i in range(n):
        container.spawn_worker(entrypoint, (60,), {"note": f"order {generation}-{i}"},
                               context_data={"user_id": f"u{generation}-{i}",
                                             "auth_token": "secret"})
    deadline = time.monotonic() + 60
    while True:
        eventlet.sleep(0.05)
        parked = [gt for gt in container._worker_threads.values() if gt.gr_frame is not None
                  and _depth(gt.gr_frame) >= DEPTH + 5]
        if len(parked) >= n or time.monotonic() > deadline:
            break


def _depth(frame) -> int:
    n = 0
    while frame is not None:
        n += 1
        frame = frame.f_back
    return n


def release_all(container: ServiceContainer) -> None:
    Parking.release.send(None)
    while container._worker_threads:
        eventlet.sleep(0.01)
    Parking.release = Event()


def timed(fn, repeat: int, spacing: float = SPACING) -> float:
    samples = []
    for _ in range(repeat):
        eventlet.sleep(spacing)
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def bare_walk(container: ServiceContainer) -> str:
    """The floor: every worker's stack walked and written as JSON, nothing else."""
    out = []
    for ctx, gt in list(container._worker_threads.items()):
        frame, stack = gt.gr_frame, []
        while frame is not None:
            code = frame.f_code
            stack.append({"file": code.co_filename, "line": frame.f_lineno,
                          "function": code.co_name})
            frame = frame.f_back
        out.append({"call_id": ctx.call_id, "stack": stack})
    return json.dumps(out)


def main() -> None:
    n, mode = int(sys.argv[1]), sys.argv[2]
    container = ServiceContainer(Parking)
    container.max_workers = n + 20  # room for the turnover row's 10 visitors
    container._worker_pool.resize(n + 20)
    park(container, n)
    gc.collect()
    out: dict[str, float] = {"workers": len(container._worker_threads)}
    out["bare"] = timed(lambda: bare_walk(container), 10)
    if mode == "ref":
        ServiceState = importlib.import_module("nameko_chassis.service").ServiceState
        out["ref_full"] = timed(lambda: json.dumps(
            dataclasses.asdict(ServiceState.from_container(container)), default=str), 5)
    else:
        probe = load_probe(Path(sys.argv[3]))
        agent, wire = probe.agent, probe.wire
        listed = n if "--all-listed" in sys.argv else 1000

        class ServiceRunner:  # what the agent recognises as nameko's runner
            service_map = {"parking": container}

        namespace = {"runner": ServiceRunner()}

        def request(**kwargs) -> str:
            kwargs.setdefault("max_workers", listed)
            return wire.result_frame(agent.collect(namespace, **kwargs), time.perf_counter())

        def holds(**kwargs) -> tuple[float, float]:
            """(sum of the request's holds of the hub, the longest one), ms: a revision
            without slices holds it in one piece."""
            t0 = time.perf_counter()
            request(**kwargs)
            t1 = time.perf_counter()
            found = getattr(agent, "_state", {}).get("holds")
            if found is None or found.first < t0:
                return (t1 - t0) * 1000, (t1 - t0) * 1000
            return found.total(t1) * 1000, found.longest(t1) * 1000

        def timed_holds(fn, repeat: int) -> tuple[float, float]:
            got = []
            for _ in range(repeat):
                eventlet.sleep(SPACING)
                got.append(fn())
            return (statistics.median(g[0] for g in got), statistics.median(g[1] for g in got))

        request(stacks="all")  # warm the caches, as a service that was asked before
        session = uuid.uuid4().hex
        request(session=session, stacks="none")
        out["live"] = timed(lambda: request(session=session, stacks="none"), 10)
        out["first"], out["first_longest"] = timed_holds(
            lambda: holds(session=uuid.uuid4().hex, stacks="none"), 10)
        # what the console parses (bench/snapshot.py times Snapshot.from_wire on them): a new
        # connection's first refresh, then its live refresh
        parsed = uuid.uuid4().hex
        payloads = {"first": request(session=parsed, stacks="none")}
        eventlet.sleep(SPACING)
        payloads["live"] = request(session=parsed, stacks="none")
        out["full"] = timed(lambda: request(stacks="all"), 10)
        out["full_bytes"] = len(request(stacks="all"))
        (visit,) = [e for e in container.entrypoints if e.method_name == "visit"]

        def visitors() -> None:  # the 10 young ones leave and 10 others come
            leaving, Parking.visitors = Parking.visitors, Event()
            for i in range(10):
                container.spawn_worker(visit, (), {"note": f"visitor {i}"},
                                       context_data={"user_id": f"v{i}"})
            leaving.send(None)

        visitors()
        eventlet.sleep(SPACING)
        request(session=session, stacks="none", max_workers=listed + 10)
        turnover = []
        for _ in range(10):
            visitors()
            eventlet.sleep(SPACING)
            t0 = time.perf_counter()
            request(session=session, stacks="none", max_workers=listed + 10)
            turnover.append((time.perf_counter() - t0) * 1000)
        out["turnover"] = statistics.median(turnover)
        Parking.visitors.send(None)
        churn = []
        payloads["before_churn"] = request(session=parsed, stacks="none")
        for generation in range(1, 1 + (0 if "--no-churn" in sys.argv else 5)):
            release_all(container)
            park(container, n, generation)
            eventlet.sleep(SPACING)
            churn.append(holds(session=session, stacks="none"))
            if generation == 1:
                payloads["churn"] = request(session=parsed, stacks="none")
        out["churn"] = statistics.median(c[0] for c in churn) if churn else None
        out["churn_longest"] = statistics.median(c[1] for c in churn) if churn else None
        if "--payloads" in sys.argv:
            Path(sys.argv[sys.argv.index("--payloads") + 1]).write_text(json.dumps(payloads))
    release_all(container)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
