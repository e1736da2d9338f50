"""Recently finished workers, for services that record them (chassis services), and the hub
blocks the service's watchdog recorded (any service a console attached to); else hidden."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Static

from nameko_chassis.view.page import (
    HistoryEntry,
    history_entries,
    history_table,
    incident_entries,
    outcome_counts,
)

from .common import Palette
from .poller import TargetStatus
from .workers import parse_filter

#: How many finished workers the panel lists (newest first).
HISTORY_LISTED = 8


def matches(entry: HistoryEntry, service: str | None, needle: str) -> bool:
    if service is not None and entry.service != service:
        return False
    text = " ".join((entry.target or "", entry.service, entry.entrypoint, entry.outcome,
                     entry.error, entry.call_id)).lower()
    return needle in text


class HistoryPanel(Static):
    """Entrypoint, duration and outcome of the latest finished workers of every target, and
    the hub blocks among them."""

    def __init__(self, *, slow: float = 10.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.slow = slow

    def show(self, statuses: Sequence[TargetStatus], filter: str = "") -> None:
        """Draw the latest finished workers; ``filter`` is the workers table's (``service:NAME``
        and text matched against target, service, entrypoint, outcome, error and call id)."""
        palette = Palette.of(self.app)
        entries: list[HistoryEntry] = []
        any_history = blocks = False
        for s in statuses:
            if s.snapshot is None:
                continue
            incidents = incident_entries(s.snapshot, s.label)
            blocks = blocks or bool(incidents)
            any_history = any_history or bool(incidents)
            entries += incidents
            for c in s.snapshot.containers:
                if c.history is None:
                    continue
                any_history = True
                entries += history_entries(c, s.snapshot.time, s.label)
        service, needle = parse_filter(filter)
        if service is not None or needle:
            entries = [e for e in entries if matches(e, service, needle)]
        self.display = any_history
        if not any_history:
            return
        styles = {"success": palette.success, "error": f"bold {palette.error}",
                  "expected_error": palette.warning, "killed": palette.warning,
                  "hub blocked": f"bold {palette.error}"}
        self.border_title = "recently finished" + (" · hub blocks" if blocks else "")
        self.border_subtitle = "  ".join(f"{k} {v}" for k, v in outcome_counts(entries).items())
        self.update(history_table(entries, listed=HISTORY_LISTED, slow_after=self.slow,
                                  target=len(statuses) > 1, outcome_styles=styles,
                                  expand=True))
