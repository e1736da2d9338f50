"""Following a call: who called a worker (upstream) and what it is waiting for (downstream), in
any of the console's targets. A callee's ``call_id_stack`` holds its caller's call id just
before its own (:func:`nameko_chassis.view.text.called_by`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from nameko_chassis.view.model import Container, Worker
from nameko_chassis.view.text import (
    age_text,
    call_id_tail,
    called_by,
    clip,
    short_label,
    where_of,
    where_text,
)

from .poller import TargetStatus
from .workers import WorkerRef

#: Callees listed below a worker (parallel calls: call_async fan-out).
MAX_CALLEES = 20


@dataclass(frozen=True)
class CallLink:
    """One call of a chain, with where it runs now when an attached target shows it."""

    call_id: str
    ref: WorkerRef | None = None
    target: str | None = None
    container: Container | None = None
    worker: Worker | None = None


def locate(statuses: Sequence[TargetStatus], call_id: str) -> CallLink:
    """The running worker ``call_id`` in whichever target has it."""
    for s in statuses:
        found = s.snapshot.find_worker(call_id) if s.snapshot is not None else None
        if found is not None:
            return CallLink(call_id, WorkerRef(s.index, call_id), s.label, *found)
    return CallLink(call_id)


def upstream(statuses: Sequence[TargetStatus], worker: Worker) -> list[CallLink]:
    """The callers of ``worker``, the first caller first (its call chain without itself)."""
    chain = worker.call_id_stack
    callers = chain[:-1] if chain and chain[-1] == worker.call_id else chain
    return [locate(statuses, c) for c in callers]


def downstream(statuses: Sequence[TargetStatus], worker: Worker) -> list[CallLink]:
    """The workers ``worker`` is waiting for (called by it, running now), oldest first."""
    found = [CallLink(w.call_id, WorkerRef(s.index, w.call_id), s.label, c, w)
             for s in statuses if s.snapshot is not None
             for c, w in s.snapshot.workers if called_by(w, worker.call_id)]
    found.sort(key=lambda link: -(link.worker.age_s if link.worker is not None else 0.0))
    return found[:MAX_CALLEES]


def _entrypoint_of(call_id: str) -> str:
    # service.method.uuid
    return call_id.rsplit(".", 1)[0] if call_id.count(".") >= 2 else call_id


def chain_text(up: Sequence[CallLink], here: Worker, down: Sequence[CallLink], *,
               accent: str, several: bool) -> Text:
    """The call chain, both ways: each running call can be clicked (or reached with u / f)."""
    lines = Text()

    def line(mark: str, link: CallLink, style: str = "") -> None:
        if lines:
            lines.append("\n")
        lines.append(f"{mark} ", style=f"bold {accent}")
        w = link.worker
        entrypoint = w.entrypoint if w is not None else _entrypoint_of(link.call_id)
        click = (Style(meta={"@click": f"screen.jump({link.call_id!r})"})
                 if link.ref is not None else None)
        lines.append(clip(entrypoint, 60), style=style or ("underline" if click else ""))
        if click is not None:
            lines.stylize(click, len(lines) - len(clip(entrypoint, 60)), len(lines))
        lines.append(f"  {call_id_tail(link.call_id)[:8]}", style="dim")
        if w is None:
            lines.append("  not running in an attached target", style="dim")
            return
        lines.append(f"  running {age_text(w)}", style="")
        lines.append(f"  at {clip(where_text(where_of(w)), 60)}", style="dim")
        if several and link.target:
            lines.append(f"  on {short_label(link.target, 30)}", style="dim")

    for link in up:
        line("↑", link)
    line("●", CallLink(here.call_id, worker=here), style=f"bold {accent}")
    for link in down:
        line("↓", link)
    if not down:
        lines.append("\n")
        lines.append("  waiting on no call the attached targets show", style="dim")
    return lines
