"""The header: one line for the console, one per target (state, round trip, service stall).

A target whose hub is blocked gets a banner: how long (counting up), the culprit worker, where
it is and the innermost frames of its stack, as the service's hub watchdog told it; the tables
below keep the workers as they were just before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from nameko_chassis.view.model import Incident
from nameko_chassis.view.text import process_summary

from .common import Palette, clip, format_age, text_key, update_static
from .poller import TargetStatus

#: Innermost frames of the culprit's stack the banner shows.
BLOCKED_FRAMES = 4


@dataclass
class ConsoleView:
    """The console-wide settings the header shows."""

    interval: float = 1.0
    paused: bool = False
    sort: str = "age ↓"
    filter: str = ""
    allow_actions: bool = False
    demo: str | None = None  # e.g. "demo shop pid 123 (stopped on quit)"


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _fmt_interval(seconds: float) -> str:
    return f"{seconds:g}s"


def target_line(status: TargetStatus, palette: Palette, *, paused: bool) -> Text:
    """One target: a state badge, what it is, and how fresh and cheap the last refresh was."""
    line = Text(no_wrap=True, overflow="ellipsis")
    snap = status.snapshot
    if status.state == "live":
        badge, colour = ("⏸ paused", palette.warning) if paused else ("● live", palette.success)
    elif status.state == "connecting":
        badge, colour = "◌ connecting", palette.muted
    elif status.state == "blocked":
        badge, colour = "⚠ HUB BLOCKED", palette.error
    elif status.state == "unresponsive":
        badge, colour = "◐ not answering", palette.warning
    elif status.state == "down":
        badge, colour = ("✖ connection lost" if snap is not None else "✖ down"), palette.error
    else:
        badge, colour = "✖ error", palette.error
    line.append(f" {badge} ", style=f"bold {colour} reverse")
    line.append(" ")
    line.append(clip(status.label, 60), style="bold")
    if snap is not None:
        if snap.pid:  # a fleet (pid 0) is many processes: its host says how many answer
            line.append(f"  pid {snap.pid}", style="dim")
        if snap.host:
            line.append(f" @ {clip(snap.host, 30)}", style="dim")
        services = len(snap.containers)
        workers = sum(c.workers_running for c in snap.containers)
        line.append(f"  {services} service{'s' * (services != 1)}")
        line.append(f"  {workers} worker{'s' * (workers != 1)}")
    if status.state == "live":
        line.append("  round trip ", style="dim")
        line.append(_fmt_ms(status.round_trip_ms))
        if snap is not None:
            line.append("  service stall ", style="dim")
            longest = snap.longest_hold_ms
            stall_style = palette.warning if longest > 2 else ""
            line.append(_fmt_ms(longest), style=stall_style)
            if snap.slices is not None:  # handed back between slices: the total too
                line.append(f" in {snap.slices[0] + 1} slices, {_fmt_ms(snap.took_ms)} in all",
                            style="dim")
        if status.note:
            line.append(f"  {clip(status.note, 80)}", style=palette.accent)
        if snap is not None and snap.errors:
            # the collector skipped something it could not read: say so, never hide it
            line.append(f"  ⚠ {len(snap.errors)} collector error{'s' * (len(snap.errors) > 1)}: ",
                        style=f"bold {palette.warning}")
            line.append(clip(snap.errors[0], 120), style=palette.warning)
        basics = process_summary(snap.process) if snap is not None else ""
        if basics:
            line.append(f"  {basics}", style="dim")
    elif status.state == "blocked" and status.blocked is not None:
        _blocked_banner(line, status.blocked, status.blocked_for or 0.0, palette,
                        before=status.received_at)
    else:
        if status.stale and status.received_at is not None:
            ago = max(0.0, time.time() - status.received_at)
            line.append(f"  STALE: last good snapshot {ago:.0f}s ago",
                        style=f"bold {palette.warning}")
        # what went wrong, on a line of its own so the whole message shows
        line.append("\n   ↳ ", style="dim")
        line.append(clip(status.error or "connecting…", 300), style=colour)
        if status.retry_at is not None and not paused:
            left = max(status.retry_at - time.monotonic(), 0.0)
            line.append(f"  · retry #{status.failures + 1} in {left:.1f}s",
                        style="dim")
        line.no_wrap = False
    if status.shared_note:  # in every state, on every screen: what is shown mixes processes
        line.append("\n   ⚠ ", style=f"bold {palette.warning}")
        line.append(status.shared_note, style=f"bold {palette.warning}")
    return line


def _blocked_banner(line: Text, incident: Incident, seconds: float, palette: Palette, *,
                    before: float | None) -> None:
    line.append("  for ", style="dim")
    line.append(format_age(seconds), style=f"bold {palette.error}")
    culprit = incident.culprit
    line.append("\n   ↳ ", style="dim")
    if culprit is None:
        line.append("by something the watchdog could not see (C code holding the GIL?)",
                    style=palette.error)
    else:
        line.append("by ", style="dim")
        line.append(clip(culprit.name, 60), style=f"bold {palette.error}")
        if culprit.call_id:
            line.append(f"  {clip(culprit.call_id, 60)}", style="dim")
        if culprit.args or culprit.kwargs:
            args = ", ".join([*culprit.args, *(f"{k}={v}" for k, v in culprit.kwargs.items())])
            line.append(f"  ({clip(args, 80)})")
        if culprit.where is not None:
            line.append("  at ", style="dim")
            line.append(clip(f"{culprit.where.short_file}:{culprit.where.line} in "
                             f"{culprit.where.function}", 100), style="bold")
        for frame in culprit.stack[-BLOCKED_FRAMES:]:
            marker = "     > " if frame == culprit.where else "       "
            line.append(f"\n{marker}", style=f"bold {palette.error}")
            line.append(clip(f"{frame.short_file}:{frame.line} in {frame.function}", 100),
                        style="dim" if frame.library else "bold")
            if frame.code and not frame.library:
                line.append(f"   {clip(frame.code, 80)}", style=palette.accent)
    line.append("\n   ↳ ", style="dim")
    if before is not None:
        ago = max(0.0, time.time() - before)
        line.append(f"workers below as they were just before (last snapshot {ago:.0f}s ago); ",
                    style=palette.warning)
    line.append("back to live by itself when the hub is free", style="dim")
    line.no_wrap = False


def console_line(view: ConsoleView, statuses: Sequence[TargetStatus], palette: Palette) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(" chassis-console ", style=f"bold reverse {palette.primary}")
    live = sum(1 for s in statuses if s.state == "live")
    line.append(f"  {live}/{len(statuses)} target{'s' * (len(statuses) != 1)} live",
                style=palette.success if live == len(statuses) else f"bold {palette.error}")
    if view.paused:
        line.append("  ⏸ PAUSED (p resumes)", style=f"bold {palette.warning}")
    else:
        line.append(f"  every {_fmt_interval(view.interval)}", style="")
    line.append("  sort ", style="dim")
    line.append(view.sort)
    if view.filter:
        line.append("  filter ", style="dim")
        line.append(f"“{clip(view.filter, 40)}”", style=f"bold {palette.accent}")
    line.append("  ")
    if view.allow_actions:
        line.append("actions ON", style=f"bold {palette.error}")
    else:
        line.append("read-only", style="dim")
    if view.demo:
        line.append(f"  {clip(view.demo, 80)}", style="dim")
    return line


class StatusBar(Static):
    """The console's header (one instance per screen)."""

    DEFAULT_CSS = "StatusBar { height: auto; }"

    def show(self, view: ConsoleView, statuses: Sequence[TargetStatus]) -> None:
        palette = Palette.of(self.app)
        lines = [console_line(view, statuses, palette)]
        lines += [target_line(s, palette, paused=view.paused) for s in statuses]
        # a Group keeps each line's own wrapping: the header lines are cut, never wrapped
        # the height changes with the lines, and with a wrapped line's length
        shape = tuple((t.plain.count("\n"), t.no_wrap or len(t.plain)) for t in lines)
        update_static(self, Group(*lines), shape, tuple(text_key(line) for line in lines))
