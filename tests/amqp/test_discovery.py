"""Discovery against the real management API and real services: chassis services with their
entrypoints from describe(), a plain nameko service without, vhost isolation, and
``chassis-console --services``. Console side: no eventlet in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from chassis_console.errors import UnreachableError, UsageError
from chassis_console.services import run_services

from nameko_chassis.amqp.discovery import DiscoveredService, discover, services_from_queues
from nameko_chassis.amqp.management import AmqpUri
from tests.harness import REPO, IsolatedVhost, wait_for


def test_queue_names_map_to_services() -> None:
    uuid = "0f3c1a2b-1111-2222-3333-444455556666"
    queues = [
        {"name": "rpc-orders", "consumers": 2, "vhost": "v"},
        {"name": "rpc-idle", "consumers": 0, "vhost": "v"},
        {"name": "rpc-elsewhere", "consumers": 1, "vhost": "other"},
        {"name": "evt-orders-order_placed--mail-er.send_confirmation", "consumers": 1,
         "vhost": "v"},
        {"name": f"evt-orders-order_placed--audit.v2.record-{uuid}", "consumers": 1,
         "vhost": "v"},
        {"name": f"rpc.reply-shop-per-{uuid}", "consumers": 1, "vhost": "v"},
        {"name": "some-app-queue", "consumers": 3, "vhost": "v"},
    ]
    found = {s.name: s for s in services_from_queues(queues, "v")}
    assert set(found) == {"orders", "mail-er", "audit.v2", "shop-per"}
    assert found["orders"].instances == 2 and found["orders"].rpc_queue == "rpc-orders"
    assert found["mail-er"].event_handlers == ["send_confirmation"]
    assert found["audit.v2"].event_handlers == ["record"]
    assert found["shop-per"].calls_others and found["shop-per"].rpc_queue is None


def _ready(services: list[DiscoveredService], names: set[str]) -> bool:
    seen = {s.name: s for s in services}
    return names <= set(seen) and all(seen[n].chassis is not None for n in names)


def test_discovers_chassis_and_plain_services(start_service, vhost: IsolatedVhost,
                                              management, broker: AmqpUri) -> None:
    start_service(["tests.services.chassis_shop", "tests.services.parking"])
    names = {"chassis_front", "chassis_back", "chassis_parking", "chassis_quiet", "parking"}
    # the management API's consumer counts lag by a few seconds
    services = wait_for(lambda: (lambda found: found if _ready(found, names) else None)(
        discover(vhost.uri, timeout=5)), timeout=30, interval=0.5, what="all services")
    by_name = {s.name: s for s in services}
    front = by_name["chassis_front"]
    assert front.chassis is True and front.version == "1.2.3" and front.instances == 1
    assert {"method": "hello", "type": "rpc"} in front.entrypoints
    assert {"method": "web", "type": "http"} in front.entrypoints
    assert front.calls_others  # it has a ServiceRpc to chassis_back
    back = by_name["chassis_back"]
    assert back.event_handlers == ["on_happened"]
    assert {"method": "on_happened", "type": "event_handler"} in back.entrypoints
    plain = by_name["parking"]
    assert plain.chassis is False and plain.entrypoints is None and plain.error is None

    # another vhost sees none of them
    with IsolatedVhost(management, broker) as empty:
        assert discover(empty.uri, timeout=2) == []

    # the CLI, as a user runs it
    out = subprocess.run([sys.executable, "-m", "chassis_console", "--services", str(vhost.uri)],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    for name in names:
        assert name in out.stdout
    assert "1.2.3" in out.stdout and "hello" in out.stdout
    assert "not a chassis service" in out.stdout
    assert "guest:guest" not in out.stdout  # the password is not printed


def test_services_cli_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                             vhost: IsolatedVhost) -> None:
    assert run_services(str(vhost.uri), timeout=2) == 0
    assert "no nameko services" in capsys.readouterr().out
    with pytest.raises(UsageError):
        run_services("http://not-amqp", timeout=2)
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:9")
    with pytest.raises(UnreachableError) as err:
        run_services(str(vhost.uri), timeout=2)
    assert err.value.exit_code == 3 and "management API" in str(err.value)


def test_services_of_every_kind_as_a_table_and_as_json(start_service, vhost: IsolatedVhost
                                                       ) -> None:
    start_service(["tests.services.parking", "tests.services.listener"])
    names = {"parking", "listener"}
    wait_for(lambda: names <= {s.name for s in discover(vhost.uri, timeout=5)
                               if s.rpc_queue or s.event_instances},
             timeout=30, interval=0.5, what="both services on the management API")
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-m", "chassis_console", "--services", str(vhost.uri),
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["listener"]["instances"] == 1 and rows["listener"]["rpc_queue"] is None
    assert rows["listener"]["event_handlers"] == ["on_happened"]
    assert rows["parking"]["instances"] == 1 and rows["parking"]["chassis"] is False
    table = subprocess.run([sys.executable, "-m", "chassis_console", "--services",
                            str(vhost.uri)], cwd=REPO, capture_output=True, text=True,
                           timeout=60, env=env).stdout
    listener = next(line for line in table.splitlines() if "listener" in line)
    assert "—" not in listener.split("listener", 1)[1].split()[0]  # instances: 1, not —
    parking = next(line for line in table.splitlines() if "parking" in line)
    assert "not a chassis service" not in parking.split("│")[4]  # entrypoints column
    assert "not a chassis service" in parking.split("│")[5]  # notes column


def test_an_unknown_vhost_is_named_as_such(vhost: IsolatedVhost) -> None:
    uri = vhost.uri.with_vhost("no-such-vhost-here")
    out = subprocess.run([sys.executable, "-m", "chassis_console", "--services", str(uri)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "vhost 'no-such-vhost-here' does not exist" in out.stderr
    assert "HTTP 404" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
