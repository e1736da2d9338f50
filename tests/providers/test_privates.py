"""The internals of nameko, kombu and py-amqp that the providers read
(nameko_chassis/providers/privates.py) still have the shape the providers expect, on the
versions installed — and those are the versions the reaches were checked on, so an upgrade
fails here first and is checked again (then TESTED_WITH gains it)."""

from __future__ import annotations

from pathlib import Path

from nameko_chassis.providers import privates

PROVIDERS = Path(privates.__file__).parent


def test_every_reach_has_its_shape_on_the_installed_libraries() -> None:
    assert privates.shape_problems() == []


def test_the_installed_libraries_are_the_checked_versions() -> None:
    versions = privates.library_versions()
    assert all(versions.values()), versions
    assert privates.untested_versions() == [], (
        "a library the providers reach into changed version: run shape_problems() on it and "
        "add the version to providers/privates.TESTED_WITH")


def test_the_reaches_answer_on_real_objects_and_never_raise() -> None:
    import amqp

    conn = amqp.Connection(host="127.0.0.1:1", heartbeat=10)  # never connected
    assert privates.heartbeat_state(conn) is None  # no heartbeat negotiated yet
    conn.heartbeat = 10  # what the broker's Connection.Tune negotiates
    state = privates.heartbeat_state(conn)
    assert state is not None and state[0] == 10.0 and state[1] == 0
    assert privates.heartbeat_state(None) is None
    assert privates.amqp_connection(object()) is None
    assert privates.running_workers(object()) == 0
    assert privates.publish_options(object()) == {}
    assert privates.dependency_publisher(object()) is None
    assert privates.worker_hooks_wrapped(privates.container_class_dict()) is False
    assert privates.otlp_poster(object()) is None


def test_no_provider_reads_those_internals_but_through_privates() -> None:
    reaches = ('"_connection"', "._worker_threads", '"publish_kwargs"', '"reply_listener"',
               '"publisher"', "_batch_processor", "ServiceContainer.__dict__", "._client",
               '"_client"', "_max_request_size")
    for path in PROVIDERS.glob("*.py"):
        if path.name == "privates.py":
            continue
        text = path.read_text()
        found = [r for r in reaches if r in text]
        assert not found, f"{path.name} reaches {found} itself: go through providers/privates.py"
