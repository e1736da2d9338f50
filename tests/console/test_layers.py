"""The import rules of DESIGN.md's three layers, each checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import REPO

_PROBE = (
    "import importlib, json, sys; before = set(sys.modules);"
    "[importlib.import_module(m) for m in sys.argv[1:]];"
    "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
)


def imported_by(*modules: str) -> set[str]:
    """Top-level packages that importing ``modules`` pulls in."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_console_never_imports_nameko_or_eventlet():
    pulled = imported_by("chassis_console", "chassis_console.cli", "chassis_console.client",
                         "chassis_console.app", "chassis_console.repl", "nameko_chassis",
                         "nameko_chassis.snapshot", "nameko_chassis.render",
                         "nameko_chassis.introspection")
    assert pulled & {"nameko", "eventlet"} == set()


def test_render_and_snapshot_import_no_ui_and_no_nameko():
    pulled = imported_by("nameko_chassis.render", "nameko_chassis.snapshot")
    assert pulled & {"nameko", "eventlet", "textual", "prompt_toolkit"} == set()


@pytest.mark.parametrize("module", ["nameko_chassis.introspection", "nameko_chassis.agent",
                                    "nameko_chassis.remote_repl"])
def test_shipped_modules_use_the_standard_library_only(module):
    # their source is exec'd inside services that may not have nameko-chassis installed
    pulled = imported_by(module) - {"nameko_chassis", "__future__"}
    third_party = {m for m in pulled if m not in sys.stdlib_module_names
                   and not m.startswith("_sysconfigdata")}  # the stdlib's generated build data
    assert third_party == set()
