"""Recently finished workers, for services that record them (chassis services), and the hub
blocks the service's watchdog recorded (any service a console attached to); else hidden."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from nameko_chassis.view.model import FinishedWorker, Incident
from nameko_chassis.view.text import short_entrypoint

from .common import Palette, age_style, clip, format_age
from .poller import TargetStatus

#: How many finished workers the panel lists (newest first).
HISTORY_LISTED = 8


class HistoryPanel(Static):
    """Entrypoint, duration and outcome of the latest finished workers of every target."""

    def __init__(self, *, slow: float = 10.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.slow = slow

    def show(self, statuses: Sequence[TargetStatus]) -> None:
        palette = Palette.of(self.app)
        entries: list[tuple[float, TargetStatus, str | None, FinishedWorker | Incident]] = []
        any_history = False
        several = len(statuses) > 1
        blocks: list[tuple[float, TargetStatus, Incident]] = []
        for s in statuses:
            if s.snapshot is None:
                continue
            for incident in s.snapshot.incidents or ():
                any_history = True
                blocks.append((s.snapshot.time - incident.started_at - incident.duration_s, s,
                               incident))
            for c in s.snapshot.containers:
                if c.history is None:
                    continue
                any_history = True
                for h in c.history:
                    entries.append((s.snapshot.time - h.finished_at, s, c.service_name, h))
        self.display = any_history
        if not any_history:
            return
        entries += [(ago, s, i.culprit.service if i.culprit else None, i) for ago, s, i in blocks]
        entries.sort(key=lambda e: e[0])
        outcomes: dict[str, int] = {}
        for _, _, _, item in entries:
            outcome = item.outcome if isinstance(item, FinishedWorker) else "hub blocked"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False,
                      header_style="dim")
        table.add_column("ago", justify="right", no_wrap=True)
        if several:
            table.add_column("target", no_wrap=True)
        table.add_column("service", no_wrap=True)
        table.add_column("entrypoint", no_wrap=True)
        table.add_column("took", justify="right", no_wrap=True)
        table.add_column("outcome", no_wrap=True)
        table.add_column("error", ratio=1, no_wrap=True, overflow="ellipsis")
        for ago, s, service, item in entries[:HISTORY_LISTED]:
            if isinstance(item, Incident):
                table.add_row(*self._block_row(ago, s, item, several, palette))
                continue
            h, service = item, service or ""
            outcome_style = {"success": palette.success, "error": f"bold {palette.error}",
                             "expected_error": palette.warning}.get(h.outcome, "")
            error = "" if h.exc_type is None else f"{h.exc_type}: {h.exc_message or ''}"
            row: list[Text] = [Text(format_age(ago), style="dim")]
            if several:
                row.append(Text(clip(s.label, 30), style="dim"))
            entrypoint = short_entrypoint(service, h.entrypoint)  # service has its own column
            row += [Text(clip(service, 30)), Text(clip(entrypoint, 40), style="bold"),
                    Text(format_age(h.duration_s), style=age_style(h.duration_s, self.slow,
                                                                   palette)),
                    Text(clip(h.outcome, 20), style=outcome_style),
                    Text(clip(error, 200), style=palette.error)]
            table.add_row(*row)
        self.border_title = "recently finished" + (" · hub blocks" if blocks else "")
        summary = "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        self.border_subtitle = summary
        self.update(table)

    def _block_row(self, ago: float, status: TargetStatus, incident: Incident, several: bool,
                   palette: Palette) -> list[Text]:
        """A hub block as a history row: what held the hub, how long, where."""
        culprit = incident.culprit
        row: list[Text] = [Text(format_age(max(ago, 0.0)), style="dim")]
        if several:
            row.append(Text(clip(status.label, 30), style="dim"))
        where = "" if culprit is None or culprit.where is None else str(culprit.where)
        name = culprit.name if culprit is not None else "not seen"
        if culprit is not None and culprit.service and culprit.entrypoint:
            name = short_entrypoint(culprit.service, culprit.entrypoint)
        row += [Text(clip(culprit.service if culprit and culprit.service else "", 30)),
                Text(clip(name, 40), style="bold"),
                Text(format_age(incident.duration_s), style=f"bold {palette.error}"),
                Text("hub blocked", style=f"bold {palette.error}"),
                Text(clip(f"held the eventlet hub at {where}" if where else "", 200),
                     style=palette.error)]
        return row
