"""The fleet on a real broker: several real `nameko run` replicas of one chassis service
(tests/services/chassis_parking.py), seen through one FleetTarget (or the CLI), never a backdoor.

The backdoors of the replicas are used only by the tests themselves, to know the truth (which
replica runs which worker) that the fleet view must show.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from chassis_console.errors import ConsoleError
from chassis_console.targets.fleet import NO_CHASSIS, FleetTarget

from nameko_chassis.amqp import fleet as wire
from tests.harness import REPO, wait_for

CHASSIS_PARKING = "tests.services.chassis_parking"
#: Generous: several service processes share two cores with other test runs.
DEADLINE = 2.0


def until(predicate, what: str):
    """wait_for at a console's pace: polling faster than CHASSIS.FLEET_RATE (10/s) would be
    rate-limited, and a refused request looks like a silent replica."""
    return wait_for(predicate, timeout=30, interval=0.3, what=what)


def replicas_shown(target: FleetTarget) -> dict[int, str]:
    """pid -> state, after one refresh."""
    target.refresh()
    return {r.pid: r.state for r in target.replicas.values()}


def container_names(target: FleetTarget) -> list[str]:
    return [c.service_name for c in target.snapshot().containers]


@pytest.fixture
def fleet(vhost):
    target = FleetTarget(vhost.uri, deadline=DEADLINE, discover_every=None)
    target.connect()
    yield target
    target.close()


def start_replicas(start_service, n: int, **kwargs):
    # each consuming before a test calls it: a call published while consumers start is lost
    return [start_service(CHASSIS_PARKING, **kwargs).wait_answering("parking")
            for _ in range(n)]


def test_every_replica_is_shown_as_service_at_host_pid(start_service, fleet):
    services = start_replicas(start_service, 3)
    pids = {s.process.pid for s in services}
    until(lambda: set(replicas_shown(fleet)) == pids, what="3 replicas")
    names = container_names(fleet)
    assert sorted(names) == sorted(f"parking@{fleet.replicas[r].host}:{fleet.replicas[r].pid}"
                                   for r in fleet.replicas)
    summary = fleet.summaries()
    assert [(s.name, len(s.replicas), s.versions) for s in summary] == [("parking", 3, {"2.0.0"})]
    assert "parking ×3" in fleet.summary
    # one publish per refresh; every replica answered, so the refresh ended before the deadline
    assert fleet.last_round_trip_ms is not None and fleet.last_round_trip_ms < DEADLINE * 1000


def test_several_services_in_one_process_answer_once(start_service, fleet):
    service = start_service([CHASSIS_PARKING, "tests.services.chassis_echo"])
    until(lambda: set(replicas_shown(fleet)) == {service.process.pid}, what="the process")
    (replica,) = fleet.replicas.values()
    assert sorted(replica.services) == ["echo", "parking"]
    assert sorted(container_names(fleet)) == [f"echo@{replica.label}", f"parking@{replica.label}"]


def test_a_killed_replica_is_marked_silent_and_the_others_go_on(start_service, fleet):
    doomed, survivor = start_replicas(start_service, 2)
    until(lambda: set(replicas_shown(fleet)) == {doomed.process.pid, survivor.process.pid},
          what="2 replicas")
    doomed.process.kill()  # SIGKILL: no goodbye, its queue goes with its connection
    states = replicas_shown(fleet)
    assert states == {doomed.process.pid: "silent", survivor.process.pid: "live"}
    snapshot = fleet.merged()
    names = [c.service_name for c in snapshot.containers]
    host = fleet.replicas[next(iter(fleet.replicas))].host
    assert f"parking@{host}:{doomed.process.pid}(silent)" in names  # its last snapshot, kept
    assert f"parking@{host}:{survivor.process.pid}" in names
    assert any(f"{host}:{doomed.process.pid}: not answering" in e for e in snapshot.errors)
    # and the survivor keeps answering, refresh after refresh
    assert replicas_shown(fleet)[survivor.process.pid] == "live"


def test_a_replica_started_later_is_shown_without_reconnecting(start_service, fleet):
    (first,) = start_replicas(start_service, 1)
    until(lambda: set(replicas_shown(fleet)) == {first.process.pid}, what="the first replica")
    broadcast = fleet._broadcast
    (second,) = start_replicas(start_service, 1)
    until(lambda: set(replicas_shown(fleet)) == {first.process.pid, second.process.pid},
          what="the second replica")
    assert fleet._broadcast is broadcast  # same connection, same reply queue


def test_the_oldest_worker_is_found_on_the_replica_that_runs_it(start_service, fleet):
    services = start_replicas(start_service, 2)
    caller = services[0]
    caller.rpc.call_async("parking", "park", seconds=60, tag="oldest")
    # which replica took it: the truth, from the replicas' own backdoors
    owner = wait_for(lambda: next((s for s in services if s.running_workers("parking")), None),
                     timeout=20, what="the first worker to start")
    time.sleep(0.3)
    for _ in range(5):
        caller.rpc.call_async("parking", "park", seconds=60, tag="younger")
    wait_for(lambda: sum(s.running_workers("parking") for s in services) == 6, timeout=20,
             what="6 workers in flight")
    until(lambda: len(replicas_shown(fleet)) == 2, what="2 replicas")
    snapshot = fleet.snapshot()
    container, oldest = max(snapshot.workers, key=lambda cw: cw[1].age_s)
    assert container.service_name.endswith(f":{owner.process.pid}")
    assert oldest.kwargs.get("tag") == "'oldest'"
    (summary,) = fleet.summaries()
    assert summary.running == 6
    assert summary.oldest_on is not None and summary.oldest_on.endswith(f":{owner.process.pid}")
    # drill down: its stack, and only its stack, comes with the next refresh
    drilled = fleet.snapshot(stacks=frozenset({oldest.call_id}))
    found = drilled.find_worker(oldest.call_id)
    assert found is not None and found[1].stack
    assert any(f.function == "wait_here" for f in found[1].stack)
    assert all(w.stack is None for _, w in drilled.workers if w.call_id != oldest.call_id)
    with pytest.raises(ConsoleError, match="read-only"):
        fleet.kill_worker(oldest.call_id)


def test_json_on_the_fleet_redacts_secrets(start_service, vhost):
    (service,) = start_replicas(start_service, 1)
    service.rpc.call_async("parking", "login", "bob", "hunter2", seconds=60)
    service.rpc.call_async("parking", "park", seconds=60,
                           context={"auth_token": "SECRET-TOKEN", "user_id": "u-1"})
    wait_for(lambda: service.running_workers("parking") == 2, timeout=20, what="2 workers")
    out = subprocess.run(
        [sys.executable, "-m", "chassis_console", str(vhost.uri), "--json",
         "--deadline", str(DEADLINE)],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "SECRET-TOKEN" not in out.stdout
    data = json.loads(out.stdout)
    assert ":***@" in data["fleet"]  # the broker password is not printed either
    (replica,) = data["replicas"]
    assert replica["pid"] == service.process.pid and replica["state"] == "live"
    workers = {w["entrypoint"]: w for c in replica["snapshot"]["containers"]
               for w in c["workers"]}
    login, park = workers["parking.login"], workers["parking.park"]
    assert "********" in login["kwargs"]["password"]  # sensitive_arguments
    assert "bob" in json.dumps(login)
    assert "********" in park["context_data"]["auth_token"]  # a secret-looking key
    assert "u-1" in park["context_data"]["user_id"]
    assert workers["parking.park"]["stack"]  # --stacks all by default, frames written out
    # the same derived figures as a backdoor TARGET's --json: groups and rates per container
    (container,) = replica["snapshot"]["containers"]
    counted = {g["entrypoint"]: g["count"] for g in container["groups"]}
    assert counted == {"parking.login": 1, "parking.park": 1}
    assert container["rates"]["source"] == "history"  # a chassis service keeps a history


def test_once_on_the_fleet_summarises_then_shows_each_replica(start_service, vhost, fleet):
    services = start_replicas(start_service, 2)
    until(lambda: len(replicas_shown(fleet)) == 2, what="2 replicas")
    out = subprocess.run(
        [sys.executable, "-m", "chassis_console", "--broker", str(vhost.uri), "--once",
         "--deadline", str(DEADLINE)],
        capture_output=True, text=True, cwd=REPO, timeout=60, env=_wide())
    assert out.returncode == 0, out.stderr
    assert "2/2 replicas answering" in out.stdout
    for s in services:
        assert f":{s.process.pid} (live)" in out.stdout


def test_a_plain_service_is_listed_as_no_chassis(start_service, vhost):
    start_service("tests.services.listener")
    (chassis,) = start_replicas(start_service, 1)
    target = FleetTarget(vhost.uri, deadline=DEADLINE, discover_every=0.5)
    target.connect()
    try:
        # the management API counts consumers a few seconds late
        def listed():
            snapshot = target.snapshot()
            names = [c.service_name for c in snapshot.containers]
            return snapshot if "listener (no chassis)" in names else None

        snapshot = until(listed, what="the plain listener service")
    finally:
        target.close()
    plain = next(c for c in snapshot.containers if c.service_name == "listener (no chassis)")
    assert plain.service_class == NO_CHASSIS
    assert [e.method for e in plain.entrypoints] == ["on_happened"]
    assert [p.name for p in target.plain] == ["listener"]  # parking answered: not plain
    assert f"parking@{target.replicas[next(iter(target.replicas))].host}:" \
           f"{chassis.process.pid}" in [c.service_name for c in snapshot.containers]
    assert f"listener: {NO_CHASSIS}" in target.summary


def test_requests_beyond_the_rate_are_refused_and_nothing_but_reads_is_served(
        start_service, vhost):
    (service,) = start_replicas(start_service, 1, config={"CHASSIS": {"FLEET_RATE": 1}})
    with wire.Broadcast(str(vhost.uri)) as broadcast:
        wait_for(lambda: broadcast.ask(wire.request("hello"), deadline=1.0,
                                       done=lambda got: bool(got)), timeout=20,
                 what="the replica to answer hello")
        time.sleep(1.1)  # the bucket refills
        replies = []
        for _ in range(6):  # a flood: six requests within a few milliseconds
            replies += broadcast.ask(wire.request(), deadline=0.001)
        replies += broadcast.gather(0.8)
        answered = [r for r in replies if r.data["op"] == "collect"]
        refused = [r for r in replies if r.data.get("rate_limited")]
        assert len(answered) == 1  # the burst: one per second
        assert len(refused) == 1  # one refusal per second; the other requests got nothing
        assert refused[0].data["replica"]["pid"] == service.process.pid
        time.sleep(1.1)
        # an operation that would change the service does not exist on this path
        (reply,) = broadcast.ask({"v": 1, "op": "kill_worker", "call_id": "x"}, deadline=2.0,
                                 done=lambda got: bool(got))
        assert reply.data["op"] == "error" and "read-only" in reply.data["error"]


def _wide() -> dict[str, str]:
    import os

    return {**os.environ, "COLUMNS": "160"}


def test_the_live_app_shows_the_fleet_and_drills_down_to_a_worker(start_service, vhost):
    import asyncio

    from chassis_console.live.app import ChassisConsole
    from chassis_console.live.detail import WorkerDetailScreen
    from chassis_console.live.poller import ConsoleOptions
    from chassis_console.live.workers import WorkersTable

    from tests.console.pilot import until as app_until

    services = start_replicas(start_service, 2)
    for _ in range(4):
        services[0].rpc.call_async("parking", "park", seconds=60)
    wait_for(lambda: sum(s.running_workers("parking") for s in services) == 4, timeout=20,
             what="4 workers in flight")
    pids = {s.process.pid for s in services}

    async def drive() -> None:
        target = FleetTarget(vhost.uri, deadline=DEADLINE, discover_every=None)
        app = ChassisConsole([target], ConsoleOptions(interval=0.5))
        async with app.run_test(size=(150, 40)) as pilot:
            table = app.query_one(WorkersTable)
            await app_until(pilot, lambda: table.row_count == 4, 30, "4 rows")
            status = app.pollers[0].status
            assert status.snapshot is not None
            shown = {c.service_name.rsplit(":", 1)[1] for c in status.snapshot.containers}
            assert shown == {str(p) for p in pids}
            await app_until(pilot, lambda: "parking ×2" in str(table.border_title), 10,
                            "the fleet summary in the title")
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, WorkerDetailScreen)
            await app_until(pilot, lambda: screen.worker is not None and screen.worker.stack,
                            15, "the worker's stack over the fleet")
            assert any(f.function == "wait_here" for f in screen.worker.stack)

    asyncio.run(drive())


@pytest.mark.parametrize("argv", [
    ["--repl", "amqp://guest:guest@localhost:5672/x"],
    ["amqp://guest:guest@localhost:5672/x", "--deadline", "0"],
])
def test_the_cli_keeps_the_fleet_read_only_and_sane(argv):
    from chassis_console.cli import run

    with pytest.raises(SystemExit) as exited:
        run(argv)
    assert exited.value.code == 2
