"""A tail of the service's log for the console: a bounded in-memory handler on the root logger,
installed only while a console asks for it. Standard library only.

- The first ``logs`` request installs :class:`TailHandler` on the root logger; a greenthread
  removes it :data:`KEEP_S` seconds (or the request's ``keep_s``) after the last request, so a
  console that went away leaves nothing behind.
- The handler sees what the service's own logging lets through (logger levels are the
  service's); it keeps the last :data:`MAX_RECORDS` records in a ring, each message redacted by
  the one policy (:func:`.redaction.redact_text`) and bounded, with the call id of the worker
  that logged it (found by walking the logging frame's ``f_back`` to nameko's ``_run_worker``:
  proportional to the stack's depth, never to the number of workers).
- A console fetches only what is new: each record has a sequence number, and a request says
  the last one it has (``after``).
- ``log_level`` sets a logger's level through :mod:`logging` itself (the console sends it only
  with ``--allow-actions``).
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections import deque
from typing import Any

from . import privates
from .redaction import redact_text

#: Records kept in the ring.
MAX_RECORDS = 2000
#: Characters kept of a message (after redaction), and of an exception's traceback.
MAX_MESSAGE = 2000
MAX_EXCEPTION = 4000
#: Records returned by one request at most (the console asks again for the rest).
MAX_PER_REQUEST = 500
#: The handler is removed this many seconds after the last request (a request may say less).
KEEP_S = 30.0
#: Levels a console may set.
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


class TailHandler(logging.Handler):
    """Keeps the last records, redacted, in memory. Lock-free: ``deque.append`` is atomic, and
    a green lock taken from another OS thread (a library's thread logging) could deadlock the
    hub, so :meth:`createLock` makes none."""

    def __init__(self, capacity: int = MAX_RECORDS) -> None:
        super().__init__(logging.NOTSET)
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.seq = 0
        self.installed_at = time.time()

    def __repr__(self) -> str:
        return f"<logtail.TailHandler records={len(self.records)} seq={self.seq}>"

    def createLock(self) -> None:  # noqa: N802 (logging's name)
        self.lock = None

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filter(record):
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                message = record.getMessage()
            except BaseException as exc:  # a bad format string: say so, never raise
                message = f"{record.msg!r} (unformattable: {type(exc).__name__})"
            message = redact_text(message)[:MAX_MESSAGE]
            exc_text = None
            if record.exc_info and record.exc_info[1] is not None:
                lines = traceback.format_exception(*record.exc_info)
                exc_text = redact_text("".join(lines[-60:]))[-MAX_EXCEPTION:]
            ctx = privates.worker_context_of(sys._getframe(1))
            call_id = getattr(ctx, "call_id", None) if ctx is not None else None
            self.seq += 1
            self.records.append({
                "seq": self.seq,
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                "origin": f"{record.module}:{record.lineno}",
                "call_id": str(call_id) if call_id else None,
                "exception": exc_text,
            })
        except BaseException:  # logging must never break the service
            pass


_state: dict[str, Any] = {"handler": None, "asked_at": 0.0, "keep_s": KEEP_S, "reaper": False}


def current() -> TailHandler | None:
    handler = _state["handler"]
    return handler if isinstance(handler, TailHandler) else None


def attach(keep_s: float = KEEP_S) -> TailHandler:
    """Install the handler (once), and keep it ``keep_s`` seconds after this call."""
    _state["asked_at"] = time.monotonic()
    _state["keep_s"] = min(max(float(keep_s), 0.2), 600.0)
    handler = current()
    if handler is None:
        handler = TailHandler()
        logging.getLogger().addHandler(handler)
        _state["handler"] = handler
    if not _state["reaper"]:
        _state["reaper"] = True
        try:
            privates.spawn_greenthread(_reap)
        except BaseException:  # no eventlet: the next request past the keep time detaches
            _state["reaper"] = False
    return handler


def detach() -> bool:
    """Remove the handler; True when there was one."""
    handler = current()
    _state["handler"] = None
    if handler is None:
        return False
    logging.getLogger().removeHandler(handler)
    return True


def _reap() -> None:
    try:
        while current() is not None:
            idle = time.monotonic() - _state["asked_at"]
            if idle >= _state["keep_s"]:
                detach()
                break
            privates.green_sleep(min(max(_state["keep_s"] - idle, 0.05), 1.0))
    finally:
        _state["reaper"] = False


def _op_logs(namespace: dict[str, Any], after: int = 0, call_id: str | None = None,
             limit: int = MAX_PER_REQUEST, keep_s: float = KEEP_S) -> dict[str, Any]:
    """Records newer than ``after`` (a sequence number), oldest first, at most ``limit``;
    ``call_id``: only that worker's. ``missed``: records that left the ring before this request
    saw them (the console asked too seldom)."""
    handler = attach(keep_s)
    after = int(after)
    records = list(handler.records)
    oldest = records[0]["seq"] if records else handler.seq + 1
    missed = max(oldest - after - 1, 0) if after else 0
    new = [r for r in records if r["seq"] > after
           and (call_id is None or r["call_id"] == call_id)]
    limit = min(max(int(limit), 1), MAX_PER_REQUEST)
    more = len(new) > limit
    new = new[:limit]
    return {
        "records": new,
        "cursor": new[-1]["seq"] if more else max(handler.seq, after),
        "more": more,
        "missed": missed,
        "installed_at": handler.installed_at,
        "root_level": logging.getLevelName(logging.getLogger().level),
    }


def _op_log_level(namespace: dict[str, Any], logger: str = "", level: str = "INFO"
                  ) -> dict[str, Any]:
    """Set ``logger``'s level ("" or "root": the root logger) through :mod:`logging`."""
    wanted = str(level).strip().upper()
    if wanted not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    name = str(logger).strip()
    target = logging.getLogger(None if name in ("", "root") else name)
    previous = logging.getLevelName(target.level)
    target.setLevel(wanted)
    return {"logger": target.name, "level": wanted, "previous": previous,
            "effective": logging.getLevelName(target.getEffectiveLevel())}


def _op_logs_detach(namespace: dict[str, Any]) -> dict[str, Any]:
    return {"detached": detach()}


OPS = {"logs": _op_logs, "log_level": _op_log_level, "logs_detach": _op_logs_detach}
