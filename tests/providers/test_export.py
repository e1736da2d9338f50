"""OTLP export off the hub (nameko_chassis/providers/export.py), in this eventlet-patched test
process: the real OTLP/HTTP exporter posts from a real OS thread into a local sink that decodes
the protobuf; the hub keeps running while a batch is exported; a full queue drops and counts
instead of blocking; the export thread's log records are emitted on the hub."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import eventlet
from eventlet import patcher
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from nameko_chassis.providers.export import OffHubSpanProcessor
from tests.harness import wait_for
from tests.services.chassis_sinks import OtlpSink

real_threading = patcher.original("threading")
HUB_THREAD = real_threading.get_ident()  # this test process's hub runs on its main thread


class Watched(SpanExporter):
    """Delegates to a real exporter and notes the OS thread of every export; ``burn_s`` adds
    that much pure-Python CPU work per export, the kind of work encoding a big batch is."""

    def __init__(self, exporter: SpanExporter, burn_s: float = 0.0) -> None:
        self.exporter = exporter
        self.burn_s = burn_s
        self.threads: list[int] = []
        self.release = real_threading.Event()
        self.release.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.threads.append(real_threading.get_ident())
        self.release.wait(30)
        end = time.perf_counter() + self.burn_s
        while time.perf_counter() < end:
            sum(range(200))
        return self.exporter.export(spans)

    def shutdown(self) -> None:
        self.exporter.shutdown()


def tracer(processor: OffHubSpanProcessor) -> Any:
    provider = TracerProvider(resource=Resource({"service.name": "export-test"}))
    provider.add_span_processor(processor)
    return provider, provider.get_tracer("test")


def make_spans(t: Any, n: int, prefix: str = "span") -> None:
    for i in range(n):
        t.start_span(f"{prefix}-{i}", attributes={"i": i}).end()


def test_spans_are_exported_from_a_real_thread_not_the_hub() -> None:
    with OtlpSink() as sink:
        watched = Watched(OTLPSpanExporter(endpoint=f"{sink.endpoint}/v1/traces", timeout=10))
        processor = OffHubSpanProcessor(watched, schedule_delay_ms=60_000)
        provider, t = tracer(processor)
        try:
            make_spans(t, 1100)  # two full batches of 512 wake the thread, 76 wait for a flush
            assert processor.force_flush(20_000)
            assert len(sink.find(service="export-test")) == 1100
            assert {s["name"] for s in sink.find()} >= {"span-0", "span-1099"}
            assert len(watched.threads) == 3  # 512 + 512 + 76
            assert set(watched.threads) == {processor.thread_ident}
            assert HUB_THREAD not in watched.threads
            assert processor.exported == 1100 and processor.dropped == 0
        finally:
            provider.shutdown()


def test_the_hub_runs_on_while_a_big_batch_is_exported() -> None:
    gaps: list[float] = []
    stop = False

    def heartbeat() -> None:
        last = time.perf_counter()
        while not stop:
            eventlet.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    with OtlpSink() as sink:
        # each export burns 0.5 s of CPU on top of encoding and posting: on the hub, that would
        # be a 0.5 s gap in the heartbeat
        watched = Watched(OTLPSpanExporter(endpoint=f"{sink.endpoint}/v1/traces", timeout=10),
                          burn_s=0.5)
        processor = OffHubSpanProcessor(watched, schedule_delay_ms=60_000)
        provider, t = tracer(processor)
        beat = eventlet.spawn(heartbeat)
        try:
            make_spans(t, 1024)  # two full batches: the thread wakes and exports them
            started = len(gaps)
            assert processor.force_flush(20_000)
            during = gaps[started:]
        finally:
            stop = True
            beat.wait()
            provider.shutdown()
        assert len(sink.find(service="export-test")) == 1024
        assert len(watched.threads) == 2
        # the GIL passes between threads every 5 ms (sys.getswitchinterval): a beat can be a
        # few switch intervals late (more on a loaded machine), never an export long
        assert max(during) < 0.25, f"the hub stalled {max(during) * 1000:.0f} ms"
        assert len(during) >= 10, during  # it beat all along the exports (1 s of CPU)


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    watched = Watched(SpanExporterCounting())
    watched.release.clear()  # the first export hangs: the queue fills behind it
    processor = OffHubSpanProcessor(watched, max_queue_size=10, max_export_batch_size=10,
                                    schedule_delay_ms=60_000)
    provider, t = tracer(processor)
    try:
        make_spans(t, 10, "first")  # a full batch: the thread takes it and hangs in export
        wait_for(lambda: len(watched.threads) == 1 and not processor.queue,
                 what="the export thread to take the first batch")
        make_spans(t, 25, "second")  # 10 fit, 15 are dropped, none waits
        assert len(processor.queue) == 10
        assert processor.dropped == 15
        watched.release.set()
        assert processor.force_flush(10_000)
        exported = watched.exporter.names  # type: ignore[attr-defined]
        assert len(exported) == 20
        assert exported[:10] == [f"first-{i}" for i in range(10)]
        assert exported[10:] == [f"second-{i}" for i in range(10)]
    finally:
        watched.release.set()
        provider.shutdown()


class SpanExporterCounting(SpanExporter):
    def __init__(self) -> None:
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.names.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS


class Emitted(logging.Handler):
    """Notes each record it handles with the OS thread that handled it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, real_threading.get_ident()))


def test_the_export_threads_log_records_are_emitted_on_the_hub() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: the exporter logs its failure
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Emitted()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
        processor = OffHubSpanProcessor(exporter, schedule_delay_ms=60_000)
        provider, t = tracer(processor)
        try:
            make_spans(t, 3)
            # the export fails within its 1 s timeout; the flush then emits what it logged
            assert processor.force_flush(10_000)
        finally:
            provider.shutdown()
        exporter_records = [(n, ident) for n, ident in handler.seen
                            if n.startswith("opentelemetry.exporter")]
        assert exporter_records
        assert {ident for _, ident in exporter_records} == {HUB_THREAD}
        assert processor.failed_batches >= 1
    finally:
        root.removeHandler(handler)
