"""OTLP span export off the eventlet hub: :class:`OffHubSpanProcessor`.

The SDK's ``BatchSpanProcessor`` exports from a thread of its own, but in a monkey-patched
process that thread is a greenthread: encoding a 512-span batch to protobuf and posting it ran
on the hub (~10 ms during which no worker ran). Here a worker's finished span costs one
``deque.append`` on the hub; a real OS thread (``eventlet.patcher.original("threading")``)
takes the spans in batches, encodes and exports them. The queue is bounded: when it is full a
span is dropped and counted (:attr:`OffHubSpanProcessor.dropped`), a worker never waits.

Worker spans are written to OTLP protobuf by :mod:`.otlp` and posted by the exporter's own
HTTP client (:func:`.privates.otlp_poster`); any other exporter gets ``export(spans)`` with the
SDK's ``ReadableSpan``s.

Encoding is CPU work, and the thread holds the GIL while it encodes: it hands the GIL over
every :data:`PAUSE_EVERY` spans (a real ``time.sleep(0)``, ~0.5 ms of encoding apart), so the
hub, waking meanwhile, waits about that long at most, and the interpreter's switch interval (a
process-wide setting) is left alone. An exporter of another kind is given the whole batch in
one ``export()`` call: the hub then waits at most one switch interval (5 ms by default).

The exporter's HTTP client runs in that thread with eventlet's green sockets, which then use a
hub of that thread's own (eventlet keeps one hub per OS thread). What must not cross threads is
a green lock one thread holds while the other waits: the waiter would be woken by a greenlet
switch across threads. So nothing here takes a lock the hub takes — the queue is a ``deque``
(atomic appends and pops), the wake-up an original ``threading.Event``; the encoder takes the
spans' own (green) locks, uncontended: those spans are ended, the hub takes them no more — and
log records the
export thread makes (the exporter's warnings about a dead endpoint) are not emitted there, where
they would take the logging handlers' green locks: they are queued and emitted on the hub by the
next span that ends, a flush or the shutdown.

Settings are the SDK's batch processor's: ``OTEL_BSP_SCHEDULE_DELAY`` (ms, 5000),
``OTEL_BSP_MAX_QUEUE_SIZE`` (2048), ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from . import privates
from .otlp import encode_request, spans_of

log = logging.getLogger(__name__)

#: Loggers the export thread's records come from: the OpenTelemetry SDK and exporter, and the
#: HTTP client under it. Their records made on the export thread are emitted on the hub.
THREAD_LOGGERS = ("opentelemetry", "urllib3", "requests", "charset_normalizer")

#: Log records of the export thread kept for the hub at most (older ones are dropped).
MAX_HELD_RECORDS = 100

#: Spans the export thread encodes between two hand-overs of the GIL to the hub (~10 µs each).
PAUSE_EVERY = 48

#: Seconds between two "spans dropped" warnings.
DROP_WARNING_INTERVAL = 10.0


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _original_threading() -> Any:
    try:
        from eventlet import patcher

        return patcher.original("threading")
    except ImportError:  # no eventlet: the standard module is the real one
        import threading

        return threading


def _original_sleep() -> None:
    """Hand the GIL to a thread waiting for it (the hub): a real ``time.sleep(0)`` releases
    it; eventlet's green one, in a patched process, would not."""
    try:
        from eventlet import patcher

        patcher.original("time").sleep(0)
    except ImportError:
        time.sleep(0)


def _green_threads() -> bool:
    """Whether ``threading`` is eventlet's (then logging's locks are green ones)."""
    try:
        from eventlet import patcher

        return bool(patcher.is_monkey_patched("thread"))
    except ImportError:
        return False


class _HoldThreadRecords(logging.Filter):
    """On the export thread's loggers: a record made on that thread is held for the hub."""

    def __init__(self, processor: OffHubSpanProcessor) -> None:
        super().__init__()
        self.processor = processor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.processor.on_export_thread():
            self.processor.held_records.append(record)
            return False
        return True


class OffHubSpanProcessor(SpanProcessor):
    """Batches finished, sampled spans and exports them from a real OS thread.

    ``on_end`` (on the hub, in the worker's teardown) appends to a bounded deque; the export
    thread wakes every ``schedule_delay_ms``, or as soon as a batch is full, and exports
    batches of ``max_export_batch_size``. ``force_flush`` and ``shutdown`` wait by sleeping in
    short steps (green sleeps in a patched process: the hub runs meanwhile) and give up after
    their timeout; an export still running then is abandoned to the (daemon) thread.
    """

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int | None = None,
                 max_export_batch_size: int | None = None,
                 schedule_delay_ms: int | None = None, exit_timeout_ms: int = 30000) -> None:
        self.exporter = exporter
        #: the OTLP/HTTP exporter's client, for requests written by otlp.py (else None: the
        #: exporter's export() is given the spans)
        self._post = privates.otlp_poster(exporter)
        self.exit_timeout_ms = exit_timeout_ms
        self.max_queue_size = max_queue_size or _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self.max_export_batch_size = min(
            max_export_batch_size or _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
            self.max_queue_size)
        self.schedule_delay = (schedule_delay_ms or _env_int("OTEL_BSP_SCHEDULE_DELAY",
                                                             5000)) / 1000.0
        #: spans dropped because the queue was full
        self.dropped = 0
        #: spans handed to the exporter, and batches it did not take
        self.exported = 0
        self.failed_batches = 0
        self.queue: deque[ReadableSpan] = deque()
        self.held_records: deque[logging.LogRecord] = deque(maxlen=MAX_HELD_RECORDS)
        self._threading = _original_threading()
        self._pause = _original_sleep
        self._wake = self._threading.Event()
        self._flush_asked = 0  # generation numbers: the thread answers the last one it saw
        self._flush_done = 0
        self._stopping = False
        self._warned_at = 0.0
        self._filter: _HoldThreadRecords | None = None
        self._thread = self._threading.Thread(target=self._run, name="chassis-otlp-export",
                                              daemon=True)
        if _green_threads():
            self._hold_thread_records()
        self._thread.start()

    def __repr__(self) -> str:
        return (f"<OffHubSpanProcessor queued={len(self.queue)} exported={self.exported} "
                f"dropped={self.dropped}>")

    @property
    def thread_ident(self) -> int | None:
        """The export thread's id (``threading.get_ident()`` on it)."""
        return self._thread.ident

    def on_export_thread(self) -> bool:
        return self._threading.get_ident() == self._thread.ident

    # -- on the hub ----------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.held_records:
            self._emit_held()
        if not span.context.trace_flags.sampled or self._stopping:
            return
        queue = self.queue
        if len(queue) >= self.max_queue_size:
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= DROP_WARNING_INTERVAL:
                self._warned_at = now
                log.warning("chassis: span export queue full (%d spans): %d spans dropped so "
                            "far", self.max_queue_size, self.dropped)
            return
        queue.append(span)
        if len(queue) >= self.max_export_batch_size and not self._wake.is_set():
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued now; ``False`` when that did not finish in ``timeout_millis``."""
        self._flush_asked += 1
        asked = self._flush_asked
        self._wake.set()
        done = self._wait(lambda: self._flush_done >= asked, timeout_millis)
        self._emit_held()
        return done

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Export what is queued (within ``timeout_millis``, default ``exit_timeout_ms``: the
        SDK calls this at process exit), then stop the thread."""
        self._stopping = True
        self._wake.set()
        self._wait(lambda: not self._thread.is_alive(),
                   self.exit_timeout_ms if timeout_millis is None else timeout_millis)
        self._emit_held()
        if self._filter is not None:
            for logger in self._filtered_loggers():
                logger.removeFilter(self._filter)
            self._filter = None

    def _wait(self, done: Any, timeout_millis: float) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        while not done():
            if not self._thread.is_alive() or time.monotonic() >= deadline:
                return bool(done())
            time.sleep(0.005)  # green in a patched process: the hub runs on meanwhile
        return True

    def _emit_held(self) -> None:
        records = self.held_records
        while records:
            try:
                record = records.popleft()
            except IndexError:
                break
            logging.getLogger(record.name).handle(record)

    def _filtered_loggers(self) -> list[logging.Logger]:
        manager = logging.Logger.manager
        return [log] + [logger for name, logger in list(manager.loggerDict.items())
                        if isinstance(logger, logging.Logger)
                        and name.split(".")[0] in THREAD_LOGGERS]

    def _hold_thread_records(self) -> None:
        # the modules the exporter uses are imported by now, and their loggers made
        self._filter = _HoldThreadRecords(self)
        for logger in self._filtered_loggers():
            logger.addFilter(self._filter)

    # -- on the export thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self.schedule_delay)
            self._wake.clear()
            asked = self._flush_asked
            # a full batch woke it: full batches only (a remainder rides with the next one);
            # the schedule delay, a flush or the shutdown: everything queued
            everything = not woken or asked != self._flush_done or self._stopping
            try:
                self._export_queued(everything)
            except BaseException:  # the thread must outlive anything an export raises
                log.exception("chassis: span export failed")
            if everything:
                self._flush_done = asked
            if self._stopping:
                break
        try:
            self.exporter.shutdown()
        except Exception:
            log.exception("chassis: span exporter shutdown failed")

    def _export_queued(self, everything: bool) -> None:
        queue, size = self.queue, self.max_export_batch_size
        while len(queue) >= size or (everything and queue):
            batch = []
            try:
                for _ in range(size):
                    batch.append(queue.popleft())
            except IndexError:
                pass
            try:
                if self._post is not None:
                    # written by otlp.py, sent by the exporter's own HTTP client
                    done = self._post(encode_request(batch, self._pause, PAUSE_EVERY))
                else:
                    # a worker span's SDK objects are made here, off the hub (spans.py)
                    done = getattr(self.exporter.export(spans_of(batch)), "name", "") == \
                        "SUCCESS"
                if done:
                    self.exported += len(batch)
                else:
                    self.failed_batches += 1
            except privates.RefusedBatch as refused:
                self.failed_batches += 1
                log.warning("chassis: %d spans not exported: %s", len(batch), refused)
            except Exception:
                self.failed_batches += 1
                log.exception("chassis: exporting %d spans failed", len(batch))
