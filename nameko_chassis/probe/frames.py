"""Stack frames as the schema's frame objects, and which of them are the service's own code.

A frame is *library* code when it lives in the standard library, site-packages/dist-packages or
nameko/eventlet/greenlet/kombu/amqp; everything else is the service's. Frame objects are shared
between snapshots (cached by code object and line): callers must not mutate them.
"""

from __future__ import annotations

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


_frame_cache: dict[tuple[Any, int], FrameDict] = {}
_library_by_code: dict[Any, bool] = {}


def code_is_library(code: Any) -> bool:
    cached = _library_by_code.get(code)
    if cached is None:
        cached = is_library_file(code.co_filename)
        if len(_library_by_code) < 50_000:
            _library_by_code[code] = cached
    return cached


def frame_dict(frame: Any) -> FrameDict:
    """The schema's frame object, shared between snapshots (cached by code and line): callers
    must not mutate it."""
    return _located(frame.f_code, frame.f_lineno or 0)


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
    key = (code, lineno)
    cached = _frame_cache.get(key)
    if cached is not None:
        return cached
    filename = code.co_filename
    cached = {
        "file": filename,
        "line": lineno,
        "function": code.co_name,
        "code": linecache.getline(filename, lineno).strip()[:DEFAULT_REPR_LIMIT] if lineno else "",
        "library": code_is_library(code),
    }
    if len(_frame_cache) > 50_000:
        _frame_cache.clear()
    _frame_cache[key] = cached
    return cached


def stack_of(frame: Any, max_frames: int = DEFAULT_MAX_FRAMES) -> list[FrameDict]:
    """The frames from ``frame`` outwards, at most ``max_frames`` innermost, outermost first."""
    frames: list[FrameDict] = []
    while frame is not None and len(frames) < max_frames:
        frames.append(frame_dict(frame))
        frame = frame.f_back
    frames.reverse()
    return frames


#: Frames that say nothing about what a worker waits for: the hub, greenlet switching, the
#: standard library's plumbing under them.
_PLUMBING = ("/eventlet/", "/greenlet/")


def _is_plumbing(filename: str) -> bool:
    if any(m in filename for m in _PLUMBING) or filename.startswith("<"):
        return True
    # the standard library, but not site-packages (in a virtualenv, platstdlib is the venv's
    # lib/pythonX.Y, which holds site-packages)
    return filename.startswith(_LIB_ROOTS) and not any(m in filename for m in _LIB_MARKERS)


def innermost_user_frame(frame: Any, max_depth: int = 200,
                         own: tuple[str, ...] = ()) -> FrameDict | None:
    """Where a suspended greenthread is, in user terms: its innermost frame of the service's
    own code (not library code), else of the service's own package (``own``: folders, for a
    service installed into site-packages), else of the nearest named library (say,
    nameko-sqlalchemy tearing down a session) rather than the hub's ``switch``, else its
    innermost frame."""
    first = frame
    depth = 0
    in_own = named = None
    while frame is not None and depth < max_depth:
        code = frame.f_code
        if not code_is_library(code):
            return frame_dict(frame)
        if in_own is None and own and code.co_filename.startswith(own):
            in_own = frame
        if named is None and not _is_plumbing(code.co_filename):
            named = frame
        frame = frame.f_back
        depth += 1
    chosen = in_own if in_own is not None else named if named is not None else first
    return frame_dict(chosen) if chosen is not None else None


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
