"""Snapshot schema v1: the JSON Schema shipped in the package, the typed model's error messages,
and real snapshots collected from a running service validated against both."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from nameko_chassis.view.model import Snapshot, SnapshotError
from nameko_chassis.view.page import render_snapshot, to_text
from tests.harness import wait_for

USER_FILE = "/srv/app/tests/services/parking.py"
LIB = "/work/main/.venv/lib/python3.11/site-packages"


def make_frame(function: str = "wait_here", *, file: str = USER_FILE, line: int = 22,
               code: str = "event.wait()", library: bool = False) -> dict[str, Any]:
    return {"file": file, "line": line, "function": function, "code": code, "library": library}


def make_stack(user_function: str = "wait_here") -> list[dict[str, Any]]:
    return [
        make_frame("main", file=f"{LIB}/eventlet/greenthread.py", line=272,
                   code="result = function(*args, **kwargs)", library=True),
        make_frame("_run_worker", file=f"{LIB}/nameko/containers.py", line=392,
                   code="result = method(*worker_ctx.args, **worker_ctx.kwargs)", library=True),
        make_frame("park", line=34, code="wait_here(event, seconds)"),
        make_frame(user_function),
        make_frame("wait", file=f"{LIB}/eventlet/event.py", line=124,
                   code="result = hub.switch()", library=True),
    ]


def make_worker(n: int = 0, *, entrypoint: str = "parking.park", age: float = 1.0,
                args: list[str] | None = None, kwargs: dict[str, str] | None = None,
                context: dict[str, Any] | None = None, stack: bool = True,
                where: dict[str, Any] | None = None, started: bool = True,
                caller: str | None = None) -> dict[str, Any]:
    call_id = f"{entrypoint}.{n:08d}-0000-4000-8000-000000000000"
    now = 1_800_000_000.0
    return {
        "call_id": call_id,
        "call_id_stack": ([caller] if caller else []) + [call_id],
        "entrypoint": entrypoint,
        "entrypoint_type": "rpc",
        "args": args if args is not None else [],
        "kwargs": kwargs if kwargs is not None else {"tag": "'default'"},
        "context_data": context if context is not None else {"user_id": "alice"},
        "started_at": now - age if started else None,
        "first_seen": now - age,
        "age_s": age,
        "where": where if where is not None else make_frame(),
        "stack": make_stack() if stack else None,
    }


def make_container(workers: list[dict[str, Any]] | None = None, **overrides: Any
                   ) -> dict[str, Any]:
    workers = workers if workers is not None else [make_worker(i, age=i + 1.0) for i in range(3)]
    container = {
        "service_name": "parking",
        "service_class": "tests.services.parking.Parking",
        "started": True,
        "max_workers": 10,
        "workers_running": len(workers),
        "entrypoints": [
            {"method": m, "type": "rpc", "details": {}}
            for m in ("park", "login", "release", "parked", "ping", "spin")
        ] + [
            {"method": "on_order", "type": "event_handler",
             "details": {"source_service": "orders", "event_type": "order_placed",
                         "handler_type": "service_pool"}},
            {"method": "tick", "type": "timer", "details": {"interval": 5}},
        ],
        "dependencies": [{"attr": "config", "type": "nameko.dependency_providers.Config"}],
        "subextensions": [{"type": "nameko.rpc.RpcConsumer", "details": {}}],
        "workers": workers,
        "managed_threads": [
            {"identifier": "nameko.rpc.RpcConsumer.run", "target": "kombu consumer",
             "stack": None},
        ],
        "history": None,
    }
    container.update(overrides)
    return container


def make_snapshot(containers: list[dict[str, Any]] | None = None, **overrides: Any
                  ) -> dict[str, Any]:
    data = {
        "schema": 1, "pid": 4242, "host": "box", "python": "3.11.2", "nameko": "3.0.0rc11",
        "time": 1_800_000_000.0, "took_ms": 0.42, "errors": [],
        "containers": containers if containers is not None else [make_container()],
    }
    data.update(overrides)
    return data


# -- the schema file ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(resources.files("nameko_chassis.probe").joinpath("snapshot.schema.json")
                        .read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(data)]


def test_the_builders_make_valid_snapshots(validator):
    history = [{"call_id": "parking.ping.1", "entrypoint": "parking.ping", "started_at": 1.0,
                "finished_at": 1.5, "duration_s": 0.5, "outcome": "error",
                "exc_type": "ValueError", "exc_message": "bad"}]
    for data in (
        make_snapshot(),
        make_snapshot(containers=[]),
        make_snapshot(containers=[make_container([], history=history)]),
        make_snapshot(containers=[make_container(
            [make_worker(stack=False, started=False, caller="orders.place.1")])]),
    ):
        assert schema_errors(validator, data) == []
        Snapshot.from_dict(data)


def broken(path: str, value: Any = "<delete>") -> dict[str, Any]:
    """A valid snapshot with the field at dotted ``path`` set to ``value`` (or deleted)."""
    data = copy.deepcopy(make_snapshot())
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value == "<delete>":
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


# (field, bad value, the model's message or its acceptable wordings): the schema must reject the
# same snapshots
BAD = [
    ("pid", "<delete>", "pid: missing"),
    ("pid", "1234", "pid: expected an integer, got '1234'"),
    ("pid", True, "pid: expected an integer, got a boolean"),
    ("schema", 2, "schema: version 2 is not supported (expected 1)"),
    ("took_ms", None, ("took_ms: expected a number, got null",
                       "took_ms: expected an integer or a number, got null")),
    ("containers", {}, "containers: expected an array, got an object"),
    ("containers.0.started", "yes", "containers[0].started: expected a boolean, got 'yes'"),
    ("containers.0.max_workers", 2.5, "containers[0].max_workers: expected an integer, got a "
                                      "number"),
    ("containers.0.service_name", "<delete>", "containers[0].service_name: missing"),
    ("containers.0.entrypoints.0.type", 3,
     "containers[0].entrypoints[0].type: expected a string, got an integer"),
    ("containers.0.workers.1.age_s", "x",
     ("containers[0].workers[1].age_s: expected a number, got 'x'",
      "containers[0].workers[1].age_s: expected an integer or a number, got 'x'")),
    ("containers.0.workers.1.call_id", "<delete>", "containers[0].workers[1].call_id: missing"),
    ("containers.0.workers.0.where", "here",
     "containers[0].workers[0].where: expected an object, got 'here'"),
    ("containers.0.workers.0.stack.1.line", "<delete>",
     "containers[0].workers[0].stack[1].line: missing"),
    ("containers.0.workers.0.stack.1.library", "no",
     "containers[0].workers[0].stack[1].library: expected a boolean, got 'no'"),
    ("containers.0.workers.0.stack.2", [], "containers[0].workers[0].stack[2]: expected an "
                                          "object, got an array"),
    ("containers.0.managed_threads.0.identifier", None,
     "containers[0].managed_threads[0].identifier: expected a string, got null"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_snapshots_are_rejected_by_model_and_schema(validator, path, value, message):
    data = broken(path, value)
    with pytest.raises(SnapshotError) as exc:
        Snapshot.from_dict(data)
    assert str(exc.value) in ((message,) if isinstance(message, str) else message)
    assert schema_errors(validator, data), f"the schema accepts what the model rejects: {message}"


def test_model_errors_for_non_objects():
    with pytest.raises(SnapshotError, match=r"^snapshot: expected an object, got an array$"):
        Snapshot.from_dict([])
    with pytest.raises(SnapshotError, match=r"^snapshot: expected an object, got null$"):
        Snapshot.from_dict(None)
    with pytest.raises(SnapshotError, match=r"^containers\[0\]: expected an object, got 'x'$"):
        Snapshot.from_dict(make_snapshot(containers=["x"]))


def test_schema_rejects_unknown_fields(validator):
    data = make_snapshot()
    data["containers"][0]["workers"][0]["surprise"] = 1
    assert any("surprise" in e for e in schema_errors(validator, data))


# -- real snapshots -------------------------------------------------------------------------------

COLLECT = ("print(__import__('json').dumps(__import__('nameko_chassis.probe.collect', "
           "fromlist=['collect']).collect(runner{args})))")


def collect_remote(service, **kwargs: Any) -> dict[str, Any]:
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    out = service.eval(COLLECT.format(args=args))
    return json.loads(out)


def test_real_snapshots_match_the_schema_and_the_model(start_service, validator):
    pytest.importorskip("nameko_chassis.probe.collect")
    service = start_service()
    service.hold(3, tag="schema", context={"user_id": "alice", "auth_token": "tok-XYZ-secret"},
                 payload="[/tmp]")
    service.hold(1, method="login", username="bob", password="pw-XYZ-secret")
    try:
        for stacks in ("all", "none"):
            data = collect_remote(service, stacks=stacks)
            assert schema_errors(validator, data) == [], stacks
            snapshot = Snapshot.from_dict(data)
            (container,) = snapshot.containers
            assert container.service_name == "parking"
            assert sorted(w.entrypoint for w in container.workers) == [
                "parking.login", "parking.park", "parking.park", "parking.park"]
            assert all(w.where is not None and w.where.function == "wait_here"
                       for w in container.workers)
            if stacks == "all":
                assert all(w.stack and any(f.function == "wait_here" for f in w.stack)
                           for w in container.workers)
            else:
                assert all(w.stack is None for w in container.workers)
            text = json.dumps(data) + to_text(render_snapshot(snapshot), width=200)
            assert "tok-XYZ-secret" not in text and "pw-XYZ-secret" not in text
            assert "[/tmp]" in text
        oldest = max(container.workers, key=lambda w: w.age_s)
        data = collect_remote(service, stacks={oldest.call_id})
        assert schema_errors(validator, data) == []
        with_stacks = [w for w in Snapshot.from_dict(data).containers[0].workers if w.stack]
        assert [w.call_id for w in with_stacks] == [oldest.call_id]
    finally:
        service.release("schema")
        service.release("login")
    wait_for(lambda: service.running_workers("parking") == 0, what="workers to finish")
    data = collect_remote(service)
    assert schema_errors(validator, data) == []
    assert Snapshot.from_dict(data).containers[0].workers == []


def test_the_model_and_the_wire_types_name_the_same_fields():
    # one definition of schema v1: the probe's TypedDicts; the console's dataclasses follow it
    import dataclasses

    from nameko_chassis.probe import schema
    from nameko_chassis.view import model

    pairs = [(model.Frame, schema.FrameDict), (model.Entrypoint, schema.EntrypointDict),
             (model.Dependency, schema.DependencyDict), (model.Subextension, schema.SubextensionDict),
             (model.Worker, schema.WorkerDict), (model.ManagedThread, schema.ManagedThreadDict),
             (model.FinishedWorker, schema.FinishedWorkerDict), (model.Container, schema.ContainerDict),
             (model.Snapshot, schema.SnapshotDict)]
    for name in ("Incident", "Culprit", "Process", "QueueBacklog"):
        if hasattr(model, name) and hasattr(schema, f"{name}Dict"):
            pairs.append((getattr(model, name), getattr(schema, f"{name}Dict")))
    wire_only = {"unchanged", "unchanged_except", "frames"}  # folded in by Snapshot.from_wire
    for cls, typed in pairs:
        assert {f.name for f in dataclasses.fields(cls)} == set(typed.__annotations__) - wire_only, cls
