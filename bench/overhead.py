"""Chassis overhead benchmark: service CPU per RPC, latency and throughput, side by side.

``nameko run`` processes, each on its own vhost of the broker at ``$AMQP_URI``, each running
one service ``bench`` with ``echo(x)``:

- ``bare nameko``: a plain nameko service;
- ``chassis, all on``: ``nameko_chassis.service.Service`` with every provider configured and
  exporting (``/metrics`` served, Sentry DSN and OTLP endpoint pointing at local sinks in this
  process), tracing always on (the default sampler: every span sampled and exported);
- ``chassis, tracing off``: the same with no OTLP endpoint;
- ``chassis Service, every provider off``: the control, ``Service`` with every provider set to
  ``None``: it should cost what bare nameko costs, so its ratio is the run's noise floor, and
  every chassis row is also given against it (``x control``);
- ``before, all on`` / ``before, tracing off``: the same two from an earlier revision
  (``--before REV``, default c67de0b, the tree before issue 13's work, as the other benches), checked out in
  ``bench/.rev-<sha>`` with a virtualenv of its own (as bench/vs_rev.py does);
- ``nameko-chassis 3.2.0``: 3.2.0's ``Service`` (Prometheus metrics), run from
  ``bench/.venv-ref``, a bench-only virtualenv — it has the same import name, so it never mixes
  with the project.

The variants are measured in interleaved rounds (the machine is shared, so drift hits all of them
alike): throughput with ``--concurrency`` calls in flight and the service process's CPU time
(``/proc/<pid>/stat``, every thread of it) per call, then latency one call at a time. Then, on
``chassis, all on`` and the ``--before`` tree's ``all on``: RPC latency one call at a time for
``--console-seconds`` while a console polls its backdoor at 10 Hz (``BackdoorClient.snapshot()``
in a thread, the live refresh a console makes), against the same service unpolled for as long in
the same rounds, the polls per second reached and the hub's hold per poll as the service's agent
reports it. The console (this tree's client and probe) is the same for both services: what
differs is the service's own work during a poll (its providers').

Targets (docs/chassis.md, DESIGN.md): CPU per RPC vs bare <= +20% all on, <= +5% tracing off;
RPC p99 with a console at 10 Hz <= +10%, with 10 polls/s reached.

    .venv/bin/python bench/overhead.py [--calls 1500] [--rounds 3] [--before c67de0b|''] [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _load import cpu_seconds, latencies, percentile, throughput, wait_answering  # noqa: E402
from _reference import ensure_ref_venv  # noqa: E402  (bench/ is this script's folder)
from chassis_console.launch import NamekoProcess, free_port  # noqa: E402
from chassis_console.targets.backdoor import BackdoorClient  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient, RpcTimeout  # noqa: E402

SOURCES = {
    "bench_bare": '''
from nameko.rpc import rpc

class Bench:
    name = "bench"

    @rpc
    def echo(self, x):
        return x
''',
    "bench_chassis": '''
from nameko.rpc import rpc
from nameko_chassis.service import Service

class Bench(Service):
    name = "bench"

    @rpc
    def echo(self, x):
        return x
''',
    # the control: the chassis base class with every provider switched off (the noise floor of
    # a run: it should cost what bare nameko costs)
    "bench_control": '''
from nameko.rpc import rpc
from nameko_chassis.service import Service

class Bench(Service):
    name = "bench"
    chassis = metrics = sentry = tracing = health = container = hub_watchdog = fleet = None

    @rpc
    def echo(self, x):
        return x
''',
}


class Sink:
    """Accepts any POST with 200 and counts requests and bytes (a Sentry or OTLP endpoint)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.bytes += len(self.rfile.read(length))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Variant:
    label: str
    module: str
    python: str
    config: dict[str, Any]
    env: dict[str, str]
    process: NamekoProcess | None = None
    client: RpcClient | None = None
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    hub_cpu_ms: list[float] = field(default_factory=list)  # the main thread's: the hub's
    latencies: list[float] = field(default_factory=list)
    quiet: list[float] = field(default_factory=list)  # latencies beside the console case
    polled: list[float] = field(default_factory=list)  # latencies under a 10 Hz console
    polls_per_s: list[float] = field(default_factory=list)
    poller: Poller | None = None  # a 10 Hz console on its backdoor (the console case)




class Poller:
    """A console's live refresh at ``hz`` on a service's backdoor, in a thread: one
    ``snapshot()`` per tick, the next tick at the previous deadline plus the period (no drift,
    no catching up after a slow one)."""

    def __init__(self, address: Any, hz: float = 10.0) -> None:
        self.client = BackdoorClient(address, timeout=30)
        self.client.connect()
        self.client.snapshot()  # bootstrap and the first full refresh happen before timing
        self.period = 1.0 / hz
        self.polls = 0
        #: the hub's hold per poll, as the service's agent reports it (read to write, ms)
        self.stalls: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self.client.snapshot()
            self.polls += 1
            if self.client.last_stall_ms is not None:
                self.stalls.append(self.client.last_stall_ms)
            next_at = max(next_at + self.period, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> Poller:
        self.polls = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.elapsed = time.perf_counter() - self.started

    def close(self) -> None:
        self.client.close()


def latencies_for(client: Any, seconds: float) -> list[float]:
    """Milliseconds of echo RPCs made one at a time for ``seconds``."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        out += latencies(client, 20)
    return out


def start(variant: Variant, workdir: Path) -> None:
    argv = [variant.python, "-m", "nameko", "run", "--config", "{config}",
            "--backdoor-port", "127.0.0.1:{port}", variant.module]
    proc = NamekoProcess([variant.module], variant.config, argv=argv, cwd=workdir,
                         env=variant.env, workdir=tempfile.mkdtemp(prefix="bench-"))
    proc.start()
    variant.process = proc
    variant.client = RpcClient(variant.config["AMQP_URI"], timeout=30)
    wait_answering(variant.client, RpcTimeout)








def before_python(rev: str) -> tuple[str, str] | None:
    """(label suffix, python) of the ``--before`` tree's own venv, made on first use."""
    if not rev:
        return None
    try:
        from vs_rev import tree_for

        tree = tree_for(rev)
    except Exception as exc:  # no git, a bad revision, a venv that does not build
        print(f"revision {rev} unavailable ({exc}): no 'before' columns", file=sys.stderr)
        return None
    return rev, str(tree / ".venv" / "bin" / "python")


def chassis_config(sentry: Sink, otlp: Sink | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{free_port()}"},
        "SENTRY": {"DSN": f"http://key@127.0.0.1:{sentry.port}/1"},
    }
    if otlp is not None:
        config["OTEL"] = {"EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}"}
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per throughput round")
    parser.add_argument("--latency-calls", type=int, default=300, help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--console-seconds", type=float, default=5.0,
                        help="seconds of sequential calls per round with and without a console")
    parser.add_argument("--before", default="c67de0b",
                        help="an earlier revision measured beside this tree ('' for none)")
    parser.add_argument("--only", nargs="*", default=None, metavar="LABEL",
                        help="measure only these rows (labels as printed, e.g. 'chassis, all on' "
                             "'c67de0b, all on'), beside bare nameko and the control: more "
                             "rounds of a few rows in the same time")
    args = parser.parse_args()

    base = amqp_uri_from_env()
    api = ManagementApi(base)
    sentry, otlp = Sink(), Sink()
    workdir = Path(tempfile.mkdtemp(prefix="chassis-bench-"))
    for module, source in SOURCES.items():
        (workdir / f"{module}.py").write_text(source)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_", "PYTHONPATH"))}

    all_on = Variant("chassis, all on", "bench_chassis", sys.executable,
                     chassis_config(sentry, otlp), env)
    control = Variant("chassis Service, every provider off", "bench_control", sys.executable,
                      {}, env)
    variants = [
        Variant("bare nameko", "bench_bare", sys.executable, {}, env),
        control,
        all_on,
        Variant("chassis, tracing off", "bench_chassis", sys.executable,
                chassis_config(sentry, None), env),
    ]
    before = before_python(args.before)
    if before is not None:
        rev, python = before
        before_on = Variant(f"{rev}, all on", "bench_chassis", python,
                            chassis_config(sentry, otlp), env)
        variants.append(before_on)
        variants.append(Variant(f"{rev}, tracing off", "bench_chassis", python,
                                chassis_config(sentry, None), env))
    ref_python = ensure_ref_venv()
    if ref_python is not None:
        # the same module as ours: the reference venv's `nameko_chassis` is 3.2.0's
        variants.append(Variant("nameko-chassis 3.2.0", "bench_chassis", str(ref_python),
                                {"WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}, env))
    else:
        print("nameko-chassis 3.2.0 unavailable: no 3.2.0 column", file=sys.stderr)

    if args.only is not None:
        keep = {"bare nameko", control.label, all_on.label, *args.only}
        unknown = set(args.only) - {v.label for v in variants}
        if unknown:
            parser.error(f"no such rows: {sorted(unknown)}; rows: {[v.label for v in variants]}")
        variants = [v for v in variants if v.label in keep]

    # the console case: this tree's all-on service, and the earlier tree's beside it (the same
    # console and probe against each: what differs is the service's own work per poll)
    polled = [v for v in variants if v is all_on or (before is not None and v is before_on)]
    vhosts = []
    try:
        for v in variants:
            vhost = f"chassis-bench-{os.getpid()}-{len(vhosts)}"
            api.create_vhost(vhost)
            vhosts.append(vhost)
            v.config = {"AMQP_URI": str(base.with_vhost(vhost)), **v.config}
            start(v, workdir)
        for v in polled:
            assert v.process is not None
            v.poller = Poller(v.process.address)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                assert v.client is not None and v.process is not None and v.process.pid
                pid = v.process.pid
                hub0 = cpu_seconds(pid, pid)
                rate, cpu = throughput(v.client, pid, args.calls, args.concurrency)
                v.hub_cpu_ms.append((cpu_seconds(pid, pid) - hub0) / args.calls * 1000)
                v.rates.append(rate)
                v.cpu_ms.append(cpu * 1000)
                v.latencies += latencies(v.client, args.latency_calls)
            # the console case: the same service's latencies unpolled, then polled, each for
            # --console-seconds (long enough for the poll rate to mean something)
            for v in polled:
                assert v.client is not None and v.poller is not None
                v.quiet += latencies_for(v.client, args.console_seconds)
                with v.poller:
                    v.polled += latencies_for(v.client, args.console_seconds)
                v.polls_per_s.append(v.poller.polls / v.poller.elapsed)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        time.sleep(1.5)  # let the export thread export
        port = all_on.config["CHASSIS"]["HTTP_ADDRESS"].rpartition(":")[2]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            scraped = resp.read().decode()
        calls_line = next((line for line in scraped.splitlines()
                           if line.startswith("nameko_worker_calls_total{") and 'entrypoint="echo"'
                           in line), "")
    finally:
        for v in variants:
            if v.poller is not None:
                v.poller.close()
        for v in variants:
            if v.client is not None:
                v.client.close()
            if v.process is not None:
                v.process.stop()
        for vhost in vhosts:
            api.delete_vhost(vhost)

    bare = variants[0]
    bare_rate = statistics.median(bare.rates)
    bare_cpu = statistics.median(bare.cpu_ms)
    bare_p50, bare_p99 = percentile(bare.latencies, 50), percentile(bare.latencies, 99)
    print(f"\n## RPC echo, {args.rounds} interleaved rounds x {args.calls} calls at concurrency "
          f"{args.concurrency}, + {args.latency_calls} sequential calls per round "
          f"(CPU: median over rounds; latency: percentiles over all rounds)\n")
    bare_hub = statistics.median(bare.hub_cpu_ms)
    control_cpu = statistics.median(control.cpu_ms)
    control_hub = statistics.median(control.hub_cpu_ms)
    control_rate = statistics.median(control.rates)
    print("| variant | CPU ms/call | x bare | x control | hub thread CPU ms/call | x bare "
          "| x control | p50 ms | x bare | p99 ms | x bare | calls/s | x bare | x control |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        rate, cpu = statistics.median(v.rates), statistics.median(v.cpu_ms)
        hub = statistics.median(v.hub_cpu_ms)
        p50, p99 = percentile(v.latencies, 50), percentile(v.latencies, 99)
        print(f"| {v.label} | {cpu:.3f} | {cpu / bare_cpu:.2f} | {cpu / control_cpu:.2f} "
              f"| {hub:.3f} | {hub / bare_hub:.2f} | {hub / control_hub:.2f} "
              f"| {p50:.2f} | {p50 / bare_p50:.2f} | {p99:.2f} | {p99 / bare_p99:.2f} "
              f"| {rate:.0f} | {rate / bare_rate:.2f} | {rate / control_rate:.2f} |")
    print("\nCPU: the service process, every thread (the OTLP export thread included); hub "
          "thread: its main thread alone, where every worker runs. x control: against "
          f"'{control.label}', which costs what bare nameko does but for noise (its own x bare "
          "is the run's noise floor).")
    print(f"\n## RPC latency with a console polling the backdoor at 10 Hz ({args.rounds} x "
          f"{args.console_seconds:g} s of sequential calls each way per service; the same "
          "console and probe against each)\n")
    print("| service | p50 ms no console | p50 at 10 Hz | ratio | p99 ms no console "
          "| p99 at 10 Hz | ratio | polls/s | hub hold per poll p50 / p99 / max ms "
          "| polls x hold |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    console: dict[str, Any] = {}
    for v in polled:
        if not v.polled or v.poller is None:
            continue
        quiet50, quiet99 = percentile(v.quiet, 50), percentile(v.quiet, 99)
        busy50, busy99 = percentile(v.polled, 50), percentile(v.polled, 99)
        polls = statistics.median(v.polls_per_s)
        stalls = v.poller.stalls or [0.0]
        print(f"| {v.label} | {quiet50:.2f} | {busy50:.2f} | {busy50 / quiet50:.2f} "
              f"| {quiet99:.2f} | {busy99:.2f} | {busy99 / quiet99:.2f} | {polls:.1f} "
              f"| {percentile(stalls, 50):.2f} / {percentile(stalls, 99):.2f} / "
              f"{max(stalls):.2f} | {statistics.mean(stalls) * polls / 10:.1f}% |")
        console[v.label] = {"p99_ratio": busy99 / quiet99, "polls_per_s": polls,
                            "hold_p50_ms": percentile(stalls, 50)}
    print("\nhub hold per poll: the agent's stall (read, collect, encode, write), as the "
          "service reports it; polls x hold: the share of the hub's time the console takes.")
    print(f"\nchassis exporting: /metrics {calls_line.strip() or '(no echo line!)'}; "
          f"OTLP sink got {otlp.requests} requests ({otlp.bytes} bytes); "
          f"Sentry sink got {sentry.requests} (no errors expected)")
    print(json.dumps({v.label: {"calls_per_s": statistics.median(v.rates),
                                "cpu_ms_per_call": statistics.median(v.cpu_ms),
                                "hub_cpu_ms_per_call": statistics.median(v.hub_cpu_ms),
                                "p50_ms": percentile(v.latencies, 50),
                                "p99_ms": percentile(v.latencies, 99)} for v in variants}
                     | {"console_10hz": console}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
