"""`chassis-console --demo`: it starts the shop, and however it is stopped, nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.amqp.management import AmqpUri
from tests.harness import REPO, wait_for


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_demo_serves_live_workers_and_leaves_nothing_behind(management, sig, tmp_path):
    # its own temporary folder, so that what it leaves there is its own (other tests and
    # other users of the broker come and go meanwhile: only what the demo made is checked)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chassis_console", "--demo", "--serve"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("--services" in line for line in lines) and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        target = next(ln for ln in lines if "attach with:" in ln).split(
            "chassis-console", 1)[1].split()[0]
        uri = next(ln for ln in lines if "--services" in ln).split("--services", 1)[1].strip()
        vhost = AmqpUri.parse(uri).vhost
        assert vhost.startswith("chassis-demo-") and vhost in management.vhosts()
        assert list(tmp_path.iterdir()), "the demo keeps its config and log in TMPDIR"
        # the shopper keeps workers in flight: within a few seconds the snapshot shows some
        with BackdoorClient(target) as client:
            def busy():
                snapshot = client.snapshot()
                return snapshot if snapshot.workers else None

            snap = wait_for(busy, timeout=20, what="demo workers in flight")
            pid = snap.pid
        names = {c.service_name for c in snap.containers}
        assert names == {"orders", "payments", "notifications", "shopper"}
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        # workers are in flight (a slow payment takes up to 15 s): the demo does not wait
        # for them, and says what it is doing meanwhile
        proc.wait(10)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"stopping the demo shop (nameko run pid {pid})" in stderr
    assert not _alive(pid), "the demo services outlived the console"
    assert vhost not in management.vhosts(), "the demo vhost was left behind"
    assert list(tmp_path.iterdir()) == [], "the demo left its temporary folder behind"


def test_demo_takes_no_target():
    out = subprocess.run([sys.executable, "-m", "chassis_console", "--demo", "localhost:1234"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--demo" in out.stderr and "takes no TARGET" in out.stderr
    assert "Traceback" not in out.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


