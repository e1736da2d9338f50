"""Redaction and bounded reprs: ONE policy for everything that leaves the service.

Every channel goes through this module: snapshots (and so ``--json``, ``--once``, the TUI, the
REPL helpers, ``debug_runner``), the worker history, Sentry events and breadcrumbs, and OTel
exception events and span status. docs/security.md states what is hidden and what cannot be.

- :class:`RedactionPolicy`: what counts as secret —

  * **names** (arguments, keyword arguments, mapping keys at any depth, ``name=value`` in
    text): :data:`SECRET_NAMES`. A name is normalised (case, ``-``/``_``/spaces, camelCase);
    a pattern of 5 characters or more matches anywhere in it (``db_password``, ``XAuthToken``),
    a shorter one only as a whole word (``pin`` hides ``user_pin``, not ``shipping``);
  * **values**, whatever their name (:data:`DETECTORS`): JWTs, cloud/API keys, ``Bearer``/
    ``Basic`` credentials, the password in ``scheme://user:pass@host``, PEM private keys, card
    numbers that pass Luhn;
  * **declared paths**: an entrypoint's ``sensitive_arguments`` (nameko's syntax,
    ``items[0].token``), as nameko's ``get_redacted_args`` — plus list indexes mid-path and names
    arriving through ``**kwargs``, which nameko misses.

- :func:`active_policy`: the process's policy — the defaults, edited by the nameko config
  (``CHASSIS.REDACT``) or the environment (``CHASSIS_REDACT_*``); :func:`policy_for` applies a
  collector's ``secret_patterns`` on top.
- :func:`safe_repr`, :func:`redacted_arguments`, :func:`redact_mapping`, :func:`redact_text`,
  :func:`scrub_event`, :func:`scrub_breadcrumb`, :func:`scrub_argv`: the hooks the channels
  call.

Everything here runs on the eventlet hub, once per worker (the collector caches it on the worker
context): reprs and walks are bounded (``reprlib`` limits, :data:`TEXT_SCAN_CHARS`), name
verdicts are memoised, and the value detectors are one regular expression pass per string.
"""

from __future__ import annotations

import array
import collections
import inspect
import os
import re
import reprlib
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import privates

#: Characters kept of any one repr (arguments, context values).
DEFAULT_REPR_LIMIT = 200
#: Positional + keyword arguments shown per worker.
DEFAULT_MAX_ARGS = 20
#: Context-data keys shown per worker.
DEFAULT_MAX_CONTEXT_KEYS = 30
#: Characters of a string (or bytes) looked at, at most, by the value detectors and the repr:
#: a 50 MB argument is sliced before anything else touches it.
TEXT_SCAN_CHARS = 4096
#: How deep :func:`scrub_event` walks a Sentry event, and how many items per container.
SCRUB_MAX_DEPTH = 12
SCRUB_MAX_ITEMS = 500
REDACTED = "********"
_REDACTED_REPR = repr(REDACTED)

#: Names that are secret (see the module docstring for how they match).
SECRET_NAMES: tuple[str, ...] = (
    # credentials
    "password", "passwd", "passphrase", "pwd", "pass", "secret", "token", "apikey", "accesskey",
    "privatekey", "credential", "signature", "jwt", "bearer", "authorization", "auth",
    "cookie", "session", "xrefresh", "otp", "mfacode", "pin",
    # connection strings that carry credentials
    "dsn", "connectionstring", "databaseurl",
    # personal and payment data
    "ssn", "cardnumber", "cvv", "cvc",
)
#: The name the collector's ``secret_patterns`` parameter had before the policy; same tuple.
SECRET_KEY_PATTERNS = SECRET_NAMES

#: Value detectors, by name (each can be switched off: ``CHASSIS.REDACT.DETECTORS_OFF``).
DETECTORS: tuple[str, ...] = ("pem", "url_credentials", "jwt", "cloud_key", "bearer",
                              "name_value", "card")

#: Shorter patterns match whole words only (see the module docstring).
_WORD_PATTERN_CHARS = 5


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


_WORD_SPLIT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def name_words(name: str) -> list[str]:
    """``X-Refresh-Token`` → ``['x', 'refresh', 'token']``; ``apiKey`` → ``['api', 'key']``."""
    return [w.lower() for w in _WORD_SPLIT.findall(name)]


# ---------------------------------------------------------------------------------------------
# value detectors: one alternation, one pass per string

_B64URL = r"[A-Za-z0-9_-]"
_VALUE_PATTERNS: dict[str, str] = {
    # a private key block (or its beginning, when the text was cut)
    "pem": r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
           r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)",
    # scheme://user:PASSWORD@host — the password (which may itself hold an @) is hidden
    "url_credentials": r"(?P<url_head>\b[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@'\"]*:)"
                       r"(?P<url_pass>[^\s/'\"]*)(?=@)",
    # header.payload(.signature) — also a cut one
    "jwt": rf"\beyJ{_B64URL}{{8,}}(?:\.{_B64URL}*){{1,2}}",
    "cloud_key": (
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"  # AWS key id
        r"|\bAIza[0-9A-Za-z_-]{35}"                              # Google API key
        r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"           # GitHub tokens
        r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
        r"|\bglpat-[A-Za-z0-9_-]{20,}"                           # GitLab
        r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"                      # Slack
        r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"        # Stripe
        r"|\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"                    # OpenAI-style
        r"|\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"         # SendGrid
        r"|\bnpm_[A-Za-z0-9]{36}"                                # npm
        r"|\bpypi-[A-Za-z0-9_-]{50,}"                            # PyPI
        r"|AccountKey=[A-Za-z0-9+/=]{20,}"                       # Azure storage
        r"|\bSharedAccessSignature=[^\s;'\"]+"
    ),
    # an HTTP credential: the scheme is kept, the rest hidden
    "bearer": r"(?P<auth_scheme>\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Tt]oken|[Dd]igest)\s+)"
              r"(?P<auth_value>[A-Za-z0-9._~+/=:-]{6,})",
    # name=value / name: value / "name": "value" — the value hidden when the name is secret
    "name_value": r"(?P<nv_name>\b[A-Za-z_][A-Za-z0-9_.-]{0,63})(?P<nv_sep>[\"']?\s*[=:]\s*)"
                  r"(?P<nv_value>(?:(?i:bearer|basic|token|digest)\s+)?"
                  r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&'\"})\]]+))",
    # 13 to 19 digits, spaces or dashes between, first digit 2-6: checked with Luhn
    "card": r"(?P<card>(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9]))",
}
# what a string must hold for these detectors to look at it (fast scans; the others' gates are
# substring tests in RedactionPolicy._scan)
_CLOUD_GATE = re.compile(r"A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|BIA|CCA|Iza|ccountKey=)"
                         r"|g(?:h[pousr]_|ithub_pat_|lpat-)|xox[abposr]-|_(?:live|test)_"
                         r"|sk-|SG\.|npm_|pypi-|SharedAccessSignature=")
_CARD_GATE = re.compile(r"[2-6](?:[ -]?[0-9]){12}")
#: redact_text results remembered per policy: texts up to this long, this many at most
_MEMO_CHARS = 256
_MEMO_ENTRIES = 4096


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class RedactionPolicy:
    """What is secret: names, value detectors and how far to look. Immutable; build a new one
    with :meth:`edited`. Name verdicts are memoised per policy."""

    def __init__(self, names: Iterable[str] = SECRET_NAMES,
                 detectors: Iterable[str] = DETECTORS) -> None:
        normalised = {_norm(n) for n in names}
        normalised.discard("")
        self.names: tuple[str, ...] = tuple(sorted(normalised))
        self.detectors: tuple[str, ...] = tuple(d for d in DETECTORS if d in set(detectors))
        self._substrings = tuple(n for n in self.names if len(n) >= _WORD_PATTERN_CHARS)
        self._words = frozenset(n for n in self.names if len(n) < _WORD_PATTERN_CHARS)
        self._verdicts: dict[str, bool] = {}
        # one compiled pattern per detector, each behind a cheap gate (a substring test or a
        # prefix scan): a string that holds none of them costs about a microsecond
        self._patterns = {d: re.compile(_VALUE_PATTERNS[d]) for d in self.detectors}
        self._text_memo: dict[str, str] = {}
        self._repr_cache: dict[int, _RedactingRepr] = {}
        self._key_memo: dict[int, dict[str, tuple[str, bool]]] = {}

    def __repr__(self) -> str:
        return (f"<RedactionPolicy {len(self.names)} names, "
                f"detectors {', '.join(self.detectors) or 'none'}>")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RedactionPolicy) and other.names == self.names
                and other.detectors == self.detectors)

    def __hash__(self) -> int:
        return hash((self.names, self.detectors))

    def edited(self, add: Iterable[str] = (), remove: Iterable[str] = (),
               detectors_off: Iterable[str] = ()) -> RedactionPolicy:
        """This policy with names added, names deliberately removed, and detectors off."""
        gone = {_norm(n) for n in remove}
        names = [n for n in self.names if n not in gone] + [_norm(n) for n in add]
        off = set(detectors_off)
        return RedactionPolicy(names, [d for d in self.detectors if d not in off])

    # -- names ---------------------------------------------------------------------------------

    def is_secret_name(self, name: Any) -> bool:
        """Whether a value under this name (argument, key, header) is hidden."""
        key = name if isinstance(name, str) else str(name)
        verdict = self._verdicts.get(key)
        if verdict is None:
            flat = _norm(key)
            verdict = (any(p in flat for p in self._substrings)
                       or not self._words.isdisjoint(name_words(key)))
            if len(self._verdicts) > 4096:  # names repeat; a flood of distinct ones must not grow
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    # -- values --------------------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        """``text`` with every detected secret value replaced (the first
        :data:`TEXT_SCAN_CHARS` characters are kept and looked at, the rest cut). Short texts'
        results are remembered: the same values recur from worker to worker."""
        if len(text) > TEXT_SCAN_CHARS:
            text = text[:TEXT_SCAN_CHARS] + "..."
        elif len(text) < 6:
            return text
        memo = self._text_memo
        found = memo.get(text)
        if found is not None:
            return found
        out = self._scan(text)
        if len(text) <= _MEMO_CHARS:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[text] = out
        return out

    def _scan(self, text: str) -> str:
        p = self._patterns
        sub = self._replace
        if "PRIVATE KEY" in text and "pem" in p:
            text = p["pem"].sub(sub, text)
        if "://" in text and "url_credentials" in p:
            text = p["url_credentials"].sub(sub, text)
        if "eyJ" in text and "jwt" in p:
            text = p["jwt"].sub(sub, text)
        if "cloud_key" in p and _CLOUD_GATE.search(text) is not None:
            text = p["cloud_key"].sub(sub, text)
        if "bearer" in p:
            low = text.lower()
            if "bearer" in low or "basic" in low or "token" in low or "digest" in low:
                text = p["bearer"].sub(sub, text)
        if ("=" in text or ":" in text) and "name_value" in p:
            text = p["name_value"].sub(sub, text)
        if "card" in p and _CARD_GATE.search(text) is not None:
            text = p["card"].sub(sub, text)
        return text

    def _replace(self, m: re.Match[str]) -> str:
        groups = m.groupdict()
        if "url_head" in groups:
            return m.group("url_head") + REDACTED
        if "auth_scheme" in groups:
            return m.group("auth_scheme") + REDACTED
        if "nv_name" in groups:
            if not self.is_secret_name(m.group("nv_name")):
                # not a secret name: its value may still hold a secret value
                value = m.group("nv_value")
                inner = self.redact_text(value) if len(value) >= 6 else value
                return m.group("nv_name") + m.group("nv_sep") + inner
            value = m.group("nv_value")
            quote = value[0] if value[:1] in ("'", '"') else ""
            return m.group("nv_name") + m.group("nv_sep") + quote + REDACTED + quote
        if "card" in groups:
            digits = m.group(0).replace(" ", "").replace("-", "")
            if not (13 <= len(digits) <= 19 and _luhn(digits)):
                return m.group(0)
        return REDACTED

    def redact_value(self, name: Any, value: Any) -> Any:
        return REDACTED if self.is_secret_name(name) else value

    def key_memo(self, limit: int) -> dict[str, tuple[str, bool]]:
        """Mapping keys already seen, at this repr limit: key -> (the key as shown, whether
        its value is hidden). Keys repeat from worker to worker (``user_id``...)."""
        memo = self._key_memo.get(limit)
        if memo is None:
            memo = self._key_memo[limit] = {}
        return memo

    def repr_of(self, limit: int) -> _RedactingRepr:
        r = self._repr_cache.get(limit)
        if r is None:
            r = self._repr_cache[limit] = _RedactingRepr(self, limit)
        return r


DEFAULT_POLICY = RedactionPolicy()


# ---------------------------------------------------------------------------------------------
# configuration

#: ``CHASSIS.REDACT`` keys, and the environment variables read when the config has none.
CONFIG_KEYS = {"NAMES": "CHASSIS_REDACT_NAMES", "KEEP": "CHASSIS_REDACT_KEEP",
               "DETECTORS_OFF": "CHASSIS_REDACT_DETECTORS_OFF"}

_configured: tuple[Any, RedactionPolicy, float] | None = None


def _list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _config_section() -> Mapping[str, Any]:
    # nameko's global config (public: nameko.config), read without importing anything: the probe
    # also runs in services whose nameko-chassis is absent, and in plain processes
    config = privates.nameko_config()
    try:
        section = config.get("CHASSIS") if config is not None else None
        section = section.get("REDACT") if isinstance(section, Mapping) else None
    except BaseException:
        section = None
    return section if isinstance(section, Mapping) else {}


def active_policy(max_age: float = 0.0) -> RedactionPolicy:
    """The process's policy: the defaults, with ``CHASSIS.REDACT``'s ``NAMES`` added, ``KEEP``
    removed and ``DETECTORS_OFF`` switched off (else the ``CHASSIS_REDACT_*`` environment
    variables, comma-separated). The settings are read again when the last read is older than
    ``max_age`` seconds (each call by default: ~10 µs, which a caller on every worker may not
    want to pay), and the policy is rebuilt only when they changed."""
    global _configured
    now = time.monotonic()
    if _configured is not None and now - _configured[2] < max_age:
        return _configured[1]
    section = _config_section()
    key = tuple(_list(section.get(k) if k in section else os.environ.get(env))
                for k, env in CONFIG_KEYS.items())
    if _configured is not None and _configured[0] == key:
        _configured = (key, _configured[1], now)
        return _configured[1]
    names, keep, off = key
    policy = DEFAULT_POLICY.edited(add=names, remove=keep, detectors_off=off) if any(key) \
        else DEFAULT_POLICY
    _configured = (key, policy, now)
    return policy


_edits: dict[Any, RedactionPolicy] = {}


def policy_for(secret_patterns: Iterable[str] | RedactionPolicy | None = None
               ) -> RedactionPolicy:
    """The policy a collector call uses. ``secret_patterns``: None or the defaults → the
    process's policy; names prefixed ``+``/``-`` → the process's policy with those added/removed;
    any other list of names → exactly those names (the detectors stay on)."""
    if isinstance(secret_patterns, RedactionPolicy):
        return secret_patterns  # given: no settings to read
    base = active_policy()
    if secret_patterns is None or secret_patterns is SECRET_NAMES:
        return base
    patterns = tuple(secret_patterns)
    key = (base, patterns)
    policy = _edits.get(key)
    if policy is None:
        if patterns and all(p[:1] in ("+", "-") for p in patterns):
            policy = base.edited(add=[p[1:] for p in patterns if p[0] == "+"],
                                 remove=[p[1:] for p in patterns if p[0] == "-"])
        else:
            policy = RedactionPolicy(patterns, base.detectors)
        if len(_edits) > 64:
            _edits.clear()
        _edits[key] = policy
    return policy


# ---------------------------------------------------------------------------------------------
# bounded, redacting reprs


#: Ints this long or longer may be card numbers (13 digits at least): their text goes through
#: the value detectors, in arguments and context data alike.
_LONG_INT = 10**12


class _RedactingRepr(reprlib.Repr):
    """``reprlib`` bounds, plus: values under secret keys hidden at any depth, strings and bytes
    sliced before repr and passed through the value detectors, dicts shown in insertion order
    without sorting (sorting a large dict is unbounded work)."""

    def __init__(self, policy: RedactionPolicy, limit: int) -> None:
        super().__init__()
        self.policy = policy
        self.maxstring = self.maxother = self.maxlong = limit
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 10
        self.maxdict = 10
        self.maxlevel = 3

    def repr1(self, x: Any, level: int) -> str:
        # reprlib dispatches by type *name*: a service class called ``list`` or ``int`` would
        # take the builtin's method, outside the repr budget's guard. By exact type instead;
        # every other object (subclasses included, as before) goes to repr_instance.
        method = _BUILTIN_REPRS.get(type(x))
        if method is None:
            return self.repr_instance(x, level)
        return method(self, x, level)

    def repr_str(self, x: str, level: int) -> str:
        text = self.policy.redact_text(x if len(x) <= TEXT_SCAN_CHARS else x[:TEXT_SCAN_CHARS])
        return self._cut(repr(text[: self.maxstring + 1]), len(text) > self.maxstring)

    def repr_bytes(self, x: bytes, level: int) -> str:
        head = bytes(x[: min(TEXT_SCAN_CHARS, self.maxstring + 1)])
        return self._cut(self.policy.redact_text(repr(head)), len(x) > len(head))

    repr_bytearray = repr_bytes

    def repr_memoryview(self, x: memoryview, level: int) -> str:
        try:
            return self.repr_bytes(x[: self.maxstring + 1].tobytes(), level)
        except BaseException:
            return "<memoryview>"

    def _cut(self, text: str, more: bool) -> str:
        if more or len(text) > self.maxstring:
            return text[: max(self.maxstring - 3, 1)] + "..."
        return text

    # sets as reprlib does, but not sorted first (sorting a large set is unbounded work)
    def repr_set(self, x: Any, level: int) -> str:
        if not x:
            return "set()"
        return self._repr_iterable(x, level, "{", "}", self.maxset)  # type: ignore[attr-defined]

    def repr_frozenset(self, x: Any, level: int) -> str:
        if not x:
            return "frozenset()"
        return self._repr_iterable(  # type: ignore[attr-defined]
            x, level, "frozenset({", "})", self.maxfrozenset)

    def repr_dict(self, x: Any, level: int) -> str:
        n = len(x)
        if n == 0:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = []
        policy = self.policy
        for i, (key, value) in enumerate(x.items()):
            if i >= self.maxdict:
                pieces.append("...")
                break
            k = self.repr1(key, level - 1)
            v = repr(REDACTED) if policy.is_secret_name(key) else self.repr1(value, level - 1)
            pieces.append(f"{k}: {v}")
        return "{" + ", ".join(pieces) + "}"

    def repr_int(self, x: int, level: int) -> str:
        # a card number passed as an int: long ints go through the value detectors, as strings
        # and context values do (the gate keeps the usual small ints at reprlib's cost)
        text = reprlib.Repr.repr_int(self, x, level)
        if -_LONG_INT < x < _LONG_INT:
            return text
        return self.policy.redact_text(text)

    def repr_builtin(self, x: Any, level: int) -> str:
        """What :meth:`repr_instance` makes of a float, bool or None, without the repr budget's
        guard: their repr is the interpreter's own, it runs no code of the service."""
        return self._cut(self.policy.redact_text(repr(x)), False)

    def repr_instance(self, x: Any, level: int) -> str:
        # Here, and only here, the service's own code runs: a user ``__repr__``, or a user
        # mapping's ``items()``. It runs under the repr budget (:func:`bounded`).
        if isinstance(x, Mapping):  # OrderedDict, defaultdict, user mappings: walk them too
            try:
                if type(x).items is dict.items:  # a dict subclass: no code of the service runs
                    return f"{type(x).__name__}({self.repr_dict(x, level)})"
                text = _run_bounded(lambda m: self.repr_dict(m, level), x)
                return _gave_up_mark(x) if text is None else f"{type(x).__name__}({text})"
            except BaseException:
                pass
        try:
            text = bounded(repr, x)
        except Exception:
            if level >= self.maxlevel:
                raise  # safe_repr names the failure
            return f"<{type(x).__name__} instance: repr raised>"
        if len(text) > TEXT_SCAN_CHARS:
            text = text[:TEXT_SCAN_CHARS]
        return self._cut(self.policy.redact_text(text), False)


# ---------------------------------------------------------------------------------------------
# the repr budget: the service's own code, run on the hub, bounded in time

#: Seconds a user-defined ``__repr__`` (or a user mapping's walk) may run, or wait, on the hub
#: before it is given up on: ``CHASSIS_REPR_BUDGET_MS`` in the environment sets it.
REPR_BUDGET_S = max(float(os.environ.get("CHASSIS_REPR_BUDGET_MS", "") or 20) / 1000.0, 0.001)
#: After this many objects of one type gave up, that type's repr is not run again.
REPR_STRIKES_PER_TYPE = 2
#: Verdicts remembered (objects given up on, types struck out); oldest forgotten first.
MAX_VERDICTS = 4096


class ReprOverrun(BaseException):
    """Raised inside a user ``__repr__`` that ran past :data:`REPR_BUDGET_S`. A BaseException, so
    that the repr's own ``except Exception`` does not swallow it."""

    how = "ran"


class ReprWaited(ReprOverrun):
    how = "waited"


class ReprBurned(ReprOverrun):
    how = "burned the CPU"


#: id(object) -> (weak reference or None, type, mark): the objects whose repr gave up.
_given_up: dict[int, tuple[Any, type, str]] = {}
#: type -> how many of its objects gave up.
_strikes: dict[type, int] = {}
#: The greenlet running a bounded call, and how to name the running one (found on first use:
#: importing this module imports nothing outside the standard library).
_guard: dict[str, Any] = {"owner": None, "getcurrent": None}


def _type_name(value: Any) -> str:
    try:
        return str(type(value).__name__)[:60]
    except BaseException:
        return "object"


def _gave_up_mark(value: Any) -> str:
    return _known_verdict(value) or (f"<{_type_name(value)}: repr gave up: it ran past the "
                                     f"{REPR_BUDGET_S * 1000:.0f} ms budget>")


def _known_verdict(value: Any) -> str | None:
    found = _given_up.get(id(value))
    if found is not None:
        ref, kind, mark = found
        if type(value) is kind and (ref is None or ref() is value):
            return mark
    struck = _strikes.get(type(value), 0)
    if struck >= REPR_STRIKES_PER_TYPE:
        return (f"<{_type_name(value)}: repr not run ({struck} of its objects ran past the "
                f"{REPR_BUDGET_S * 1000:.0f} ms budget)>")
    return None


def _remember(value: Any, mark: str) -> None:
    try:
        ref: Any = weakref.ref(value)
    except TypeError:
        ref = None
    while len(_given_up) >= MAX_VERDICTS:
        _given_up.pop(next(iter(_given_up)))
    _given_up[id(value)] = (ref, type(value), mark)
    kind = type(value)
    if len(_strikes) >= MAX_VERDICTS and kind not in _strikes:
        _strikes.pop(next(iter(_strikes)))
    _strikes[kind] = _strikes.get(kind, 0) + 1


def in_bounded() -> bool:
    """True while this greenlet runs a bounded call (the service's own code under the repr
    budget): nothing may hand the hub back there on the probe's behalf."""
    owner = _guard["owner"]
    if owner is None:
        return False
    current = _guard["getcurrent"] or privates.getcurrent_function()
    try:
        return bool(owner is current())
    except BaseException:
        return True


def bounded(fn: Callable[[Any], str], value: Any) -> str:
    """``fn(value)`` — the service's own code, such as a ``__repr__`` — under the repr budget;
    a mark saying so in its place when it gave up.

    - Code that *waits* (a socket read, a sleep: it switches to the eventlet hub) is woken by an
      eventlet Timeout after :data:`REPR_BUDGET_S`, so the request finishes and no greenthread
      or socket is left waiting behind it.
    - Code that *burns* the CPU in Python is stopped by a trace function checking the clock
      at every opcode of the service's frames (in this greenlet only: a greenthread the hub
      runs meanwhile is not traced).
    - Either way the object is remembered (:data:`MAX_VERDICTS`) and not tried again, and after
      :data:`REPR_STRIKES_PER_TYPE` objects of one type, that type is not tried again either.

    What a budget cannot bound: a C call that never returns to Python (a blocking call of an
    unpatched library, a huge ``str * n``), and code that swallows ``BaseException`` in a loop.
    docs/security.md says so. A nested call runs under the budget already running.
    """
    text = _run_bounded(fn, value)
    return text if text is not None else _gave_up_mark(value)


def _run_bounded(fn: Callable[[Any], str], value: Any) -> str | None:
    if _known_verdict(value) is not None:
        return None
    current = _guard["getcurrent"]
    if current is None:
        current = _guard["getcurrent"] = privates.getcurrent_function()
    me = current()
    if _guard["owner"] is me:
        return fn(value)
    deadline = time.perf_counter() + REPR_BUDGET_S
    clock = time.perf_counter

    waited: list[bool] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if clock() > deadline:
            raise ReprWaited if waited else ReprBurned
        return local

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        if current() is not me:
            if not waited:
                waited.append(True)  # it switched out: the hub runs others while it waits
            return None
        if clock() > deadline:
            raise ReprWaited if waited else ReprBurned
        frame.f_trace_opcodes = True  # a loop on one line has no line events after the first
        return local

    previous = sys.gettrace()
    # eventlet's backdoor points sys.std* at its socket when its greenlet is switched in; a
    # Timeout wakes the greenlet with throw(), which does not: put them back ourselves
    streams = sys.stdin, sys.stdout, sys.stderr
    _guard["owner"] = me
    try:
        timer = privates.green_deadline(REPR_BUDGET_S, ReprWaited)  # started: pending now
        try:
            sys.settrace(on_call)
            return fn(value)
        finally:
            sys.settrace(previous)
            sys.stdin, sys.stdout, sys.stderr = streams
            if timer is not None:
                timer.cancel()
    except ReprOverrun as exc:
        _remember(value, f"<{_type_name(value)}: repr gave up: it {exc.how} past the "
                         f"{REPR_BUDGET_S * 1000:.0f} ms budget>")
        return None
    finally:
        _guard["owner"] = None


#: The exact types whose repr ``safe_repr`` calls straight (the usual argument types).
_PLAIN_REPRS: dict[type, Callable[[_RedactingRepr, Any, int], str]] = {
    str: _RedactingRepr.repr_str, int: _RedactingRepr.repr_int,
    float: _RedactingRepr.repr_builtin, bool: _RedactingRepr.repr_builtin,
    type(None): _RedactingRepr.repr_builtin,
}
#: _RedactingRepr.repr1's dispatch: the builtin containers and scalars reprlib (and this module)
#: has a method for, by exact type.
_BUILTIN_REPRS: dict[type, Callable[..., str]] = {
    **_PLAIN_REPRS,
    tuple: reprlib.Repr.repr_tuple, list: reprlib.Repr.repr_list,
    array.array: reprlib.Repr.repr_array, collections.deque: reprlib.Repr.repr_deque,
    set: _RedactingRepr.repr_set, frozenset: _RedactingRepr.repr_frozenset,
    dict: _RedactingRepr.repr_dict, bytes: _RedactingRepr.repr_bytes,
    bytearray: _RedactingRepr.repr_bytearray, memoryview: _RedactingRepr.repr_memoryview,
}


def safe_repr(value: Any, limit: int = DEFAULT_REPR_LIMIT,
              policy: RedactionPolicy | None = None) -> str:
    """A redacted repr of ``value`` that is at most ``limit`` characters and never raises."""
    return _bounded_repr((policy or active_policy()).repr_of(limit), value, limit)


def is_secret_key(key: Any, patterns: Iterable[str] | RedactionPolicy | None = None) -> bool:
    """Whether ``key`` names a secret under the policy of ``patterns`` (:func:`policy_for`)."""
    return policy_for(patterns).is_secret_name(key)


def redact_text(text: Any, policy: RedactionPolicy | None = None) -> str:
    """Free text (an exception message, a log line, an argv) with secret values hidden."""
    s = text if isinstance(text, str) else str(text)
    return (policy or active_policy()).redact_text(s)


def _plain(value: Any, limit: int, policy: RedactionPolicy) -> Any:
    """JSON-safe context value: small primitives as they are, strings through the detectors,
    anything else as a redacting repr."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if -_LONG_INT < value < _LONG_INT:
            return value
        text = str(value)  # a card number as an int
        hidden = policy.redact_text(text)
        return value if hidden == text else hidden
    if isinstance(value, str):
        value = policy.redact_text(value)
        return value if len(value) <= limit else value[: max(limit - 3, 0)] + "..."
    return safe_repr(value, limit, policy)


def redact_mapping(
    data: Mapping[Any, Any],
    patterns: Iterable[str] | RedactionPolicy | None = None,
    *,
    limit: int = DEFAULT_REPR_LIMIT,
    max_keys: int = DEFAULT_MAX_CONTEXT_KEYS,
) -> dict[str, Any]:
    """A JSON-safe copy of ``data`` with secret-looking keys and values redacted, values bounded
    (nested mappings are walked by the redacting repr)."""
    policy = policy_for(patterns)
    out: dict[str, Any] = {}
    try:
        n = len(data)
        items = iter(data.items())
    except BaseException:
        return {"<error>": "<context data could not be read>"}
    keys = policy.key_memo(limit)
    for i, (key, value) in enumerate(items):
        if i >= max_keys:
            out["<more>"] = f"{n - max_keys} more keys"
            break
        found = keys.get(key) if type(key) is str else None
        if found is None:
            found = (policy.redact_text(str(key)[:limit]), policy.is_secret_name(key))
            if type(key) is str and len(key) <= _MEMO_CHARS:
                if len(keys) >= _MEMO_ENTRIES:
                    keys.clear()
                keys[key] = found
        out[found[0]] = REDACTED if found[1] else _plain(value, limit, policy)
    return out


# ---------------------------------------------------------------------------------------------
# arguments

_PATH_PART = re.compile(r"(\w+)|\[(\d+)\]")
_signatures: dict[Any, Any] = {}


def _signature(entrypoint: Any) -> tuple[Any, tuple[str, ...], str | None] | None:
    """(signature, positional parameter names after ``self``, the ``**kwargs`` name) of the
    entrypoint's method, memoised per function; None when it has none. Bound like nameko's
    ``inspect.getcallargs``: decorators' ``__wrapped__`` is not followed."""
    try:
        method = getattr(entrypoint.container.service_cls, entrypoint.method_name)
    except BaseException:
        return None
    found: Any = _signatures.get(method)
    if found is None:
        try:
            sig = inspect.signature(method, follow_wrapped=False)
            params = list(sig.parameters.values())[1:]
            positional = []
            for p in params:
                if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    break
                positional.append(p.name)
            var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
            found = (sig, tuple(positional), var_kw)
        except (TypeError, ValueError):
            found = False
        if len(_signatures) > 1024:
            _signatures.clear()
        _signatures[method] = found
    return found or None


def parse_path(path: str) -> list[str | int]:
    """nameko's ``sensitive_arguments`` syntax: ``items[0].token`` → ``['items', 0, 'token']``."""
    return [key if key else int(index) for key, index in _PATH_PART.findall(path)]


def _copy_with(data: Any, key: Any, value: Any) -> Any:
    """A shallow copy of ``data`` with ``data[key] = value`` (never changes ``data`` itself);
    ``data`` unchanged when it cannot hold the key."""
    if isinstance(data, tuple):
        if not isinstance(key, int) or not -len(data) <= key < len(data):
            return data
        items = list(data)
        items[key] = value
        try:
            return type(data)(*items) if hasattr(data, "_fields") else type(data)(items)
        except BaseException:
            return tuple(items)
    if isinstance(data, list):
        if not isinstance(key, int) or not -len(data) <= key < len(data):
            return data
        items = list(data)
        items[key] = value
        return items
    if isinstance(data, Mapping):
        try:
            mapping = data.copy() if isinstance(data, dict) else dict(data)
        except BaseException:
            mapping = dict(data)
        mapping[key] = value  # like nameko: a missing key is added, redacted
        return mapping
    return data


def _redact_path(data: Any, keys: list[str | int]) -> Any:
    key, rest = keys[0], keys[1:]
    if not rest:
        return _copy_with(data, key, REDACTED)
    try:
        if isinstance(data, Mapping):
            if key not in data:
                return data
            child = data[key]
        elif isinstance(data, (list, tuple)) and isinstance(key, int) \
                and -len(data) <= key < len(data):
            child = data[key]  # a list index mid-path: nameko tests membership here instead
        else:
            return data
    except BaseException:
        return data
    new = _redact_path(child, rest)
    return data if new is child else _copy_with(data, key, new)


def declared_redaction(entrypoint: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                       ) -> dict[str, Any]:
    """nameko's ``get_redacted_args``: the call bound to parameter names, the entrypoint's
    ``sensitive_arguments`` replaced by ``********`` — with list indexes followed mid-path, and
    names that arrived through ``**kwargs`` found there. Copies only along redacted paths (nameko
    deep-copies every argument, running user ``__deepcopy__``/``__getattr__`` on the hub)."""
    sensitive = getattr(entrypoint, "sensitive_arguments", None) or ()
    if isinstance(sensitive, str):
        sensitive = (sensitive,)
    found = _signature(entrypoint)
    if found is None:
        raise TypeError("the entrypoint's method has no signature")
    sig, _, var_kw = found
    bound = sig.bind(None, *args, **kwargs)
    bound.apply_defaults()
    callargs = dict(bound.arguments)
    callargs.pop(next(iter(sig.parameters)), None)  # self
    for variable in sensitive:
        keys = parse_path(str(variable))
        if not keys:
            continue
        if keys[0] in callargs:
            callargs = _redact_path(callargs, keys)
        elif var_kw is not None and isinstance(callargs.get(var_kw), Mapping) \
                and keys[0] in callargs[var_kw]:
            callargs[var_kw] = _redact_path(callargs[var_kw], keys)
    return callargs


def redacted_arguments(
    entrypoint: Any, args: Any, kwargs: Any, *, limit: int = DEFAULT_REPR_LIMIT,
    max_args: int = DEFAULT_MAX_ARGS, policy: RedactionPolicy | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Reprs of a worker's arguments, redacted: declared ``sensitive_arguments``, arguments and
    keys with secret names (positional ones by their parameter name), secret values anywhere.

    With sensitive arguments the call is bound to parameter names (as nameko's
    ``get_redacted_args``), so every argument comes back as a keyword.
    """
    policy = policy or active_policy()
    args = args if type(args) is tuple else tuple(args or ())
    if type(kwargs) is not dict:
        kwargs = dict(kwargs or {})
    if getattr(entrypoint, "sensitive_arguments", None):
        kwargs = dict(kwargs)
        try:
            callargs = declared_redaction(entrypoint, args, kwargs)
        except BaseException as exc:
            return [f"<arguments hidden: redaction failed ({type(exc).__name__})>"], {}
        shown = list(callargs.items())[:max_args]
        return [], {str(k): _arg_repr(policy, k, v, limit) for k, v in shown}
    names: tuple[str, ...] = ()
    if args and policy.names:
        found = _signature(entrypoint)
        if found is not None:
            names = found[1]
    r = policy.repr_of(limit)
    secret = policy.is_secret_name
    arg_reprs = []
    for i, a in enumerate(args[:max_args]):
        if i < len(names) and a is not REDACTED and secret(names[i]):
            a = REDACTED
        arg_reprs.append(_bounded_repr(r, a, limit))
    if len(args) > max_args:
        arg_reprs.append(f"<{len(args) - max_args} more>")
    kw_reprs = {}
    for i, (k, v) in enumerate(kwargs.items()):
        if i >= max_args:
            break
        kw_reprs[str(k)] = _bounded_repr(r, REDACTED if v is not REDACTED and secret(k) else v,
                                         limit)
    return arg_reprs, kw_reprs


def _arg_repr(policy: RedactionPolicy, name: Any, value: Any, limit: int) -> str:
    if name is not None and value is not REDACTED and policy.is_secret_name(name):
        value = REDACTED
    return safe_repr(value, limit, policy)


def _bounded_repr(r: _RedactingRepr, value: Any, limit: int) -> str:
    """:func:`safe_repr` with its redacting repr at hand (``policy.repr_of(limit)``)."""
    try:
        plain = _PLAIN_REPRS.get(type(value))  # the usual argument types: no dispatch by name
        text = r.repr(value) if plain is None else plain(r, value, r.maxlevel)
    except BaseException as exc:
        try:
            kind = type(value).__name__
        except BaseException:
            kind = "object"
        return f"<repr of {kind} raised {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


# ---------------------------------------------------------------------------------------------
# Sentry and other free-form channels


def scrub_argv(argv: Iterable[Any], policy: RedactionPolicy | None = None) -> list[str]:
    """A command line with credentials hidden: values in it (``--define AMQP_URI=pyamqp://guest:
    guest@…``, ``--token=…``) and the argument after a secret-named flag (``--password x``)."""
    policy = policy or active_policy()
    out: list[str] = []
    hide_next = False
    for item in argv:
        text = str(item)
        if hide_next and not text.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = text.startswith("-") and "=" not in text and policy.is_secret_name(text)
        out.append(policy.redact_text(text))
    return out


def scrub(value: Any, policy: RedactionPolicy | None = None, *, depth: int = SCRUB_MAX_DEPTH
          ) -> Any:
    """A JSON-like structure (a Sentry event, a span's attributes) with values under secret keys
    hidden and secret values in strings replaced, walked up to ``depth`` levels and
    :data:`SCRUB_MAX_ITEMS` items per container (what is deeper or further is dropped)."""
    policy = policy or active_policy()
    if isinstance(value, str):
        return policy.redact_text(value) if len(value) >= 6 else value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth <= 0:
        return "<deeper values dropped>"
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= SCRUB_MAX_ITEMS:
                break
            if isinstance(k, str) and k.endswith("argv") and isinstance(v, (list, tuple)):
                out[k] = scrub_argv(v, policy)  # extra["sys.argv"]
            elif (isinstance(k, str) and policy.is_secret_name(k)
                  and not (v is None or v == "" or v == [] or v == {} or v == REDACTED
                           or v == _REDACTED_REPR)):
                out[k] = REDACTED
            else:
                out[k] = scrub(v, policy, depth=depth - 1)
        return out
    if isinstance(value, (list, tuple)):
        return [scrub(v, policy, depth=depth - 1) for v in list(value)[:SCRUB_MAX_ITEMS]]
    return safe_repr(value, DEFAULT_REPR_LIMIT, policy)


# Sentry event fields that are structure, not data: never renamed or hidden by name
_SENTRY_KEEP = frozenset({"event_id", "timestamp", "start_timestamp", "level", "platform",
                          "logger", "type", "release", "environment", "server_name", "sdk",
                          "transaction", "transaction_info", "fingerprint"})


def scrub_event(event: Any, hint: Any = None) -> Any:
    """Sentry's ``before_send``: the whole event scrubbed (``extra`` with ``sys.argv``, contexts,
    exception messages, breadcrumbs, log messages, request data). Never raises; on failure the
    event is dropped rather than sent unscrubbed."""
    try:
        policy = active_policy()
        out = {}
        for key, value in event.items():
            out[key] = value if key in _SENTRY_KEEP else scrub(value, policy)
        return out
    except BaseException:
        return None


def scrub_breadcrumb(crumb: Any, hint: Any = None) -> Any:
    """Sentry's ``before_breadcrumb``: a log line or breadcrumb with secrets hidden."""
    try:
        policy = active_policy()
        return {k: (v if k in ("timestamp", "level", "category", "type") else scrub(v, policy))
                for k, v in crumb.items()}
    except BaseException:
        return None


def exception_attributes(exc: BaseException, policy: RedactionPolicy | None = None
                         ) -> dict[str, str]:
    """OTel's exception event attributes (``exception.message``, ``exception.stacktrace``)
    with secrets hidden: pass them to ``span.record_exception(exc, attributes=...)``."""
    policy = policy or active_policy()
    try:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    except BaseException:
        lines = []
    text = "".join(policy.redact_text(line) for line in lines[-200:])
    return {"exception.message": exception_text(exc, 2000, policy),
            "exception.stacktrace": text[-20000:]}


def exception_text(exc: BaseException, limit: int = 300,
                   policy: RedactionPolicy | None = None) -> str:
    """``str(exc)`` (or a safe repr when that raises), bounded and with secrets hidden: what the
    worker history, Sentry and span statuses show of an exception."""
    policy = policy or active_policy()
    try:
        text = str(exc)
    except BaseException:
        return safe_repr(exc, limit, policy)
    text = policy.redact_text(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
