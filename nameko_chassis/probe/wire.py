"""The wire format between the console and the agent, both directions, in one place.

A request is one line the backdoor evaluates::

    __chassis__.handle(globals(), "collect", "<base64 JSON of keyword arguments>")

A reply is exactly one frame, written in a single write, followed by the backdoor's prompt::

    \\x1e\\x1eCHASSIS <kind> <length> <stall_ms>\\n<payload>\\n

``kind`` is ``j`` (JSON), ``z`` (zlib-compressed JSON, base64) or ``e`` (error: JSON with
``type``, ``message``, ``traceback``). The payload is ASCII, so ``length`` counts bytes and
characters alike. ``stall_ms`` is how long the request held the service's hub so far.

Snapshots travel with two optional extras that stay shared up to the console's model:

- ``frames`` (top level): every distinct stack frame once; stacks (and finished workers'
  tracebacks) are lists of indexes into it;
- ``unchanged`` (per container): call ids of workers sent before on this connection, still
  parked where they were (see ``agent.collect``).

Inside REPL output, a page for the console to render (``debug_runner()`` in a service without
nameko-chassis) travels as ``PAGE_MARK <length>\\n<snapshot JSON>\\n``.
"""

from __future__ import annotations

import base64
import json
import time
import traceback
import zlib
from typing import Any

FRAME_MARK = "\x1e\x1eCHASSIS "
PAGE_MARK = "\x1e\x1ePAGE "
#: Payloads larger than this are compressed.
COMPRESS_OVER = 128 * 1024
#: The agent's version when it runs in-process; the console sets a hash of the shipped sources.
DEV_VERSION = "dev"


def encode_frame(kind: str, payload: str, stall_ms: float) -> str:
    return f"{FRAME_MARK}{kind} {len(payload)} {stall_ms:.3f}\n{payload}\n"


def result_frame(result: Any, t0: float) -> str:
    text = json.dumps(result, separators=(",", ":"), default=str)
    kind = "j"
    if len(text) > COMPRESS_OVER:
        text = base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")
        kind = "z"
    return encode_frame(kind, text, (time.perf_counter() - t0) * 1000)


def error_frame(exc: BaseException, t0: float) -> str:
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        tb = ""
    body = {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-20000:]}
    return encode_frame("e", json.dumps(body), (time.perf_counter() - t0) * 1000)


class WireError(ValueError):
    """Bytes that are not a well-formed frame."""


def decode_frame(raw: bytes, start: int) -> tuple[str, Any, float]:
    """``(kind, decoded JSON, stall_ms)`` of the frame whose mark begins at ``raw[start]``."""
    mark = FRAME_MARK.encode()
    header_end = raw.find(b"\n", start)
    try:
        kind, length_text, stall_text = raw[start + len(mark):header_end].decode("ascii").split()
        length = int(length_text)
        stall_ms = float(stall_text)
    except (ValueError, UnicodeDecodeError):
        raise WireError("malformed frame header") from None
    body = raw[header_end + 1: header_end + 1 + length]
    if len(body) != length:
        raise WireError(f"truncated frame ({len(body)} of {length} bytes)")
    if kind == "z":
        try:
            body = zlib.decompress(base64.b64decode(body))
        except (ValueError, zlib.error):
            raise WireError("frame does not decompress") from None
    try:
        return kind, json.loads(body), stall_ms
    except ValueError:
        raise WireError("frame is not valid JSON") from None


def share_frames(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Send each distinct stack frame once: stacks become lists of indexes into a top-level
    ``frames`` table. Parked workers share most frames (the collector hands out one dict per
    code location), so at 1000 workers this cuts the JSON — the hub's main cost — by ~10x."""
    index: dict[int, int] = {}
    frames: list[Any] = []

    def refs(stack: list[Any]) -> list[int]:
        out = []
        for frame in stack:
            i = index.get(id(frame))
            if i is None:
                i = index[id(frame)] = len(frames)
                frames.append(frame)
            out.append(i)
        return out

    for container in snapshot["containers"]:
        for item in container["workers"] + container["managed_threads"]:
            if item.get("stack"):
                item["stack"] = refs(item["stack"])
        history = container.get("history") or []
        for i, entry in enumerate(history):
            if entry.get("traceback"):  # a copy: the bookkeeping's entry stays as it is
                history[i] = {**entry, "traceback": refs(entry["traceback"])}
    if frames:
        snapshot["frames"] = frames
    return snapshot


def encode_page(snapshot: dict[str, Any]) -> str:
    payload = json.dumps(snapshot, separators=(",", ":"), default=str)
    return f"{PAGE_MARK}{len(payload)}\n{payload}\n"


def split_pages(text: str) -> list[str | dict[str, Any]]:
    """REPL output as text pieces and page snapshots, in order; a malformed page stays text."""
    out: list[str | dict[str, Any]] = []
    while True:
        start = text.find(PAGE_MARK)
        if start < 0:
            break
        header_end = text.find("\n", start)
        try:
            length = int(text[start + len(PAGE_MARK):header_end])
            page = json.loads(text[header_end + 1: header_end + 1 + length])
        except ValueError:
            break
        if start:
            out.append(text[:start])
        out.append(page)
        text = text[header_end + 1 + length + 1:]
    if text:
        out.append(text)
    return out
