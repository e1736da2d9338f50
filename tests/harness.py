"""The test harness: real broker, real ``nameko run`` subprocesses with a backdoor, real RPC.

Used through the fixtures in ``tests/conftest.py``. Nothing here imports nameko or eventlet, so
console-side tests can use it too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chassis_console.launch import NamekoProcess
from chassis_console.targets.line import BackdoorConnection

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from nameko_chassis.amqp.rpc import PendingCall, RpcClient

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class IsolatedVhost:
    """A vhost of its own for one test; deleted at teardown even when the test fails."""

    def __init__(self, api: ManagementApi, base: AmqpUri) -> None:
        self.api = api
        self.name = f"chassis-test-{uuid.uuid4().hex[:12]}"
        self.uri = base.with_vhost(self.name)

    def __enter__(self) -> IsolatedVhost:
        self.api.create_vhost(self.name)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.api.delete_vhost(self.name)


class Service:
    """A running ``nameko run`` subprocess plus what tests need to drive it."""

    def __init__(self, process: NamekoProcess, amqp_uri: AmqpUri) -> None:
        self.process = process
        self.amqp_uri = amqp_uri
        self._rpc: RpcClient | None = None

    def __repr__(self) -> str:
        return f"<Service {self.process!r}>"

    @property
    def target(self) -> str:
        return self.process.target

    @property
    def port(self) -> int:
        return self.process.backdoor_port

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            self._rpc = RpcClient(str(self.amqp_uri), timeout=20)
        return self._rpc

    def answers(self, service: str, timeout: float = 2.0) -> bool:
        """Whether ``service`` answers a ``ping`` (its RPC queue is bound and consumed)."""
        try:
            return bool(self.rpc.call(service, "ping", timeout=timeout) == "pong")
        except Exception:  # RpcTimeout and connection errors alike: not yet
            return False

    def wait_answering(self, *services: str, timeout: float = 30.0) -> Service:
        """Wait until each of ``services`` answers a ping. nameko marks a container started
        before its consumers consume: a call published in that moment is unroutable and lost,
        so a test that counts on a call waits for this first."""
        for name in services:
            wait_for(lambda n=name: self.answers(n), timeout=timeout,
                     what=f"{name} to answer a ping")
        return self

    def backdoor(self, timeout: float = 10.0) -> BackdoorConnection:
        """A fresh raw backdoor connection (one line per request, waits for the prompt)."""
        conn = BackdoorConnection(self.process.address, timeout=timeout)
        conn.connect()
        return conn

    def eval(self, expression: str) -> str:
        """Evaluate one line in the backdoor and return what it printed, stripped."""
        with self.backdoor() as conn:
            return conn.command(expression).strip()

    def running_workers(self, service: str | None = None) -> int:
        expr = (
            f"len(runner.service_map[{service!r}]._worker_threads)"
            if service
            else "sum(len(c._worker_threads) for c in runner.service_map.values())"
        )
        return int(self.eval(expr))

    def hold(self, n: int, *, method: str = "park", service: str = "parking",
             context: dict[str, Any] | None = None, wait: bool = True,
             **kwargs: Any) -> list[PendingCall]:
        """Fire ``n`` calls that park in the service; wait until they are all in flight."""
        before = self.running_workers(service) if wait else 0
        calls = [self.rpc.call_async(service, method, context=context, **kwargs) for _ in range(n)]
        if wait:
            try:
                wait_for(lambda: self.running_workers(service) >= before + n, timeout=20,
                         what=f"{n} workers in flight in {service}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- service log ---\n"
                                     f"{self.process.log_text()[-4000:]}") from None
        return calls

    def release(self, tag: str = "default", service: str = "parking") -> int:
        return int(self.rpc.call(service, "release", tag=tag))

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None
        self.process.stop()
