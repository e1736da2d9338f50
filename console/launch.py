"""Start and stop ``nameko run`` subprocesses with a backdoor, for ``--demo`` and the tests.

The services run in their own process group (so a stop reaches every child) under the same
Python interpreter as the console; the console process itself never imports nameko.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import ConsoleError, LaunchError
from .targets import TargetAddress
from .targets.line import BackdoorConnection

#: ports this process has handed out: the kernel gives a released port out again, and nameko
#: listens with SO_REUSEPORT, so two servers handed one port would share it without an error,
#: each answering some of the other's connections.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now and not handed out before by this process."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class NamekoProcess:
    """``nameko run --config CONFIG --backdoor-port HOST:PORT MODULE...`` as a subprocess.

    ``config`` is written to a YAML (JSON) file; ``AMQP_URI`` is required in it. ``start()``
    returns once the backdoor answers and every container reports ``started``.
    """

    def __init__(
        self,
        modules: list[str],
        config: dict[str, Any],
        *,
        backdoor_port: int | None = None,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        workdir: str | Path | None = None,
        argv: list[str] | None = None,
        ready: str = "containers",
    ) -> None:
        self.modules = list(modules)
        self.config = dict(config)
        self.backdoor_port = backdoor_port or free_port()
        self.cwd = str(cwd) if cwd else None
        self.env = env
        self._own_workdir = workdir is None  # a temporary folder of ours: removed afterwards
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="chassis-service-"))
        self.log_path = self.workdir / "service.log"
        self.config_path = self.workdir / "config.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        # argv: run this instead of `nameko run` ({port} and {config} are filled in);
        # ready: "containers" waits for every container to start, "prompt" for the banner only
        self.argv = argv
        self.ready = ready
        #: the broker (vhost included) the services use, when the caller says
        self.amqp_uri: Any = None

    @property
    def address(self) -> TargetAddress:
        return TargetAddress(host="127.0.0.1", port=self.backdoor_port)

    @property
    def target(self) -> str:
        return str(self.address)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NamekoProcess {' '.join(self.modules)} backdoor={self.target} {state}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, ready_timeout: float = 60.0) -> NamekoProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)  # again after a stop removed it
        self.config_path.write_text(json.dumps(self.config))
        if self.argv is not None:
            cmd = [a.format(port=self.backdoor_port, config=self.config_path) for a in self.argv]
        else:
            cmd = [
                sys.executable, "-m", "nameko", "run",
                "--config", str(self.config_path),
                "--backdoor-port", f"127.0.0.1:{self.backdoor_port}",
                *self.modules,
            ]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise LaunchError(
                    f"nameko run {' '.join(self.modules)} exited with code "
                    f"{self.proc.returncode if self.proc else '?'}:\n{self.log_text()[-3000:]}"
                )
            try:
                with BackdoorConnection(self.address, connect_timeout=1, timeout=5) as conn:
                    if self.ready == "prompt":
                        return
                    out = conn.command(
                        "len(runner.service_map) > 0 and "
                        "all(c.started for c in runner.service_map.values())"
                    )
                    if out.strip() == "True":
                        return
                    last_error = out.strip()
            except ConsoleError as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise LaunchError(
            f"nameko run {' '.join(self.modules)} not ready after {timeout:g}s "
            f"({last_error}):\n{self.log_text()[-3000:]}"
        )

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (nameko stops gracefully), SIGKILL it after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # stragglers in the group, if any
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.remove_workdir()  # a temporary folder of ours (config, log): nothing left behind

    def remove_workdir(self) -> None:
        """Remove the temporary folder (config, log) this object made, once stopped."""
        if self._own_workdir and not self.running:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> NamekoProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
