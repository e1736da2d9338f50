"""``--json`` and ``--once`` against real services: the groups and rates per container that the
live console's views show (docs/schema.md, fields added by ``--json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from nameko_chassis.amqp.rpc import RpcError
from nameko_chassis.view.derived import CONTAINER_FIELDS_SCHEMA
from tests.harness import REPO

CHAIN = ["tests.services.chassis_chain", "tests.services.parking"]


def chassis_console(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chassis_console", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "NO_COLOR": "1"})


def containers(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["service_name"]: c for c in data["containers"]}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    """Schema v1, with the container fields --json adds (the schema file holds them)."""
    schema = json.loads(resources.files("nameko_chassis.probe").joinpath("snapshot.schema.json")
                        .read_text(encoding="utf-8"))
    assert set(CONTAINER_FIELDS_SCHEMA) <= set(schema["$defs"]["container"]["properties"])
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_json_has_the_rates_of_the_calls_served_and_the_groups_of_the_workers(
        start_service, validator):
    service = start_service(CHAIN).wait_answering("chain_front")
    for _ in range(7):
        service.rpc.call("chain_front", "hello")
    for _ in range(3):
        with pytest.raises(RpcError):
            service.rpc.call("chain_front", "pay", user="u", card="0000111122223333")
    service.hold(4, tag="g1")
    service.hold(2, method="park", tag="g2")
    out = chassis_console(service.target, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(data)]
    assert errors == []
    by_name = containers(data)

    front = by_name["chain_front"]
    rates = front["rates"]
    assert rates["source"] == "history" and rates["window_s"] == 60
    assert isinstance(rates["estimate"], bool)
    per = {r["entrypoint"]: r for r in rates["entrypoints"]}
    assert per["chain_front.hello"]["calls"] == 7 and per["chain_front.hello"]["errors"] == 0
    assert per["chain_front.pay"]["calls"] == 3 and per["chain_front.pay"]["errors"] == 3
    assert per["chain_front.pay"]["error_rate"] == 1.0
    assert sum(per["chain_front.hello"]["buckets"]) == 7
    assert rates["entrypoints"][0]["entrypoint"] == "chain_front.pay"  # attention first
    assert front["groups"] == []  # nothing in flight

    parking = by_name["parking"]
    assert parking["rates"] is None  # a plain service keeps no history: no rate from one look
    groups = parking["groups"]
    assert [g["count"] for g in groups] == [6]  # all six parked at the same line
    assert groups[0]["entrypoint"] == "parking.park"
    assert "parking.py:" in groups[0]["where"]
    assert groups[0]["lower_bound"] is True  # plain nameko: ages from first sight

    page = chassis_console(service.target, "--once")
    assert page.returncode == 0, page.stderr
    assert "last 60s by entrypoint" in page.stdout
    assert "rates: this service keeps no history" in page.stdout
    service.release("g1")
    service.release("g2")
