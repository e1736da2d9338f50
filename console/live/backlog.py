"""The backlog beside each pool gauge: messages ready in the broker, unacked by the process, and
the rate the ready count changes (``backlog`` of a container: probe/backlog.py; in fleet mode the
console's own passive declares, targets/fleet.py). A saturated pool whose backlog grows is the
one to look at first: it gets the error colour and a ``▲``."""

from __future__ import annotations

from rich.text import Text

from nameko_chassis.view.model import Container
from nameko_chassis.view.text import BacklogSummary, backlog_summary, pool_level

from .common import Palette


def backlog_alarm(container: Container, summary: BacklogSummary | None = None) -> bool:
    """The pool is full and messages pile up behind it."""
    summary = summary if summary is not None else backlog_summary(container.backlog)
    return summary is not None and summary.growing and \
        pool_level(container.workers_running, container.max_workers) == "full"


def backlog_line(container: Container, palette: Palette, *, indent: str = "  ") -> Text | None:
    """``⤷ growing ▲ 381 ready · 10 unacked · +12.5/s`` (or ``⤷ backlog 381 ready · …`` while
    it does not grow) for the pool panel; None while not sampled, or
    while nothing waits in the broker."""
    summary = backlog_summary(container.backlog)
    if summary is None or not (summary.ready or summary.rate_per_s
                               or summary.ready is None and summary.queues):
        # nothing waits in the broker: the usual case says nothing (what the process holds,
        # unacked, is its running workers and their prefetch: the gauge shows those)
        return None
    if backlog_alarm(container, summary):
        style = f"bold {palette.error}"
    elif summary.growing:
        style = palette.warning
    elif summary.ready:
        style = ""
    else:
        style = palette.muted
    # the alarm first: the side panel is ~42 columns, and a cut end must not hide it
    head = "growing ▲" if summary.growing else "backlog"
    return Text(f"{indent}⤷ {head} {summary.text()}", style=style, no_wrap=True,
                overflow="ellipsis")


def backlog_note(container: Container) -> str:
    """`` 381 waiting ▲`` for the narrow layout's list of pools that need attention."""
    summary = backlog_summary(container.backlog)
    if summary is None or not summary.ready:
        return ""
    return f" {summary.ready} waiting" + (" ▲" if summary.growing else "")


__all__ = ["backlog_alarm", "backlog_line", "backlog_note"]
