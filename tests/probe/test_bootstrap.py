"""The probe shipped in several backdoor lines, against real `nameko run` services: it works end
to end, and an attach cut off halfway leaves nothing a later attach trusts."""

from __future__ import annotations

from chassis_console.targets import backdoor
from chassis_console.targets.backdoor import NAMESPACE_NAME, SUPERSEDED, BackdoorClient


def _state(service, root: str) -> str:
    """What the service holds of the probe: whether the backdoor namespace has the agent,
    whether the staged package is marked ready, and the id of its first module."""
    return service.eval(
        f"({NAMESPACE_NAME!r} in globals(), "
        f"getattr(__import__('sys').modules.get({root!r}), '__chassis_ready__', False), "
        f"id(__import__('sys').modules.get({root!r} + '.privates')))")


def test_probe_shipped_in_chunks_works_end_to_end(start_service):
    service = start_service()
    payload = backdoor._get_payload()
    lines = payload.lines("t", compiled=True)
    assert len(lines) >= 4  # begin, at least two chunks of modules, finish
    assert all(len(line) < 100_000 for line in lines)
    service.hold(2, tag="a")
    with BackdoorClient(service.target) as client:
        assert client.info["version"] == payload.version
        snap = client.snapshot(stacks="all")
        assert snap.containers[0].workers_running == 2
        # the agent in the namespace is the staged package's, marked ready
        assert service.eval(
            f"{NAMESPACE_NAME} is __import__('sys').modules[{payload.root!r}].agent") == "True"
    assert _state(service, payload.root).startswith("(True, True, ")
    # a second attach finds the version there and ships nothing
    with BackdoorClient(service.target) as again:
        assert again.snapshot().containers[0].workers_running == 2
    service.release("a")


def test_an_attach_cut_off_after_the_first_chunk_leaves_nothing_trusted(start_service):
    service = start_service()
    payload = backdoor._get_payload()
    begin, first_chunk, *rest = payload.lines("cut", compiled=True)
    with service.backdoor() as conn:
        assert conn.command(begin).strip() == ""
        assert conn.command(first_chunk).strip() == ""
    # the connection is gone: no agent in the namespace, the staged package not ready
    half = _state(service, payload.root)
    assert half.startswith("(False, False, ")
    # a later attach does not link the half-shipped package: it stages and boots afresh
    with BackdoorClient(service.target) as client:
        assert client.info["version"] == payload.version
        assert client.snapshot().containers[0].workers_running == 0
    after = _state(service, payload.root)
    assert after.startswith("(True, True, ") and after.split(", ")[2] != half.split(", ")[2]
    # the cut-off attach's remaining lines are refused: its stage was replaced
    with service.backdoor() as conn:
        for line in rest:
            assert conn.command(line).strip() == SUPERSEDED
    assert _state(service, payload.root) == after
    with BackdoorClient(service.target) as client:
        assert client.snapshot().containers[0].workers_running == 0
