"""Fixtures shared by console-side and service-side tests.

- ``broker``: the AMQP URI of a broker that answers (``make test`` makes sure one does).
- ``vhost``: a fresh vhost per test, deleted afterwards.
- ``start_service(modules, config=..., env=...)``: a real ``nameko run`` subprocess with a
  backdoor on a free port, on the test's vhost; stopped (process group) at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chassis_console.launch import NamekoProcess

from nameko_chassis.broker import AmqpUri, ManagementApi, ManagementError, amqp_uri_from_env
from tests.harness import REPO, IsolatedVhost, Service, wait_for


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


def _answers(service: Service) -> bool:
    try:
        return bool(service.rpc.call("parking", "ping", timeout=2) == "pong")
    except Exception:  # noqa: BLE001 - RpcTimeout and connection errors alike: try again
        return False


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
            wait_for(lambda: _answers(service), timeout=30, what="parking to answer a ping")
        return service

    yield start
    for service in started:
        service.close()
