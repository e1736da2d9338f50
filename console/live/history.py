"""Recently finished workers, for services that record them (chassis services); else hidden."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

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
        entries = []
        any_history = False
        several = len(statuses) > 1
        for s in statuses:
            if s.snapshot is None:
                continue
            for c in s.snapshot.containers:
                if c.history is None:
                    continue
                any_history = True
                for h in c.history:
                    entries.append((s.snapshot.time - h.finished_at, s, c.service_name, h))
        self.display = any_history
        if not any_history:
            return
        entries.sort(key=lambda e: e[0])
        outcomes: dict[str, int] = {}
        for _, _, _, h in entries:
            outcomes[h.outcome] = outcomes.get(h.outcome, 0) + 1
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
        for ago, s, service, h in entries[:HISTORY_LISTED]:
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
        self.border_title = "recently finished"
        summary = "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        self.border_subtitle = summary
        self.update(table)
