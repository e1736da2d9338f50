"""Each folder's import rule (docs/architecture.md), proven two ways: statically, every import
of every module points down to a layer it may use; at run time, importing a layer in a fresh
interpreter pulls in no package its runtime forbids."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

#: layer -> the layers of this project it may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "nameko_chassis.probe": set(),
    "nameko_chassis.errors": set(),
    "nameko_chassis.view": {"nameko_chassis.probe", "nameko_chassis.errors"},
    "nameko_chassis.amqp": {"nameko_chassis.errors"},
    "nameko_chassis.providers": {"nameko_chassis", "nameko_chassis.config",
                                 "nameko_chassis.probe", "nameko_chassis.amqp",
                                 "nameko_chassis.errors"},
    "nameko_chassis": {"nameko_chassis.probe", "nameko_chassis.view", "nameko_chassis.amqp",
                       "nameko_chassis.providers", "nameko_chassis.errors"},
    "chassis_console": {"nameko_chassis.probe", "nameko_chassis.view", "nameko_chassis.amqp",
                        "nameko_chassis.errors"},
}
#: layer -> third-party packages it must never import at run time.
FORBIDDEN: dict[str, set[str]] = {
    "nameko_chassis.view": {"nameko", "eventlet", "textual", "prompt_toolkit", "kombu"},
    "nameko_chassis.amqp": {"nameko", "eventlet", "textual", "prompt_toolkit"},
    "chassis_console": {"nameko", "eventlet"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for package, folder in (("nameko_chassis", REPO / "nameko_chassis"),
                            ("chassis_console", REPO / "console")):
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((".".join([package, *parts]), path))
    return out


def _layer(module: str) -> str:
    for layer in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            if layer == "nameko_chassis" and module.split(".")[1:2] and \
                    f"nameko_chassis.{module.split('.')[1]}" in MAY_IMPORT:
                continue
            return layer
    return "nameko_chassis"  # service.py, config.py, debug.py, demo/


def _optional_imports(tree: ast.AST) -> set[int]:
    """Import nodes inside ``try: ... except ImportError``: the probe uses nameko_chassis' own
    modules when the service happens to have them installed, and does without otherwise."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt)
                       if isinstance(n, (ast.Import, ast.ImportFrom)))
    return ids


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    optional = _optional_imports(tree) if _layer(module) == "nameko_chassis.probe" else set()
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    found.update(f"{target}.{a.name}" for a in node.names)
                else:
                    found.add(target)
            elif node.module:
                found.add(node.module)
    return found


def _owner(target: str) -> str | None:
    if not target.startswith(("nameko_chassis", "chassis_console")):
        return None
    return _layer(target)


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down(module, path):
    layer = _layer(module)
    allowed = MAY_IMPORT[layer] | {layer}
    wrong = {t for t in _imports(module, path) if (o := _owner(t)) is not None and o not in allowed}
    assert wrong == set(), f"{module} ({layer}) imports {sorted(wrong)}"


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


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_never_import_what_their_runtime_forbids(layer):
    modules = [m for m, _ in _modules() if _layer(m) == layer and not m.endswith("__main__")]
    assert modules
    assert imported_by(*modules) & FORBIDDEN[layer] == set()


def test_the_probe_uses_the_standard_library_only():
    # its source is exec'd inside services that may not have nameko-chassis installed
    modules = [m for m, _ in _modules() if _layer(m) == "nameko_chassis.probe"]
    pulled = imported_by(*modules) - {"nameko_chassis", "__future__"}
    third_party = {m for m in pulled if m not in sys.stdlib_module_names
                   and not m.startswith("_sysconfigdata")}  # the stdlib's generated build data
    assert third_party == set()


def test_the_probe_ships_every_module_it_has():
    from nameko_chassis.probe import MODULES

    files = {p.stem for p in (REPO / "nameko_chassis" / "probe").glob("*.py")} - {"__init__"}
    assert set(MODULES) == files
