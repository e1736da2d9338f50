"""The operator's panels' cost: the backlog sampler and the log tail, on vs off, side by side.

Three ``nameko run`` processes, each on its own vhost of the broker at ``$AMQP_URI``, each
running one plain service ``bench`` with ``echo(x)`` and ``chat(x)`` (logs one INFO line), each
polled by a console thread at 1 Hz the way the live console does (a delta ``collect``):

- ``backlog off``: ``CHASSIS_BACKLOG=0`` (no sampler), no log tail;
- ``backlog on``: the sampler runs (passive declares every 2 s), no log tail;
- ``backlog on + log tail``: the same, and the console fetches ``logs`` after every refresh.

Rounds are interleaved (the machine is shared: drift hits every variant alike): service CPU per
``chat`` call with ``--concurrency`` calls in flight (``/proc/<pid>/stat``), latency of ``chat``
one call at a time, and the service stall per refresh (how long the agent held the hub for
``collect``, from its frame). Design budget: service stall per refresh at 1000 workers <= 1 ms
(this bench has none in flight: it shows what the panels add, not the collector's cost).

    .venv/bin/python bench/panels.py [--calls 1500] [--rounds 3] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _load import percentile, throughput, wait_answering  # noqa: E402
from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient, RpcTimeout  # noqa: E402

SOURCE = '''import logging

from eventlet.event import Event
from nameko.rpc import rpc

GATE = Event()

log = logging.getLogger("bench")


class Bench:
    name = "bench"

    @rpc
    def echo(self, x):
        return x

    @rpc
    def chat(self, x):
        log.info("chat %s with token=%s", x, "s3cr3t-value")
        return x

    @rpc
    def park(self):
        GATE.wait()
'''


@dataclass
class Variant:
    label: str
    env: dict[str, str]
    tail: bool
    process: NamekoProcess | None = None
    client: RpcClient | None = None
    console: BackdoorClient | None = None
    cpu_us: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)
    tail_stalls: list[float] = field(default_factory=list)
    records: int = 0
    sampler_hub_ms: list[float] = field(default_factory=list)


def poll(variant: Variant, stop: threading.Event) -> None:
    """A console at 1 Hz: a delta snapshot, then (with the tail) the new log records."""
    console = variant.console
    assert console is not None
    cursor = 0
    while not stop.wait(1.0):
        console.snapshot(stacks="none")
        if console.last_stall_ms is not None:
            variant.stalls.append(console.last_stall_ms)
        if variant.label != "backlog off":
            hub = console.request("backlog").get("hub_ms")
            if hub is not None:
                variant.sampler_hub_ms.append(hub)
        if variant.tail:
            answer = console.request("logs", after=cursor, keep_s=15)
            cursor = answer["cursor"]
            variant.records += len(answer["records"])
            if console.last_stall_ms is not None:
                variant.tail_stalls.append(console.last_stall_ms)


def chat_cpu(variant: Variant, calls: int, concurrency: int) -> float:
    client, pid = variant.client, variant.process.pid if variant.process else None
    assert client is not None and pid is not None
    return throughput(client, pid, calls, concurrency, method="chat")[1] * 1e6


def chat_latencies(variant: Variant, calls: int) -> list[float]:
    assert variant.client is not None
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        variant.client.call("bench", "chat", i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per CPU round")
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1000,
                        help="workers parked in each service while measuring")
    args = parser.parse_args()

    base = amqp_uri_from_env()
    api = ManagementApi(base)
    workdir = Path(tempfile.mkdtemp(prefix="chassis-bench-op-"))
    (workdir / "bench_operator.py").write_text(SOURCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHASSIS_")}
    variants = [Variant("backlog off", {**env, "CHASSIS_BACKLOG": "0"}, tail=False),
                Variant("backlog on", env, tail=False),
                Variant("backlog on + log tail", env, tail=True)]
    vhosts: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for i, variant in enumerate(variants):
            vhost = f"chassis-bench-op-{os.getpid()}-{i}"
            api.create_vhost(vhost)
            vhosts.append(vhost)
            uri = str(base.with_vhost(vhost))
            config = {"AMQP_URI": uri, "max_workers": args.workers + 50,
                      "PREFETCH_COUNT": args.workers + 50}
            proc = NamekoProcess(["bench_operator"], config, cwd=workdir,
                                 env=variant.env, workdir=tempfile.mkdtemp(prefix="bench-op-"))
            proc.start()
            variant.process = proc
            variant.client = RpcClient(uri, timeout=30)
            wait_answering(variant.client, RpcTimeout)
            variant.console = BackdoorClient(proc.address, timeout=10)
            variant.console.connect()
        for variant in variants:  # parked workers: the refresh's stall at scale
            assert variant.client is not None
            for _ in range(args.workers):
                variant.client.call_async("bench", "park")
        deadline = time.monotonic() + 60
        for variant in variants:
            assert variant.process is not None
            with BackdoorClient(variant.process.address) as probe:
                while time.monotonic() < deadline and probe.collect(stacks="none")[
                        "containers"][0]["workers_running"] < args.workers:
                    time.sleep(0.2)
        for variant in variants:
            thread = threading.Thread(target=poll, args=(variant, stop), daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(3)  # the samplers have sampled; the tail is attached
        for _ in range(args.rounds):
            for variant in variants:
                variant.cpu_us.append(chat_cpu(variant, args.calls, args.concurrency))
            for variant in variants:
                variant.latencies += chat_latencies(variant, args.latency_calls)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for variant in variants:
            if variant.console is not None:
                try:  # let the parked workers go, so the service stops at once
                    variant.console.conn.command("__import__('bench_operator').GATE.send(None)")
                except Exception:  # stopping anyway
                    pass
                variant.console.close()
            if variant.client is not None:
                variant.client.close()
            if variant.process is not None:
                variant.process.stop()
        for vhost in vhosts:
            api.delete_vhost(vhost)

    base_cpu = statistics.median(variants[0].cpu_us)
    base_p99 = percentile(variants[0].latencies, 99)
    print(f"chat() RPCs (each logs one INFO line), {args.rounds} interleaved rounds, "
          f"{args.workers} workers parked in each service, a console polling each at 1 Hz")
    print(f"{'variant':<24} {'CPU/call':>10} {'vs off':>7} {'p50':>8} {'p99':>8} {'vs off':>7} "
          f"{'stall/refresh p50':>18} {'p95':>7} {'logs op p50':>12}")
    for v in variants:
        cpu = statistics.median(v.cpu_us)
        p99 = percentile(v.latencies, 99)
        tail = f"{statistics.median(v.tail_stalls):.3f} ms" if v.tail_stalls else "-"
        print(f"{v.label:<24} {cpu:>8.0f}µs {cpu / base_cpu:>6.2f}x "
              f"{percentile(v.latencies, 50):>6.2f}ms {p99:>6.2f}ms {p99 / base_p99:>6.2f}x "
              f"{statistics.median(v.stalls):>15.3f} ms {percentile(v.stalls, 95):>5.3f}ms "
              f"{tail:>12}")
    print(f"log records shipped to the tailing console: {variants[2].records}")
    hub = variants[1].sampler_hub_ms
    if hub:
        print(f"backlog sampler, its own hub time per round (every 2 s, {args.workers} workers): "
              f"p50 {statistics.median(hub):.3f} ms, max {max(hub):.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
