"""render.py: what a snapshot looks like as text, that untrusted text is never markup, and that
the page stays bounded however many workers there are."""

from __future__ import annotations

import pytest
from rich.console import Console

from nameko_chassis.view import page as render
from nameko_chassis.view.model import Frame, Snapshot, Worker
from nameko_chassis.view.page import (
    format_age,
    render_snapshot,
    render_stack,
    render_worker_detail,
    to_text,
    where_of,
)
from tests.view.test_schema import (
    make_container,
    make_frame,
    make_snapshot,
    make_stack,
    make_worker,
)


def snap(**kw) -> Snapshot:
    return Snapshot.from_dict(make_snapshot(**kw))


def text_of(snapshot: Snapshot, width: int = 120, **limits) -> str:
    return to_text(render_snapshot(snapshot, **limits), width=width)


def styled_segments(renderable, width: int = 120):
    console = Console(width=width, color_system="standard", force_terminal=True, _environ={})
    return [seg for seg in console.render(renderable) if seg.text.strip()]


def test_snapshot_header_container_header_and_workers():
    out = text_of(snap())
    assert "pid 4242 on box" in out
    assert "0.42 ms" in out
    assert "1 container, 3 workers running" in out
    assert "parking" in out and "tests.services.parking.Parking" in out
    assert "3/10 workers running" in out
    assert "park, login, release, parked, ping, spin" in out
    assert "on_order [orders order_placed]" in out
    assert "tick [every 5s]" in out
    assert "config (Config)" in out
    assert "wait_here" in out
    assert "SATURATED" not in out and "near capacity" not in out


def test_workers_are_listed_oldest_first():
    workers = [make_worker(i, age=age) for i, age in enumerate([5.0, 700.0, 0.2, 42.0])]
    out = text_of(snap(containers=[make_container(workers)]))
    positions = [out.index(age) for age in ("11m40s", "42.0s", "5.0s", "200ms")]
    assert positions == sorted(positions)


def test_stacks_of_the_oldest_workers_emphasise_user_frames():
    out = text_of(snap())
    assert "stack of parking.park" in out
    # user frames: full path, marker and source line; library frames: one short line
    assert "> /srv/app/tests/services/parking.py:22 in wait_here" in out
    assert "event.wait()" in out
    assert "  eventlet/event.py:124 in wait" in out
    assert "hub.switch()" not in out

    segments = styled_segments(render_stack(Snapshot.from_dict(make_snapshot()).containers[0]
                                            .workers[0].stack))
    library = [s for s in segments if "eventlet/event.py" in s.text]
    user = [s for s in segments if s.text == "wait_here"]
    assert library and all(s.style and s.style.dim for s in library)
    assert user and all(s.style and s.style.bold for s in user)


def test_identical_stacks_are_drawn_once():
    workers = [make_worker(i, age=float(i)) for i in range(50)]
    out = text_of(snap(containers=[make_container(workers)]))
    assert out.count("stack of ") == 1
    assert "(+49 more with this stack)" in out


def test_stacks_for_oldest_limits_the_stacks_drawn():
    workers = [make_worker(i, age=float(i), where=make_frame(line=100 + i)) for i in range(6)]
    for i, w in enumerate(workers):
        w["stack"][3]["line"] = 100 + i
    out = text_of(snap(containers=[make_container(workers)]), stacks_for_oldest=2)
    assert out.count("stack of ") == 2
    assert out.index("parking.park.00000005") < out.index("parking.park.00000004")


def test_stack_not_collected_and_where_from_stack():
    worker = make_worker(where=None)
    worker["where"] = None
    w = Worker.from_dict(worker)
    assert where_of(w) == Frame.from_dict(make_frame())
    w2 = Worker.from_dict({**make_worker(stack=False), "where": None})
    assert where_of(w2) is None
    out = to_text(render_worker_detail(None, w2))
    assert "stack not collected" in out
    out = text_of(snap(containers=[make_container([make_worker(stack=False)])]))
    assert "wait_here" in out
    assert "stack of" not in out


@pytest.mark.parametrize("value", ["[/tmp]", "[bold red]x", "[link=http://evil]y[/link]",
                                   ":smile: [/]"])
def test_markup_like_text_prints_as_itself(value):
    worker = make_worker(args=[value], kwargs={"k": value}, context={"note": value},
                         entrypoint="parking.park")
    worker["where"] = make_frame(value, code=value)
    worker["stack"][3] = make_frame(value, code=value)
    data = make_snapshot(containers=[make_container([worker], service_name=value)],
                         errors=[value], host=value)
    snapshot = Snapshot.from_dict(data)
    out = text_of(snapshot, width=200)
    # in the workers table, the header, the errors, the stack, and the detail view
    assert out.count(value) >= 5, out
    detail = to_text(render_worker_detail(snapshot.containers[0],
                                          snapshot.containers[0].workers[0]), width=200)
    assert detail.count(value) >= 4, detail
    colored = to_text(render_snapshot(snapshot), width=200, color=True)
    assert value in colored


def test_control_characters_are_shown_as_escapes():
    evil = "a\x1b[31mred\nnewline\rcr\x07bell"
    worker = make_worker(args=[evil], context={"k": evil})
    snapshot = snap(containers=[make_container([worker])])
    for out in (text_of(snapshot, width=200),
                to_text(render_worker_detail(None, snapshot.containers[0].workers[0]),
                        width=200)):
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out
        assert "a\\x1b[31mred\\nnewline" in out


def test_huge_arguments_are_bounded():
    huge = "x" * 1_000_000
    worker = make_worker(args=[huge], kwargs={"big": huge}, context={"big": huge})
    worker["stack"][3]["code"] = huge
    snapshot = snap(containers=[make_container([worker])], errors=[huge])
    out = text_of(snapshot)
    assert len(out) < 20_000
    assert "xxx…" in out
    detail = to_text(render_worker_detail(None, snapshot.containers[0].workers[0]))
    assert len(detail) < 20_000


def test_a_thousand_workers_make_one_readable_page():
    workers = [make_worker(i, age=i * 0.5) for i in range(990)]
    workers += [make_worker(1000 + i, entrypoint="parking.login", age=i,
                            where=make_frame("check_password", line=60)) for i in range(10)]
    container = make_container(workers, max_workers=1000, workers_running=1000)
    snapshot = snap(containers=[container])
    out = text_of(snapshot)
    lines = out.splitlines()
    assert len(lines) < 80, out
    assert "by entrypoint and where" in out
    assert "1000/1000 workers running" in out and "SATURATED" in out
    # the grouped summary: counts per entrypoint and where, largest first
    park = next(line for line in lines if line.strip().startswith("990"))
    assert "parking.park" in park and "wait_here" in park and "8m14s" in park
    login = next(line for line in lines if line.strip().startswith("10 "))
    assert "parking.login" in login and "check_password" in login
    assert out.index(park) < out.index(login)
    assert "… and 980 more" in out
    assert out.count("parking.park.") == 1  # the one stack title; rows show short call ids


def test_limits_are_parameters():
    workers = [make_worker(i, age=float(i), entrypoint=f"parking.m{i}") for i in range(30)]
    snapshot = snap(containers=[make_container(workers)])
    out = text_of(snapshot, max_workers_listed=5, max_groups=3, stacks_for_oldest=0)
    assert "… and 25 more" in out
    assert "… and 27 more groups (27 workers)" in out
    assert "stack of" not in out


def test_deep_stacks_keep_the_innermost_frames():
    frames = [Frame(f"/srv/app/mod{i}.py", i, f"f{i}", "pass", False) for i in range(100)]
    out = to_text(render_stack(frames, max_frames=10))
    assert "… 90 outer frames not shown" in out
    assert "f99" in out and "f90" in out and "f89" not in out


def test_saturation_warnings():
    near = snap(containers=[make_container([make_worker(i) for i in range(8)])])
    assert "near capacity (80%)" in text_of(near)
    full = snap(containers=[make_container([make_worker(i) for i in range(10)])])
    assert "SATURATED" in text_of(full)


def test_errors_and_empty_snapshots():
    errors = [f"container {i}: cannot read workers" for i in range(15)]
    out = text_of(snap(containers=[], errors=errors))
    assert "15 errors while collecting" in out
    assert "container 9: cannot read workers" in out
    assert "container 10:" not in out
    assert "… and 5 more" in out
    assert "no nameko containers found" in out
    out = text_of(snap(containers=[make_container([], started=False)]))
    assert "no workers running" in out and "not started" in out


def test_worker_detail():
    worker = make_worker(args=["'alice'", "42"], kwargs={"tag": "'t1'"},
                         context={"user_id": "alice", "auth_token": "********"},
                         caller="orders.place_order.1234", started=False)
    snapshot = snap(containers=[make_container([worker])])
    c = snapshot.containers[0]
    out = to_text(render_worker_detail(c, c.workers[0]))
    assert "parking.park (parking)" in out
    assert "orders.place_order.1234 → parking.park.00000000" in out
    assert "'alice'" in out and "42" in out and "tag = 't1'" in out
    assert "user_id = alice" in out and "auth_token = ********" in out
    assert "start time not recorded" in out
    assert "> /srv/app/tests/services/parking.py:22 in wait_here" in out


def test_history_of_chassis_services():
    history = [{"call_id": f"parking.ping.{i}", "entrypoint": "parking.ping",
                "started_at": 1.0 + i, "finished_at": 1.5 + i, "duration_s": 0.5,
                "outcome": "error" if i == 7 else "success",
                "exc_type": "ValueError" if i == 7 else None,
                "exc_message": "bad [input]" if i == 7 else None} for i in range(8)]
    out = text_of(snap(containers=[make_container(history=history)]))
    assert "recently finished: 8" in out and "error 1" in out and "success 7" in out
    assert "ValueError: bad [input]" in out
    rows = [line for line in out.splitlines() if "parking.ping" in line]
    assert len(rows) == render.HISTORY_LISTED
    assert "error" in rows[0]  # most recent first


def test_width_is_respected():
    out = text_of(snap(), width=80)
    assert max(len(line) for line in out.splitlines()) <= 80
    constrained = to_text(render_snapshot(snap(), width=70), width=200)
    assert max(len(line) for line in constrained.splitlines()) <= 70


def test_plain_text_has_no_escape_codes_and_colour_has():
    assert "\x1b[" not in text_of(snap())
    assert "\x1b[" in to_text(render_snapshot(snap()), color=True)


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, "?"), (-1, "0ms"), (0.0004, "0ms"), (0.85, "850ms"), (12.34, "12.3s"),
    (245, "4m05s"), (11040, "3h04m"), (2 * 86400 + 3 * 3600 + 5, "2d03h"),
])
def test_format_age(seconds, expected):
    assert format_age(seconds) == expected


def test_every_limit_has_a_documented_default():
    for name in ("MAX_WORKERS_LISTED", "STACKS_FOR_OLDEST", "SLOW_AFTER", "MAX_GROUPS",
                 "MAX_FRAMES", "PREVIEW_CHARS", "VALUE_CHARS", "HISTORY_LISTED", "MAX_ERRORS"):
        assert isinstance(getattr(render, name), int | float)
    assert make_stack()  # the shared builders stay importable from test_schema


def test_shared_stacks_count_only_collected_stacks():
    workers = [make_worker(i, age=float(i), stack=i >= 45) for i in range(50)]
    out = text_of(snap(containers=[make_container(workers)]))
    assert "(+4 more with this stack of the 5 collected)" in out


def test_caller_column_appears_only_for_nested_calls():
    plain = text_of(snap())
    assert "called by" not in plain
    nested = [make_worker(0, caller="orders.place_order.77"), make_worker(1, age=0.5)]
    out = text_of(snap(containers=[make_container(nested)]))
    assert "called by" in out
    row = next(line for line in out.splitlines() if "00000000" in line)
    assert "orders.place_order" in row


def test_first_contact_text_helpers():
    from werkzeug.wrappers import Request

    from nameko_chassis.probe.entrypoints import shown_args
    from nameko_chassis.view.text import (
        clip_value,
        group_label,
        managed_thread_groups,
        short_label,
    )

    assert clip_value("item='milk jug', quantity=1, card='********'", 40) == \
        "item='milk jug', quantit…card='********'"
    assert clip_value("card='********', x=1", 16) == "card='********'"
    assert clip_value("order_id=1063, amount=150.19, card='********'", 40).endswith(
        "card='********'")
    assert clip_value("short", 40) == "short"
    assert short_label("127.0.0.1:12345", 8) == "…1:12345"
    groups = managed_thread_groups(["WebServer.run"] + [
        "functools.partial(<bound method WebServer.process_request of ...>)"] * 12)
    assert [group_label(n, c) for n, c in groups] == ["WebServer.run", "HTTP connections ×12"]
    request = Request.from_values("/orders/3?full=1", method="GET",
                                  base_url="http://127.0.0.1:58123")
    (label,) = shown_args("http", (request,))
    assert repr(label) == "<GET /orders/3?full=1>"
    assert shown_args("rpc", (request,)) == (request,)


def test_the_page_shows_rates_per_entrypoint_from_the_history():
    from nameko_chassis.view.rates import Call, entrypoint_rates, percentile

    now = 1000.0
    calls = [Call("s.a", now - i, 0.01 * (i + 1), "error" if i < 3 else "success")
             for i in range(30)] + [Call("s.b", now - 70, 1.0, "success")]  # outside the minute
    rates = {r.entrypoint: r for r in entrypoint_rates(calls, now)}
    assert set(rates) == {"s.a"}
    a = rates["s.a"]
    assert a.calls == 30 and a.per_s == 0.5 and a.errors == 3 and a.error_rate == 0.1
    assert a.p50_s == 0.15 and a.p99_s == 0.30 and sum(a.buckets) == 30
    assert percentile([1.0], 0.99) == 1.0 and percentile([], 0.5) is None

    now = 1_800_000_000.0  # make_snapshot's time
    history = [dict(call_id=f"s.a.{i}", entrypoint="s.a", started_at=now - i - 1,
                    finished_at=now - i, duration_s=0.5, outcome="error" if i == 0 else "success",
                    exc_type=None, exc_message=None) for i in range(4)]
    page = text_of(snap(containers=[make_container(history=history)]))
    assert "last 60s by entrypoint" in page and "25% (1)" in page
