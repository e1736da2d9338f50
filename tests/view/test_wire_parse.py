"""Snapshot.from_wire's quick path for workers (exact types, one pass, shared ``where``) gives
what the validating path gives, and hands anything else to it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nameko_chassis.view import model
from nameko_chassis.view.model import Snapshot, SnapshotError
from tests.view.test_schema import make_container, make_frame, make_snapshot, make_worker


def _session_workers() -> list[dict[str, Any]]:
    """Workers as a session's refresh sends them (no age, no stack), and some odd ones."""
    workers = []
    for i in range(6):
        w = make_worker(i, age=i + 0.5, stack=False, started=i % 2 == 0,
                        context={"user_id": f"u{i}", "n": i, "x": 1.5, "none": None},
                        args=["60", "'x'"], kwargs={"note": f"'order {i}'"})
        del w["age_s"]
        workers.append(w)
    workers[1]["where"] = None
    workers[2]["where"] = make_frame(line=99)
    del workers[2]["where"]["code"]  # optional: ""
    workers[3]["first_seen"] = 1_799_999_000  # an int
    workers[4]["stack"] = [0, 0]  # a watched stack: the validating path
    workers[5]["age_s"] = 7  # an age sent: kept, as a float
    return workers


def _without_quick_path(monkeypatch: pytest.MonkeyPatch, data: Any) -> Snapshot:
    with monkeypatch.context() as m:
        m.setattr(model.Worker, "from_wire", classmethod(lambda cls, data, wire: None))
        return Snapshot.from_wire(copy.deepcopy(data))


def test_the_quick_path_gives_what_the_validating_path_gives(monkeypatch) -> None:
    data = make_snapshot([make_container(_session_workers())], frames=[make_frame()])
    quick = Snapshot.from_wire(copy.deepcopy(data))
    slow = _without_quick_path(monkeypatch, data)
    assert quick == slow
    workers = quick.containers[0].workers
    assert len(workers) == 6
    assert {w.age_s for w in workers} >= {7.0, 0.5}
    assert all(type(w.first_seen) is float for w in workers)
    shared = [w.where for w in workers
              if w.where is not None and w.where.line == 22 and w.stack is None]
    assert len(shared) == 3 and all(f is shared[0] for f in shared)  # one Frame per place


@pytest.mark.parametrize("field, value, message", [
    ("call_id", 5, "containers[0].workers[0].call_id: expected a string, got an integer"),
    ("age_s", None, "containers[0].workers[0].age_s: expected an integer or a number, got null"),
    ("first_seen", True, "containers[0].workers[0].first_seen: expected an integer or a number, "
                         "got a boolean"),
    ("where", {"file": "f", "line": "1", "function": "g", "library": False},
     "containers[0].workers[0].where.line: expected an integer, got '1'"),
    ("args", ["a", 1], None),  # not an error: the validating path makes it a string
])
def test_what_the_quick_path_declines_is_validated_as_before(field, value, message,
                                                             monkeypatch) -> None:
    workers = _session_workers()[:1]
    workers[0][field] = value
    data = make_snapshot([make_container(workers)], frames=[])
    if message is None:
        assert Snapshot.from_wire(copy.deepcopy(data)) == _without_quick_path(monkeypatch, data)
        return
    with pytest.raises(SnapshotError) as raised:
        Snapshot.from_wire(data)
    assert str(raised.value) == message
