"""The service half of ``chassis-console --repl``: run typed code safely, complete names, and
offer the debugging helpers without imports.

Shipped as source next to the agent (standard library only at import time); its operations are
merged into the agent's through :data:`OPS` and called as ``fn(namespace, **kwargs)`` with the
backdoor's shared namespace (the one that holds ``runner``):

- ``repl_hello`` — the helpers on offer and where they come from;
- ``exec_start`` / ``exec_poll`` / ``exec_cancel`` — run one unit of input (a line or a whole
  block) in a greenthread of its own, fetch its output as it comes and its result or traceback
  at the end, interrupt it with KeyboardInterrupt where it waits;
- ``exec`` — the same in the backdoor's own greenlet, returning when done (no eventlet, tests);
- ``complete`` — completions of the line before the cursor, from the live namespace.

Safety policy, applied while the REPL's own code runs (other greenthreads are never affected:
every guard checks the calling greenlet and lets everyone else through):

- ``SystemExit`` (``exit()``, ``quit()``, ``sys.exit()``, ``raise SystemExit``) and
  ``KeyboardInterrupt`` raised by the code are caught and reported: in a backdoor they would stop
  the whole service. The rest of that input is skipped.
- Calls that end or stop the process are refused with :class:`Refused` before they act:
  ``os._exit``, ``os.abort``, ``os.kill``/``os.killpg`` aimed at this process or its group (signal
  0, a liveness check, is allowed), ``signal.raise_signal``, ``signal.pthread_kill``, and ``stop()``
  / ``kill()`` of the service runner and its containers (bound or unbound:
  ``type(runner).stop(runner)``), the eventlet hub's ``abort()``, and ``signal.alarm`` /
  ``signal.setitimer`` while their signal has no handler (its default action ends the process).
  Code the REPL's code starts — ``eventlet.spawn``/``spawn_n``/``spawn_after``, a ``GreenPool``,
  ``threading.Thread(...).start()`` — runs guarded too, whenever it runs, and its ``SystemExit``
  is contained. To stop a service, stop it from outside
  (its supervisor, or SIGTERM). Guards catch mistakes, not malice: a backdoor is full control.
- ``input()`` and anything else reading stdin gets end-of-file: there is no terminal on this side.

Output written by the REPL's greenthread is captured (up to :data:`MAX_OUTPUT_CHARS`) and returned;
output of other greenthreads meanwhile goes to the process's own stdout/stderr, not the console.
Helpers are put into the namespace for the duration of one ``exec`` only, and only under names
that are free; ``exit``/``quit`` are shadowed by versions that say what they do here.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import linecache
import os
import re
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import agent, privates, wire
from . import collect as collector

#: Characters of output (stdout and stderr together) returned per input; the rest is dropped.
MAX_OUTPUT_CHARS = 200_000
#: Completions returned per request.
MAX_COMPLETIONS = 500
#: REPL inputs kept in ``linecache`` so tracebacks (also later ones, from functions defined at
#: the REPL) show their source lines.
SOURCE_CACHE_SIZE = 200
#: Characters of a traceback returned.
MAX_TRACEBACK_CHARS = 50_000

_MISSING = object()
_state: dict[str, Any] = {"counter": 0, "columns": 100, "color": False}
_filenames: deque[str] = deque()


class Refused(Exception):
    """A call the REPL does not let through: it would stop the service."""


# ---------------------------------------------------------------------------------------------
# greenlets: who is running right now


_current = privates.current_greenlet


# ---------------------------------------------------------------------------------------------
# output capture


class _Output:
    """What the REPL's code printed, kept up to :data:`MAX_OUTPUT_CHARS`."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.size = 0
        self.truncated = False

    def add(self, text: str) -> None:
        room = MAX_OUTPUT_CHARS - self.size
        if len(text) > room:
            text = text[:max(room, 0)]
            self.truncated = True
        if text:
            self.chunks.append(text)
            self.size += len(text)

    def text(self) -> str:
        return "".join(self.chunks)


class _Capture:
    """Stands in for sys.stdout/stderr/stdin while the REPL's code runs. Writes from the REPL's
    greenlet are kept; writes from any other greenthread go to the process's own stream."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, owner: Any, output: _Output, fallback: Any) -> None:
        self._owner = owner
        self._output = output
        self._fallback = fallback

    def write(self, text: Any) -> int:
        text = str(text)
        if _current() is self._owner:
            self._output.add(text)
        else:
            try:
                self._fallback.write(text)
            except BaseException:  # nowhere to write: drop it
                pass
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    # stdin: end of file (there is no terminal on this side)
    def readline(self, *args: Any) -> str:
        return ""

    def read(self, *args: Any) -> str:
        return ""

    def fileno(self) -> int:
        import io

        raise io.UnsupportedOperation("the REPL's output is captured, it has no file descriptor")


@contextmanager
def _captured(owner: Any, output: _Output) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    out = _Capture(owner, output, sys.__stdout__)
    err = _Capture(owner, output, sys.__stderr__)
    # eventlet's backdoor greenlet re-points sys.std* at its own ``desc`` each time it is switched
    # back in (after the code yields): point that at the capture too, for the duration.
    attr = privates.BACKDOOR_OUTPUT_ATTR
    desc = getattr(owner, attr, _MISSING)
    if desc is not _MISSING:
        setattr(owner, attr, out)
    sys.stdin, sys.stdout, sys.stderr = out, out, err
    try:
        yield
    finally:
        if desc is not _MISSING:
            setattr(owner, attr, desc)
        sys.stdin, sys.stdout, sys.stderr = saved


@contextmanager
def _displaying(owner: Any, namespace: dict[str, Any]) -> Iterator[None]:
    """Echo expression values as the prompt does, but keep the last one as ``_`` in the backdoor
    namespace: the default hook sets ``builtins._``, which would clobber a service's gettext
    ``_`` for every module in the process."""
    saved = sys.displayhook

    def displayhook(value: Any) -> None:
        if _current() is not owner:
            saved(value)
            return
        if value is None:
            return
        namespace["_"] = value
        sys.stdout.write(repr(value) + "\n")

    sys.displayhook = displayhook
    try:
        yield
    finally:
        if sys.displayhook is displayhook:
            sys.displayhook = saved


# ---------------------------------------------------------------------------------------------
# guards


def _own_targets() -> tuple[set[int], set[int]]:
    pid = os.getpid()
    try:
        pgrp = os.getpgrp()
    except BaseException:
        pgrp = pid
    return {pid, 0, -1, -pgrp}, {pgrp, 0}


def _refuse(what: str) -> Refused:
    return Refused(f"{what} would stop the service, so the REPL refused it (the service keeps "
                   "running). To stop the service, stop it from outside: its supervisor, or "
                   "SIGTERM.")


#: Greenlets running REPL code right now (a count each): the guards refuse only their calls.
#: Several at once when a statement the console stopped waiting for is still running.
_owners: dict[Any, int] = {}
#: Guards in place: (id(object), attribute) -> (object, attribute, what was there before).
_installed: dict[tuple[int, str], tuple[Any, str, Any]] = {}


def _guard_function(original: Callable[..., Any], name: str,
                    refuse_if: Callable[..., bool]) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        if _current() in _owners and refuse_if(*args, **kwargs):
            raise _refuse(name)
        return original(*args, **kwargs)

    guard.__name__ = getattr(original, "__name__", name)
    guard.__doc__ = getattr(original, "__doc__", None)
    # no __wrapped__: `c.stop.__wrapped__()` would be the unguarded original
    guard._chassis_guard = True  # type: ignore[attr-defined]
    return guard


def _adopt(fn: Callable[..., Any], namespace: Mapping[str, Any]) -> Callable[..., Any]:
    """``fn`` run as REPL code wherever and whenever it runs (a greenthread or thread the REPL
    started, a timer that fires after the input is done): guarded, and its SystemExit and
    KeyboardInterrupt contained."""
    def adopted(*args: Any, **kwargs: Any) -> Any:
        with _guarded(_current(), namespace):
            try:
                return fn(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt) as exc:
                sys.stderr.write(f"chassis REPL: {type(exc).__name__} raised in a greenthread "
                                 "started from the REPL was contained (it would stop the "
                                 "service)\n")
                return None

    adopted._chassis_adopted = True  # type: ignore[attr-defined]
    return adopted


def _spawn_guard(original: Callable[..., Any], func_at: int,
                 namespace: Mapping[str, Any]) -> Callable[..., Any]:
    """``spawn``/``spawn_after``/``Thread.start``-like ``original`` whose callable (argument
    ``func_at``) is adopted when REPL code calls it."""
    def guard(*args: Any, **kwargs: Any) -> Any:
        if _current() in _owners and len(args) > func_at and callable(args[func_at]) \
                and not getattr(args[func_at], "_chassis_adopted", False):
            args = (*args[:func_at], _adopt(args[func_at], namespace), *args[func_at + 1:])
        return original(*args, **kwargs)

    guard.__name__ = getattr(original, "__name__", "spawn")
    guard.__doc__ = getattr(original, "__doc__", None)
    guard._chassis_guard = True  # type: ignore[attr-defined]
    return guard


def _thread_start_guard(original: Callable[..., Any],
                        namespace: Mapping[str, Any]) -> Callable[..., Any]:
    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _current() in _owners:
            run = self.run
            if not getattr(run, "_chassis_adopted", False):
                self.run = _adopt(run, namespace)
        return original(self, *args, **kwargs)

    start._chassis_guard = True  # type: ignore[attr-defined]
    return start


def _signal_kills(sig: Any) -> bool:
    """Whether ``sig`` arriving now would end the process (its default action, no handler)."""
    try:
        return sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None)
    except BaseException:
        return True


def _alarm_kills(seconds: Any = 0, *args: Any, **kwargs: Any) -> bool:
    return bool(seconds) and _signal_kills(getattr(signal, "SIGALRM", None))


def _itimer_kills(which: Any = None, seconds: Any = 0, *args: Any, **kwargs: Any) -> bool:
    sig = {getattr(signal, "ITIMER_REAL", -1): getattr(signal, "SIGALRM", None),
           getattr(signal, "ITIMER_VIRTUAL", -2): getattr(signal, "SIGVTALRM", None),
           getattr(signal, "ITIMER_PROF", -3): getattr(signal, "SIGPROF", None)}.get(which)
    return bool(seconds) and _signal_kills(sig)


def _always(*args: Any, **kwargs: Any) -> bool:
    return True


def _stoppables(namespace: Mapping[str, Any]) -> list[Any]:
    """The runner and its containers: objects whose stop()/kill() ends the service."""
    out: list[Any] = []
    runner = namespace.get("runner")
    if runner is not None and hasattr(runner, "service_map"):
        out.append(runner)
    try:
        out.extend(agent.containers_of(dict(namespace)))
    except BaseException:  # no containers found
        pass
    return out


def _install(obj: Any, attr: str, name: str, refuse_if: Callable[..., bool] | None,
             instance: bool = False,
             make: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None) -> None:
    key = (id(obj), attr)
    if key in _installed:
        return
    original = getattr(obj, attr, None)
    if original is None or getattr(original, "_chassis_guard", False):
        return
    before = obj.__dict__.get(attr, _MISSING) if instance else original
    try:
        guard = make(original) if make is not None else \
            _guard_function(original, name, refuse_if or _always)
        setattr(obj, attr, guard)
    except BaseException:  # read-only or slotted: leave it
        return
    _installed[key] = (obj, attr, before)


def _uninstall_all() -> None:
    for obj, attr, before in reversed(list(_installed.values())):
        try:
            if before is _MISSING:
                delattr(obj, attr)
            else:
                setattr(obj, attr, before)
        except BaseException:
            pass
    _installed.clear()


def _install_indirections(namespace: Mapping[str, Any]) -> None:
    """Guards on the ways code reaches a guarded call later or elsewhere: eventlet's spawns
    (``spawn_after`` too), green pools, threads; and the hub's abort(). Found in sys.modules,
    never imported."""
    import threading

    def spawning(func_at: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return lambda original: _spawn_guard(original, func_at, namespace)

    for module, attr, func_at in privates.eventlet_spawns():
        _install(module, attr, attr, None, make=spawning(func_at))
    pool = privates.green_pool_class()
    if pool is not None:
        for attr in ("spawn", "spawn_n"):
            _install(pool, attr, attr, None, instance=True, make=spawning(1))
    hub = privates.current_hub()
    if hub is not None:
        _install(hub, "abort", "the eventlet hub's abort()", _always, instance=True)
    _install(threading.Thread, "start", "Thread.start", None, instance=True,
             make=lambda original: _thread_start_guard(original, namespace))


@contextmanager
def _guarded(owner: Any, namespace: Mapping[str, Any]) -> Iterator[None]:
    """Refuse, for ``owner``'s calls only, what would end or stop the process (see the module
    docstring). The guards stay in place while any REPL code runs, and go when the last ends."""
    own_pids, own_groups = _own_targets()

    def kill_self(pid: int = 0, sig: int = 0, *rest: Any, **kwargs: Any) -> bool:
        return pid in own_pids and sig != 0

    def killpg_self(pgid: int = 0, sig: int = 0, *rest: Any, **kwargs: Any) -> bool:
        return pgid in own_groups and sig != 0

    _owners[owner] = _owners.get(owner, 0) + 1
    try:
        _install(os, "_exit", "os._exit()", _always)
        _install(os, "abort", "os.abort()", _always)
        _install(os, "kill", "os.kill() of this process or its group", kill_self)
        _install(os, "killpg", "os.killpg() of this process's group", killpg_self)
        _install(signal, "raise_signal", "signal.raise_signal()", _always)
        _install(signal, "pthread_kill", "signal.pthread_kill()", _always)
        _install(signal, "alarm", "signal.alarm() (SIGALRM has no handler)", _alarm_kills)
        _install(signal, "setitimer", "signal.setitimer() (its signal has no handler)",
                 _itimer_kills)
        stoppables = _stoppables(namespace)

        def is_stoppable(target: Any = None, *rest: Any, **kwargs: Any) -> bool:
            return any(target is s for s in stoppables)

        for obj in stoppables:
            label = "the service runner" if hasattr(obj, "service_map") else \
                f"container {getattr(obj, 'service_name', '?')!r}"
            for method in ("stop", "kill"):
                _install(obj, method, f"{method}() of {label}", _always, instance=True)
                # the unbound spellings: type(runner).stop(runner), ServiceRunner.kill(runner)
                _install(type(obj), method, f"{type(obj).__name__}.{method}() of {label}",
                         is_stoppable, instance=True)
        _install_indirections(namespace)
        yield
    finally:
        _owners[owner] -= 1
        if not _owners[owner]:
            del _owners[owner]
        if not _owners:
            _uninstall_all()


# ---------------------------------------------------------------------------------------------
# helpers offered without imports


class _Leave:
    """``exit``/``quit`` at the REPL: calling them inside code is contained like any SystemExit."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return (f"Use {self.name}() or Ctrl-D to leave the REPL; the service keeps running.")

    def __call__(self, code: Any = None) -> None:
        raise SystemExit(code)


def _default_target(namespace: Mapping[str, Any], target: Any) -> Any:
    if target is not None:
        return target
    runner = namespace.get("runner")
    if runner is not None:
        return runner
    return agent.containers_of(dict(namespace))


def _make_helpers(namespace: dict[str, Any]) -> dict[str, Any]:
    def collect(target: Any = None, **limits: Any) -> dict[str, Any]:
        """A schema-v1 snapshot dict of ``target`` (default: ``runner``). Limits as in
        ``nameko_chassis.probe.collect.collect``: stacks, max_workers, max_frames, repr_limit."""
        return dict(collector.collect(_default_target(namespace, target), **limits))

    def snapshot(target: Any = None, **limits: Any) -> Any:
        """The typed snapshot (``nameko_chassis.view.Snapshot``) of ``target`` (default:
        ``runner``): ``.containers``, ``.workers``, ``.find_worker(call_id)``."""
        try:
            from nameko_chassis.view.model import Snapshot
        except ImportError:
            raise ImportError("nameko_chassis is not installed in this service: use collect() "
                              "for the same snapshot as a dict") from None
        return Snapshot.from_dict(collect(target, **limits))

    def debug_runner(runner: Any = None, **options: Any) -> None:
        """Print a readable picture of the runner (default: ``runner``): containers,
        entrypoints, workers with their age and where they wait."""
        _print_picture(namespace, "debug_runner", runner, options)

    def debug_container(container: Any, **options: Any) -> None:
        """Print the picture of one container."""
        _print_picture(namespace, "debug_container", container, options)

    return {
        "debug_runner": debug_runner,
        "debug_container": debug_container,
        "collect": collect,
        "snapshot": snapshot,
    }


def _print_picture(namespace: dict[str, Any], name: str, target: Any,
                   options: dict[str, Any]) -> None:
    target = _default_target(namespace, target)
    import importlib

    debug: Any
    try:  # the real thing, when the service has nameko-chassis installed
        debug = importlib.import_module("nameko_chassis.debug")
    except ImportError:
        debug = None
    if debug is not None:
        fn = getattr(debug, name)
        # the console's terminal, not the service's: its width, and colour when it has some
        for option, value in (("width", _state["columns"]), ("color", _state["color"])):
            if option not in options and _accepts(fn, option):
                options[option] = value
        return fn(target, **options)
    # nameko_chassis is not installed in the service: send the snapshot, the console draws it
    data = collector.collect(target, stacks="none")
    sys.stdout.write(wire.encode_page(dict(data)))
    return None


def _accepts(fn: Callable[..., Any], option: str) -> bool:
    import inspect

    try:
        return option in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _helpers(namespace: dict[str, Any]) -> dict[str, Any]:
    helpers = _state.get("helpers")
    if helpers is None or _state.get("helpers_for") is not namespace:
        helpers = _make_helpers(namespace)
        _state["helpers"] = helpers
        _state["helpers_for"] = namespace
    return helpers


_LEAVERS = {"exit": _Leave("exit"), "quit": _Leave("quit")}


@contextmanager
def _injected(namespace: dict[str, Any]) -> Iterator[None]:
    """Helpers under names that are free, ``exit``/``quit`` always; put back afterwards unless
    the code rebound them."""
    injected: dict[str, tuple[Any, Any]] = {}
    for name, value in _helpers(namespace).items():
        if name not in namespace:
            namespace[name] = value
            injected[name] = (value, _MISSING)
    for name, value in _LEAVERS.items():
        injected[name] = (value, namespace.get(name, _MISSING))
        namespace[name] = value
    try:
        yield
    finally:
        for name, (value, before) in injected.items():
            if namespace.get(name, _MISSING) is value:
                if before is _MISSING:
                    namespace.pop(name, None)
                else:
                    namespace[name] = before


# ---------------------------------------------------------------------------------------------
# operations


def _helper_sources() -> dict[str, str]:
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except BaseException:
            return False

    if found("nameko_chassis.debug"):
        picture = "nameko_chassis.debug"
    else:
        picture = "drawn by the console (nameko_chassis is not installed in this service)"
    return {
        "debug_runner": picture,
        "debug_container": picture,
        "collect": "shipped collector",
        "snapshot": "nameko_chassis.view" if found("nameko_chassis.view")
        else "unavailable (nameko_chassis is not installed in this service): use collect()",
    }


def repl_hello(namespace: dict[str, Any]) -> dict[str, Any]:
    """What the banner shows: the helpers, where they come from, and whether ``runner`` is here."""
    return {"helpers": _helper_sources(), "runner": "runner" in namespace}


def _remember_source(source: str) -> str:
    _state["counter"] += 1
    filename = f"<repl#{_state['counter']}>"
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)
    _filenames.append(filename)
    while len(_filenames) > SOURCE_CACHE_SIZE:
        linecache.cache.pop(_filenames.popleft(), None)
    return filename


def _format_exception(exc: BaseException, skip_own_frames: bool = True) -> str:
    tb = exc.__traceback__
    while skip_own_frames and tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        text = f"{type(exc).__name__}: (cannot format the exception)\n"
    return text[-MAX_TRACEBACK_CHARS:]


def _compile_units(source: str, filename: str) -> list[Any]:
    """One code object per top-level statement, compiled like the interactive prompt ('single')
    so expression statements echo their value."""
    tree = ast.parse(source, filename, "exec")
    return [compile(ast.Interactive(body=[stmt]), filename, "single") for stmt in tree.body]


def _prepare(source: str, columns: int, color: bool) -> tuple[list[Any] | None, dict[str, Any]]:
    """Compile ``source``; a SyntaxError is the (finished) result."""
    _state["columns"] = max(40, min(int(columns), 400))
    _state["color"] = bool(color)
    result: dict[str, Any] = {"output": "", "truncated": False, "error": None,
                              "contained": None, "refused": None}
    filename = _remember_source(source)
    try:
        return _compile_units(source, filename), result
    except (SyntaxError, ValueError, OverflowError) as exc:
        result["error"] = "".join(traceback.format_exception_only(type(exc), exc))
        return None, result


def _run_units(namespace: dict[str, Any], units: list[Any], owner: Any, result: dict[str, Any],
               interrupted: Callable[[], bool] = lambda: False) -> None:
    """Run compiled input in the namespace, helpers in, guards up; fill ``result``."""
    try:
        with _displaying(owner, namespace), _injected(namespace), _guarded(owner, namespace):
            for code in units:
                exec(code, namespace)
    except SystemExit as exc:
        result["contained"] = (
            f"SystemExit({'' if exc.code is None else repr(exc.code)}) caught: in a backdoor it "
            "would stop the whole service, so the REPL contained it. The service keeps running; "
            "Ctrl-D leaves the REPL.")
    except KeyboardInterrupt as exc:
        if interrupted():  # the user's Ctrl-C: show where the code was
            result["error"] = _format_exception(exc)
        else:
            result["contained"] = ("KeyboardInterrupt caught: in a backdoor it would stop the "
                                   "whole service. The service keeps running.")
    except Refused as exc:
        result["refused"] = str(exc)
    except BaseException as exc:  # shown as a traceback, the session goes on
        result["error"] = _format_exception(exc)


def exec_source(namespace: dict[str, Any], source: str, columns: int = 100,
                color: bool = False) -> dict[str, Any]:
    """Run ``source`` (one line or a whole block) in the backdoor namespace, like the prompt,
    in the backdoor's own greenlet; return when it is done. ``columns`` and ``color`` describe
    the console's terminal, for the helpers' pictures."""
    t0 = time.perf_counter()
    units, result = _prepare(source, columns, color)
    if units is not None:
        owner = _current()
        output = _Output()
        with _captured(owner, output):
            _run_units(namespace, units, owner, result)
        result["output"], result["truncated"] = output.text(), output.truncated
    result["took_ms"] = (time.perf_counter() - t0) * 1000
    return result


# -- statements in a greenthread of their own: streamed output, interruptible ------------------

#: Finished statements whose result was never fetched, kept at most.
MAX_UNFETCHED_RUNS = 20
#: Longest a poll waits in the service for output or the end of the statement.
MAX_POLL_WAIT_SECONDS = 5.0
_runs: dict[int, _Run] = {}


class _Run:
    """One statement running in its own greenthread (see :func:`exec_start`)."""

    def __init__(self, run_id: int, namespace: dict[str, Any], units: list[Any],
                 result: dict[str, Any]) -> None:
        self.id = run_id
        self.namespace = namespace
        self.units = units
        self.result = result
        self.output = _Output()
        self.started = False
        self.done = False
        self.interrupt_requested = False
        self.thread: Any = None
        self.t0 = time.perf_counter()

    def body(self) -> None:
        self.started = True
        try:
            if self.interrupt_requested:
                self.result["error"] = "KeyboardInterrupt (before the statement started)\n"
            else:
                _run_units(self.namespace, self.units, self.thread, self.result,
                           lambda: self.interrupt_requested)
        finally:
            self.thread.leave()
            self.result["truncated"] = self.output.truncated
            self.result["took_ms"] = (time.perf_counter() - self.t0) * 1000
            self.done = True


def _thread_class() -> Any:
    """A GreenThread that points sys.std* at its capture each time the hub switches into it —
    what eventlet's backdoor does for its own console greenlet. Built on first use: this module
    imports nothing but the standard library at import time."""
    cls = _state.get("thread_class")
    if cls is None:
        from eventlet import greenthread

        class ReplThread(greenthread.GreenThread):
            capture: tuple[Any, Any] | None = None
            saved: tuple[Any, Any, Any] | None = None

            def switch(self, *args: Any, **kwargs: Any) -> Any:
                self.enter()
                return greenthread.GreenThread.switch(self, *args, **kwargs)

            def enter(self) -> None:
                if self.capture is not None and not self.dead:
                    self.saved = sys.stdin, sys.stdout, sys.stderr
                    sys.stdin = sys.stdout = self.capture[0]
                    sys.stderr = self.capture[1]

            def leave(self) -> None:
                if self.saved is not None:
                    sys.stdin, sys.stdout, sys.stderr = self.saved
                self.capture = None

        _state["thread_class"] = cls = ReplThread
    return cls


def exec_start(namespace: dict[str, Any], source: str, columns: int = 100,
               color: bool = False) -> dict[str, Any]:
    """Start ``source`` in a greenthread of its own and return at once with its id; the console
    then fetches output as it comes with ``exec_poll`` and may interrupt it with
    ``exec_cancel``. A syntax error, or a service without eventlet (where it runs here and
    now, as ``exec`` does), comes back finished: ``done`` is true."""
    t0 = time.perf_counter()
    units, result = _prepare(source, columns, color)
    if units is None:
        result["took_ms"] = (time.perf_counter() - t0) * 1000
        return {**result, "done": True}
    try:
        from eventlet import hubs

        thread_class = _thread_class()
    except ImportError:
        return {**exec_source(namespace, source, columns, color), "done": True}
    _state["counter"] += 1
    run = _Run(_state["counter"], namespace, units, result)
    hub = hubs.get_hub()
    thread = thread_class(hub.greenlet)
    thread.capture = (_Capture(thread, run.output, sys.__stdout__),
                      _Capture(thread, run.output, sys.__stderr__))
    run.thread = thread
    finished = [r for r in _runs.values() if r.done]
    for old in finished[: max(len(finished) - MAX_UNFETCHED_RUNS + 1, 0)]:
        _runs.pop(old.id, None)
    _runs[run.id] = run
    hub.schedule_call_global(0, thread.switch, run.body, (), {})
    return {"id": run.id, "done": False}


def exec_poll(namespace: dict[str, Any], id: int, offset: int = 0,
              wait: float = 0.25) -> dict[str, Any]:
    """Output of statement ``id`` from character ``offset`` on, waiting up to ``wait`` seconds
    (yielding to the hub) for some; with its result once it is done (then it is forgotten)."""
    run = _runs.get(id)
    if run is None:
        raise LookupError(f"no statement {id} in this process (did the service restart?)")
    from eventlet import sleep

    deadline = time.monotonic() + min(max(wait, 0.0), MAX_POLL_WAIT_SECONDS)
    pause = 0.0  # first just yield: a statement that was only scheduled gets to run
    while not run.done and run.output.size <= offset and time.monotonic() < deadline:
        sleep(pause)
        pause = 0.01
    text = run.output.text()[offset:]
    answer: dict[str, Any] = {"output": text, "offset": offset + len(text), "done": run.done}
    if run.done:
        answer.update({k: v for k, v in run.result.items() if k != "output"})
        _runs.pop(id, None)
    return answer


def exec_cancel(namespace: dict[str, Any], id: int) -> dict[str, Any]:
    """Interrupt statement ``id``: KeyboardInterrupt is raised where it waits. Code that computes
    without yielding cannot be reached; it stops at its next yield, if any."""
    run = _runs.get(id)
    if run is None or run.done:
        return {"interrupted": False}
    run.interrupt_requested = True
    if run.started:
        thread = run.thread
        saved = sys.stdin, sys.stdout, sys.stderr
        thread.enter()  # what its except/finally blocks print is its output too
        try:
            thread.kill(KeyboardInterrupt)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
    return {"interrupted": True}


# -- completion --------------------------------------------------------------------------------

#: A name, then attributes and constant subscripts: ``runner.service_map['parking']._worker``.
_CHAIN = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[(?:'[^'\\\]]*'|\"[^\"\\\]]*\"|-?\d+)\])*"
_ATTR_RE = re.compile(rf"({_CHAIN})\.(\w*)$")
_KEY_RE = re.compile(rf"({_CHAIN})\[(['\"])([^'\"\\]*)$")
_NAME_RE = re.compile(r"[A-Za-z_]\w*$")


def _resolve(namespace: Mapping[str, Any], chain: str) -> Any:
    """The object a chain of names, attributes and constant subscripts refers to, found without
    ``eval``: nothing is called except attribute and item lookups."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id in namespace:
                return namespace[node.id]
            if hasattr(builtins, node.id):
                return getattr(builtins, node.id)
            raise LookupError(node.id)
        if isinstance(node, ast.Attribute):
            return _attr_without_code(walk(node.value), node.attr)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return walk(node.value)[node.slice.value]
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.UnaryOp) and \
                isinstance(node.slice.operand, ast.Constant) and \
                isinstance(node.slice.operand.value, int):
            return walk(node.value)[-node.slice.operand.value]
        raise LookupError(ast.dump(node))

    return walk(ast.parse(chain, mode="eval").body)


def _runs_code(static: Any) -> bool:
    """Whether getting an attribute found (statically) as ``static`` would run Python code of
    the object's class: a property, a functools.cached_property not computed yet, or any other
    descriptor but functions, methods and C slots."""
    import functools
    import types

    if isinstance(static, (property, functools.cached_property)):
        return True
    if not hasattr(type(static), "__get__"):
        return False
    return not isinstance(static, (
        types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
        types.WrapperDescriptorType, types.ClassMethodDescriptorType, types.MethodWrapperType,
        types.MemberDescriptorType, types.GetSetDescriptorType, classmethod, staticmethod,
        type))


def _attr_without_code(obj: Any, name: str) -> Any:
    """``getattr(obj, name)`` when that runs no code of the object's (completion must never run
    a getter: it would run on the hub, and may have effects); else LookupError."""
    import inspect

    try:
        own = vars(obj)
    except TypeError:
        own = None
    if isinstance(own, dict) and name in own:
        return own[name]  # an instance attribute (a cached_property already computed, too)
    try:
        static = inspect.getattr_static(obj, name)
    except AttributeError:
        raise LookupError(name) from None  # only a __getattr__ could answer: user code
    if _runs_code(static):
        raise LookupError(name)
    return getattr(obj, name)


def _visible(word: str, prefix: str) -> bool:
    if not word.startswith(prefix):
        return False
    if prefix.startswith("__"):
        return True
    if prefix.startswith("_"):
        return not word.startswith("__")
    return not word.startswith("_")


def _callable_suffix(obj: Any, word: str) -> str:
    import inspect

    try:
        static = inspect.getattr_static(obj, word)
    except AttributeError:
        static = _MISSING
    if static is _MISSING or _runs_code(static) or type(static).__name__ in (
            "getset_descriptor", "member_descriptor"):
        return ""  # never run a getter's code to decide on a parenthesis
    try:
        return "(" if callable(getattr(obj, word)) else ""
    except BaseException:
        return ""


def _attr_matches(namespace: Mapping[str, Any], dotted: str, prefix: str) -> list[str]:
    obj = _resolve(namespace, dotted)
    words = set(dir(obj))
    if hasattr(obj, "__class__"):
        words.add("__class__")
    matches = sorted(w for w in words if _visible(w, prefix))[:MAX_COMPLETIONS]
    return [f"{dotted}.{w}{_callable_suffix(obj, w)}" for w in matches]


def _global_matches(namespace: Mapping[str, Any], prefix: str) -> list[str]:
    out: dict[str, str] = {}
    for word in [*keyword.kwlist, *getattr(keyword, "softkwlist", [])]:
        if word.startswith(prefix) and word != "_":
            # as rlcompleter does
            if word in ("finally", "try"):
                out[word] = word + ":"
            elif word in ("False", "None", "True", "break", "continue", "pass", "else"):
                out[word] = word
            else:
                out[word] = word + " "
    for source in (vars(builtins), namespace):
        for word, value in list(source.items()):
            if word == "__chassis__" or not _visible(word, prefix):
                continue
            out[word] = word + ("(" if callable(value) and not isinstance(value, type(builtins))
                                else "")
    return sorted(out.values())[:MAX_COMPLETIONS]


def complete(namespace: dict[str, Any], line: str) -> dict[str, Any]:
    """Completions for the end of ``line`` (the text before the cursor): names, attributes of
    live objects (``runner.service_m`` -> ``runner.service_map``), string keys of mappings
    (``runner.service_map['pa`` -> ``runner.service_map['parking']``). Properties are not run.

    Returns ``{"start": index into line where the completed text begins, "matches": [...]}``.
    """
    view = {**_helpers(namespace), **namespace, **_LEAVERS}
    try:
        m = _KEY_RE.search(line)
        if m:
            obj = _resolve(view, m.group(1))
            if isinstance(obj, Mapping):
                quote, prefix = m.group(2), m.group(3)
                keys = sorted(k for k in obj.keys() if isinstance(k, str) and k.startswith(prefix))
                start = m.start(3)
                return {"start": start,
                        "matches": [f"{k}{quote}]" for k in keys[:MAX_COMPLETIONS]]}
            return {"start": len(line), "matches": []}
        m = _ATTR_RE.search(line)
        if m:
            return {"start": m.start(), "matches": _attr_matches(view, m.group(1), m.group(2))}
        m = _NAME_RE.search(line)
        if m:
            return {"start": m.start(), "matches": _global_matches(view, m.group(0))}
    except BaseException:  # completing must never fail loudly
        pass
    return {"start": len(line), "matches": []}


OPS = {
    "repl_hello": repl_hello,
    "exec": exec_source,
    "exec_start": exec_start,
    "exec_poll": exec_poll,
    "exec_cancel": exec_cancel,
    "complete": complete,
}
