"""Fixtures shared by every test folder.

Each folder runs in the pytest process its runtime needs (see the Makefile): tests/providers and
tests/chassis monkey-patched by eventlet (``-p tests.eventlet_patch``); every other folder in a
process that must never import eventlet, which a fixture checks after every test there.

- ``broker``: the AMQP URI of a broker that answers (``make test`` makes sure one does).
- ``vhost``: a fresh vhost per test, deleted afterwards.
- ``start_service(modules, config=..., env=...)``: a real ``nameko run`` subprocess with a
  backdoor on a free port, on the test's vhost; stopped (process group) at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chassis_console.launch import NamekoProcess

from nameko_chassis.amqp.management import AmqpUri, ManagementApi, ManagementError, amqp_uri_from_env
from tests.harness import REPO, IsolatedVhost, Service

#: Test folders whose code runs eventlet in-process (their own pytest process, patched).
EVENTLET_FOLDERS = ("providers", "chassis", "compat")


@pytest.fixture(autouse=True)
def _no_eventlet_outside_eventlet_folders(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    folder = request.path.parent.name
    if folder not in EVENTLET_FOLDERS:
        assert "eventlet" not in sys.modules, f"a test in tests/{folder} imported eventlet"


@pytest.fixture(scope="session")
def broker() -> AmqpUri:
    return amqp_uri_from_env()


@pytest.fixture(scope="session")
def management(broker: AmqpUri) -> ManagementApi:
    api = ManagementApi(broker)
    try:
        api.request("GET", "/api/overview")
    except ManagementError as exc:
        pytest.fail(f"{exc} — run the tests with `make test`, which starts a broker")
    return api


@pytest.fixture
def vhost(management: ManagementApi, broker: AmqpUri) -> Iterator[IsolatedVhost]:
    with IsolatedVhost(management, broker) as vh:
        yield vh


StartService = Callable[..., Service]


@pytest.fixture
def start_service(vhost: IsolatedVhost, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[StartService]:
    started: list[Service] = []

    def start(modules: str | list[str] = "tests.services.parking", *,
              config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
              backdoor_port: int | None = None, argv: list[str] | None = None,
              ready: str = "containers") -> Service:
        mods = [modules] if isinstance(modules, str) else list(modules)
        cfg = {"AMQP_URI": str(vhost.uri), **(config or {})}
        proc = NamekoProcess(mods, cfg, cwd=REPO, env=env, backdoor_port=backdoor_port,
                             workdir=tmp_path_factory.mktemp("service"), argv=argv, ready=ready)
        service = Service(proc, vhost.uri)
        started.append(service)
        proc.start()
        if argv is None and "tests.services.parking" in mods:
            # `started` means nameko's consumers are up; still, an RPC published in the first
            # instants was seen lost now and then under load. A ping that answers proves the
            # whole path before a test counts on it.
            service.wait_answering("parking")
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture(scope="module")
def shared_parking(management: ManagementApi, broker: AmqpUri,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One parking service for a whole test module whose tests never stop it."""
    with IsolatedVhost(management, broker) as vhost:
        proc = NamekoProcess(["tests.services.parking"], {"AMQP_URI": str(vhost.uri)}, cwd=REPO,
                             workdir=tmp_path_factory.mktemp("service"))
        service = Service(proc, vhost.uri)
        proc.start()
        try:
            yield service.wait_answering("parking")
        finally:
            service.close()
