"""Screenshots of the live console on a fleet (``.venv/bin/python screenshots/fleet.py``).

Starts three replicas of tests/services/chassis_parking.py and one plain service
(tests/services/listener.py) on a vhost of their own (broker at $AMQP_URI), parks workers in
the replicas, attaches the real app to ``amqp://.../vhost`` and saves, into this folder:

- ``console-fleet.svg``: every replica's workers in one table, oldest first, the plain service
  listed as "no chassis";
- ``console-fleet-silent.svg``: the same right after one replica was killed (SIGKILL).

Each also as PNG when a converter is available (see make_screenshots.py).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from chassis_console.launch import NamekoProcess  # noqa: E402
from chassis_console.live.app import ChassisConsole  # noqa: E402
from chassis_console.live.poller import ConsoleOptions  # noqa: E402
from chassis_console.live.workers import WorkersTable  # noqa: E402
from chassis_console.targets.fleet import FleetTarget  # noqa: E402
from make_screenshots import SIZE, save, until  # noqa: E402

from nameko_chassis.amqp.management import ManagementApi, amqp_uri_from_env  # noqa: E402
from nameko_chassis.amqp.rpc import RpcClient  # noqa: E402


async def shoot(uri: str, replicas: list[NamekoProcess]) -> list[Path]:
    written: list[Path] = []
    target = FleetTarget(uri, deadline=1.0, discover_every=2.0)
    app = ChassisConsole([target], ConsoleOptions(interval=1.0))
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(WorkersTable)
        status = app.pollers[0].status

        def ready() -> bool:
            snap = status.snapshot
            return (snap is not None and status.polls >= 3 and table.row_count >= 9
                    and any("(no chassis)" in c.service_name for c in snap.containers)
                    and max(w.age_s for _, w in snap.workers) > 4)

        await until(pilot, ready, 60, "the fleet with its plain service")
        await pilot.pause(0.3)
        save(app, "console-fleet", written)
        await asyncio.to_thread(replicas[1].kill)
        await until(pilot, lambda: status.snapshot is not None and any(
            c.service_name.endswith("(silent)") for c in status.snapshot.containers), 20,
            "the killed replica to be marked")
        await pilot.pause(1.2)
        save(app, "console-fleet-silent", written)
    return written


def main() -> int:
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-fleet-shots-{uuid.uuid4().hex[:8]}"
    api.create_vhost(vhost)
    uri = str(base.with_vhost(vhost))
    procs = [NamekoProcess(["tests.services.chassis_parking"], {"AMQP_URI": uri},
                           cwd=HERE.parent) for _ in range(3)]
    procs.append(NamekoProcess(["tests.services.listener"], {"AMQP_URI": uri}, cwd=HERE.parent))
    try:
        for p in procs:
            p.start()
        rpc = RpcClient(uri, timeout=60)
        for call in [rpc.call_async("parking", "ping") for _ in range(30)]:
            call.result()
        rpc.call_async("parking", "login", "ada", "s3cret", seconds=600)
        for k in range(11):
            rpc.call_async("parking", "park", seconds=600, tag=f"order-{k}")
            time.sleep(0.4)
        written = asyncio.run(shoot(uri, procs[:3]))
        rpc.close()
    finally:
        for p in procs:
            p.kill()
            p.remove_workdir()
        api.delete_vhost(vhost)
    for path in written:
        print(path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
