"""Text helpers every view shares (the page, the live console, the REPL): one definition each
of how a value is clipped, an age is written, a worker's "where" and start are found, workers are
ordered and a pool counts as nearly full. Pure: standard library and the probe's tables only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..probe import entrypoints
from .model import Frame, Process, QueueBacklog, Worker, oldest_first_key

#: Characters of one value (argument, kwarg, context value, source line) unless a view says less.
VALUE_CHARS = 200
#: Pool use (running / max_workers) from which a pool counts as nearly full.
SATURATION_WARNING = 0.75

# Shown as escapes (``\x1b``, ``\u202e``), so text from a service can neither move the cursor,
# change colours or titles (ESC), break a one-line cell, nor reorder or hide what is around it:
# C0 controls, DEL, C1 controls; bidi embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069) and marks (U+200E/F, U+061C); line and paragraph separators (U+2028/9);
# zero-width and invisible characters (U+200B-U+200D, U+2060-U+2064, U+FEFF, U+180E, U+00AD);
# and lone surrogates (U+D800-U+DFFF: they cannot be encoded, and an output stream with
# surrogateescape would write them as raw bytes such as 0xFF).
_UNSAFE = [*range(0x20), *range(0x7F, 0xA0), 0xAD, 0x061C, 0x180E, *range(0x200B, 0x2010),
           0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2060, 0x2065),
           *range(0x2066, 0x206A), 0xFEFF]
_CONTROL_ESCAPES: dict[int, str] = {
    c: (repr(chr(c))[1:-1] if c < 0xA0 else f"\\u{c:04x}") for c in _UNSAFE
}
_CONTROL_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})
_NEEDS_ESCAPE = re.compile("[" + "".join(f"\\u{c:04x}" for c in _UNSAFE) + "\\ud800-\\udfff]")


def sanitize(text: Any) -> str:
    """``text`` safe for a terminal, whole: every character that could act on the terminal or
    hide text (see above) as a visible escape. Everything from a service or a peer goes through
    this (or :func:`clip`, which also makes it one bounded line) before any output."""
    s = text if isinstance(text, str) else str(text)
    if _NEEDS_ESCAPE.search(s) is None:
        return s
    return s.translate(_CONTROL_ESCAPES)


def sanitize_lines(text: Any) -> str:
    """:func:`sanitize`, keeping line breaks (``\n``) as they are: for multi-line messages."""
    s = text if isinstance(text, str) else str(text)
    return "\n".join(sanitize(line) for line in s.split("\n"))


def clip(text: Any, limit: int = VALUE_CHARS) -> str:
    """``text`` as one line of at most ``limit`` characters (an ellipsis marks a cut).

    Unsafe characters become visible escapes (``\\n``, ``\\x1b``, ``\\u202e``: see
    :func:`sanitize`), so untrusted text can neither break a line nor emit terminal codes.
    """
    s = text if isinstance(text, str) else str(text)
    if len(s) > limit * 4:  # do not translate megabytes to keep a hundred characters
        s = s[: limit * 4]
    s = sanitize(s)
    if len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return s


def format_age(seconds: float | None) -> str:
    """A short human duration: ``850ms``, ``12.3s``, ``4m05s``, ``3h04m``, ``2d03h``."""
    if seconds is None:
        return "?"
    s = max(float(seconds), 0.0)
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        m, sec = divmod(int(s), 60)
        return f"{m}m{sec:02d}s"
    if s < 86400:
        h, rest = divmod(int(s), 3600)
        return f"{h}h{rest // 60:02d}m"
    d, rest = divmod(int(s), 86400)
    return f"{d}d{rest // 3600:02d}h"


def clock(ts: float | None, *, date: bool = True) -> str:
    """``2026-12-01 23:07:40.123 UTC`` (or without the date)."""
    if ts is None:
        return "?"
    fmt = "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S"
    return time.strftime(fmt, time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d} UTC"


def where_of(worker: Worker) -> Frame | None:
    """Where the worker's own code is now: ``worker.where``, else the innermost user frame of its
    stack, else its innermost frame."""
    if worker.where is not None:
        return worker.where
    if worker.stack:
        for frame in reversed(worker.stack):
            if not frame.library:
                return frame
        return worker.stack[-1]
    return None


def where_text(frame: Frame | None) -> str:
    return "?" if frame is None else f"{frame.function} {frame.short_file}:{frame.line}"


def oldest_first(workers: Iterable[Worker]) -> list[Worker]:
    """Workers oldest first; ties (same age) by call id, so the order is total and stable
    (a container's ``workers`` already are in this order)."""
    return sorted(workers, key=oldest_first_key)


PoolLevel = Literal["idle", "ok", "warning", "full"]


def pool_level(running: int, max_workers: int) -> PoolLevel:
    """``full`` when new work waits, ``warning`` from :data:`SATURATION_WARNING`."""
    if not max_workers:
        return "idle"
    if running >= max_workers:
        return "full"
    if running / max_workers >= SATURATION_WARNING:
        return "warning"
    return "ok"


#: A backlog whose ready count rises faster than this (messages per second) is growing.
BACKLOG_GROWING_RATE = 0.0


@dataclass(frozen=True)
class BacklogSummary:
    """A container's queues added up: what the pool gauge says beside ``10/10 FULL``."""

    ready: int | None  # waiting in the broker, every queue; None: none could be sampled
    unacked: int  # held by this process
    rate_per_s: float | None  # change of ready per second; None: one sample so far
    queues: int

    @property
    def growing(self) -> bool:
        return bool(self.ready) and self.rate_per_s is not None and \
            self.rate_per_s > BACKLOG_GROWING_RATE

    def text(self) -> str:
        """``381 ready · 10 unacked · +12.5/s``."""
        ready = "? ready" if self.ready is None else f"{self.ready} ready"
        parts = [ready, f"{self.unacked} unacked"]
        if self.rate_per_s is not None:
            parts.append(rate_text(self.rate_per_s))
        return " · ".join(parts)


def rate_text(rate: float) -> str:
    return f"{rate:+.1f}/s" if rate else "±0/s"


def backlog_summary(queues: Sequence[QueueBacklog] | None) -> BacklogSummary | None:
    """None when the container's queues were not sampled (no backlog in the snapshot)."""
    if queues is None:
        return None
    known = [q.ready for q in queues if q.ready is not None]
    rates = [q.rate_per_s for q in queues if q.rate_per_s is not None]
    return BacklogSummary(sum(known) if known else None, sum(q.unacked for q in queues),
                          round(sum(rates), 2) if rates else None, len(queues))


def call_id_tail(call_id: str) -> str:
    """The unique part of a call id (``service.method.<uuid>``: the rest is the entrypoint)."""
    return call_id.rsplit(".", 1)[-1]


def caller(worker: Worker) -> str:
    """The entrypoint that called this worker (``orders.place``), from its call chain."""
    if len(worker.call_id_stack) < 2:
        return ""
    parent = worker.call_id_stack[-2]
    return parent.rsplit(".", 1)[0] if parent.count(".") >= 2 else parent


def short_entrypoint(service_name: str, entrypoint: str) -> str:
    """The entrypoint without its service prefix, for views with a service column."""
    prefix = service_name + "."
    return entrypoint[len(prefix):] if entrypoint.startswith(prefix) else entrypoint


def entrypoint_label(kind: str, details: Mapping[str, Any]) -> str:
    """What an entrypoint listing shows beside its name (``GET /orders/<id>``, ``every 1s``)."""
    return entrypoints.label(kind, details)


#: What redaction puts in place of a secret (probe.redaction.REDACTED): never cut in half.
REDACTED_MARK = "********"


def clip_value(text: Any, limit: int) -> str:
    """:func:`clip` for argument previews: a cut never splits the redaction marker, so a
    hidden value always reads as hidden: ``item='milk jug', quanti…card='********'``."""
    s = text if isinstance(text, str) else str(text)
    clipped = clip(s, limit)
    if clipped == s or not clipped.endswith("…"):
        return clipped
    cut = len(clipped) - 1
    # the "name='********'" item the cut falls in: keep it whole, and what fits before it
    begin = s.rfind(", ", 0, cut)
    begin = 0 if begin < 0 else begin + 2
    end = s.find(", ", cut)
    item = s[begin:] if end < 0 else s[begin:end]
    if REDACTED_MARK not in item:
        return clipped
    tail = clip(item, limit)
    room = limit - len(tail) - 1
    return (clip(s[:room], room) + "…" + tail) if room > 0 else tail


def age_text(worker: Worker) -> str:
    """The worker's age; ``≥`` marks a lower bound (no start time recorded: plain nameko
    services are timed from when the collector first saw the worker)."""
    return ("" if worker.started_at is not None else "≥") + format_age(worker.age_s)


def short_label(label: str, limit: int) -> str:
    """A target label cut from the left, so the port that tells targets apart stays."""
    return label if len(label) <= limit else "…" + label[-(limit - 1):]


def managed_thread_groups(targets: Iterable[str | None]) -> list[tuple[str, int]]:
    """Managed threads named by what they run, alike ones counted: a web server's keep-alive
    connections read ``HTTP connections ×12``, not twelve ``process_request`` lines."""
    counts: dict[str, int] = {}
    for target in targets:
        name = target or "?"
        if "process_request" in name:
            name = "HTTP connections"
        counts[name] = counts.get(name, 0) + 1
    return list(counts.items())


def group_label(name: str, count: int) -> str:
    return f"{name} ×{count}" if count > 1 else name


@dataclass(frozen=True)
class WorkerGroup:
    """Workers alike: the same entrypoint waiting at the same place (py-spy dump's view)."""

    entrypoint: str
    where: Frame | None
    count: int
    oldest_s: float
    #: some age in the group is counted from first sight (no start times recorded)
    lower_bound: bool = False

    @property
    def where_key(self) -> str:
        return where_key(self.where)


def where_key(frame: Frame | None) -> str:
    """A place in the code as one word (``shop/orders.py:42``; ``?`` when unknown): what groups
    and the ``where:`` filter compare."""
    return "?" if frame is None else f"{frame.short_file}:{frame.line}"


def group_workers(workers: Iterable[Worker]) -> list[WorkerGroup]:
    """Workers counted by (entrypoint, where), largest groups first, then oldest. The
    ``--once`` page and the live console's groups view both use this."""
    counts: dict[tuple[str, str], list[Any]] = {}
    for w in workers:
        frame = where_of(w)
        key = (w.entrypoint, where_key(frame))
        group = counts.get(key)
        if group is None:
            counts[key] = [frame, 1, w.age_s, w.started_at is None]
        else:
            group[1] += 1
            group[2] = max(group[2], w.age_s)
            group[3] = group[3] or w.started_at is None
    groups = [WorkerGroup(ep, g[0], g[1], g[2], g[3]) for (ep, _), g in counts.items()]
    groups.sort(key=lambda g: (-g.count, -g.oldest_s, g.entrypoint, g.where_key))
    return groups


def called_by(worker: Worker, call_id: str) -> bool:
    """Whether ``worker`` was called by the worker ``call_id``: its call chain holds that id
    just before its own (nameko appends each worker's call id to its caller's stack)."""
    stack = worker.call_id_stack
    return len(stack) >= 2 and stack[-2] == call_id


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def process_summary(process: Process | None) -> str:
    """``cpu 12%  rss 85.3 MB  fds 31  greenthreads 14  hub lag 3 ms  up 2h03m`` (what is
    known), or ``""``."""
    if process is None:
        return ""
    parts = []
    if process.cpu_percent is not None:
        parts.append(f"cpu {process.cpu_percent:.0f}%")
    if process.rss_bytes is not None:
        parts.append(f"rss {format_bytes(process.rss_bytes)}")
    if process.open_fds is not None:
        parts.append(f"fds {process.open_fds}")
    parts.append(f"greenthreads {process.greenthreads}")
    if process.hub_lag_ms is not None:
        parts.append(f"hub lag {process.hub_lag_ms:.0f} ms")
    if process.uptime_s is not None:
        parts.append(f"up {format_age(process.uptime_s)}")
    return "  ".join(parts)
