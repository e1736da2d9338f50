"""Bounded reprs and redaction: nothing secret, and nothing unbounded, leaves the service.

- :func:`safe_repr`: a repr of at most ``limit`` characters that never raises;
- :func:`redacted_arguments`: a worker's arguments with the entrypoint's ``sensitive_arguments``
  hidden (nameko's ``get_redacted_args``);
- :func:`redact_mapping`: context data with secret-looking keys (:data:`SECRET_KEY_PATTERNS`)
  hidden and values bounded.

Every channel that shows arguments or context data (snapshots, Sentry, history) goes through
these functions.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

#: Characters kept of any one repr (arguments, context values).
DEFAULT_REPR_LIMIT = 200
#: Positional + keyword arguments shown per worker.
DEFAULT_MAX_ARGS = 20
#: Context-data keys shown per worker.
DEFAULT_MAX_CONTEXT_KEYS = 30

#: Context-data keys matching any of these (case-insensitive, ignoring ``-``/``_``/spaces)
#: are redacted.
SECRET_KEY_PATTERNS: tuple[str, ...] = (
    "authorization", "auth", "cookie", "password", "passwd", "pwd", "secret", "token",
    "apikey", "accesskey", "privatekey", "session", "credential", "signature", "jwt", "dsn",
)
REDACTED = "********"

_NORMALISE = re.compile(r"[-_\s.]")


def _make_repr(limit: int) -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = 10
    r.maxdict = 10
    r.maxlevel = 3
    return r


_reprs: dict[int, reprlib.Repr] = {}


def safe_repr(value: Any, limit: int = DEFAULT_REPR_LIMIT) -> str:
    """A repr of ``value`` that is at most ``limit`` characters and never raises."""
    r = _reprs.get(limit)
    if r is None:
        r = _reprs[limit] = _make_repr(limit)
    try:
        text = r.repr(value)
    except BaseException as exc:
        try:
            kind = type(value).__name__
        except BaseException:
            kind = "object"
        return f"<repr of {kind} raised {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def is_secret_key(key: Any, patterns: Iterable[str] = SECRET_KEY_PATTERNS) -> bool:
    norm = _NORMALISE.sub("", str(key)).lower()
    return any(p in norm for p in patterns)


def _plain(value: Any, limit: int) -> Any:
    """JSON-safe context value: small primitives as they are, anything else as a safe repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[: max(limit - 3, 0)] + "..."
    return safe_repr(value, limit)


def redact_mapping(
    data: Mapping[Any, Any],
    patterns: Iterable[str] = SECRET_KEY_PATTERNS,
    *,
    limit: int = DEFAULT_REPR_LIMIT,
    max_keys: int = DEFAULT_MAX_CONTEXT_KEYS,
) -> dict[str, Any]:
    """A JSON-safe copy of ``data`` with secret-looking keys redacted and values bounded."""
    patterns = tuple(patterns)
    out: dict[str, Any] = {}
    try:
        items = list(data.items())
    except BaseException:
        return {"<error>": "<context data could not be read>"}
    for i, (key, value) in enumerate(items):
        if i >= max_keys:
            out["<more>"] = f"{len(items) - max_keys} more keys"
            break
        name = str(key)[:limit]
        out[name] = REDACTED if is_secret_key(name, patterns) else _plain(value, limit)
    return out


def redacted_arguments(
    entrypoint: Any, args: Any, kwargs: Any, *, limit: int = DEFAULT_REPR_LIMIT,
    max_args: int = DEFAULT_MAX_ARGS,
) -> tuple[list[str], dict[str, str]]:
    """Reprs of a worker's arguments, with the entrypoint's ``sensitive_arguments`` redacted.

    With sensitive arguments the call is bound to parameter names (nameko's
    ``get_redacted_args``), so every argument comes back as a keyword.
    """
    args = tuple(args or ())
    kwargs = dict(kwargs or {})
    if getattr(entrypoint, "sensitive_arguments", None):
        try:
            from nameko.utils import get_redacted_args  # only ever runs inside a service

            callargs = get_redacted_args(entrypoint, *args, **kwargs)
            callargs.pop("self", None)
            shown = list(callargs.items())[:max_args]
            return [], {str(k): safe_repr(v, limit) for k, v in shown}
        except BaseException as exc:
            return [f"<arguments hidden: redaction failed ({type(exc).__name__})>"], {}
    arg_reprs = [safe_repr(a, limit) for a in args[:max_args]]
    if len(args) > max_args:
        arg_reprs.append(f"<{len(args) - max_args} more>")
    kw_reprs = {str(k): safe_repr(v, limit) for k, v in list(kwargs.items())[:max_args]}
    return arg_reprs, kw_reprs
