"""The redaction corpus (shared by tests/probe/test_redaction_corpus.py, the console channels,
and tests/providers/test_redaction_corpus_sinks.py, Sentry and OTel): 100+ secret shapes, the
calls that put them into real workers of tests/services/vault.py, and the leak check.

A shape is a secret put where a service would meet it: under a secret argument or context
name, nested in headers or cookies, as a value under an ordinary name (JWT, cloud key, URL
credentials, PEM, card number...), on a declared ``sensitive_arguments`` path, in an exception
message and the log line before it, in ``sys.argv``. Each secret carries a unique marker; a leak
is a marker found in a channel's output (whitespace and box drawing removed, so a wrapped line
cannot hide one). Each channel must also show the visible canary, so an empty output cannot pass.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chassis_console.launch import NamekoProcess

from nameko_chassis.amqp.rpc import RpcClient
from tests.harness import REPO, Service, wait_for

CANARY = "VISIBLE-ok"


def _luhn_complete(prefix: str) -> str:
    digits = [int(c) for c in prefix]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed([*digits, check])):
            if i % 2:
                d *= 2
                d -= 9 if d > 9 else 0
            total += d
        if total % 10 == 0:
            return prefix + str(check)
    raise AssertionError


@dataclass
class Shape:
    n: int
    where: str            # kwarg, ctx, nested, value, value_ctx, positional, declared, exc, argv
    label: str
    value: Any
    markers: list[str] = field(default_factory=list)


def marker(n: int) -> str:
    return f"Lk{n:03d}Q"


def value_secrets(n: int) -> list[tuple[str, str, list[str]]]:
    """(label, secret text, markers) of values that are secret whatever their name."""
    m = marker(n)
    mu = m.upper()
    card_visa = _luhn_complete(f"4{n:03d}1234567890"[:15])
    card_mc = _luhn_complete(f"5{n:03d}4321098765"[:15])
    card_amex = _luhn_complete(f"37{n:03d}987654321"[:14])
    spaced = " ".join(card_visa[i:i + 4] for i in range(0, 16, 4))
    dashed = "-".join(card_mc[i:i + 4] for i in range(0, 16, 4))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\nMIIEow{m}AKCAQEA\n-----END RSA PRIVATE KEY-----"
    return [
        ("jwt", f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{m}In0.sig{m}nature", [m]),
        ("jwt in text", f"token was eyJhbGciOiJIUzI1NiJ9.eyJ{m}x.abc{m} ok", [m]),
        ("aws key id", f"AKIA{mu}ABCDEFGHIJ", [mu]),
        ("aws sts key id", f"ASIA{mu}ZYXWVUTSRQ", [mu]),
        ("google api key", f"AIzaSyD{m}" + "x" * 28, [m]),
        ("github token", f"ghp_{m}" + "a" * 30, [m]),
        ("slack token", f"xoxb-1234-{m}-abcdefgh", [m]),
        ("stripe key", f"sk_live_{m}abcdef1234567", [m]),
        ("pem", pem, [m]),
        ("pem cut", f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{m}bnNzaC1r", [m]),
        ("amqp url", f"pyamqp://guest:{m}pw@rabbit:5672/", [m]),
        ("postgres url", f"postgresql://app:{m}-pw@db.internal/shop", [m]),
        ("redis url, @ in pw", f"redis://:p@ss{m}@cache:6379/0", [m]),
        ("bearer in referer", f"https://ex.com/cb?x=1 Bearer {m}abcdef", [m]),
        ("basic auth", f"Basic dXNl{m}cjpwYXNz", [m]),
        ("password= in text", f"retry with password={m}x user=ann", [m]),
        ("json token", f'{{"token": "{m}-json", "ok": 1}}', [m]),
        ("visa", card_visa, [card_visa]),
        ("visa spaced", spaced, [card_visa]),
        ("mastercard dashed", dashed, [card_mc]),
        ("amex", card_amex, [card_amex]),
    ]


SECRET_NAMES = [
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "client_secret", "token",
    "access_token", "X-Refresh-Token", "x-refresh", "api_key", "apiKey", "X-API-Key",
    "authorization", "auth", "cookie", "session", "sessionid", "jwt", "dsn", "ssn",
    "card_number", "cvv", "otp", "pin", "mfa_code", "bearer", "connection_string",
    "database_url", "private_key", "aws_secret_access_key", "credentials", "db_pass",
]


def corpus() -> list[Shape]:
    shapes: list[Shape] = []

    def add(where: str, label: str, make: Callable[[str], Any], markers: list[str] | None = None
            ) -> None:
        n = len(shapes) + 1
        m = marker(n)
        shapes.append(Shape(n, where, label, make(m), markers or [m]))

    for name in SECRET_NAMES:
        add("kwarg", name, lambda m: f"{m}-plain")
    for name in SECRET_NAMES[:24]:
        add("ctx", name, lambda m: f"{m}-ctx")
    for key in ("Authorization", "Cookie", "X-Api-Key", "X-Refresh"):
        add("nested", f"headers.{key}", lambda m: f"{m}-hdr")
    add("nested", "request.cookies.sid", lambda m: f"{m}-ck")
    add("nested", "items[1].password", lambda m: f"{m}-item")
    add("nested", "config.db.database_url", lambda m: f"mysql://root:{m}@db/x")
    for i in range(len(value_secrets(0))):
        n = len(shapes) + 1
        label_, text, markers = value_secrets(n)[i]
        shapes.append(Shape(n, "value", label_, text, markers))
    n = len(shapes) + 1
    card = _luhn_complete(f"4{n:03d}9876543210"[:15])
    shapes.append(Shape(n, "value", "visa as an int", int(card), [card]))
    for i in range(0, 21, 3):
        n = len(shapes) + 1
        label_, text, markers = value_secrets(n)[i]
        shapes.append(Shape(n, "value_ctx", label_, text, markers))
    for _ in range(3):
        add("positional", "password (positional)", lambda m: f"{m}-pos")
    add("declared", "items[0].token", lambda m: f"{m}-dec")
    add("declared", "profile.ssn", lambda m: f"{m}-dec")
    add("declared", "voucher (via **kwargs)", lambda m: f"{m}-dec")
    add("declared", "pin_code (via **kwargs)", lambda m: f"{m}-dec")
    for i in (10, 11, 15, 0, 2, 13, 17):
        n = len(shapes) + 1
        label_, text, markers = value_secrets(n)[i]
        shapes.append(Shape(n, "exc", f"exception: {label_}", text, markers))
    shapes.append(Shape(len(shapes) + 1, "argv", "--define AMQP-style URI", None,
                        [ARGV_SECRET]))
    return shapes


ARGV_SECRET = "Lk999Qargv"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "SENTRY_", "CHASSIS_")) and k != "APP_VERSION"}
    env.update(extra)
    return env


def calls_for(shapes: list[Shape]) -> list[tuple[str, tuple, dict, dict]]:
    """(method, args, kwargs, context) per worker: shapes grouped so that no worker exceeds the
    collector's bounds (20 arguments, 30 context keys, 10 entries per nested mapping)."""
    calls = []
    kw = [s for s in shapes if s.where in ("kwarg", "value")]
    ctx = [s for s in shapes if s.where in ("ctx", "value_ctx")]
    nested = [s for s in shapes if s.where == "nested"]
    positional = [s for s in shapes if s.where == "positional"]
    for i in range(0, max(len(kw), 1), 12):
        group = kw[i:i + 12]
        kwargs = {(s.label if s.where == "kwarg" else f"memo_{s.n}"): s.value for s in group}
        calls.append(("stash", ("ann",), kwargs, {}))
    for i in range(0, len(ctx), 12):
        group = ctx[i:i + 12]
        context = {(s.label if s.where == "ctx" else f"memo_{s.n}"): s.value for s in group}
        calls.append(("stash", ("bob",), {}, context))
    by = {s.label: s.value for s in nested}
    calls.append(("stash", ("cy",), {
        "headers": {k.split(".", 1)[1]: v for k, v in by.items() if k.startswith("headers.")},
        "request": {"cookies": {"sid": by["request.cookies.sid"]}, "path": "/"},
        "items": [{"sku": "A"}, {"password": by["items[1].password"]}],
        "config": {"db": {"database_url": by["config.db.database_url"]}}}, {}))
    for s in positional:
        calls.append(("hold", ("dee", s.value), {}, {}))
    dec = {s.label.split(" ")[0]: s.value for s in shapes if s.where == "declared"}
    calls.append(("declared", ([{"token": dec["items[0].token"], "sku": "B"}],),
                  {"profile": {"ssn": dec["profile.ssn"], "name": "eve"},
                   "voucher": dec["voucher"], "pin_code": dec["pin_code"]}, {}))
    return calls


def normalised(text: str) -> str:
    return re.sub(r"[\s\u2500-\u257f…]+", "", text)


def leaks(shapes: list[Shape], text: str) -> list[str]:
    flat = normalised(text)
    return [f"#{s.n} {s.where} {s.label}: {m}" for s in shapes for m in s.markers if m in flat]




def start_vault(vhost_uri: Any, workdir: Any, config: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> Service:
    """The vault service, started with a credential in its argv (``--define``), 40 workers."""
    cfg = {"AMQP_URI": str(vhost_uri), "max_workers": 40, "PREFETCH_COUNT": 40, **(config or {})}
    argv = [sys.executable, "-m", "nameko", "run", "--config", "{config}",
            "--backdoor-port", "127.0.0.1:{port}",
            "--define", f"CHASSIS_TEST_URI=pyamqp://guest:{ARGV_SECRET}@nowhere:5672/",
            "tests.services.vault"]
    proc = NamekoProcess(["tests.services.vault"], cfg, cwd=REPO, argv=argv, workdir=workdir,
                         env=env if env is not None else clean_env())
    service = Service(proc, vhost_uri)
    proc.start()
    try:
        service.wait_answering("vault")
    except BaseException:
        service.close()
        raise
    return service


def park_corpus(service: Service, shapes: list[Shape]) -> list[tuple[str, tuple, dict, dict]]:
    """Every shape in a parked worker (tag ``corpus``); returns the calls made."""
    rpc: RpcClient = service.rpc
    calls = calls_for(shapes)
    for method, args, kwargs, context in calls:
        rpc.call_async("vault", method, *args, tag="corpus", note=CANARY,
                       context=context or None, **kwargs)
    wait_for(lambda: service.running_workers("vault") >= len(calls), timeout=30,
             what=f"{len(calls)} vault workers in flight")
    return calls


def fail_corpus(service: Service, shapes: list[Shape], calls: list[Any]) -> int:
    """The same arguments and context in failing workers, with every exception shape in the
    message and the log line before it; returns how many failed."""
    from nameko_chassis.amqp.rpc import RpcError

    exc_text = " | ".join(str(s.value) for s in shapes if s.where == "exc")
    n = 0
    for method, _args, kwargs, context in calls:
        if method == "declared":
            continue
        try:
            service.rpc.call("vault", "fail", f"failed {exc_text}", note=CANARY,
                             context=context or None, **kwargs)
        except RpcError:
            n += 1
    return n
