"""Console-side tests: this pytest process must never import eventlet (the console is asyncio)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_eventlet_in_console_tests():
    yield
    assert "eventlet" not in sys.modules, "a console-side test imported eventlet"
