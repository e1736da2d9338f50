"""Bounded inspection: a service's own ``__repr__`` runs under a budget, its verdict is
remembered, and nothing is left behind — in this process (CPU-burning reprs, verdict memory) and
against a real ``nameko run`` service (a repr that waits for ever, one that burns the CPU, 50 MB of
bytes), attached 50 times."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from chassis_console.targets.backdoor import BackdoorClient

from nameko_chassis.probe import redaction
from tests.harness import wait_for

BUDGET_MS = 50


class Burns:
    def __repr__(self) -> str:
        while True: pass  # noqa: E701  (one line: no line events)


class Counts:
    calls = 0

    def __repr__(self) -> str:
        Counts.calls += 1
        n = 0
        while True:
            n += 1


class Endless(Mapping[str, int]):
    def __getitem__(self, key: str) -> int:
        return 1

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[str]:
        while True:  # burns before it yields a key
            pass


def timed(value: Any) -> tuple[float, str]:
    t0 = time.perf_counter()
    text = redaction.safe_repr(value)
    return (time.perf_counter() - t0) * 1000, text


def test_a_burning_repr_is_stopped_at_the_budget_and_not_run_again() -> None:
    budget = redaction.REPR_BUDGET_S * 1000
    value = Counts()
    took, text = timed(value)
    assert budget <= took < budget + 30
    assert text == f"<Counts: repr gave up: it burned the CPU past the {budget:.0f} ms budget>"
    assert Counts.calls == 1
    took, again = timed(value)  # the same object: the verdict is remembered
    assert again == text and took < 2 and Counts.calls == 1


def test_a_type_is_struck_out_after_two_objects() -> None:
    for _ in range(redaction.REPR_STRIKES_PER_TYPE):
        took, text = timed(Burns())
        assert "gave up" in text
    took, text = timed(Burns())
    assert took < 2
    assert text == ("<Burns: repr not run (2 of its objects ran past the "
                    f"{redaction.REPR_BUDGET_S * 1000:.0f} ms budget)>")
    # a struck type inside an ordinary container: the container is still shown
    assert timed([1, Burns()])[1] == f"[1, {text}]"


def test_a_user_mapping_that_never_ends_is_bounded_too() -> None:
    took, text = timed(Endless())
    assert "Endless: repr gave up" in text and took < redaction.REPR_BUDGET_S * 1000 + 30


def test_ordinary_reprs_are_untouched() -> None:
    class Fine:
        def __repr__(self) -> str:
            return "Fine(password=hunter2)"

    assert redaction.safe_repr(Fine()) == "Fine(password=********)"
    assert redaction.safe_repr({"a": [1, 2], "token": "x"}) == "{'a': [1, 2], 'token': '********'}"


# -- against a real service ------------------------------------------------------------------


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def payloads(client: BackdoorClient) -> tuple[dict[str, str], float]:
    t0 = time.perf_counter()
    data = client.collect(stacks="none")
    took = (time.perf_counter() - t0) * 1000
    found = {}
    for worker in data["containers"][0]["workers"]:
        found[worker["kwargs"]["kind"].strip("'")] = worker["context_data"].get("payload")
    return found, took


def test_hostile_reprs_in_a_real_service_cost_nothing_after_the_first_attempt(start_service
                                                                              ) -> None:
    service = start_service("tests.services.reprs",
                            env={"CHASSIS_REPR_BUDGET_MS": str(BUDGET_MS)})
    service.wait_answering("reprs")
    for kind in ("waits", "burns", "huge", "fine"):
        service.hold(1, service="reprs", kind=kind, tag="r")
    pid = service.process.pid
    assert pid is not None

    with BackdoorClient(service.target, timeout=10) as client:
        first, took = payloads(client)
    assert first["fine"] == "Fine(42)"
    assert first["waits"] == "<Waits: repr gave up: it waited past the 50 ms budget>"
    assert first["burns"] == "<Burns: repr gave up: it burned the CPU past the 50 ms budget>"
    assert first["huge"].startswith("b'\\x00\\x00") and len(first["huge"]) <= 200
    # two budgets (one wait, one burn) and the rest: never the minutes a hung repr would take
    assert took < 2 * BUDGET_MS + 1500

    wait_for(lambda: service.rpc.call("reprs", "ping") == "pong", what="the service answers")
    fds_before = fds(pid)
    slowest = 0.0
    for _ in range(50):
        with BackdoorClient(service.target, timeout=5) as client:
            seen, took = payloads(client)
        assert seen == first  # the verdicts are remembered: the same marks, no new attempt
        slowest = max(slowest, took)
    assert slowest < 1000
    # a fresh connection per attempt, and none of them left a socket behind
    wait_for(lambda: fds(pid) <= fds_before + 2, timeout=5,
             what=f"fds back to {fds_before} (now {fds(pid)})")
    # ... nor a greenthread: only the parked workers, the consumers and the hub's own remain
    greenlets = int(service.eval(
        "__import__('sys').modules['greenlet'] and sum(1 for o in __import__('gc').get_objects()"
        " if type(o).__name__ in ('GreenThread', 'greenlet') and not o.dead)"))
    assert greenlets < 30, greenlets
    assert service.rpc.call("reprs", "ping") == "pong"
    assert service.rpc.call("reprs", "release", tag="r") == 4
