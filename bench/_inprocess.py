"""Bench worker: an in-process nameko container with N parked workers; times collectors on it.

Run by bench/snapshot.py, once in the project's venv and once in the reference venv with
nameko-chassis 3.2.0 (which uses the same import name, hence the separate process). Our probe
is loaded from its source folder, so both are measured on the same runner.
Prints one JSON line of timings.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import contextlib  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

from eventlet.event import Event  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402

RELEASE = Event()


def wait_here(seconds):
    RELEASE.wait()


class Parking:
    name = "parking"

    @rpc
    def park(self, seconds, note=None):
        wait_here(seconds)


def load_probe(folder: Path) -> types.ModuleType:
    """Our probe package from its source folder, under a name of its own (the reference venv
    has nameko-chassis 3.2.0 under the same import name as ours)."""
    spec = importlib.util.spec_from_file_location("bench_probe", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench_probe"] = package
    spec.loader.exec_module(package)
    importlib.import_module("bench_probe.collect")
    return package


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    n, mode, repo = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    container = ServiceContainer(Parking)
    container.max_workers = n
    container._worker_pool.resize(n)
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "park"]
    for i in range(n):
        container.spawn_worker(entrypoint, (60,), {"note": f"order {i}"},
                               context_data={"user_id": f"u{i}", "auth_token": "secret"})
    eventlet.sleep(0.2)  # let every worker reach wait_here
    assert len(container._worker_threads) == n

    class Runner:  # what debug_runner(runner) expects: .containers / .service_map
        containers = [container]
        service_map = {"parking": container}

    out: dict[str, float] = {}
    intro = load_probe(repo / "nameko_chassis" / "probe").collect
    intro.collect(container, stacks="none")  # warm caches, as the second refresh would be
    out["live"] = timed(lambda: intro.collect(container, stacks="none"), 20)
    out["live_json"] = timed(lambda: json.dumps(intro.collect(container, stacks="none")), 20)
    out["full"] = timed(lambda: intro.collect(container, stacks="all"), 10)
    if mode == "ref":
        # nameko-chassis 3.2.0, from the reference venv (same import name as ours)
        ref_debug_module = importlib.import_module("nameko_chassis.debug")
        ServiceState = importlib.import_module("nameko_chassis.service").ServiceState
        debug_runner = ref_debug_module.debug_runner

        out["ref_state"] = timed(lambda: ServiceState.from_container(container), 5)
        buf = io.StringIO()

        def ref_debug() -> None:
            buf.seek(0)
            buf.truncate()
            with contextlib.redirect_stdout(buf):
                debug_runner(Runner)

        out["ref_debug"] = timed(ref_debug, 1 if n >= 1000 else 3)
        out["ref_debug_bytes"] = len(buf.getvalue().encode())
    else:
        from nameko_chassis.debug import debug_container

        buf = io.StringIO()

        def our_debug() -> None:
            buf.seek(0)
            buf.truncate()
            debug_container(container, file=buf)

        out["debug"] = timed(our_debug, 3)
        out["debug_bytes"] = len(buf.getvalue().encode())
    RELEASE.send(None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
