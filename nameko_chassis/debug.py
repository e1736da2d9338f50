"""Print what a service is doing, from inside a raw backdoor session::

    $ nc localhost 12345
    >>> __import__('nameko_chassis.debug', fromlist=['x']).debug_runner(runner)

(or ``from nameko_chassis.debug import debug_runner; debug_runner(runner)``, which leaves the
name ``debug_runner`` in the backdoor's shared namespace). It collects a snapshot in-process with
:func:`nameko_chassis.probe.collect.collect` and prints :func:`nameko_chassis.view.page.render_snapshot`
of it: the same picture as ``chassis-console --once``.

The work runs on the eventlet hub, so no worker runs meanwhile: it collects every worker's
innermost user frame, full stacks only for the few workers it draws, and writes the page in one
write. Workers new since the last look have their static parts (redacted arguments) filled
first, in slices of at most 2 ms, the hub handed back between two (``probe/collect.py`` ``warm``).

nameko-chassis 3.2.0's printers of a :class:`~nameko_chassis.service.ServiceState` stay:
:func:`debug_state_simple` and :func:`debug_state_rich` (``has_rich`` is always true: rich is a
dependency). 3.2.0's ``debug_runner(runner)`` is this module's, which prints more.
"""

from __future__ import annotations

import io
import os
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any, TextIO

from rich.columns import Columns
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.text import Text

from .probe import collect as collector
from .probe import privates, redaction
from .probe.collect import collect
from .view.model import Snapshot
from .view.page import DEFAULT_WIDTH, STACKS_FOR_OLDEST, render_snapshot, to_text

if TYPE_CHECKING:
    from .service import ServiceState

__all__ = ["debug_container", "debug_runner", "debug_state_rich", "debug_state_simple",
           "has_rich", "render_debug"]

#: 3.2.0 printed plainly without rich; rich is a dependency here, so always true.
has_rich = True

# render_snapshot's keyword arguments that debug_runner passes through.
_RENDER_LIMITS = frozenset({
    "max_workers_listed", "stacks_for_oldest", "slow_after", "max_groups", "max_frames",
    "preview_chars", "history_listed", "max_errors",
})
# collect()'s keyword arguments that debug_runner passes through.
_COLLECT_LIMITS = frozenset({"max_workers", "repr_limit", "secret_patterns"})


def debug_runner(runner: Any = None, *, file: TextIO | None = None, width: int | None = None,
                 color: bool | None = None, **limits: Any) -> None:
    """Print a readable page about ``runner``'s containers and workers to ``file``.

    - ``runner``: a nameko ``ServiceRunner`` (a container or a list of them also work). None:
      the ``runner`` of the calling namespace (the backdoor's), else a bounded ``gc`` search.
    - ``file``: where to print; default ``sys.stdout`` at call time, which inside a backdoor
      session is the connection.
    - ``width``: columns; default the terminal's when ``file`` is one, else 120 (a backdoor
      cannot know the size of the terminal at the other end).
    - ``color``: ANSI styles on or off; default on when ``file.isatty()`` (true for a backdoor
      connection, and ``nc``/``telnet`` pass the codes to the terminal), off when the
      ``NO_COLOR`` environment variable is set or ``TERM=dumb``. Off means plain text: no escape
      codes at all.
    - ``limits``: :func:`nameko_chassis.view.page.render_snapshot`'s limits (``max_workers_listed``,
      ``stacks_for_oldest``, ``slow_after``, ``max_groups``, ``max_frames``, ``preview_chars``,
      ``history_listed``, ``max_errors``) and :func:`nameko_chassis.probe.collect.collect`'s
      (``max_workers``, ``repr_limit``, ``secret_patterns``).

    Returns None, so an interactive console echoes nothing after the page.
    """
    namespace = None
    if runner is None:
        # the backdoor runs typed code with its namespace as globals: find `runner` there
        namespace = sys._getframe(1).f_globals
    _debug(runner, namespace, file, width, color, limits)


def debug_container(container: Any, *, file: TextIO | None = None, width: int | None = None,
                    color: bool | None = None, **limits: Any) -> None:
    """:func:`debug_runner` for one nameko ``ServiceContainer``."""
    _debug(container, None, file, width, color, limits)


def _debug(target: Any, namespace: Any, file: TextIO | None, width: int | None,
           color: bool | None, limits: dict[str, Any]) -> None:
    unknown = set(limits) - _RENDER_LIMITS - _COLLECT_LIMITS
    if unknown:
        raise TypeError(f"unknown limit(s) {', '.join(sorted(unknown))}; expected some of "
                        f"{', '.join(sorted(_RENDER_LIMITS | _COLLECT_LIMITS))}")
    out = file if file is not None else sys.stdout
    snapshot = collect_for_page(target, namespace=namespace, limits=limits)
    page = render_debug(snapshot, width=width or terminal_width(out),
                        color=wants_color(out) if color is None else color,
                        **{k: v for k, v in limits.items() if k in _RENDER_LIMITS})
    out.write(_encodable(page, out))  # one write: every write to a backdoor connection is a send
    flush = getattr(out, "flush", None)
    if flush is not None:
        flush()


def _encodable(text: str, file: Any) -> str:
    """``text`` as ``file`` can encode it: a lone surrogate (or a character the connection's
    encoding lacks) becomes a backslash escape instead of a UnicodeEncodeError that loses the
    page."""
    encoding = getattr(file, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        try:
            return text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            return text.encode("ascii", "backslashreplace").decode("ascii")


def collect_for_page(target: Any, *, namespace: Any = None, limits: dict[str, Any] | None = None
                     ) -> Snapshot:
    """Collect what the page shows: every worker's innermost user frame, and full stacks only
    for the oldest few (full stacks of 1000 workers would cost more than everything else)."""
    limits = limits or {}
    collect_kw = {k: v for k, v in limits.items() if k in _COLLECT_LIMITS}
    n_stacks = limits.get("stacks_for_oldest", STACKS_FOR_OLDEST)
    _warm(target, namespace, collect_kw)
    data = collect(target, namespace=namespace, stacks="none", **collect_kw)
    if n_stacks > 0:
        # the oldest workers of each container: the stacks render_snapshot may draw. Identical
        # stacks are drawn once, so ask for a few spare ones in case the oldest share theirs.
        wanted: set[str] = set()
        for container in data.get("containers", []):
            workers = container.get("workers", [])  # the collector lists them oldest first
            wanted.update(w["call_id"] for w in workers[: n_stacks * 4])
        if wanted:
            data = collect(target, namespace=namespace, stacks=wanted, **collect_kw)
    return Snapshot.from_dict(data)


def _warm(target: Any, namespace: Any, limits: dict[str, Any]) -> None:
    """The new workers' static parts first, in slices of at most ``SLICE_BUDGET_S`` of hub
    time, the hub handed back between two (:func:`nameko_chassis.probe.collect.warm`) — where
    that is safe: a greenlet of a thread with an eventlet hub (the raw backdoor session's: it
    is resumed through eventlet's ``SocketConsole.switch``, which points ``sys.stdout`` back
    at its socket), not inside a bounded repr. The collection then finds them cached."""
    pause = privates.hub_pause()
    if pause is None or redaction.in_bounded():
        return
    if target is None and not privates.is_runner((namespace or {}).get("runner")):
        return  # the collection's gc search finds them: not twice
    try:
        containers, _how = collector._resolve(target, namespace)
        holds = collector.Holds(time.perf_counter(), pause)
        collector.warm(containers, holds.pause, holds.start, **limits)
    except Exception:
        pass  # the collection does what is missing


def render_debug(snapshot: Snapshot, *, width: int = DEFAULT_WIDTH, color: bool = False,
                 **limits: Any) -> str:
    """The page for ``snapshot`` as a string (ANSI styles when ``color``, else plain text)."""
    return to_text(render_snapshot(snapshot, **limits), width=width, color=color)


def terminal_width(file: Any) -> int:
    """The width of the terminal ``file`` writes to, else :data:`~nameko_chassis.view.page.DEFAULT_WIDTH`.

    Only a real terminal on ``file`` itself counts: inside a backdoor the service's own terminal
    (if any) says nothing about the operator's, and ``COLUMNS`` is the service's environment.
    """
    try:
        return max(os.get_terminal_size(file.fileno()).columns, 40)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return DEFAULT_WIDTH


def wants_color(file: Any) -> bool:
    """Colour for a terminal (a backdoor connection says it is one), unless ``NO_COLOR`` is set
    or ``TERM`` is ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(file.isatty())
    except (AttributeError, OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# nameko-chassis 3.2.0's ServiceState printers


def debug_state_simple(state: ServiceState, *, file: TextIO | None = None) -> None:
    """Print ``state`` plainly (3.2.0's format): a header, ``Running N/M worker threads:``,
    then each worker's arguments, context data and stack."""
    out = file if file is not None else sys.stdout
    lines = [
        f"Container for service '{state.service_name}' with {len(state.entrypoints)} "
        f"entrypoints and {len(state.dependencies)} dependencies",
        f"Running {state.running_workers}/{state.max_workers} worker threads:",
    ]
    for i, worker in enumerate(state.worker_states):
        lines.append(textwrap.dedent(f"""
            ------------
            Thread #{i}: {worker.class_name}.{worker.method_name}
            Args: {worker.args}
            Kwargs: {worker.kwargs}
            Context data: {worker.data}
            """))
        lines.append("".join(worker.stacktrace))
    out.write("\n".join(lines) + "\n")


def debug_state_rich(state: ServiceState, *, file: TextIO | None = None,
                     width: int | None = None) -> None:
    """Print ``state`` in rich panels (3.2.0's layout). Arguments and stacks are printed as
    text, never as markup, so ``"[/tmp]"`` prints as itself."""
    out = file if file is not None else sys.stdout
    renderables: list[RenderableType] = [Text(
        f"{len(state.entrypoints)} entrypoints\n{len(state.dependencies)} dependencies\n"
        f"Running {state.running_workers}/{state.max_workers} worker threads")]
    for i, worker in enumerate(state.worker_states):
        body = Text(f"Args: {worker.args}\nKwargs: {worker.kwargs}\n"
                    f"Context data: {worker.data}\n\nTraceback:\n")
        for line in worker.stacktrace:
            body.append(line, style="dim" if "site-packages" in line else "bold")
        title = Text.assemble(f"Thread #{i}: ",
                              (f"{worker.class_name}.{worker.method_name}", "magenta"))
        renderables.append(Panel(body, title=title))
    console = Console(file=out, width=width or terminal_width(out),
                      color_system="auto" if wants_color(out) else None)
    console.print(Panel(Columns(renderables), title=Text(state.service_name, style="bold")))
