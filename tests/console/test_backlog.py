"""The backlog beside each pool, against real ``nameko run`` services: a pool that is full
(``max_workers=1``, a slow RPC) with messages published behind it shows them waiting, and
growing, in ``--json``, ``--once``, the live console's pool panel and the fleet view."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import resources
from typing import Any

import pytest
from chassis_console.live.services import PoolGauges
from chassis_console.live.workers import WorkersTable
from chassis_console.targets.backdoor import BackdoorClient
from chassis_console.targets.fleet import FleetTarget
from jsonschema import Draft202012Validator

from nameko_chassis.amqp.fleet import consumed_queues
from nameko_chassis.view.model import Snapshot
from tests.console.pilot import plain, until
from tests.console.test_app import make_app, sync
from tests.harness import REPO, Service, wait_for
from tests.view.test_schema import schema_errors

pytestmark = pytest.mark.timeout(120)

SLOWPOKE = "tests.services.slowpoke"
#: nameko's default prefetch: messages delivered to a consumer before it acknowledges one
PREFETCH = 10


def start_slowpoke(start_service: Any, **kwargs: Any) -> Service:
    service = start_service(SLOWPOKE, config={"max_workers": 1}, **kwargs)
    return service.wait_answering("slowpoke")


def publish(service: Service, n: int, seconds: float = 60) -> None:
    for _ in range(n):
        service.rpc.call_async("slowpoke", "slow", seconds=seconds)


def open_gate(service: Service) -> None:
    """Every parked and queued call returns at once: the service stops without waiting."""
    service.eval("__import__('tests.services.slowpoke').services.slowpoke.OPEN.append(1)")


def rpc_queue(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    container = snapshot["containers"][0]
    return next((q for q in container.get("backlog") or () if q["queue"] == "rpc-slowpoke"),
                None)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chassis_console", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_a_full_pool_shows_its_backlog_growing_in_json_and_once(start_service):
    service = start_slowpoke(start_service)
    try:
        publish(service, 30)
        # --json: one snapshot, its first backlog sample waited for
        out = cli(service.target, "--json")
        assert out.returncode == 0, out.stderr
        first = json.loads(out.stdout)
        assert first["containers"][0]["workers_running"] == 1
        queue = rpc_queue(first)
        assert queue is not None, first["containers"][0].get("backlog")
        # one worker runs, nine wait for it in this process: ten unacked, twenty in the broker
        assert queue["kind"] == "rpc" and set(queue["entrypoints"]) >= {"slow", "ping"}
        assert queue["unacked"] == PREFETCH
        assert queue["ready"] == 30 - PREFETCH
        assert queue["consumers"] == 1
        # every queue the service consumes is there: its @event_handler's and @consume's too
        kinds = {q["kind"]: q["queue"] for q in first["containers"][0]["backlog"]}
        assert kinds == {"rpc": "rpc-slowpoke", "consumer": "slowpoke-work",
                         "event_handler": "evt-nobody-happened--slowpoke.on_happened"}
        # the fleet names the same queues from the entrypoints alone (it declares them itself)
        entrypoints = [(e["method"], e["type"], e["details"])
                       for e in first["containers"][0]["entrypoints"]]
        assert set(consumed_queues("slowpoke", entrypoints)) == set(kinds.values())
        # schema v1 with the documented field, and the console's model reads it
        schema = json.loads(resources.files("nameko_chassis.probe")
                            .joinpath("snapshot.schema.json").read_text(encoding="utf-8"))
        assert schema_errors(Draft202012Validator(schema), first) == []
        (parsed,) = [q for q in Snapshot.from_dict(first).containers[0].backlog or ()
                     if q.queue == "rpc-slowpoke"]
        assert (parsed.ready, parsed.unacked) == (30 - PREFETCH, PREFETCH)

        with BackdoorClient(service.process.address, timeout=10) as client:
            # more work arrives while the pool stays full: ready grows, and so does the rate
            publish(service, 40)

            seen: list[dict[str, Any] | None] = []

            def grown() -> dict[str, Any] | None:
                q = rpc_queue(client.collect(stacks="none"))
                seen.append(q)
                return q if q and q["ready"] == 70 - PREFETCH else None

            grew = wait_for(grown, timeout=40, interval=0.5,
                            what="the backlog to grow")
            assert grew["unacked"] == PREFETCH
            # the sample that first saw it grown measured the growth since the one before
            assert (grew["rate_per_s"] or 0) > 0, seen[-3:]
        page = cli(service.target, "--once", "--width", "200")
        assert page.returncode == 0, page.stderr
        assert "rpc-slowpoke" in page.stdout and "60 ready · 10 unacked" in page.stdout
        assert "POOL FULL AND BACKLOG GROWING" in page.stdout
    finally:
        open_gate(service)


def _sampler_running(service: Service) -> str:
    return service.eval(
        "[m.current().running for n, m in sorted(__import__('sys').modules.items()) "
        "if n.startswith('nameko_chassis_probe_') and n.endswith('.backlog') "
        "and m.current() is not None]")


def test_the_sampler_stops_when_no_console_asks(start_service):
    service = start_slowpoke(start_service, env={"CHASSIS_BACKLOG_IDLE_S": "1"})
    with BackdoorClient(service.process.address, timeout=10) as client:
        assert client.request("backlog", wait=3)["running"] is True
        assert _sampler_running(service) == "[True]"
        # nobody asks: it ends by itself (and closes its broker connection)
        wait_for(lambda: _sampler_running(service) == "[False]", timeout=10,
                 what="the sampler to stop")
        # the next request starts it again
        answer = client.request("backlog", wait=3)
        assert answer["running"] is True and answer["services"]["slowpoke"]


def test_a_passive_declare_never_creates_a_queue(vhost):
    from nameko_chassis.probe import privates

    conn = privates.broker_connection(str(vhost.uri), None, None, 3.0)
    try:
        with pytest.raises(Exception, match="NOT_FOUND"):
            privates.passive_declare(conn, None, "no-such-queue")
        # the refusal closed that channel: the next declare opens another one and works
        conn.channel().queue_declare(queue="a-real-one", auto_delete=False)
        channel, ready, consumers = privates.passive_declare(conn, None, "a-real-one")
        assert (ready, consumers) == (0, 0) and channel.is_open
    finally:
        conn.release()
    assert "no-such-queue" not in {q["name"] for q in vhost.api.queues(vhost.name)}


@sync
async def test_the_pool_panel_shows_the_backlog_and_a_full_growing_pool_stands_out(
        start_service):
    service = start_slowpoke(start_service)
    try:
        publish(service, 15)
        app = make_app(service.target)
        async with app.run_test(size=(150, 40)) as pilot:
            pools = app.query_one(PoolGauges)
            await until(pilot, lambda: "backlog 5 ready · 10 unacked" in plain(pools),
                        timeout=20, what="the backlog under the slowpoke pool")
            assert "1/1 FULL" in plain(pools)
            assert not pools.has_class("-backlog")  # full, but not growing
            publish(service, 20)
            await until(pilot, lambda: "growing ▲" in plain(pools), timeout=20,
                        what="the growing backlog")
            assert pools.has_class("-backlog")
            assert "full with a growing backlog" in str(pools.border_subtitle)
            # 80x24: no pool panel; the table's bottom line names the pool and its backlog
            await pilot.resize_terminal(80, 24)
            workers = app.query_one(WorkersTable)
            await until(pilot, lambda: "slowpoke 1/1 FULL" in str(workers.border_subtitle)
                        and "waiting" in str(workers.border_subtitle), what="the narrow alert")
    finally:
        open_gate(service)


def test_the_fleet_view_has_a_backlog_per_service(start_service, vhost):
    service = start_service("tests.services.chassis_parking", config={"max_workers": 1})
    service.wait_answering("parking")
    service.hold(1, tag="fleet")
    for _ in range(25):  # queued behind the parked worker
        service.rpc.call_async("parking", "ping")
    fleet = FleetTarget(vhost.uri, deadline=2.0, discover_every=None)
    fleet.connect()
    try:
        def sampled() -> Any:
            fleet.refresh()
            summary = next((s for s in fleet.summaries() if s.name == "parking"), None)
            return summary if summary is not None and summary.backlog_ready == 25 + 1 - \
                PREFETCH else None

        summary = wait_for(sampled, timeout=30, interval=0.5, what="the fleet's backlog")
        assert "16 waiting" in summary.line()
        snapshot = fleet.merged()
        (container,) = [c for c in snapshot.containers if c.service_name.startswith("parking@")]
        (queue,) = [q for q in container.backlog or () if q.queue == "rpc-parking"]
        assert queue.ready == 16 and queue.unacked == PREFETCH and queue.consumers == 1
        data = fleet.collect(stacks="none")
        (entry,) = [s for s in data["services"] if s["name"] == "parking"]
        assert [(q["queue"], q["ready"], q["unacked"]) for q in entry["backlog"]] == [
            ("rpc-parking", 16, PREFETCH)]
        time.sleep(0.1)
    finally:
        fleet.close()
        # the pool is full: a release RPC would queue too, so release over the backdoor
        service.eval("[e.send(None) for e in __import__('tests.services.parking').services"
                     ".parking._parked.pop('fleet', [])]")
