"""Chassis overhead benchmark: RPC throughput, latency and service CPU per call, side by side.

Three ``nameko run`` processes, each on its own vhost of the broker at ``$AMQP_URI``, each running
one service ``bench`` with ``echo(x)``:

- ``bare``: a plain nameko service;
- ``chassis``: ``nameko_chassis.service.Service`` with every provider configured and exporting
  (``/metrics`` served, Sentry DSN and OTLP endpoint pointing at local sinks in this process);
- ``chassis, tracing off``: the same with no OTLP endpoint (what the OpenTelemetry SDK costs);
- ``chassis 3.2.0``: nameko-chassis 3.2.0's ``Service`` (Prometheus metrics), run from
  ``bench/.venv-ref``, a bench-only virtualenv — it has the same import name, so it never mixes
  with the project.

The variants are measured in interleaved rounds (the machine is shared, so drift hits all of them
alike): throughput with ``--concurrency`` calls in flight, latency one call at a time, and the
service process's CPU time (``/proc/<pid>/stat``) per call. Target (docs/chassis.md): chassis
throughput >= 0.90x bare, CPU per call <= +10%.

    .venv/bin/python bench/overhead.py [--calls 1500] [--rounds 3] [--concurrency 10]
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

from _load import latencies, percentile, throughput, wait_answering  # noqa: E402
from _reference import ensure_ref_venv  # noqa: E402  (bench/ is this script's folder)
from chassis_console.launch import NamekoProcess, free_port  # noqa: E402

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
    latencies: list[float] = field(default_factory=list)




def start(variant: Variant, workdir: Path) -> None:
    argv = [variant.python, "-m", "nameko", "run", "--config", "{config}",
            "--backdoor-port", "127.0.0.1:{port}", variant.module]
    proc = NamekoProcess([variant.module], variant.config, argv=argv, cwd=workdir,
                         env=variant.env, workdir=tempfile.mkdtemp(prefix="bench-"))
    proc.start()
    variant.process = proc
    variant.client = RpcClient(variant.config["AMQP_URI"], timeout=30)
    wait_answering(variant.client, RpcTimeout)








def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per throughput round")
    parser.add_argument("--latency-calls", type=int, default=300, help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    base = amqp_uri_from_env()
    api = ManagementApi(base)
    sentry, otlp = Sink(), Sink()
    workdir = Path(tempfile.mkdtemp(prefix="chassis-bench-"))
    for module, source in SOURCES.items():
        (workdir / f"{module}.py").write_text(source)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_", "PYTHONPATH"))}
    metrics_port = free_port()

    variants = [
        Variant("bare nameko", "bench_bare", sys.executable, {}, env),
        Variant("chassis (all providers)", "bench_chassis", sys.executable, {
            "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{metrics_port}"},
            "SENTRY": {"DSN": f"http://key@127.0.0.1:{sentry.port}/1"},
            "OTEL": {"EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}"},
        }, env),
    ]
    # the same service without tracing, to show what the OpenTelemetry SDK costs per call
    variants.append(Variant("chassis, tracing off", "bench_chassis", sys.executable, {
        "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{free_port()}"},
        "SENTRY": {"DSN": f"http://key@127.0.0.1:{sentry.port}/1"},
    }, env))
    ref_python = ensure_ref_venv()
    if ref_python is not None:
        # the same module as ours: the reference venv's `nameko_chassis` is 3.2.0's
        variants.append(Variant("nameko-chassis 3.2.0", "bench_chassis", str(ref_python),
                                {"WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}, env))
    else:
        print("nameko-chassis 3.2.0 unavailable: measuring bare and chassis only", file=sys.stderr)

    vhosts = []
    try:
        for v in variants:
            vhost = f"chassis-bench-{os.getpid()}-{len(vhosts)}"
            api.create_vhost(vhost)
            vhosts.append(vhost)
            v.config = {"AMQP_URI": str(base.with_vhost(vhost)), **v.config}
            start(v, workdir)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                assert v.client is not None and v.process is not None and v.process.pid
                rate, cpu = throughput(v.client, v.process.pid, args.calls, args.concurrency)
                v.rates.append(rate)
                v.cpu_ms.append(cpu * 1000)
                v.latencies += latencies(v.client, args.latency_calls)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        time.sleep(1.5)  # let the batch span processor export
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            scraped = resp.read().decode()
        calls_line = next((line for line in scraped.splitlines()
                           if line.startswith("nameko_worker_calls_total{") and 'entrypoint="echo"'
                           in line), "")
    finally:
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
    print(f"\nRPC echo, {args.rounds} interleaved rounds x {args.calls} calls at concurrency "
          f"{args.concurrency}, + {args.latency_calls} sequential calls per round "
          f"(medians over rounds)\n")
    header = (f"{'variant':<26}{'calls/s':>9}{'x bare':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'CPU ms/call':>13}{'x bare':>8}")
    print(header)
    print("-" * len(header))
    for v in variants:
        rate, cpu = statistics.median(v.rates), statistics.median(v.cpu_ms)
        print(f"{v.label:<26}{rate:>9.0f}{rate / bare_rate:>8.2f}"
              f"{percentile(v.latencies, 50):>8.2f}{percentile(v.latencies, 99):>8.2f}"
              f"{cpu:>13.3f}{cpu / bare_cpu:>8.2f}")
    print(f"\nchassis exporting: /metrics {calls_line.strip() or '(no echo line!)'}; "
          f"OTLP sink got {otlp.requests} requests ({otlp.bytes} bytes); "
          f"Sentry sink got {sentry.requests} (no errors expected)")
    print(json.dumps({v.label: {"calls_per_s": statistics.median(v.rates),
                                "cpu_ms_per_call": statistics.median(v.cpu_ms),
                                "p50_ms": percentile(v.latencies, 50),
                                "p99_ms": percentile(v.latencies, 99)} for v in variants}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
