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


def getcurrent_function() -> Any:
    """The function that names the running greenlet (``greenlet.getcurrent``), else the
    running thread's: for code that asks many times, such as a trace function."""
    try:
        import greenlet

        return greenlet.getcurrent
    except BaseException:
        import threading

        return threading.current_thread


def green_deadline(seconds: float, exception: type[BaseException]) -> Any:
    """An eventlet ``Timeout(seconds, exception)`` for the running greenthread — raised in it if
    it is still waiting (switched out to the hub) when ``seconds`` have passed — or None where
    this thread has no eventlet hub (the watchdog's OS thread, a service without eventlet):
    creating one there would start a second hub."""
    hubs = sys.modules.get("eventlet.hubs")
    timeout = sys.modules.get("eventlet.timeout")
    if hubs is None or timeout is None:
        return None
    try:
        if getattr(hubs._threadlocal, "hub", None) is None:  # private: the thread's hub, if any
            return None
        return timeout.Timeout(seconds, exception)
    except BaseException:
        return None


def hub_pause() -> Any:
    """A function that hands this thread's eventlet hub back for one turn (``eventlet.sleep(0)``:
    every greenthread ready to run runs, then this one resumes), or None where that is not
    safe: no eventlet loaded, no hub in this thread (the watchdog's OS thread; creating one
    there would start a second hub), or the running greenlet is the hub's own. A backdoor
    console greenlet resumed by the hub goes through its ``switch`` (eventlet's
    ``SocketConsole.switch``), which points ``sys.std*`` back at its socket."""
    hubs = sys.modules.get("eventlet.hubs")
    greenthread = sys.modules.get("eventlet.greenthread")
    if hubs is None or greenthread is None:
        return None
    try:
        hub = getattr(hubs._threadlocal, "hub", None)  # private: the thread's hub, if any
        if hub is None:
            return None
        import greenlet

        current = greenlet.getcurrent()
        if current is getattr(hub, "greenlet", None) or getattr(current, "dead", True):
            return None
        sleep = greenthread.sleep
    except BaseException:
        return None

    def pause() -> None:
        sleep(0)

    return pause


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


# -- libraries the REPL guards and the redaction settings reach (public names, found in
#    sys.modules: never imported, so a service without them is left as it is) -----------------


def nameko_config() -> Any:
    """nameko's global config (``nameko.config``), or None."""
    return getattr(sys.modules.get("nameko"), "config", None)


#: eventlet's spawning functions, by module, with the index of the function they are given.
EVENTLET_SPAWNS: tuple[tuple[str, str, int], ...] = (
    ("eventlet", "spawn", 0), ("eventlet", "spawn_n", 0), ("eventlet", "spawn_after", 1),
    ("eventlet", "spawn_after_local", 1),
    ("eventlet.greenthread", "spawn", 0), ("eventlet.greenthread", "spawn_n", 0),
    ("eventlet.greenthread", "spawn_after", 1), ("eventlet.greenthread", "spawn_after_local", 1),
)


def eventlet_spawns() -> list[tuple[Any, str, int]]:
    """(module, function name, index of the spawned function) for each loaded spawner."""
    out = []
    for module_name, attr, func_at in EVENTLET_SPAWNS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            out.append((module, attr, func_at))
    return out


def green_pool_class() -> Any:
    """``eventlet.greenpool.GreenPool``, when loaded."""
    return getattr(sys.modules.get("eventlet.greenpool"), "GreenPool", None)


def current_hub() -> Any:
    """This thread's eventlet hub, when eventlet is loaded (``get_hub`` creates it if needed)."""
    hubs = sys.modules.get("eventlet.hubs")
    if hubs is None:
        return None
    try:
        return hubs.get_hub()
    except BaseException:
        return None


# -- backlog and log tail (backlog.py, logtail.py): reached at run time only -----------------
#
# The queues an entrypoint consumes from, the broker settings nameko uses for them, and the
# eventlet primitives the two greenthreads of backlog.py and logtail.py need. kombu and eventlet
# are imported inside the functions: the probe stays importable where they are absent.


def entrypoint_queue(entrypoint: Any) -> tuple[str, Any] | None:
    """(queue name, nameko's ``amqp.consume.Consumer``) an entrypoint consumes from: an
    ``@rpc``'s shared ``rpc_consumer.queue`` (``rpc-<service>``), an ``@event_handler``'s or
    ``@consume``'s own ``queue``. None for entrypoints without a queue (HTTP, timers)."""
    try:
        owner = getattr(entrypoint, "rpc_consumer", None) or entrypoint
        queue = getattr(owner, "queue", None)
        name = getattr(queue, "name", None)
        if not isinstance(name, str) or not name:
            return None
        return name, getattr(owner, "consumer", None)
    except BaseException:
        return None


def broker_settings(consumer: Any) -> tuple[str, Any, Any] | None:
    """(AMQP URI, ssl, login method) of one of nameko's consumers: the connection settings the
    service itself uses (``nameko.amqp.consume.Consumer.amqp_uri`` / ``.ssl`` /
    ``.login_method``)."""
    uri = getattr(consumer, "amqp_uri", None)
    if not isinstance(uri, str) or not uri:
        return None
    return uri, getattr(consumer, "ssl", None), getattr(consumer, "login_method", None)


#: nameko spawns one managed thread per message waiting for a free worker, named
#: ``<EntrypointClass>.wait_for_worker_pool[<service>.<method>]`` (rpc.py, messaging.py).
POOL_WAITER_MARK = ".wait_for_worker_pool["


def pool_waiter_method(identifier: Any) -> str | None:
    """``method`` when a managed thread's identifier is nameko's waiter for a worker slot."""
    text = identifier if isinstance(identifier, str) else ""
    at = text.find(POOL_WAITER_MARK)
    if at < 0 or not text.endswith("]"):
        return None
    return text[at + len(POOL_WAITER_MARK):-1].rsplit(".", 1)[-1]


def broker_connection(uri: str, ssl: Any, login_method: Any, timeout: float) -> Any:
    """A kombu ``Connection`` of its own (never one of the service's), connected, or raises."""
    from kombu import Connection

    conn = Connection(uri, ssl=ssl, login_method=login_method, connect_timeout=timeout,
                      transport_options={"read_timeout": timeout, "write_timeout": timeout})
    conn.connect()
    return conn


def passive_declare(conn: Any, channel: Any, name: str) -> tuple[Any, int, int]:
    """(channel, messages ready, consumers) of queue ``name`` by a passive ``queue.declare``
    (never creates it). A broker refusal (404 no such queue, 405 another connection's exclusive
    queue) closes the channel: the next call opens a new one."""
    if channel is None or not getattr(channel, "is_open", True):
        channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
    except BaseException:
        try:
            channel.close()
        except BaseException:
            pass
        raise
    return channel, int(ok.message_count), int(ok.consumer_count)


def spawn_greenthread(fn: Any, *args: Any) -> Any:
    """``eventlet.spawn``: a greenthread of the probe's own, outside every container."""
    import eventlet

    return eventlet.spawn(fn, *args)


def green_sleep(seconds: float) -> None:
    """``eventlet.sleep``: yields the hub (falls back to ``time.sleep`` without eventlet)."""
    try:
        import eventlet
    except ImportError:
        import time

        time.sleep(seconds)
        return
    eventlet.sleep(seconds)


def green_timeout(seconds: float) -> Any:
    """``eventlet.Timeout(seconds)``: a context manager that raises in this greenthread when
    it waits longer (so a broker that stops answering cannot hold the sampler)."""
    import eventlet

    return eventlet.Timeout(seconds)


#: nameko runs every worker inside ``ServiceContainer._run_worker(self, worker_ctx, ...)``
#: (nameko/containers.py): a log record emitted by a worker has that frame below it.
WORKER_RUN_FRAME = ("_run_worker", "/nameko/containers.py")


def worker_context_of(frame: Any, max_depth: int = 200) -> Any:
    """The ``WorkerContext`` whose worker is running ``frame`` (found by walking ``f_back`` to
    nameko's ``_run_worker`` frame and reading its ``worker_ctx`` local), or None."""
    name, path = WORKER_RUN_FRAME
    try:
        for _ in range(max_depth):
            if frame is None:
                return None
            code = frame.f_code
            if code.co_name == name and code.co_filename.replace("\\", "/").endswith(path):
                return frame.f_locals.get("worker_ctx")
            frame = frame.f_back
    except BaseException:
        pass
    return None
