"""Collect a snapshot (schema v1) of what nameko containers are doing right now.

``collect(target)`` reads runners, containers, entrypoints, dependencies, worker greenthreads and
their stacks, duck-typed over nameko's internals (every private it reads is in
:mod:`.privates`). It runs on the eventlet hub, where no worker runs while it works: every loop
is bounded by a named limit, and per-worker data that cannot change (arguments, context data,
call ids) is computed once per worker and cached. Redaction (:mod:`.redaction`) happens here,
before anything leaves the service.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import socket
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from operator import is_, itemgetter
from typing import Any, cast

from . import backlog, entrypoints, privates, process
from .frames import (
    DEFAULT_MAX_FRAMES,
    innermost_user_index,
    managed_target,
    package_dirs,
    stack_indexes,
    stack_of,
    table_epoch,
    table_json,
)
from .frames import table as frames_table
from .redaction import (
    DEFAULT_REPR_LIMIT,
    SECRET_KEY_PATTERNS,
    policy_for,
    redact_mapping,
    redacted_arguments,
)
from .schema import (
    SCHEMA_VERSION,
    ContainerDict,
    DependencyDict,
    EntrypointDict,
    FinishedWorkerDict,
    FrameDict,
    IncidentDict,
    ManagedThreadDict,
    SnapshotDict,
    SubextensionDict,
    WorkerDict,
)

#: Workers listed per container, oldest first; the rest are counted in ``workers_running``.
DEFAULT_MAX_WORKERS = 1000
#: The attribute of ``sys`` holding the process's hub watchdog (see watchdog.py), if any.
WATCHDOG_MARKER = "_nameko_chassis_watchdog"
#: Objects inspected at most when searching for runners with ``gc`` (no ``runner`` name).
DEFAULT_GC_SCAN_LIMIT = 5_000_000


# ---------------------------------------------------------------------------------------------
# finding runners and containers


def find_containers(
    namespace: Mapping[str, Any] | None = None, *, gc_scan_limit: int = DEFAULT_GC_SCAN_LIMIT
) -> tuple[list[Any], str]:
    """Containers to inspect, and how they were found (``"runner"`` or ``"gc"``, ``"none"``).

    Uses the backdoor's ``runner`` when it is a ServiceRunner, else scans ``gc`` (bounded) for
    ServiceRunner objects and then for containers not owned by any runner.
    """
    runner = namespace.get("runner") if namespace is not None else None
    if runner is not None and privates.is_runner(runner):
        return privates.runner_containers(runner), "runner"
    runners, containers = [], []
    for i, obj in enumerate(gc.get_objects()):
        if i >= gc_scan_limit:
            break
        try:
            if privates.is_runner(obj):
                runners.append(obj)
            elif privates.is_container(obj):
                containers.append(obj)
        except BaseException:
            continue
    seen: dict[int, Any] = {}
    for r in runners:
        for c in privates.runner_containers(r):
            seen[id(c)] = c
    for c in containers:
        seen.setdefault(id(c), c)
    return list(seen.values()), ("gc" if seen else "none")


def _resolve(target: Any, namespace: Mapping[str, Any] | None) -> tuple[list[Any], str]:
    if target is None:
        return find_containers(namespace)
    if privates.is_runner(target):
        return privates.runner_containers(target), "runner"
    if isinstance(target, (list, tuple)):
        out: list[Any] = []
        for t in target:
            out.extend(_resolve(t, namespace)[0])
        return out, "given"
    return [target], "given"


# ---------------------------------------------------------------------------------------------
# workers

# Per-worker data that does not change while it runs is computed once and kept on the
# WorkerContext itself, under this attribute: it dies with the worker, and reading an attribute
# is much cheaper on the hub than a weak-keyed lookup. The value is ``(key, static fields,
# first seen, _WorkerCache)``; the watchdog reads the static fields too.
_CACHE_ATTR = "_chassis_snapshot_cache"


class _WorkerCache:
    """What may change of a parked worker, remembered with what it depends on: a suspended
    greenthread's stack cannot change while its innermost frame object and that frame's
    instruction offset (``f_lasti``) stay the same, so ``where`` and the stack (as frame-table
    indexes, and as JSON) are reused until they do. ``head`` is the static fields as JSON;
    ``line`` the whole worker as a session refresh sends it without a stack (no age: the
    console derives it), kept until ``where`` or the start stamp changes."""

    __slots__ = ("head", "where_frame", "where_lasti", "where", "where_json", "stack_frame",
                 "stack_lasti", "stack_key", "stack", "stack_json", "stack_top", "line",
                 "line_started")

    def __init__(self, head: str) -> None:
        self.head = head
        self.where_frame: Any = None
        self.where_lasti = -2
        self.where: FrameDict | None = None
        self.where_json = "null"
        self.stack_frame: Any = None
        self.stack_lasti = -2
        self.stack_key: tuple[int, int] = (-1, 0)
        self.stack: list[int] = []
        self.stack_json = "[]"
        self.stack_top = -1
        self.line: str | None = None
        self.line_started: float | None = None


def _worker_static(ctx: Any, container_name: str, opts: dict[str, Any],
                   now: float) -> tuple[dict[str, Any], float, _WorkerCache]:
    """(fields that do not change, first-seen time, the worker's cache) for a context."""
    key = opts["cache_key"]
    cached = getattr(ctx, _CACHE_ATTR, None)
    if cached is not None and cached[0] == key and len(cached) > 3:
        return cached[1], cached[2], cached[3]
    first_seen = cached[2] if cached is not None else now
    ep = getattr(ctx, "entrypoint", None)
    label, kind, label_json = _entrypoint_of(ep, container_name)
    policy = opts["secret_patterns"]
    limit = opts["repr_limit"]
    args, kwargs = redacted_arguments(ep, entrypoints.shown_args(kind, getattr(ctx, "args", ())),
                                      getattr(ctx, "kwargs", {}), limit=limit, policy=policy)
    data = getattr(ctx, "data", None) or {}
    if type(data) is dict:
        if "call_id_stack" in data:
            data = data.copy()  # one copy, then the key out (not a comprehension over items)
            del data["call_id_stack"]
    elif isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "call_id_stack"}
    else:
        data = {}
    try:
        call_id_stack = [str(c) for c in (getattr(ctx, "call_id_stack", None) or [])]
    except BaseException:
        call_id_stack = []
    static = {
        "call_id": str(getattr(ctx, "call_id", "") or ""),
        "call_id_stack": call_id_stack,
        "entrypoint": label,
        "entrypoint_type": kind,
        "args": args,
        "kwargs": kwargs,
        "context_data": redact_mapping(data, policy, limit=limit),
    }
    # pre-encoded once: a snapshot on the wire is these heads joined (see _list)
    cache = _WorkerCache(_head_json(static, label_json))
    try:
        setattr(ctx, _CACHE_ATTR, (key, static, first_seen, cache))
    except (AttributeError, TypeError):
        pass
    return static, first_seen, cache


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_dumps = _ENCODER.encode
_string = json.encoder.encode_basestring_ascii  # what _dumps does to a str, called straight

# An entrypoint's label, kind and their JSON, kept on the entrypoint object itself (like the
# workers' cache on their context): it dies with the entrypoint, and a stopped container's
# entrypoints are not held by the probe.
_EP_ATTR = "_chassis_snapshot_label"


def _entrypoint_of(ep: Any, container_name: str) -> tuple[str, str, str]:
    """(``service.method``, kind, the JSON of ``"entrypoint":...,"entrypoint_type":...``) of a
    worker's entrypoint: worked out once per entrypoint, not once per worker."""
    found = getattr(ep, _EP_ATTR, None)
    if type(found) is tuple and len(found) == 4 and found[0] == container_name:
        return found[1], found[2], found[3]
    method = getattr(ep, "method_name", None) or "?"
    kind = entrypoints.kind_of(ep) if ep is not None else "unknown"
    label = f"{container_name}.{method}"
    label_json = f'"entrypoint":{_string(label)},"entrypoint_type":{_string(kind)}'
    if ep is not None:
        try:
            setattr(ep, _EP_ATTR, (container_name, label, kind, label_json))
        except (AttributeError, TypeError):
            pass
    return label, kind, label_json


def _head_json(static: dict[str, Any], label_json: str) -> str:
    """``_dumps(static)`` without its braces, built from the parts (every field but the
    context values is a str, or a list or dict of str, by construction)."""
    string = _string
    context = ",".join(
        f"{string(k) if type(k) is str else _dumps(str(k))}:"
        f"{string(v) if type(v) is str else _dumps(v)}"
        for k, v in static["context_data"].items())
    kwargs = ",".join(f"{string(k)}:{string(v)}" for k, v in static["kwargs"].items())
    return (f'"call_id":{string(static["call_id"])},'
            f'"call_id_stack":[{",".join(map(string, static["call_id_stack"]))}],'
            f'{label_json},"args":[{",".join(map(string, static["args"]))}],'
            f'"kwargs":{{{kwargs}}},"context_data":{{{context}}}')


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


# -- which workers, oldest first, without sorting them all on every refresh -----------------



class _Order:
    """A container's workers, oldest first, kept up to date incrementally.

    A worker's start never changes, and nameko's worker table is a dict in spawn order, so a
    refresh places only the workers spawned since the last one (read from the table's end),
    drops finished ones it meets among the listed, and sweeps the rest only when many have
    gone: at 10,000 workers a refresh listing 1000 costs what one at 1000 does, plus the
    changed workers."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, int, Any]] = []  # (since, seq, ctx), sorted
        self.meta: dict[Any, tuple[float, int, float | None, float]] = {}  # since, seq, started, first
        # seen without a start stamp: looked at once more, on the next refresh (the chassis's
        # bookkeeping stamps ``chassis_started_at`` as soon as the worker first runs)
        self.pending: dict[Any, None] = {}
        self.seq = 0
        # what oldest() returned last, and for what: while no worker came, went or moved, the
        # same list object comes back (the wire's delta refresh then checks only the frames)
        self.version = 0
        self.listing: list[tuple[Any, tuple[Any, ...]]] | None = None
        self.listing_for: tuple[int, int, int] = (-1, -1, -1)

    def update(self, threads: dict[Any, Any], now: float) -> None:
        meta = self.meta
        new = []
        if not meta:
            new = list(threads)
        else:
            for ctx in reversed(threads):  # spawned since the last refresh: at the end
                if ctx in meta:
                    break
                new.append(ctx)
            new.reverse()
        added = []
        for ctx in new:
            cached = getattr(ctx, _CACHE_ATTR, None)
            first = cached[2] if cached is not None else now
            started = _started(ctx)
            if started is None:
                self.pending[ctx] = None
            since = started if started is not None else first
            self.seq += 1
            meta[ctx] = (since, self.seq, started, first)
            added.append((since, self.seq, ctx))
        if added:
            self.version += 1
        if self.pending:
            self._stamps(threads, added)
        # rows compare as tuples: (since, seq) decide, seq being unique (the ctx is never
        # compared), with no key function called per row
        if len(added) > 32:
            self.rows.extend(added)
            self.rows.sort()
        else:
            for row in added:
                bisect.insort(self.rows, row)
        stale = len(meta) - len(threads)
        if stale > 64 and stale * 8 > len(threads):
            gone = meta.keys() - threads.keys()
            for ctx in gone:
                del meta[ctx]
                self.pending.pop(ctx, None)
            self.rows = [row for row in self.rows if row[2] in meta]
            self.version += 1

    def _stamps(self, threads: dict[Any, Any], added: list[Any]) -> None:
        """Workers seen before their start stamp (on the previous refresh): placed again by it
        when it is there now; the others keep their first-seen place for good."""
        fresh = {row[2] for row in added}
        for ctx in list(self.pending):
            if ctx in fresh:
                continue
            del self.pending[ctx]
            old = self.meta.get(ctx)
            started = _started(ctx) if old is not None and ctx in threads else None
            if old is None or started is None:
                continue
            self.meta[ctx] = (started, old[1], started, old[3])
            self.version += 1
            row = (old[0], old[1], ctx)
            rows = self.rows
            i = bisect.bisect_left(rows, _row_key(row), key=_row_key)
            if i < len(rows) and rows[i][2] is ctx:
                del rows[i]
            bisect.insort(self.rows, (started, old[1], ctx), key=_row_key)

    def oldest(self, threads: dict[Any, Any], limit: int) -> list[tuple[Any, tuple[Any, ...]]]:
        """Up to ``limit`` running workers, oldest first: (ctx, (since, seq, started, first));
        finished workers met on the way are dropped. The very list of the last call while no
        worker came or went since (nor did ``limit`` change)."""
        if self.listing is not None and self.listing_for == (self.version, limit, len(threads)):
            return self.listing
        rows: list[Any] = self.rows
        meta, pending = self.meta, self.pending
        # the first ``limit`` rows in bulk; finished workers among them dropped, and as many
        # rows after them looked at as it takes to list ``limit``
        first = rows[:limit]
        out: list[tuple[Any, tuple[Any, ...]]] = [(r[2], meta[r[2]]) for r in first
                                                  if r[2] in threads]
        if len(out) < len(first):
            kept = []
            for row in first:
                if row[2] in threads:
                    kept.append(row)
                else:
                    meta.pop(row[2], None)
                    pending.pop(row[2], None)
            i = len(first)
            while i < len(rows) and len(out) < limit:
                row = rows[i]
                ctx = row[2]
                if ctx in threads:
                    out.append((ctx, meta[ctx]))
                    kept.append(row)
                else:
                    meta.pop(ctx, None)
                    pending.pop(ctx, None)
                i += 1
            self.rows = kept + rows[i:]
            self.version += 1
        last = self.listing
        if last is not None and len(last) == len(out) \
                and all(map(is_, map(_first, last), map(_first, out))) \
                and all(map(is_, map(_second, last), map(_second, out))):
            out = last  # the same workers as before (the ones that came or went are not listed)
        self.listing, self.listing_for = out, (self.version, limit, len(threads))
        return out


_first, _second = itemgetter(0), itemgetter(1)


def _row_key(row: tuple[Any, ...]) -> tuple[float, int]:
    return (row[0], row[1])


def _started(ctx: Any) -> float | None:
    started = getattr(ctx, "chassis_started_at", None)
    return started if isinstance(started, (int, float)) and not isinstance(started, bool) \
        else None


_orders: dict[int, tuple[Any, _Order]] = {}


def _order_of(container: Any) -> _Order:
    found = _orders.get(id(container))
    if found is not None and found[0]() is container:
        return found[1]
    order = _Order()
    try:
        ref = weakref.ref(container)
    except TypeError:  # not weakly referenceable: no memory between refreshes
        return order
    for key in [k for k, (r, _o) in _orders.items() if r() is None]:
        del _orders[key]
    _orders[id(container)] = (ref, order)
    return order


class Listed:
    """What one client session was sent of one container's listing (the wire's delta refresh):
    the listing it was (``_Order.oldest``'s list), under which per-worker settings, and per
    listed worker its call id, the ``where`` object sent and the frame that was innermost then,
    with its instruction offset. While the listing is the same list, a refresh only checks that
    each worker's innermost frame is still that one at that offset: a parked worker's."""

    __slots__ = ("listing", "key", "ids", "wheres", "rows", "_index")

    def __init__(self, listing: Any, key: Any) -> None:
        self.listing = listing
        self.key = key
        self.ids: list[str] = []
        self.wheres: list[Any] = []
        self.rows: list[tuple[Any, Any, int]] = []  # (greenthread, innermost frame, f_lasti)
        self._index: dict[Any, int] | None = None

    def index(self) -> dict[Any, int]:
        """Worker context -> its place in ``ids``, ``wheres`` and ``rows``."""
        if self._index is None:
            self._index = {ctx: i for i, (ctx, _meta) in enumerate(self.listing)}
        return self._index


def _collect_workers(container: Any, name: str, now: float, opts: dict[str, Any],
                     errors: list[str]) -> tuple[list[Any], int, dict[str, Any]]:
    """(workers listed in full, workers running, the delta fields: ``unchanged`` or
    ``unchanged_except``, for a session only)."""
    try:
        threads = privates.worker_table(container)
        order = _order_of(container)
        order.update(threads, now)
        listing = order.oldest(threads, opts["max_workers"])
    except BaseException as exc:
        errors.append(f"{name}: cannot read worker threads: {type(exc).__name__}: {exc}")
        return [], 0, {}
    sessions_in, sessions_out = opts["listed_in"], opts["listed_out"]
    if sessions_in is None:
        return _list(listing, threads, container, name, now, opts, errors, None)[0], \
            len(threads), {}
    memo = sessions_in.get(name)
    if memo is not None and memo.key != opts["cache_key"]:
        memo = None  # other limits or redaction: every worker again
    if memo is not None and memo.listing is listing:
        try:
            workers, delta = _relist(memo, listing, threads, container, name, now, opts,
                                     errors, sessions_out)
            return workers, len(threads), delta
        except _Relist:
            pass
    workers, listed, unchanged = _list(listing, threads, container, name, now, opts, errors,
                                       memo)
    sessions_out[name] = listed
    if memo is None:
        return workers, len(threads), {"unchanged": unchanged}
    # the shorter of "these are unchanged" and "all but these (and those sent) are"
    now_listed = set(listed.ids)
    gone = [cid for cid in memo.ids if cid not in now_listed]
    if len(gone) < len(unchanged):
        return workers, len(threads), {"unchanged_except": gone}
    return workers, len(threads), {"unchanged": unchanged}


class _Relist(Exception):
    """The quick path of a delta refresh met something it does not handle: list in full."""


def _relist(memo: Listed, listing: Any, threads: Any, container: Any, name: str, now: float,
            opts: dict[str, Any], errors: list[str], sessions_out: dict[str, Any]
            ) -> tuple[list[Any], dict[str, Any]]:
    """A delta refresh of the very listing the session was sent: only the workers whose
    innermost frame moved (or whose stack was asked for) are looked at, and listed in full
    when their ``where`` changed; the others stay as the session has them."""
    try:
        moved = [i for i, (gt, frame, lasti) in enumerate(memo.rows)
                 if gt.gr_frame is not frame or (frame is not None and frame.f_lasti != lasti)]
    except BaseException:
        raise _Relist() from None
    stacks = opts["stacks"]
    if not isinstance(stacks, str) and stacks:
        wanted = [i for i, cid in enumerate(memo.ids) if cid in stacks]
        if wanted:
            moved = sorted({*moved, *wanted})
    out = Listed(listing, memo.key)
    out.ids, out.wheres, out.rows, out._index = memo.ids, memo.wheres, memo.rows, memo._index
    if moved:
        workers, again, _ = _list([listing[i] for i in moved], threads, container, name, now,
                                  opts, errors, memo, moved=True)
        if again.ids != [memo.ids[i] for i in moved]:
            raise _Relist()  # one could not be read now: the full path says which
        out.wheres, out.rows = list(memo.wheres), list(memo.rows)
        for j, i in enumerate(moved):
            out.wheres[i], out.rows[i] = again.wheres[j], again.rows[j]
    else:
        workers = []
    sessions_out[name] = out
    return workers, {"unchanged_except": []}


def _list(listing: Any, threads: Any, container: Any, name: str, now: float,
          opts: dict[str, Any], errors: list[str], before: Listed | None, moved: bool = False
          ) -> tuple[list[Any], Listed, list[str]]:
    """The workers of ``listing`` in full, but those of ``before`` (what the session was sent)
    still where they were, whose stack was not asked for; what was listed; and the call ids of
    the workers left out as unchanged. A worker of ``before`` whose innermost frame has not
    moved is not looked at again; ``moved``: the caller knows they all have."""
    own = package_dirs(getattr(container, "service_cls", None))
    stacks = opts["stacks"]
    all_stacks = stacks == "all"
    some_stacks = not isinstance(stacks, str)
    max_frames = opts["max_frames"]
    encoded = opts["encoded"]
    session = opts["listed_in"] is not None  # no ages: Snapshot.from_wire derives them
    epoch = table_epoch()
    workers: list[Any] = []
    key = opts["cache_key"]
    listed = Listed(listing, key)
    ids: list[Any] = listed.ids
    wheres: list[Any] = listed.wheres
    rows: list[Any] = listed.rows
    index = before.index() if before is not None else None
    sent_ids, sent_wheres, sent_rows = ((before.ids, before.wheres, before.rows)
                                        if before is not None else ([], [], []))
    check = index is not None and not moved and not all_stacks
    n = len(listing)
    places: list[int | None] | None = None
    kept: list[bool] | None = None
    if check and not some_stacks and index is not None:
        # the workers of before still where they were, in bulk (a busy service's refresh:
        # a few came and went among a thousand parked), as _relist's check
        get = index.get
        places = [get(ctx) for ctx, _meta in listing]
        try:
            kept = [p is not None and (r := sent_rows[p])[0].gr_frame is (f := r[1])
                    and (f is None or f.f_lasti == r[2]) for p in places]
        except BaseException:
            kept = None  # one odd greenthread: the loop below looks at each
    if kept is not None and places is not None:
        at = [p if k else None for p, k in zip(places, kept, strict=True)]
        ids[:] = [None if p is None else sent_ids[p] for p in at]
        wheres[:] = [None if p is None else sent_wheres[p] for p in at]
        rows[:] = [None if p is None else sent_rows[p] for p in at]
        flags = kept[:]  # unchanged, by place in the listing
        todo: Iterable[int] = [pos for pos, k in enumerate(kept) if not k]
    else:
        ids[:], wheres[:], rows[:], flags = [None] * n, [None] * n, [None] * n, [False] * n
        todo = range(n)
    holes = False
    i: int | None = None
    for pos in todo:
        ctx, (since, _seq, started, _first) = listing[pos]
        if index is not None:
            i = index.get(ctx)
            if check and i is not None:
                gt, frame, lasti = row = sent_rows[i]
                f = getattr(gt, "gr_frame", None)  # as _relist's check, but per worker
                if f is frame and (f is None or f.f_lasti == lasti):
                    call_id = sent_ids[i]
                    if not (some_stacks and call_id in stacks):
                        ids[pos] = call_id
                        wheres[pos] = sent_wheres[i]
                        rows[pos] = row
                        flags[pos] = True
                        continue
        cached = getattr(ctx, _CACHE_ATTR, None)
        if cached is not None and len(cached) > 3 and cached[0] == key:
            static, first, cache = cached[1], cached[2], cached[3]
        else:
            try:
                static, first, cache = _worker_static(ctx, name, opts, now)
            except BaseException as exc:  # one odd worker never hides the others
                errors.append(f"{name}: cannot read a worker: {type(exc).__name__}: {exc}")
                holes = True
                continue
        gt = threads.get(ctx)
        frame = privates.greenthread_frame(gt)
        call_id = static["call_id"]
        where = _where(frame, cache, own) if frame is not None else None
        ids[pos] = call_id
        wheres[pos] = where
        rows[pos] = (gt, frame, frame.f_lasti if frame is not None else -1)
        wants_stack = all_stacks or (some_stacks and call_id in stacks)
        if i is not None and not wants_stack and sent_wheres[i] is where:
            flags[pos] = True
            continue
        if encoded and session and not wants_stack:
            line = cache.line
            if line is None or cache.line_started != started or frame is None:
                line = _session_line(cache, started, first, frame is not None)
            workers.append(line)
            continue
        age = round(now - since if now > since else 0.0, 3)
        if encoded:
            if not wants_stack:
                stack_json = "null"
            elif frame is None:
                stack_json = "[]"
            else:
                _stack(frame, cache, max_frames, epoch)
                stack_json = cache.stack_json
                if cache.stack_top > opts["frames_used"]:
                    opts["frames_used"] = cache.stack_top
            workers.append(f'{{{cache.head},"started_at":{_number(started)},'
                           f'"first_seen":{_number(first)},"age_s":{_number(age)},'
                           f'"where":{cache.where_json if frame is not None else "null"},'
                           f'"stack":{stack_json}}}')
            continue
        worker = static.copy()
        worker["started_at"] = started
        worker["first_seen"] = first
        worker["age_s"] = age
        worker["where"] = where
        if wants_stack:
            if frame is None:
                worker["stack"] = []
            else:
                _stack(frame, cache, max_frames, epoch)
                worker["stack"] = [frames_table[i] for i in cache.stack]
        else:
            worker["stack"] = None
        workers.append(cast(WorkerDict, worker))
    if holes:  # the workers that could not be read are not listed
        places_read = [pos for pos in range(n) if ids[pos] is not None]
        ids[:] = [ids[pos] for pos in places_read]
        wheres[:] = [wheres[pos] for pos in places_read]
        rows[:] = [rows[pos] for pos in places_read]
        flags = [flags[pos] for pos in places_read]
    unchanged = [call_id for call_id, same in zip(ids, flags, strict=True) if same]
    return workers, listed, unchanged


#: The longest one slice of :func:`warm` holds the hub, in seconds: between slices the
#: caller hands the hub back (``eventlet.sleep(0)``), so a worker waits at most about this
#: long for a refresh that finds many new workers. The final collection is not sliced.
SLICE_BUDGET_S = 0.002


class Holds:
    """The holds of the hub by one request: it starts holding it at ``first`` (the switch-in
    with the request line), and :meth:`pause` hands it back for a turn between two slices of
    its work (:func:`.collect.warm`). ``slices`` are the finished holds (seconds); the current
    one began at ``start``; ``away`` is the time the hub ran others meanwhile, which the
    request's figures leave out. ``hand_back`` hands the hub back for one turn
    (:func:`.privates.hub_pause`), None where that is not safe: then nothing is sliced."""

    __slots__ = ("first", "start", "slices", "away", "hand_back")

    def __init__(self, first: float, hand_back: Any = None) -> None:
        self.first = self.start = first
        self.slices: list[float] = []
        self.away = 0.0
        self.hand_back = hand_back

    def pause(self) -> float:
        """End this hold, hand the hub back, start the next hold: when it started."""
        t = time.perf_counter()
        self.slices.append(t - self.start)
        self.hand_back()
        self.start = time.perf_counter()
        self.away += self.start - t
        return self.start

    def total(self, now: float) -> float:
        """The hub time of the request up to ``now``: the sum of its holds."""
        return now - self.first - self.away

    def longest(self, now: float) -> float:
        """The longest single hold up to ``now`` (the current one included)."""
        return max(now - self.start, *self.slices) if self.slices else now - self.start


def note_slices(snapshot: Any, holds: Holds) -> None:
    """A snapshot whose request handed the hub back says so: ``slices``, the holds before the
    collection's (count, longest, sum; ms; see docs/schema.md)."""
    if holds.slices:
        snapshot["slices"] = {"holds": len(holds.slices),
                              "longest_ms": round(max(holds.slices) * 1000, 3),
                              "total_ms": round(sum(holds.slices) * 1000, 3)}


#: What placing one new worker in the listing's order (:meth:`_Order.update`) costs, about.
ORDER_COST_S = 2e-6


def warm(containers: list[Any], pause: Any, slice_start: float,
         budget: float = SLICE_BUDGET_S, clock: Any = time.perf_counter, *,
         max_workers: int = DEFAULT_MAX_WORKERS, repr_limit: int = DEFAULT_REPR_LIMIT,
         secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS, **_ignored: Any) -> float:
    """Fill the static part (:func:`_worker_static`: redacted arguments and context data, the
    head JSON) and the ``where`` of the workers a collection with these limits would list and
    has not cached yet, in slices of at most ``budget`` seconds of this call's own time, the
    current slice having started at ``slice_start``; between two slices ``pause()`` runs (the
    caller hands the hub back there: the backdoor's greenlet sleeps 0) and returns when the
    next slice starts. Returns when the last slice started.

    Nothing here is needed for correctness: a worker that finishes between slices was warmed
    for nothing, one that arrives is left to the collection, which does whatever is missing
    itself, in one piece. Which workers: while a container's workers are all listed, those at
    its worker table's end (spawn order) without a cache, up to the first with one; when
    more run than are listed, those among the first ``max_workers`` that the listing's order
    (:class:`_Order`) has not placed yet. Workers the table orders differently from the
    listing, or that move into it as older ones finish, are left to the collection. The order
    then learns them (~1.5 us each), in a slice of its own when that would take the current
    one past the budget: the one slice the budget does not bound. A slice ends before a
    worker would take it past the budget, judging by the slowest worker of this call so
    far."""
    opts: dict[str, Any] | None = None
    limit = max(int(max_workers), 0)
    slowest = 0.0
    for container in containers:
        try:
            threads = privates.worker_table(container)
            order = _order_of(container)
            if opts is None:
                opts = _options(max_workers=max_workers, repr_limit=repr_limit,
                                secret_patterns=secret_patterns)
            key = opts["cache_key"]
            if len(threads) <= limit:  # all listed: read from the end up to the first cached
                new = _uncached_tail(threads, key)
                todo = [(ctx, threads[ctx]) for ctx in new]
            else:  # the new ones, when they are listed at all
                new = _new_workers(threads, order.meta, limit)
                todo = [(ctx, threads[ctx]) for ctx in new if not _cached(ctx, key)]
        except BaseException:
            continue
        if not todo:
            continue
        name = str(getattr(container, "service_name", "?"))
        own = package_dirs(getattr(container, "service_cls", None))
        now = time.time()
        for ctx, gt in todo:
            t = clock()
            if t - slice_start + slowest > budget:
                slice_start = pause()
                now = time.time()
                if ctx not in threads:  # it finished meanwhile
                    continue
                t = clock()
            try:
                _static, first, cache = _worker_static(ctx, name, opts, now)
                frame = privates.greenthread_frame(gt)
                if frame is not None:
                    _where(frame, cache, own)
                    _session_line(cache, _started(ctx), first, True)
            except BaseException:
                continue  # the collection reports it
            took = clock() - t
            if took > slowest:
                slowest = min(took, budget / 2)  # one odd worker does not make every slice one
        # the listing's order learns the new workers (~1.5 us each; in a slice of its own when
        # that would take this one past the budget), which the collection then need not do
        if clock() - slice_start + len(new) * ORDER_COST_S > budget:
            slice_start = pause()
        try:
            order.update(threads, time.time())
        except BaseException:
            pass  # the collection says what it could not read
    return slice_start


def _cached(ctx: Any, key: Any) -> bool:
    cached = getattr(ctx, _CACHE_ATTR, None)
    return cached is not None and cached[0] == key and len(cached) > 3


def _uncached_tail(threads: dict[Any, Any], key: Any) -> list[Any]:
    """The workers at the table's end without a static part cached under ``key``, up to the
    first with one: the new ones (spawned since), and those a refresh listing fewer did not
    reach; a live refresh where none came reads one."""
    new = []
    for ctx in reversed(threads):
        if _cached(ctx, key):
            break
        new.append(ctx)
    new.reverse()
    return new


def _new_workers(threads: dict[Any, Any], known: Mapping[Any, Any], limit: int) -> list[Any]:
    """The workers of the table's first ``limit`` that the listing's order has not placed yet:
    spawned since its last update, so at the table's end, read from there up to the first it
    knows (a refresh where few came costs few reads; one at 10,000 workers with 1000 listed,
    where the new ones are past the listing, none)."""
    new = []
    for ctx in reversed(threads):
        if ctx in known:
            break
        new.append(ctx)
    first = len(threads) - len(new)  # the place of the oldest of them in the table
    if first >= limit:
        return []
    new.reverse()
    return new[: limit - first]


def _session_line(cache: _WorkerCache, started: float | None, first: float,
                  parked: bool) -> str:
    """A worker as a session refresh sends it without a stack (no age: the console derives
    it); kept in the cache while the worker is ``parked`` (has a frame: ``where`` is known)."""
    line = (f'{{{cache.head},"started_at":{_number(started)},'
            f'"first_seen":{_number(first)},'
            f'"where":{cache.where_json if parked else "null"},'
            f'"stack":null}}')
    if parked:
        cache.line, cache.line_started = line, started
    return line


def _where(frame: Any, cache: _WorkerCache, own: tuple[str, ...] = ()) -> FrameDict | None:
    """innermost_user_frame(), remembered per worker while it stays parked where it was."""
    lasti = frame.f_lasti
    if cache.where_frame is frame and cache.where_lasti == lasti:
        return cache.where
    epoch = table_epoch()
    i = innermost_user_index(frame, own=own)
    if epoch != table_epoch():  # the table started afresh on the way: once more, in the new one
        i = innermost_user_index(frame, own=own)
    where = frames_table[i] if i >= 0 else None
    cache.where_frame, cache.where_lasti, cache.where = frame, lasti, where
    cache.where_json = table_json[i] if i >= 0 else "null"
    cache.line = None
    return where


def _stack(frame: Any, cache: _WorkerCache, max_frames: int, epoch: int) -> None:
    """The worker's stack into its cache (indexes into the frame table, and as JSON), walked
    again only when the worker moved or the table started afresh."""
    lasti = frame.f_lasti
    key = (epoch, max_frames)
    if cache.stack_frame is frame and cache.stack_lasti == lasti and cache.stack_key == key:
        return
    stack = stack_indexes(frame, max_frames)
    cache.stack_frame, cache.stack_lasti = frame, lasti
    cache.stack_key = (table_epoch(), max_frames)
    cache.stack = stack
    cache.stack_json = "[" + ",".join(map(str, stack)) + "]"
    cache.stack_top = max(stack) if stack else -1


def _qualified(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


#: In a set of ``stacks``, ``managed:<target>`` asks for the stacks of the managed threads
#: running ``<target>`` (as their ``target`` field names it: ``ConsumerMixin.run``).
MANAGED = "managed:"


def _collect_managed(container: Any, name: str, opts: dict[str, Any],
                     errors: list[str]) -> list[ManagedThreadDict]:
    out: list[ManagedThreadDict] = []
    try:
        items = privates.managed_threads(container)
    except BaseException as exc:
        errors.append(f"{name}: cannot read managed threads: {type(exc).__name__}: {exc}")
        return out
    stacks = opts["stacks"]
    all_stacks = stacks == "all"
    some = not isinstance(stacks, str) and any(s.startswith(MANAGED) for s in stacks)
    for gt, identifier in items[: opts["max_workers"]]:
        frame = privates.greenthread_frame(gt)
        target = managed_target(frame) if frame is not None else None
        wanted = all_stacks or (some and f"{MANAGED}{target}" in stacks)
        stack: Any = None
        if wanted and frame is not None:
            if opts["encoded"]:  # frame-table indexes, like the workers' (see wire)
                stack = stack_indexes(frame, opts["max_frames"])
                opts["frames_used"] = max([opts["frames_used"], *stack])
            else:
                stack = stack_of(frame, opts["max_frames"])
        out.append({"identifier": str(identifier), "target": target, "stack": stack})
    return out


def _history(container: Any, encoded: bool) -> list[FinishedWorkerDict] | None:
    """The chassis bookkeeping's finished workers, oldest first: copies, or for the wire the
    bookkeeping's own entries (the agent sends a session only those it has not seen, and
    :func:`.wire.encode_snapshot` never changes them)."""
    for dep in getattr(container, "dependencies", ()) or ():
        history = getattr(dep, "chassis_history", None)
        if history is not None:
            try:
                if encoded:
                    return list(history)
                return [cast(FinishedWorkerDict, dict(h)) for h in list(history)]
            except BaseException:
                return []
    return None


def _collect_container(container: Any, now: float, opts: dict[str, Any],
                       errors: list[str]) -> ContainerDict:
    name = str(getattr(container, "service_name", "?"))
    cls = getattr(container, "service_cls", None)
    eps: list[EntrypointDict] = []
    for ep in list(getattr(container, "entrypoints", ()) or ()):
        try:
            kind = entrypoints.kind_of(ep)
            eps.append({"method": str(getattr(ep, "method_name", "?")), "type": kind,
                                "details": entrypoints.details(ep, kind)})
        except BaseException as exc:
            errors.append(f"{name}: cannot read an entrypoint: {type(exc).__name__}: {exc}")
    eps.sort(key=lambda e: (e["type"], e["method"]))
    dependencies: list[DependencyDict] = [{"attr": attr, "type": kind} for attr, kind in sorted(
        (str(getattr(d, "attr_name", "?")), _qualified(d))
        for d in list(getattr(container, "dependencies", ()) or ()))]
    subextensions: list[SubextensionDict] = [{"type": kind, "details": {}} for kind in sorted(
        _qualified(s) for s in list(getattr(container, "subextensions", ()) or ()))]
    workers, running, delta = _collect_workers(container, name, now, opts, errors)
    max_workers = getattr(container, "max_workers", 0)
    result: ContainerDict = {
        "service_name": name,
        "service_class": f"{cls.__module__}.{cls.__qualname__}" if cls is not None else "?",
        "started": bool(getattr(container, "started", False)),
        "max_workers": int(max_workers) if isinstance(max_workers, int) else 0,
        "workers_running": running,
        "entrypoints": eps,
        "dependencies": dependencies,
        "subextensions": subextensions,
        "workers": workers,
        "managed_threads": _collect_managed(container, name, opts, errors),
        "history": _history(container, opts["encoded"]),
    }
    result.update(delta)  # type: ignore[typeddict-item]
    if (queues := backlog.of(container)) is not None:  # the sampler's last: a dict lookup
        result["backlog"] = queues
    return result


def _options(*, stacks: Any = "all", max_workers: int = DEFAULT_MAX_WORKERS,
             max_frames: int = DEFAULT_MAX_FRAMES, repr_limit: int = DEFAULT_REPR_LIMIT,
             secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS,
             encoded: bool = False, session_before: Mapping[str, Listed] | None = None,
             session_after: dict[str, Listed] | None = None) -> dict[str, Any]:
    if not isinstance(stacks, str):
        stacks = frozenset(str(s) for s in stacks)
    elif stacks not in ("all", "none"):
        raise ValueError(f"stacks must be 'all', 'none' or a set of call ids, not {stacks!r}")
    repr_limit = max(int(repr_limit), 8)
    policy = policy_for(secret_patterns)
    return {"stacks": stacks, "max_workers": max(int(max_workers), 0),
            "max_frames": max(int(max_frames), 1), "repr_limit": repr_limit,
            # one RedactionPolicy object per settings: per-worker cache keys compare by identity
            "secret_patterns": policy, "cache_key": (repr_limit, policy),
            "listed_in": session_before, "listed_out": session_after if session_after is not None
            else {}, "encoded": encoded, "frames_used": -1}


_NAMEKO_VERSION: str | None = None


def collect(target: Any = None, *, namespace: Mapping[str, Any] | None = None,
            stacks: Any = "all", max_workers: int = DEFAULT_MAX_WORKERS,
            max_frames: int = DEFAULT_MAX_FRAMES, repr_limit: int = DEFAULT_REPR_LIMIT,
            secret_patterns: Iterable[str] = SECRET_KEY_PATTERNS,
            encoded: bool = False, session_before: Mapping[str, Listed] | None = None,
            session_after: dict[str, Listed] | None = None) -> SnapshotDict:
    """A schema-v1 snapshot of ``target``: a ServiceRunner, a ServiceContainer, a list of them,
    or None to find them (the ``runner`` in ``namespace``, else a bounded ``gc`` search).

    ``stacks``: ``"all"`` (every worker's full stack), ``"none"`` (only each worker's innermost
    user frame, ``where``), or a set of call ids whose full stacks to include; in the set,
    ``managed:<target>`` adds the stacks of the managed threads running ``<target>``.
    Limits: ``max_workers`` listed per container (oldest first), ``max_frames`` per stack,
    ``repr_limit`` characters per repr. ``secret_patterns``: names to redact (arguments, keys) —
    by default the process's policy; ``"+name"``/``"-name"`` entries edit it, other names
    replace its names (see :func:`.redaction.policy_for` and docs/security.md).

    ``session_before`` (the wire's delta refresh, used by the agent): what a client session
    was sent, per container name (:class:`Listed`, as ``session_after`` got it the last time).
    A listed worker whose ``where`` is still the very object sent, and whose stack was not
    asked for, is left out of ``workers``; the container says which workers the client keeps,
    as ``unchanged`` (their call ids) or ``unchanged_except`` (all of the previous listing but
    these call ids and those sent in full), whichever is shorter; the console reuses what it
    has (see ``wire``). ``session_after`` gets what this snapshot sends, for the next time.

    ``encoded`` (the agent's wire path): each container's ``workers`` are JSON texts (cached
    per worker, see :class:`_WorkerCache`), stacks are indexes into the frame table
    (:mod:`.frames`), ``history`` holds the bookkeeping's own entries, and the snapshot's
    ``frames_used`` is the highest index referenced: :func:`.wire.encode_snapshot` writes it.
    """
    global _NAMEKO_VERSION
    t0 = time.perf_counter()
    opts = _options(stacks=stacks, max_workers=max_workers, max_frames=max_frames,
                    repr_limit=repr_limit, secret_patterns=secret_patterns, encoded=encoded,
                    session_before=session_before, session_after=session_after)
    errors: list[str] = []
    containers, _how = _resolve(target, namespace)
    now = time.time()
    out: list[ContainerDict] = []
    for container in containers:
        try:
            out.append(_collect_container(container, now, opts, errors))
        except BaseException as exc:
            name = getattr(container, "service_name", "?")
            errors.append(f"{name}: cannot read container: {type(exc).__name__}: {exc}")
    if _NAMEKO_VERSION is None:
        _NAMEKO_VERSION = privates.library_versions()["nameko"] or "unknown"
    snapshot: SnapshotDict = {
        "schema": SCHEMA_VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "nameko": _NAMEKO_VERSION,
        "time": now,
        "took_ms": round((time.perf_counter() - t0) * 1000, 3),
        "errors": errors,
        "containers": out,
    }
    incidents = _incidents()
    if incidents is not None:
        snapshot["incidents"] = incidents
    try:
        snapshot["process"] = process.basics(containers)
    except BaseException as exc:  # process basics never break a snapshot
        errors.append(f"process basics: {type(exc).__name__}: {exc}")
    if encoded:
        cast(dict, snapshot)["frames_used"] = opts["frames_used"]
    return snapshot


def _incidents() -> list[IncidentDict] | None:
    """The hub watchdog's incidents, oldest first, when one runs in this process."""
    running = getattr(sys, WATCHDOG_MARKER, None)
    if running is None or getattr(running, "stopped", True):
        return None
    try:
        return [cast(IncidentDict, dict(i)) for i in running.recent()]
    except BaseException:
        return []
