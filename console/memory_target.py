"""An in-memory :class:`~chassis_console.client.Target`: deterministic snapshots, scripted failures.

The live console talks to targets through one narrow interface; this implementation feeds it
from memory so that tests (and snapshot tests of the screens) need no service, no socket and no
clock. ``sample_snapshot()`` builds a small shop with fixed times and ages.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from typing import Any

from nameko_chassis.snapshot import Snapshot

from .errors import ConsoleError

SAMPLE_TIME = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: fixed, so screens are reproducible


class MemoryTarget:
    """A target whose state is a :class:`Snapshot` held in memory.

    - ``state``: the full snapshot (stacks included); ``snapshot()`` strips the stacks that were
      not asked for, as the backdoor client does.
    - ``fail``: when set, every call raises it (a service that is down or not answering).
    - ``advance(seconds)``: ages every worker, as time passing would.
    - ``calls``: what the console asked for, in order.
    """

    def __init__(self, state: Snapshot | None = None, *, label: str = "127.0.0.1:12345",
                 round_trip_ms: float = 0.8) -> None:
        self.label = label
        self.state = state if state is not None else sample_snapshot()
        self.round_trip_ms = round_trip_ms
        self.last_round_trip_ms: float | None = None
        self.fail: ConsoleError | None = None
        self.connected = False
        self.calls: list[str] = []
        self.killed: list[str] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryTarget {self.label} {'connected' if self.connected else 'closed'}>"

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.fail is not None:
            self.connected = False
            raise self.fail

    def connect(self) -> None:
        self._check("connect")
        self.connected = True

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot:
        self._check("snapshot")
        with self._lock:
            state = self.state
        keep: frozenset[str] | None = None if stacks == "all" else (
            frozenset() if stacks == "none" else frozenset(stacks))
        containers = []
        for c in state.containers:
            workers = [w if keep is None or w.call_id in keep else replace(w, stack=None)
                       for w in c.workers[:max_workers]]
            containers.append(replace(c, workers=workers))
        self.last_round_trip_ms = self.round_trip_ms
        return replace(state, containers=containers)

    def kill_worker(self, call_id: str) -> bool:
        self._check(f"kill {call_id}")
        with self._lock:
            found = self.state.find_worker(call_id)
            if found is None:
                return False
            self.killed.append(call_id)
            self.remove_worker(call_id)
        return True

    def close(self) -> None:
        self.calls.append("close")
        self.connected = False

    # -- changing the state, for tests ------------------------------------------------------

    def remove_worker(self, call_id: str) -> None:
        """The worker finishes (it disappears from the next snapshot)."""
        containers = [replace(c, workers=[w for w in c.workers if w.call_id != call_id],
                              workers_running=c.workers_running - any(
                                  w.call_id == call_id for w in c.workers))
                      for c in self.state.containers]
        self.state = replace(self.state, containers=containers)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: every worker gets older, the snapshot time moves on."""
        containers = [replace(c, workers=[replace(w, age_s=w.age_s + seconds) for w in c.workers])
                      for c in self.state.containers]
        self.state = replace(self.state, time=self.state.time + seconds, containers=containers)


# -- a deterministic sample: the demo shop, frozen --------------------------------------------

_SHOP = "/srv/shop/nameko_chassis/demo/shop.py"
_SITE = "/usr/lib/python3.11/site-packages"


def _frame(file: str, line: int, function: str, code: str, library: bool = True) -> dict:
    return {"file": file, "line": line, "function": function, "code": code, "library": library}


_NAMEKO_BOTTOM = [
    _frame(f"{_SITE}/eventlet/greenthread.py", 272, "main", "result = function(*args, **kwargs)"),
    _frame(f"{_SITE}/nameko/containers.py", 401, "_run_worker",
           "result = method(*worker_ctx.args, **worker_ctx.kwargs)"),
]
_SLEEP_TOP = [
    _frame(f"{_SITE}/eventlet/greenthread.py", 38, "sleep", "hub.switch()"),
    _frame(f"{_SITE}/eventlet/hubs/hub.py", 310, "switch", "return self.greenlet.switch()"),
]
_RPC_WAIT_TOP = [
    _frame(f"{_SITE}/nameko/rpc.py", 402, "__call__", "return reply.result()"),
    _frame(f"{_SITE}/nameko/rpc.py", 305, "result", "self.reply_event.wait()"),
    _frame(f"{_SITE}/eventlet/event.py", 125, "wait", "result = hub.switch()"),
    _frame(f"{_SITE}/eventlet/hubs/hub.py", 310, "switch", "return self.greenlet.switch()"),
]


def _stack(kind: str) -> list[dict]:
    if kind == "charge":
        user = [
            _frame(_SHOP, 41, "charge", "self._wait_for_processor(delay)", False),
            _frame(_SHOP, 47, "_wait_for_processor", "eventlet.sleep(seconds)", False),
        ]
        return _NAMEKO_BOTTOM + user + _SLEEP_TOP
    if kind == "place":
        user = [_frame(_SHOP, 61, "place",
                       "receipt = self.payments.charge(order_id, amount, card)", False)]
        return _NAMEKO_BOTTOM + user + _RPC_WAIT_TOP
    if kind == "send_confirmation":
        user = [_frame(_SHOP, 88, "send_confirmation",
                       "eventlet.sleep(random.uniform(0.1, 1.5))", False)]
        return _NAMEKO_BOTTOM + user + _SLEEP_TOP
    user = [_frame(_SHOP, 124, "browse_and_buy", "pending[0].result()", False)]
    return _NAMEKO_BOTTOM + user + _RPC_WAIT_TOP[1:]


def _worker(service: str, method: str, ep_type: str, n: int, age: float, args: list[str],
            kwargs: dict[str, str] | None = None, parent: str | None = None,
            user: int = 17) -> dict:
    call_id = f"{service}.{method}.{n:08x}-5d1c-4e0b-9a7e-{n:012x}"
    chain = [parent, call_id] if parent else [call_id]
    stack = _stack(method if method in ("charge", "place", "send_confirmation") else "timer")
    user_frames = [f for f in stack if not f["library"]]
    return {
        "call_id": call_id, "call_id_stack": chain, "entrypoint": method,
        "entrypoint_type": ep_type, "args": args, "kwargs": kwargs or {},
        "context_data": {"user_id": f"user-{user}", "auth_token": "********",
                         "call_id_stack": chain},
        "started_at": SAMPLE_TIME - age, "first_seen": SAMPLE_TIME - age, "age_s": age,
        "where": user_frames[-1], "stack": stack,
    }


def _container(name: str, cls: str, max_workers: int, entrypoints: list[tuple[str, str]],
               dependencies: list[tuple[str, str]], workers: list[dict],
               threads: tuple[tuple[str, str], ...] = (), history: list[dict] | None = None) -> dict:
    return {
        "service_name": name, "service_class": cls, "started": True,
        "max_workers": max_workers, "workers_running": len(workers),
        "entrypoints": [{"method": m, "type": t, "details": {}} for m, t in entrypoints],
        "dependencies": [{"attr": a, "type": t} for a, t in dependencies],
        "subextensions": [],
        "workers": workers,
        "managed_threads": [{"identifier": i, "target": tg, "stack": None} for i, tg in threads],
        "history": history,
    }


def _finished(n: int, method: str, ago: float, duration: float, outcome: str,
              exc: str | None = None) -> dict:
    end = SAMPLE_TIME - ago
    return {"call_id": f"orders.{method}.{n:08x}", "entrypoint": method,
            "started_at": end - duration, "finished_at": end, "duration_s": duration,
            "outcome": outcome, "exc_type": exc and exc.split(":")[0],
            "exc_message": exc and exc.split(": ", 1)[1]}


def sample_snapshot(*, workers_per_service: int = 1, history: bool = True) -> Snapshot:
    """A frozen picture of the demo shop: every time and age fixed.

    ``workers_per_service`` multiplies the in-flight workers (for screens with many rows).
    """
    card = "'********'"
    shopper, orders, payments, notifications = [], [], [], []
    n = 1
    for k in range(workers_per_service):
        shopper.append(_worker("shopper", "browse_and_buy", "Timer", n, 14.2 - k * 0.01, [],
                               user=100 + k))
        parent = shopper[-1]["call_id"]
        n += 1
        for j, (age, item, qty, user) in enumerate(
                [(14.1, "grinder", 2, 77), (3.4, "kettle", 1, 250), (0.6, "tamper", 4, 13)]):
            orders.append(_worker("orders", "place", "Rpc", n, age - k * 0.01,
                                  [repr(item), str(qty), card], parent=parent, user=user + k))
            n += 1
            payments.append(_worker(
                "payments", "charge", "Rpc", n, age - 0.02 - k * 0.01,
                [str(1041 + j + 3 * k), repr(round(12.5 * (j + 1) * qty, 2)), card],
                parent=orders[-1]["call_id"], user=user + k))
            n += 1
        notifications.append(_worker(
            "notifications", "send_confirmation", "EventHandler", n, 0.9 - k * 0.01,
            ["{'order_id': 1040, 'item': 'milk jug', 'amount': 35.7}"], user=42 + k))
        n += 1
    hist = [
        _finished(901, "place", 0.4, 1.82, "success"),
        _finished(902, "place", 1.3, 0.74, "success"),
        _finished(903, "place", 2.2, 2.31, "error",
                  "PaymentDeclined: card declined for order 1037"),
        _finished(904, "get_order", 3.0, 0.12, "success"),
        _finished(905, "place", 4.6, 11.9, "success"),
    ] if history else None
    data: dict[str, Any] = {
        "schema": 1, "pid": 4242, "host": "shop-1", "python": "3.11.2", "nameko": "3.0.0rc11",
        "time": SAMPLE_TIME, "took_ms": 0.42, "errors": [],
        "containers": [
            _container("orders", "nameko_chassis.demo.shop.Orders", 20,
                       [("place", "Rpc"), ("get_order", "HttpRequestHandler"),
                        ("create_order", "HttpRequestHandler")],
                       [("payments", "ServiceRpc"), ("dispatch", "EventDispatcher")],
                       orders, history=hist),
            _container("payments", "nameko_chassis.demo.shop.Payments", 4,
                       [("charge", "Rpc")], [], payments),
            _container("notifications", "nameko_chassis.demo.shop.Notifications", 20,
                       [("send_confirmation", "EventHandler")], [], notifications),
            _container("shopper", "nameko_chassis.demo.shop.Shopper", 20,
                       [("browse_and_buy", "Timer")],
                       [("orders", "ServiceRpc"), ("context", "ContextData")], shopper,
                       threads=(("<Timer [shopper.browse_and_buy]>",
                                 "nameko.timer.Timer._run"),)),
        ],
    }
    return Snapshot.from_dict(copy.deepcopy(data))
