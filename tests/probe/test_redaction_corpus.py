"""The redaction corpus through every console channel, against a real ``nameko run`` chassis
service (tests/services/vault.py): ``--json``, ``--once`` narrow and wide, the TUI's worker
detail (Pilot), ``debug_runner`` narrow and wide, the REPL's ``collect()`` and ``snapshot()``,
and the worker history. Leaks asserted 0. Sentry and OTel are checked in the eventlet test
process (tests/providers/test_redaction_corpus_sinks.py: sentry-sdk imports eventlet).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from tests.harness import REPO, IsolatedVhost, Service
from tests.redaction_corpus import CANARY, corpus, fail_corpus, leaks, park_corpus, start_vault

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def vault(management: ManagementApi, broker: AmqpUri,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with IsolatedVhost(management, broker) as vh:
        service = start_vault(vh.uri, tmp_path_factory.mktemp("vault"))
        try:
            yield service
        finally:
            service.close()


def run_console(*args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "chassis_console", *args], capture_output=True,
                          text=True, errors="backslashreplace", cwd=REPO, env=env, timeout=60)


def test_corpus_leaks_nothing_through_any_console_channel(vault: Service) -> None:
    shapes = corpus()
    assert len(shapes) >= 90
    calls = park_corpus(vault, shapes)
    assert fail_corpus(vault, shapes, calls) == len(calls) - 1  # history gets the exceptions
    target = vault.target

    outputs: dict[str, str] = {}
    done = run_console("--json", target)
    assert done.returncode == 0, done.stderr
    outputs["--json"] = done.stdout
    for name, columns in (("--once narrow", 70), ("--once wide", 250)):
        done = run_console("--once", target, columns=columns)
        assert done.returncode == 0, done.stderr
        outputs[name] = done.stdout + done.stderr
    for name, width in (("debug_runner narrow", 70), ("debug_runner wide", 250)):
        outputs[name] = vault.eval(
            "__import__('nameko_chassis.debug', fromlist=['x']).debug_runner("
            f"runner, width={width}, color=False)")
    with BackdoorClient(target) as client:
        for helper, source in (("collect()", "collect()"), ("snapshot()", (
                "s = snapshot(); [(w.args, w.kwargs, w.context_data) for c in s.containers "
                "for w in c.workers] + [c.history for c in s.containers]"))):
            reply = client.request("exec", source=source)
            assert reply["error"] is None, reply
            outputs[f"REPL {helper}"] = reply["output"]
        client.request("exec", source="del s")
    outputs["TUI worker detail"] = tui_details(target, len(calls))
    vault.rpc.call("vault", "release", tag="corpus")

    table = {name: leaks(shapes, text) for name, text in outputs.items()}
    print("\n" + "\n".join(f"{name:22} {len(shapes)} shapes, leaks: {len(found)}"
                           for name, found in table.items()))
    assert table == {name: [] for name in outputs}, "\n".join(
        f"{name}: {found}" for name, found in table.items() if found)
    # not vacuous: every channel shows the workers, and the canary beside the secrets
    for name, text in outputs.items():
        if "narrow" not in name:
            assert CANARY in text, f"{name} shows no canary"
        assert "vault" in text, f"{name} shows no vault"
    history = [h for c in json.loads(outputs["--json"])["containers"] for h in c["history"]]
    failed = [h for h in history if h["exc_type"] == "Leak"]
    assert failed and all("********" in h["exc_message"] for h in failed)


def tui_details(target: str, workers: int) -> str:
    """Open the worker detail of every worker in the live console; what each one showed."""
    import asyncio

    from chassis_console.live.app import ChassisConsole
    from chassis_console.live.detail import WorkerDetailScreen
    from chassis_console.live.poller import ConsoleOptions
    from chassis_console.live.workers import WorkersTable
    from rich.console import Console

    from tests.console.pilot import until

    def plain(widget: Any) -> str:
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(widget.content)
        return console.export_text()

    async def run() -> str:
        app = ChassisConsole([BackdoorClient(target, timeout=5, connect_timeout=2)],
                             ConsoleOptions(interval=0.2, timeout=5))
        seen = []
        async with app.run_test(size=(200, 60)) as pilot:
            table = app.query_one(WorkersTable)
            await until(pilot, lambda: table.row_count >= workers, what="the vault workers")
            for row in range(workers):
                table.move_cursor(row=row)
                await pilot.press("enter")
                screen = app.screen
                assert isinstance(screen, WorkerDetailScreen)
                await until(pilot, lambda s=screen: s.worker is not None, what="a worker")
                seen.append("\n".join(plain(screen.query_one(f"#detail-{part}"))
                                      for part in ("title", "worker", "args", "context")))
                await pilot.press("escape")
        return "\n".join(seen)

    return asyncio.run(run())
