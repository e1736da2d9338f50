"""Small helpers shared by the console's widgets: theme colours as rich styles, cell text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import App

from nameko_chassis.view.text import clip, format_age, pool_level


@dataclass(frozen=True)
class Palette:
    """The current theme's colours, for rich ``Text`` (which cannot use TCSS variables)."""

    primary: str = "#0178D4"
    accent: str = "#ffa62b"
    success: str = "#4EBF71"
    warning: str = "#ffa62b"
    error: str = "#ba3c5b"
    muted: str = "#7f7f7f"

    @classmethod
    def of(cls, app: App[Any]) -> Palette:
        try:
            theme = app.current_theme
        except Exception:  # no theme yet (not running): defaults
            return cls()
        return cls(primary=theme.primary, accent=theme.accent or cls.accent,
                   success=theme.success or cls.success, warning=theme.warning or cls.warning,
                   error=theme.error or cls.error)


class SortText(Text):
    """A table cell that carries the value its column sorts by."""

    sort_value: Any = None


def cell(value: Any, style: str = "", *, limit: int = 80, sort: Any = None) -> SortText:
    """Untrusted text as a one-line table cell (never markup, control characters escaped)."""
    text = SortText(clip(value, limit), style=style, no_wrap=True, overflow="ellipsis")
    text.sort_value = sort if sort is not None else text.plain.lower()
    return text


def age_style(seconds: float, slow: float, palette: Palette) -> str:
    if seconds >= slow:
        return f"bold {palette.error}"
    if seconds >= slow / 2:
        return palette.warning
    return ""


def pool_colour(running: int, max_workers: int, palette: Palette) -> str:
    return {"idle": palette.muted, "ok": palette.success, "warning": palette.warning,
            "full": palette.error}[pool_level(running, max_workers)]


__all__ = ["Palette", "SortText", "cell", "age_style", "pool_colour", "format_age", "clip"]
