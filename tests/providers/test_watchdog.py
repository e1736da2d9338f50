"""The chassis' hub watchdog in a real ``nameko run`` chassis service, no console attached:
a block is observed by ``nameko_hub_block_seconds`` and, over 1 s, sent to a real sentry-sdk
transport (a local sink) with the culprit's stack and redacted arguments."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from chassis_console.launch import NamekoProcess, free_port
from prometheus_client.parser import text_string_to_metric_families

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from tests.harness import REPO, IsolatedVhost, Service, wait_for
from tests.providers.test_chassis_service import clean_env
from tests.services.chassis_sinks import SentrySink

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def hog(management: ManagementApi, broker: AmqpUri, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Service, SentrySink, int]]:
    with SentrySink() as sentry, IsolatedVhost(management, broker) as vh:
        http_port = free_port()
        config = {"AMQP_URI": str(vh.uri),
                  "CHASSIS": {"HTTP_ADDRESS": f"127.0.0.1:{http_port}"},
                  "SENTRY": {"DSN": sentry.dsn, "ENVIRONMENT": "test"}}
        proc = NamekoProcess(["tests.services.chassis_hog"], config, cwd=REPO,
                             workdir=tmp_path_factory.mktemp("hog"), env=clean_env())
        service = Service(proc, vh.uri)
        proc.start()
        try:
            wait_for(lambda: _ping(service), timeout=30, what="a ping")
            yield service, sentry, http_port
        finally:
            service.close()


def _ping(service: Service) -> bool:
    try:
        return service.rpc.call("chassis_hog", "ping", timeout=1) == "pong"
    except Exception:  # RpcTimeout while consumers come up
        return False


def block_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "nameko_hub_block_seconds_count":
                out[s.labels["entrypoint"]] = s.value
    return out


def hub_events(sentry: SentrySink) -> list[dict[str, Any]]:
    with sentry.lock:
        return [e for e in sentry.events if (e.get("tags") or {}).get("watchdog") == "hub_blocked"]


def test_blocks_are_measured_and_long_ones_reach_sentry_redacted(hog) -> None:
    service, sentry, port = hog
    # a short block: measured, not sent (under CHASSIS.WATCHDOG_SENTRY_MS, 1 s)
    assert service.rpc.call("chassis_hog", "crunch", seconds=0.6, token="hunter2") == 0.6
    wait_for(lambda: block_counts(port).get("chassis_hog.crunch") == 1, what="one block counted")
    # a long one: both
    assert service.rpc.call("chassis_hog", "crunch", seconds=1.8, token="hunter2",
                            label="the-label") == 1.8
    wait_for(lambda: block_counts(port).get("chassis_hog.crunch") == 2, what="two blocks")
    (event,) = wait_for(lambda: hub_events(sentry), timeout=15, what="the Sentry event")
    assert event["level"] == "warning"
    assert event["message"].startswith("eventlet hub blocked for 1.")
    assert event["message"].endswith("by chassis_hog.crunch")
    assert event["tags"]["entrypoint"] == "chassis_hog.crunch"
    frames = event["threads"]["values"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames][-2:] == ["crunch", "crunch_numbers"]
    assert frames[-1]["in_app"] is True
    nameko = event["contexts"]["nameko"]
    assert nameko["kwargs"]["label"] == "'the-label'"
    assert "hunter2" not in json.dumps(event)
    assert event["contexts"]["hub_block"]["duration_s"] >= 1.0
    # the service survives
    assert service.rpc.call("chassis_hog", "ping", timeout=10) == "pong"
