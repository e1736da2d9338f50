"""Stack frames as the schema's frame objects, and which of them are the service's own code.

A frame is *library* code when it lives in the standard library, site-packages/dist-packages or
nameko/eventlet/greenlet/kombu/amqp; everything else is the service's. Frame objects are shared
between snapshots (one table entry per code location, see the frame table below): callers
must not mutate them.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
import sysconfig
from typing import Any

from . import privates
from .redaction import DEFAULT_REPR_LIMIT, safe_repr
from .schema import FrameDict

#: Frames kept per stack (the innermost ones).
DEFAULT_MAX_FRAMES = 40
#: Frames kept of a finished worker's traceback (the innermost ones: where it raised).
TRACEBACK_FRAMES = 30


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib"):
        try:
            roots.add(os.path.realpath(sysconfig.get_paths()[key]))
        except (KeyError, OSError):
            pass
    for key in ("stdlib", "platstdlib"):
        try:
            roots.add(os.path.realpath(sysconfig.get_path(key, vars={"base": sys.base_prefix,
                                                                       "platbase": sys.base_prefix})))
        except (KeyError, OSError, TypeError):
            pass
    return tuple(sorted(r.rstrip("/") + "/" for r in roots if r))


_LIB_ROOTS = _library_roots()
_LIB_MARKERS = ("/site-packages/", "/dist-packages/")
_LIB_PACKAGES = ("/nameko/", "/eventlet/", "/greenlet/", "/kombu/", "/amqp/")
_library_by_file: dict[str, bool] = {}


def is_library_file(filename: str) -> bool:
    """Standard library, site-packages/dist-packages and nameko/eventlet internals."""
    cached = _library_by_file.get(filename)
    if cached is not None:
        return cached
    if filename.startswith("<"):
        result = filename.startswith("<frozen") or filename == "<string>"
    else:
        result = (
            any(m in filename for m in _LIB_MARKERS)
            or any(m in filename for m in _LIB_PACKAGES)
            or filename.startswith(_LIB_ROOTS)
        )
    if len(_library_by_file) < 20_000:
        _library_by_file[filename] = result
    return result


# by id(code), checked with ``is``: hashing a code object hashes its bytecode and constants
_library_by_code: dict[int, tuple[Any, bool]] = {}


def code_is_library(code: Any) -> bool:
    cached = _library_by_code.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    result = is_library_file(code.co_filename)
    if len(_library_by_code) < 50_000:
        _library_by_code[id(code)] = (code, result)
    return result


# -- the frame table ------------------------------------------------------------------------
#
# Every distinct code location seen gets one entry, for the life of the process (until the
# table is full, then it starts afresh and ``table_epoch`` moves on): the frame dict, its JSON
# and a stable index. Stacks sent over the wire are lists of these indexes, so a worker's
# stack encodes once while it stays parked. Lookups go by ``id(code)`` (checked with ``is``)
# and the instruction offset: hashing a code object, or reading ``f_lineno``, costs more than
# the rest of a frame walk.

#: Entries in the frame table at most; past it the table starts afresh.
FRAME_TABLE_SIZE = 50_000
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
table: list[FrameDict] = []
table_json: list[str] = []
_index_by_id: dict[int, int] = {}
_by_code: dict[int, tuple[Any, dict[int, int], dict[int, int]]] = {}
_epoch = [0]


def table_epoch() -> int:
    """Moves on whenever the table starts afresh (indexes handed out before are void)."""
    return _epoch[0]


def _reset_table() -> None:
    table.clear()
    table_json.clear()
    _index_by_id.clear()
    _by_code.clear()
    _epoch[0] += 1


def _add(entry: FrameDict) -> int:
    if len(table) >= FRAME_TABLE_SIZE:
        _reset_table()
    i = len(table)
    table.append(entry)
    table_json.append(_ENCODER.encode(entry))
    _index_by_id[id(entry)] = i
    return i


def _code_entry(code: Any) -> tuple[Any, dict[int, int], dict[int, int]]:
    entry = _by_code.get(id(code))
    if entry is None or entry[0] is not code:
        entry = _by_code[id(code)] = (code, {}, {})  # (code, by lasti, by line)
    return entry


def _index_at(code: Any, lineno: int) -> int:
    by_line = _code_entry(code)[2]
    i = by_line.get(lineno)
    if i is None:
        filename = code.co_filename
        i = by_line[lineno] = _add({
            "file": filename,
            "line": lineno,
            "function": code.co_name,
            "code": (linecache.getline(filename, lineno).strip()[:DEFAULT_REPR_LIMIT]
                     if lineno else ""),
            "library": code_is_library(code),
        })
    return i


def frame_index(frame: Any) -> int:
    """The table index of a live frame, where it is now."""
    code = frame.f_code
    entry = _by_code.get(id(code))
    if entry is not None and entry[0] is code:
        i = entry[1].get(frame.f_lasti)
        if i is not None:
            return i
    epoch = _epoch[0]
    i = _index_at(code, frame.f_lineno or 0)
    if epoch == _epoch[0]:
        _code_entry(code)[1][frame.f_lasti] = i
    return i


def index_of(entry: Any) -> int:
    """The table index of a frame dict: one of ours, or one made by another copy of this
    module (the chassis's bookkeeping imports it normally; the console ships its own copy)."""
    i = _index_by_id.get(id(entry))
    if i is not None and table[i] is entry:
        return i
    return _add(entry)


def frame_json(entry: Any) -> str:
    """The JSON of a frame dict (of the table's: encoded once)."""
    if entry is None:
        return "null"
    return table_json[index_of(entry)]


def frame_dict(frame: Any) -> FrameDict:
    """The schema's frame object, shared between snapshots (one per code location): callers
    must not mutate it."""
    return table[frame_index(frame)]


def traceback_frames(tb: Any, max_frames: int = TRACEBACK_FRAMES) -> list[FrameDict]:
    """A traceback as schema frames, outermost first, the innermost ``max_frames`` kept (the
    raise is last). The frame objects are the shared ones of :func:`frame_dict` (by code and
    line), so the wire sends each once however many failures went through it. Never raises:
    what could be read when the traceback cannot."""
    frames: list[FrameDict] = []
    try:
        while tb is not None:
            frames.append(_located(tb.tb_frame.f_code, tb.tb_lineno or 0))
            if len(frames) > max_frames:
                del frames[0]
            tb = tb.tb_next
    except BaseException:
        return frames
    return frames


def _located(code: Any, lineno: int) -> FrameDict:
    return table[_index_at(code, lineno)]


def stack_indexes(frame: Any, max_frames: int = DEFAULT_MAX_FRAMES) -> list[int]:
    """:func:`stack_of` as frame-table indexes, outermost first."""
    epoch = _epoch[0]
    out: list[int] = []
    index = frame_index
    inner = frame
    while frame is not None and len(out) < max_frames:
        out.append(index(frame))
        frame = frame.f_back
    if epoch != _epoch[0]:  # the table started afresh on the way: once more, in the new one
        return stack_indexes(inner, max_frames)
    out.reverse()
    return out


def stack_of(frame: Any, max_frames: int = DEFAULT_MAX_FRAMES) -> list[FrameDict]:
    """The frames from ``frame`` outwards, at most ``max_frames`` innermost, outermost first."""
    indexes = stack_indexes(frame, max_frames)
    return [table[i] for i in indexes]


#: Frames that say nothing about what a worker waits for: the hub, greenlet switching, the
#: standard library's plumbing under them.
_PLUMBING = ("/eventlet/", "/greenlet/")


def _is_plumbing(filename: str) -> bool:
    if any(m in filename for m in _PLUMBING) or filename.startswith("<"):
        return True
    # the standard library, but not site-packages (in a virtualenv, platstdlib is the venv's
    # lib/pythonX.Y, which holds site-packages)
    return filename.startswith(_LIB_ROOTS) and not any(m in filename for m in _LIB_MARKERS)


# by id(code), checked with ``is``: (code, library code?, plumbing?) for innermost_user_index
_kind_by_code: dict[int, tuple[Any, bool, bool]] = {}


def _code_kind(code: Any) -> tuple[Any, bool, bool]:
    filename = code.co_filename
    found = (code, is_library_file(filename), _is_plumbing(filename))
    if len(_kind_by_code) >= 50_000:
        _kind_by_code.clear()
    _kind_by_code[id(code)] = found
    return found


def innermost_user_frame(frame: Any, max_depth: int = 200,
                         own: tuple[str, ...] = ()) -> FrameDict | None:
    """Where a suspended greenthread is, in user terms: its innermost frame of the service's
    own code (not library code), else of the service's own package (``own``: folders, for a
    service installed into site-packages), else of the nearest named library (say,
    nameko-sqlalchemy tearing down a session) rather than the hub's ``switch``, else its
    innermost frame."""
    i = innermost_user_index(frame, max_depth, own)
    return table[i] if i >= 0 else None


def innermost_user_index(frame: Any, max_depth: int = 200, own: tuple[str, ...] = ()) -> int:
    """:func:`innermost_user_frame` as its frame-table index (-1: None). What each code object
    is (library, plumbing) is looked up once per code, not once per frame and question."""
    first = frame
    depth = 0
    in_own = named = None
    kinds = _kind_by_code
    while frame is not None and depth < max_depth:
        code = frame.f_code
        kind = kinds.get(id(code))
        if kind is None or kind[0] is not code:
            kind = _code_kind(code)
        if not kind[1]:
            return frame_index(frame)
        if in_own is None and own and code.co_filename.startswith(own):
            in_own = frame
        if named is None and not kind[2]:
            named = frame
        frame = frame.f_back
        depth += 1
    chosen = in_own if in_own is not None else named if named is not None else first
    return frame_index(chosen) if chosen is not None else -1


_package_dirs: dict[Any, tuple[str, ...]] = {}


def package_dirs(cls: Any) -> tuple[str, ...]:
    """The folder of the top-level package a service class comes from (cached per class)."""
    cached = _package_dirs.get(cls)
    if cached is not None:
        return cached
    dirs: tuple[str, ...] = ()
    try:
        top = sys.modules.get(str(cls.__module__).split(".")[0])
        path = getattr(top, "__file__", None)
        if path:
            folder = os.path.dirname(os.path.realpath(path))
            if getattr(top, "__path__", None) is not None:  # a package: its folder
                dirs = (folder.rstrip("/") + "/",)
            else:  # a plain module: only that file
                dirs = (os.path.realpath(path),)
    except BaseException:
        dirs = ()
    if len(_package_dirs) < 1000:
        _package_dirs[cls] = dirs
    return dirs


def managed_target(frame: Any) -> str | None:
    """Name what a managed thread runs, from the bottom of its stack."""
    bottom = None
    depth = 0
    while frame is not None and depth < 500:
        bottom = frame
        frame = frame.f_back
        depth += 1
    if bottom is None:
        return None
    fn = privates.managed_function(bottom)
    if fn is None:
        return f"{bottom.f_code.co_name} ({os.path.basename(bottom.f_code.co_filename)})"
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return safe_repr(fn, 120)
    if owner is not None and "." not in name:
        name = f"{type(owner).__name__}.{name}"
    return str(name)
