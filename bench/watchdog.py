"""Hub watchdog benchmark: service CPU per RPC, p99 latency and idle CPU, watchdog on vs off,
side by side in one run; then how fast a fresh console hears about a blocked hub.

Four ``nameko run`` processes, each on its own vhost of the broker at ``$AMQP_URI``, each running
one service ``bench`` with ``echo(x)`` and ``spin(seconds)``:

- ``plain, watchdog off`` / ``plain, watchdog on``: a plain nameko service, attached once by a
  console (which starts the watchdog; ``CHASSIS_WATCHDOG=0`` keeps it off);
- ``chassis, watchdog off`` / ``chassis, watchdog on``: ``nameko_chassis.service.Service`` with
  metrics on (``CHASSIS.WATCHDOG`` false and ``CHASSIS_WATCHDOG=0`` / the defaults).

Rounds are interleaved (the machine is shared: drift hits every variant alike): throughput with
``--concurrency`` calls in flight and the service's CPU time per call (``/proc/<pid>/stat``),
latency one call at a time, and CPU over ``--idle`` seconds doing nothing (the heartbeat's cost).
Target (DESIGN.md): watchdog on <= +1% CPU per RPC.

    .venv/bin/python bench/watchdog.py [--calls 1500] [--rounds 3] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _load import cpu_seconds, latencies, percentile, throughput, wait_answering  # noqa: E402
from chassis_console.launch import NamekoProcess, free_port  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient, BlockedError  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient, RpcTimeout  # noqa: E402

_METHODS = '''
    @rpc
    def echo(self, x):
        return x

    @rpc
    def spin(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass
        return seconds
'''
SOURCES = {
    "bench_wd_plain": "import time\nfrom nameko.rpc import rpc\n\n\nclass Bench:\n"
                      "    name = 'bench'\n" + _METHODS,
    "bench_wd_chassis": "import time\nfrom nameko.rpc import rpc\n"
                        "from nameko_chassis.service import Service\n\n\nclass Bench(Service):\n"
                        "    name = 'bench'\n" + _METHODS,
}


@dataclass
class Variant:
    label: str
    module: str
    config: dict[str, Any]
    env: dict[str, str]
    process: NamekoProcess | None = None
    client: RpcClient | None = None
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    idle_pct: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    watchdog: bool = False




def start(variant: Variant, workdir: Path) -> None:
    proc = NamekoProcess([variant.module], variant.config, cwd=workdir, env=variant.env,
                         workdir=tempfile.mkdtemp(prefix="bench-wd-"))
    proc.start()
    variant.process = proc
    with BackdoorClient(proc.address) as console:  # one attach, as for every variant
        variant.watchdog = bool((console.info.get("watchdog") or {}).get("api"))
    variant.client = RpcClient(variant.config["AMQP_URI"], timeout=30)
    wait_answering(variant.client, RpcTimeout)






def idle(variants: list[Variant], seconds: float) -> None:
    pids = [v.process.pid for v in variants if v.process and v.process.pid]
    before = [cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    for v, pid, cpu0 in zip(variants, pids, before, strict=True):
        v.idle_pct.append((cpu_seconds(pid) - cpu0) / seconds * 100)




def blocked_answer(variant: Variant, seconds: float = 3.0) -> tuple[float, str]:
    """Block the hub with ``spin`` and time a fresh console's answer."""
    assert variant.client is not None and variant.process is not None
    pending = variant.client.call_async("bench", "spin", seconds)
    time.sleep(0.6)  # the spin has started and crossed the threshold
    t0 = time.perf_counter()
    try:
        with BackdoorClient(variant.process.address, timeout=10) as client:
            client.collect()
        outcome = "answered normally (not blocked?)"
    except BlockedError as exc:
        culprit = exc.incident.get("culprit") or {}
        outcome = f"blocked by {culprit.get('entrypoint')}"
    except Exception as exc:  # unresponsive without a watchdog
        outcome = type(exc).__name__
    took = (time.perf_counter() - t0) * 1000
    pending.result(30)
    return took, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per throughput round")
    parser.add_argument("--latency-calls", type=int, default=300,
                        help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds per round")
    args = parser.parse_args()

    base = amqp_uri_from_env()
    api = ManagementApi(base)
    workdir = Path(tempfile.mkdtemp(prefix="chassis-bench-wd-"))
    for module, source in SOURCES.items():
        (workdir / f"{module}.py").write_text(source)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(REPO)
    off = {**env, "CHASSIS_WATCHDOG": "0"}
    variants = [
        Variant("plain, watchdog off", "bench_wd_plain", {}, off),
        Variant("plain, watchdog on", "bench_wd_plain", {}, env),
        Variant("chassis, watchdog off", "bench_wd_chassis", {
            "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{free_port()}", "WATCHDOG": False}}, off),
        Variant("chassis, watchdog on", "bench_wd_chassis", {
            "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}}, env),
    ]
    vhosts = []
    try:
        for i, v in enumerate(variants):
            name = f"chassis-bench-wd-{os.getpid()}-{i}"
            api.create_vhost(name)
            vhosts.append(name)
            v.config["AMQP_URI"] = str(base.with_vhost(name))
            start(v, workdir)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else list(reversed(variants))
            for v in order:
                assert v.client is not None and v.process is not None and v.process.pid
                rate, cpu = throughput(v.client, v.process.pid, args.calls, args.concurrency)
                v.rates.append(rate)
                v.cpu_us.append(cpu * 1e6)
                v.latencies += latencies(v.client, args.latency_calls)
            idle(variants, args.idle)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

        print(f"\nwatchdog on vs off: {args.rounds} interleaved rounds, {args.calls} calls at "
              f"concurrency {args.concurrency}, {args.latency_calls} sequential calls, "
              f"{args.idle:g}s idle\n")
        header = (f"{'variant':<24}{'watchdog':>9}{'calls/s':>10}{'CPU/RPC µs':>12}"
                  f"{'vs off':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs off':>9}{'idle CPU':>10}")
        print(header)
        print("-" * len(header))
        for i, v in enumerate(variants):
            ref = variants[i - 1] if i % 2 else v
            cpu = statistics.median(v.cpu_us)
            p99 = percentile(v.latencies, 99)
            cpu_delta = (cpu / statistics.median(ref.cpu_us) - 1) * 100
            p99_delta = (p99 / percentile(ref.latencies, 99) - 1) * 100
            print(f"{v.label:<24}{'yes' if v.watchdog else 'no':>9}"
                  f"{statistics.median(v.rates):>10.0f}{cpu:>12.1f}"
                  f"{(f'{cpu_delta:+.1f}%' if i % 2 else ''):>9}"
                  f"{percentile(v.latencies, 50):>9.2f}{p99:>9.2f}"
                  f"{(f'{p99_delta:+.1f}%' if i % 2 else ''):>9}"
                  f"{statistics.median(v.idle_pct):>9.2f}%")
        print("\nCPU/RPC: median over rounds of service CPU (user+sys) / calls; "
              "p50/p99 over all sequential calls; idle CPU: % of a core, median")

        print("\na fresh console while the hub is blocked by a 3 s spin:")
        for v in (variants[0], variants[1], variants[3]):
            took, outcome = blocked_answer(v)
            print(f"  {v.label:<24} {took:>8.0f} ms  {outcome}")
    finally:
        for v in variants:
            if v.client is not None:
                v.client.close()
            if v.process is not None:
                v.process.stop()
        for name in vhosts:
            api.delete_vhost(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
