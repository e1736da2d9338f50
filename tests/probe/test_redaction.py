"""The redaction policy as plain functions: names, value detectors, declared paths, config, and
the hooks other channels call (Sentry's before_send, argv, exception text)."""

from __future__ import annotations

import pytest

from nameko_chassis.probe import redaction
from nameko_chassis.probe.redaction import (
    REDACTED,
    RedactionPolicy,
    active_policy,
    policy_for,
    redact_mapping,
    redact_text,
    redacted_arguments,
    safe_repr,
    scrub_argv,
    scrub_breadcrumb,
    scrub_event,
)


@pytest.mark.parametrize("name", [
    "password", "Password", "user_password", "dbPassword", "passwd", "pwd", "pass", "db_pass",
    "passphrase", "secret", "client_secret", "token", "access_token", "X-Refresh-Token",
    "x-refresh", "apiKey", "api-key", "X-API-KEY", "authorization", "Authorization", "auth",
    "X-Auth", "cookie", "Set-Cookie", "session", "sessionid", "jwt", "dsn", "sentry_dsn",
    "ssn", "card_number", "cardNumber", "cvv", "cvc", "otp", "pin", "user_pin", "PIN",
    "mfa_code", "mfaCode", "bearer", "connection_string", "database_url", "DATABASE_URL",
    "private_key", "aws_secret_access_key", "credentials", "signature",
])
def test_secret_names(name: str) -> None:
    assert active_policy().is_secret_name(name)


@pytest.mark.parametrize("name", [
    # substring traps of the short patterns: matched as whole words only
    "shipping", "shipping_address", "compass", "passenger", "bypass_cache", "spinner",
    "pinned", "opinion", "author", "authors", "hotpath", "lessons", "classes", "dsname",
    # ordinary names
    "note", "user_id", "order_id", "items", "headers", "url", "channel", "locale", "qty",
])
def test_ordinary_names(name: str) -> None:
    assert not active_policy().is_secret_name(name)


SECRET_VALUES = [
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpM",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAY34FZKBOKMUTVV7A",
    "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "xoxb-2631234567-8901234567890-AbCdEfGhIjKl",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",  # cut: no END line
    "4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005",
]


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_secret_values_are_hidden_under_any_name(value: str) -> None:
    text = redact_text(f"note: see {value} thanks")
    assert value not in text and REDACTED in text
    assert value not in safe_repr({"note": value})
    assert value not in str(redact_mapping({"note": value}))


@pytest.mark.parametrize(("text", "shown", "hidden"), [
    ("pyamqp://guest:guest-pw@localhost:5672/", "pyamqp://guest:", "guest-pw"),
    ("redis://:p@ss@cache:6379/0", "redis://:", "p@ss"),
    ("Authorization: Bearer abc.def-ghi123", "Authorization", "abc.def-ghi123"),
    ("referer=https://x/?q=1 Bearer tok_9f8e7d6c", "https://x/", "tok_9f8e7d6c"),
    ("Basic dXNlcjpwYXNzd29yZA==", "Basic", "dXNlcjpwYXNzd29yZA=="),
    ("login failed: password=hunter2 user=ann", "user=ann", "hunter2"),
    ("{'token': 'abc123xyz', 'note': 'ok'}", "'note': 'ok'", "abc123xyz"),
    ('{"api_key": "k-12345678"}', "api_key", "k-12345678"),
    ("--define AMQP_URI=pyamqp://guest:s3cr3t@rabbit/", "AMQP_URI=pyamqp://guest:", "s3cr3t"),
])
def test_text_detectors(text: str, shown: str, hidden: str) -> None:
    out = redact_text(text)
    assert shown in out and hidden not in out


@pytest.mark.parametrize("text", [
    "order 1234 shipped", "ts=1700000000000", "4111111111111112",  # Luhn fails
    "see https://example.com/path", "a note: fine", "max=10, min=2", "call_id svc.m.1234",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_nested_mappings_and_sequences_are_walked() -> None:
    value = {"headers": {"Authorization": "Bearer zzz-top", "Accept": "*/*"},
             "request": {"cookies": {"sid": "c-0001"}}, "items": [{"token": "t-0002"}, 3]}
    text = safe_repr(value)
    for secret in ("zzz-top", "c-0001", "t-0002"):
        assert secret not in text
    assert "'Accept': '*/*'" in text


def test_bytes_and_huge_values_are_sliced_before_repr() -> None:
    big = b"x" * 50_000_000
    assert len(safe_repr(big)) <= 200
    assert len(safe_repr("y" * 10_000_000)) <= 200
    assert "AKIAIOSFODNN7EXAMPLE" not in safe_repr(b"key=AKIAIOSFODNN7EXAMPLE")


class Service:
    def plain(self, user, password, note="", **kwargs):  # noqa: ANN001, ANN003, ANN201
        pass

    def order(self, items, meta=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        pass


class Entrypoint:
    def __init__(self, method: str, sensitive: object = None) -> None:
        self.method_name = method
        self.sensitive_arguments = sensitive
        self.container = type("C", (), {"service_cls": Service})()


def test_arguments_named_secret_are_hidden_without_being_declared() -> None:
    args, kwargs = redacted_arguments(Entrypoint("plain"), ("ann", "hunter2"),
                                      {"note": "hi", "otp": "123456"})
    assert args == ["'ann'", repr(REDACTED)]
    assert kwargs == {"note": "'hi'", "otp": repr(REDACTED)}


def test_declared_paths_follow_list_indexes_and_kwargs() -> None:
    ep = Entrypoint("order", ("items[0].code", "meta.card", "voucher"))
    items = [{"code": "c-1", "sku": "A"}, {"code": "c-2"}]
    meta = {"card": "x", "who": "ann"}
    _, kwargs = redacted_arguments(ep, (items,), {"meta": meta, "voucher": "v-9"})
    assert kwargs["items"] == "[{'code': '********', 'sku': 'A'}, {'code': 'c-2'}]"
    assert kwargs["meta"] == "{'card': '********', 'who': 'ann'}"
    assert "v-9" not in kwargs["kwargs"]
    # the caller's objects are never changed
    assert items[0]["code"] == "c-1" and meta["card"] == "x"


def test_a_call_that_does_not_bind_hides_every_argument() -> None:
    args, kwargs = redacted_arguments(Entrypoint("plain", "password"), (), {"nope": 1})
    assert args[0].startswith("<arguments hidden") and kwargs == {}


def test_policy_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHASSIS_REDACT_NAMES", "iban, tax_id")
    monkeypatch.setenv("CHASSIS_REDACT_KEEP", "session")
    monkeypatch.setenv("CHASSIS_REDACT_DETECTORS_OFF", "card")
    policy = active_policy()
    assert policy.is_secret_name("iban") and policy.is_secret_name("customer_tax_id")
    assert not policy.is_secret_name("session_id")  # removed deliberately
    assert policy.redact_text("4111111111111111 here") == "4111111111111111 here"
    assert policy.is_secret_name("password")
    # a collector's secret_patterns edit the process's policy with +/-, or replace the names
    edited = policy_for(("+vin", "-token"))
    assert edited.is_secret_name("vin") and not edited.is_secret_name("token")
    assert edited.is_secret_name("iban")
    only = policy_for(("blob",))
    assert only.is_secret_name("blob") and not only.is_secret_name("password")
    monkeypatch.delenv("CHASSIS_REDACT_NAMES")
    monkeypatch.delenv("CHASSIS_REDACT_KEEP")
    monkeypatch.delenv("CHASSIS_REDACT_DETECTORS_OFF")
    assert active_policy() is redaction.DEFAULT_POLICY


def test_policy_edits_are_explicit() -> None:
    policy = RedactionPolicy().edited(add=["vin"], remove=["pin"], detectors_off=["jwt"])
    assert policy.is_secret_name("vin") and not policy.is_secret_name("pin")
    assert "jwt" not in policy.detectors and "card" in policy.detectors


def test_argv_and_sentry_events_are_scrubbed() -> None:
    argv = ["nameko", "run", "--define", "AMQP_URI=pyamqp://guest:guest-pw@rabbit:5672/",
            "--password", "hunter2", "--token=tok-123456", "svc"]
    assert "guest-pw" not in str(scrub_argv(argv)) and "hunter2" not in str(scrub_argv(argv))
    assert "tok-123456" not in str(scrub_argv(argv))
    event = {
        "event_id": "abc", "level": "error", "extra": {"sys.argv": argv},
        "exception": {"values": [{"type": "Boom", "value": "failed for password=hunter2"}]},
        "breadcrumbs": {"values": [{"message": "calling pyamqp://u:crumb-pw@h/",
                                    "category": "log"}]},
        "contexts": {"nameko": {"kwargs": {"password": repr(REDACTED), "note": "'ok'"}},
                     "custom": {"api_key": "k-zzz", "n": 1}},
        "request": {"headers": {"Authorization": "Bearer hdr-secret"}},
    }
    out = scrub_event(event, {})
    text = str(out)
    for secret in ("guest-pw", "hunter2", "crumb-pw", "k-zzz", "hdr-secret"):
        assert secret not in text
    assert out["event_id"] == "abc" and out["contexts"]["custom"]["n"] == 1
    assert out["contexts"]["nameko"]["kwargs"]["password"] == repr(REDACTED)
    crumb = scrub_breadcrumb({"message": "token=abc123", "category": "log", "level": "info"})
    assert crumb["message"] == f"token={REDACTED}" and crumb["category"] == "log"


@pytest.mark.parametrize("limit", [8, 20, 200])
@pytest.mark.parametrize("value", [
    None, True, False, 0, -5, 10**300, 4111111111111111, 1.5, -0.0, float("nan"), float("inf"),
    4111111111111111.0, 1e300, "", "x", "a" * 500, "password=hunter2", "Bearer abcdefghijk",
    "it's \"quoted\"\n", "4111 1111 1111 1111", "é" * 30,
])
def test_plain_values_take_a_straight_path_to_the_same_repr(value: object, limit: int) -> None:
    """str, int, float, bool and None skip reprlib's dispatch by type name (and float, bool and
    None the repr budget's guard): the text is what the guarded, dispatched path gives."""
    policy = active_policy()
    r = policy.repr_of(limit)
    if type(value) in (str, int):
        expected = r.repr1(value, r.maxlevel)
    else:  # what reprlib dispatched them to before: repr_instance, under the guard
        expected = r.repr_instance(value, r.maxlevel)
    if len(expected) > limit:
        expected = expected[: max(limit - 3, 0)] + "..."
    assert safe_repr(value, limit, policy) == expected
    shown = redacted_arguments(None, (value,), {"v": value}, limit=limit, policy=policy)
    assert shown == ([expected], {"v": expected})


@pytest.mark.parametrize("name", ["float", "bool", "NoneType", "str", "int", "list", "dict",
                                  "tuple", "bytes", "set"])
def test_a_service_class_named_like_a_builtin_still_runs_under_the_guard(name: str) -> None:
    """reprlib dispatches by type name: a class of the service called ``float`` or ``list``
    must not take the unguarded path of the real float or list."""
    seen = []

    def __repr__(self: object) -> str:
        seen.append(redaction._guard["owner"] is not None)
        return "mine"

    impostor = type(name, (), {"__repr__": __repr__})()
    assert safe_repr(impostor) == "mine"
    assert seen == [True]


@pytest.mark.parametrize("card", [4111111111111111, 5500005555555559, 378282246310005])
def test_a_card_number_passed_as_an_int_is_hidden_like_its_text(card: int) -> None:
    """Arguments, values nested in them and context data alike: a long int is its digits as
    far as the detectors are concerned; ordinary ints are shown as they are."""
    policy = active_policy()
    assert safe_repr(card, 200, policy) == REDACTED
    args, kwargs = redacted_arguments(None, (card,), {"amount": 1250, "pan": [card]},
                                      policy=policy)
    assert str(card) not in repr((args, kwargs))
    assert kwargs["amount"] == "1250"
    assert redact_mapping({"n": card, "count": 3}, policy) == {"n": REDACTED, "count": 3}
    assert safe_repr(-card, 200, policy) != str(-card)
    assert safe_repr(123456789012, 200, policy) == "123456789012"  # 12 digits: no card
