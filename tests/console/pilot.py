"""Helpers for driving the Textual app in tests."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 15.0,
                what: str = "condition") -> Any:
    """Let the app run until ``predicate()`` is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.03)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def plain(widget: Any) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def table_text(table: Any) -> str:
    """What a DataTable's rows show, one line per row (in display order)."""
    return "\n".join(" ".join(str(cell) for cell in table.get_row_at(i))
                     for i in range(table.row_count))
