"""Every private attribute of nameko, eventlet and greenlet that the probe reads, in one place.

The probe is duck-typed: it imports none of them (they may be absent, or another version), and
each reach below is a small function that cannot raise. ``TESTED_WITH`` names the versions these
reaches were written and tested against; :func:`untested_versions` says when the service runs
others, so the console can warn instead of silently showing less.
"""

from __future__ import annotations

import sys
from typing import Any

#: The library versions the reaches below were checked against.
TESTED_WITH: dict[str, tuple[str, ...]] = {
    "nameko": ("3.0.0rc11",),
    "eventlet": ("0.41.3",),
    "greenlet": ("3.5.6",),
}


def _version(module_name: str) -> str | None:
    mod = sys.modules.get(module_name)
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version(module_name)
    except Exception:
        return None


def library_versions() -> dict[str, str | None]:
    return {name: _version(name) for name in TESTED_WITH}


def untested_versions() -> list[str]:
    """``["nameko 3.1.0 (tested: 3.0.0rc11)"]`` for every library at a version not tested."""
    out = []
    for name, version in library_versions().items():
        if version is not None and version not in TESTED_WITH[name]:
            out.append(f"{name} {version} (tested: {', '.join(TESTED_WITH[name])})")
    return out


# -- nameko: runners and containers ----------------------------------------------------------


def is_runner(obj: Any) -> bool:
    """A nameko ``ServiceRunner``. ``type()``, not ``isinstance()``: weakref proxies pass
    isinstance checks."""
    return type(obj).__name__ == "ServiceRunner" and isinstance(getattr(obj, "service_map", None),
                                                                dict)


def runner_containers(runner: Any) -> list[Any]:
    return list(runner.service_map.values())


def is_container(obj: Any) -> bool:
    t = type(obj)
    return t.__name__ == "ServiceContainer" or (
        hasattr(t, "spawn_worker") and hasattr(t, "spawn_managed_thread")
        and isinstance(getattr(obj, "__dict__", None), dict) and "service_name" in obj.__dict__
    )


def worker_threads(container: Any) -> list[tuple[Any, Any]]:
    """(WorkerContext, GreenThread) of every running worker: ``container._worker_threads``."""
    return list((getattr(container, "_worker_threads", None) or {}).items())


def worker_table(container: Any) -> dict[Any, Any]:
    """``container._worker_threads`` itself (WorkerContext -> GreenThread, a dict in spawn
    order), not a copy: read it, never change it. An empty dict when it is not a dict."""
    table = getattr(container, "_worker_threads", None)
    return table if isinstance(table, dict) else dict(worker_threads(container))


def managed_threads(container: Any) -> list[tuple[Any, Any]]:
    """(GreenThread, identifier) of the container's managed threads: ``_managed_threads``."""
    return list((getattr(container, "_managed_threads", None) or {}).items())


# -- greenlet / eventlet ---------------------------------------------------------------------


def greenthread_frame(gt: Any) -> Any:
    """The innermost frame of a suspended greenlet (``gr_frame``); None while it runs or once
    it has finished."""
    try:
        return gt.gr_frame
    except BaseException:
        return None


def managed_function(bottom_frame: Any) -> Any:
    """What a greenthread runs: its bottom frame is eventlet's ``GreenThread.main``, whose local
    ``function`` is the callable. None for any other bottom frame."""
    try:
        if bottom_frame.f_code.co_name == "main":
            return bottom_frame.f_locals.get("function")
    except BaseException:
        pass
    return None


def current_greenlet() -> Any:
    try:
        import greenlet

        return greenlet.getcurrent()
    except BaseException:  # no greenlet: plain threads
        import threading

        return threading.current_thread()


def backdoor_peer() -> tuple[Any, ...] | None:
    """The client address of the backdoor connection running this code: eventlet's backdoor
    console greenlet keeps it as ``hostport``."""
    peer = getattr(current_greenlet(), "hostport", None)
    return tuple(peer)[:2] if peer else None


#: The attribute of a backdoor console greenlet holding when it was last switched in.
SWITCHED_IN_ATTR = "_chassis_switched_in"
#: ... and the file descriptor the hub resumed it for (its connection's socket).
SWITCHED_FD_ATTR = "_chassis_switched_fd"


def stamp_switch_ins(greenlet: Any, clock: Any) -> bool:
    """Have a backdoor console greenlet remember when the hub last switched it in, under
    :data:`SWITCHED_IN_ATTR`: the hub resumes a waiting greenlet through the ``switch``
    attribute it read when the greenlet went to wait (eventlet's ``trampoline``:
    ``current.switch``), and eventlet's ``SocketConsole`` overrides ``switch`` in Python; an
    instance attribute in front of it sees every switch-in. The hub passes the file descriptor
    that became ready (``listener.cb(fileno)``): kept under :data:`SWITCHED_FD_ATTR`. Lives and
    dies with the connection's greenlet (it holds the greenlet weakly). False when not a
    backdoor greenlet."""
    try:
        d = getattr(greenlet, "__dict__", None)
        if d is None or getattr(greenlet, "hostport", None) is None:
            return False
        if "switch" in d:
            return True
        import weakref

        ref = weakref.ref(greenlet)
        switch = type(greenlet).switch

        def stamped(*args: Any, **kwargs: Any) -> Any:
            d[SWITCHED_IN_ATTR] = clock()
            if len(args) == 1 and type(args[0]) is int:
                d[SWITCHED_FD_ATTR] = args[0]
            return switch(ref(), *args, **kwargs)

        d["switch"] = stamped
        return True
    except BaseException:
        return False


#: eventlet's backdoor console greenlet points ``sys.std*`` at its ``desc`` each time it is
#: switched back in; the REPL re-points that attribute while it captures output.
BACKDOOR_OUTPUT_ATTR = "desc"


# -- read from the watchdog's OS thread (see watchdog.py: never switch, never lock) -----------


def greenlet_is_running(gt: Any) -> bool:
    """True for the greenlet that is running right now in its thread: started, not finished
    (``bool(greenlet)``) and without a saved frame (``gr_frame`` is None only while it runs).
    Reads two fields; safe from another OS thread, where ``greenlet.getcurrent()`` is not."""
    try:
        return bool(gt) and not gt.dead and gt.gr_frame is None
    except BaseException:
        return False


#: The eventlet hub's idle wait: ``eventlet/hubs/<hub>.py`` ``wait()`` (epolls, poll, selects,
#: kqueue). The hub thread's innermost Python frame is there when it waits for events.
HUB_MODULE_MARKER = "/eventlet/hubs/"
HUB_WAIT_FUNCTION = "wait"


def hub_is_waiting(frame: Any) -> bool:
    """The hub thread's current frame is the hub waiting for I/O or timers: it is free."""
    try:
        code = frame.f_code
        return code.co_name == HUB_WAIT_FUNCTION and HUB_MODULE_MARKER in \
            code.co_filename.replace("\\", "/")
    except BaseException:
        return False


#: eventlet's ``GreenThread.main`` is the bottom frame of every greenthread it spawns.
GREENTHREAD_MAIN = ("main", "/eventlet/greenthread.py")


def is_greenthread_bottom(frame: Any) -> bool:
    try:
        code = frame.f_code
        return code.co_name == GREENTHREAD_MAIN[0] and \
            code.co_filename.replace("\\", "/").endswith(GREENTHREAD_MAIN[1])
    except BaseException:
        return False
