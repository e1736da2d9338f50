"""Where a worker is, when none of its frames is the service's own code: a service installed
into site-packages, or a worker in a library's teardown. Real frames of a real thread, from
modules that live where such libraries live."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

from nameko_chassis.probe.frames import innermost_user_frame, package_dirs

SOURCES = {
    # the hub: plumbing, never an answer to "where"
    "site-packages/eventlet/hubs/fakehub.py": (
        "import threading\n"
        "parked = threading.Event()\n"
        "release = threading.Event()\n"
        "def switch():\n"
        "    parked.set()\n"
        "    release.wait(10)\n"),
    # a library tearing down (nameko-sqlalchemy, say)
    "site-packages/teardownlib/__init__.py": (
        "def close_session(switch):\n"
        "    return switch()\n"),
    # a service installed as a package
    "site-packages/myshop/__init__.py": "",  # imported as a package by its test
    "site-packages/myshop/service.py": (
        "class Shop:\n"
        "    name = 'shop'\n"
        "def handle(close, switch):\n"
        "    return close(switch)\n"),
    # nameko's worker runner
    "site-packages/nameko/fakecontainers.py": (
        "def run_worker(fn, *args):\n"
        "    return fn(*args)\n"),
}


def _load(root: Path, rel: str):
    path = root / rel
    name = "chassis_test_" + rel.replace("/", "_").replace("-", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _parked_frame(tmp_path: Path, target):
    for rel, src in SOURCES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(src)
    mods = {rel: _load(tmp_path, rel) for rel in SOURCES if "myshop" not in rel}
    hub = mods["site-packages/eventlet/hubs/fakehub.py"]
    runner = mods["site-packages/nameko/fakecontainers.py"]
    thread = threading.Thread(target=runner.run_worker, args=target(mods, hub), daemon=True)
    thread.start()
    assert hub.parked.wait(5)
    return sys._current_frames()[thread.ident], hub, mods


def test_a_worker_in_library_teardown_is_where_the_library_is(tmp_path):
    frame, hub, _ = _parked_frame(tmp_path, lambda m, hub: (
        m["site-packages/teardownlib/__init__.py"].close_session, hub.switch))
    try:
        where = innermost_user_frame(frame)
        assert where is not None
        assert where["function"] == "close_session" and "teardownlib" in where["file"]
    finally:
        hub.release.set()


def test_a_service_installed_in_site_packages_is_where_its_own_code_is(tmp_path):
    sys.path.insert(0, str(tmp_path / "site-packages"))
    try:
        frame, hub, _ = _parked_frame(tmp_path, lambda m, hub: (
            importlib.import_module("myshop.service").handle,
            m["site-packages/teardownlib/__init__.py"].close_session, hub.switch))
    finally:
        sys.path.remove(str(tmp_path / "site-packages"))
    try:
        own = package_dirs(importlib.import_module("myshop.service").Shop)
        assert own == (str((tmp_path / "site-packages" / "myshop").resolve()) + "/",)
        where = innermost_user_frame(frame, own=own)
        assert where is not None and where["function"] == "handle", where
        # without knowing the service's package, the nearest named library still beats the hub
        assert innermost_user_frame(frame)["function"] == "close_session"
    finally:
        hub.release.set()


def test_site_packages_of_a_virtualenv_are_libraries_not_plumbing():
    # in a virtualenv the standard library's platstdlib is the venv's lib/pythonX.Y, which
    # holds site-packages: a library there is still a named library for "where"
    import site

    from nameko_chassis.probe import frames

    for folder in site.getsitepackages():
        assert not frames._is_plumbing(folder + "/amqp/transport.py")
        assert frames.is_library_file(folder + "/amqp/transport.py")
    assert frames._is_plumbing(frames.__file__.replace("nameko_chassis/probe/frames.py",
                                                       "eventlet/hubs/hub.py"))
