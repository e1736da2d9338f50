"""The finished-worker history (providers/bookkeeping.py) in this eventlet-patched process, on a
real nameko container's worker contexts: bounded, redacted like every snapshot, entries made on
read or within a second by a green timer, and the workers' argument objects let go then."""

from __future__ import annotations

import gc
import weakref

import eventlet
from nameko.containers import ServiceContainer, WorkerContext
from nameko.rpc import rpc

from nameko_chassis.providers import bookkeeping
from nameko_chassis.providers.bookkeeping import WorkerBookkeeping


class Payload:
    def __repr__(self) -> str:
        return "<payload>"


class Keeper:
    name = "keeper"
    chassis = WorkerBookkeeping(history_size=3)

    @rpc
    def store(self, item, password=None):
        return item


def finish(provider: WorkerBookkeeping, entrypoint, *args, exc=None, **kwargs) -> WorkerContext:
    ctx = WorkerContext(provider.container, None, entrypoint, args=args, kwargs=kwargs,
                        data={"call_id_stack": [], "session_token": "tok-history-secret"})
    provider.worker_setup(ctx)
    provider.worker_result(ctx, None, (type(exc), exc, exc.__traceback__) if exc else None)
    return ctx


def test_history_is_bounded_redacted_and_made_within_a_second() -> None:
    container = ServiceContainer(Keeper)
    provider = next(d for d in container.dependencies if isinstance(d, WorkerBookkeeping))
    provider.setup()
    entrypoint = next(e for e in container.entrypoints if e.method_name == "store")
    payload = Payload()
    alive = weakref.ref(payload)
    for i in range(5):
        finish(provider, entrypoint, payload if i == 4 else i, password=f"pw-{i}-secret")
    del payload  # the last worker's argument: only its history entry holds it now
    assert alive() is not None
    history = provider.chassis_history
    assert len(history) == 3  # the oldest two went before anyone paid for them
    pending = [item for item in history._items if item.entry is None]
    assert len(pending) == 3
    # the green timer makes them within MATERIALISE_AFTER, and lets the arguments go
    eventlet.sleep(bookkeeping.MATERIALISE_AFTER + 0.3)
    assert all(item.entry is not None and item.worker_ctx is None for item in history._items)
    gc.collect()
    assert alive() is None
    entries = list(history)
    assert [e["args"] for e in entries] == [["2"], ["3"], ["<payload>"]]
    assert all(e["kwargs"]["password"] == "'********'" for e in entries)
    assert all(e["context_data"]["session_token"] == "********" for e in entries)
    assert all(e["outcome"] == "success" and e["entrypoint"] == "keeper.store" for e in entries)
    assert "secret" not in repr(entries)


def test_a_read_makes_pending_entries_and_failures_are_made_at_once() -> None:
    container = ServiceContainer(Keeper)
    provider = next(d for d in container.dependencies if isinstance(d, WorkerBookkeeping))
    provider.setup()
    entrypoint = next(e for e in container.entrypoints if e.method_name == "store")
    try:
        raise ValueError("boom with pw-x-secret? no: a plain message")
    except ValueError as exc:
        failed = exc
    finish(provider, entrypoint, "fails", exc=failed)
    finish(provider, entrypoint, "works")
    items = list(provider.chassis_history._items)
    assert items[0].entry is not None  # its traceback must not keep the frames alive
    assert items[1].entry is None
    entries = list(provider.chassis_history)  # what the collector does
    assert [e["outcome"] for e in entries] == ["error", "success"]
    assert entries[0]["exc_type"] == "ValueError" and entries[0]["traceback"]
    assert entries[1]["args"] == ["'works'"]
    assert items[1].entry is entries[1]  # made once


def test_while_a_console_reads_the_history_entries_are_made_soon_between_workers() -> None:
    container = ServiceContainer(Keeper)
    provider = next(d for d in container.dependencies if isinstance(d, WorkerBookkeeping))
    provider.setup()
    entrypoint = next(e for e in container.entrypoints if e.method_name == "store")
    history = provider.chassis_history
    finish(provider, entrypoint, "before")
    eventlet.sleep(bookkeeping.MATERIALISE_AFTER + 0.3)  # nobody reads: the 1 s timer made it
    assert list(history)[0]["args"] == ["'before'"]  # a read: a console is watching now
    finish(provider, entrypoint, "watched")
    assert history._items[-1].entry is None
    # not left for the next read (a console refresh, on the hub): made within the short delay
    eventlet.sleep(bookkeeping.MATERIALISE_WATCHED_AFTER + 0.2)
    assert bookkeeping.MATERIALISE_WATCHED_AFTER + 0.2 < bookkeeping.MATERIALISE_AFTER
    assert history._items[-1].entry is not None and history._items[-1].worker_ctx is None
    assert history._items[-1].entry["args"] == ["'watched'"]
