"""`chassis-console --demo`: it starts the shop, and however it is stopped, nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from chassis_console.targets.backdoor import BackdoorClient

from tests.harness import REPO, wait_for


def _vhosts(management) -> set[str]:
    return set(management.vhosts())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_demo_serves_live_workers_and_leaves_nothing_behind(management, sig):
    before = _vhosts(management)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chassis_console", "--demo", "--serve"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "attach with:" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        target = line.split("chassis-console", 1)[1].split()[0]
        # the shopper keeps workers in flight: within a few seconds the snapshot shows some
        with BackdoorClient(target) as client:
            def busy():
                snapshot = client.snapshot()
                return snapshot if snapshot.workers else None

            snap = wait_for(busy, timeout=20, what="demo workers in flight")
            pid = snap.pid
        names = {c.service_name for c in snap.containers}
        assert names == {"orders", "payments", "notifications", "shopper"}
        demo_vhosts = _vhosts(management) - before
        assert len(demo_vhosts) == 1
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not _alive(pid), "the demo services outlived the console"
    assert _vhosts(management) - before == set(), "the demo vhost was left behind"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


