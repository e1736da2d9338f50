"""The wire format between the console and the agent, both directions, in one place.

A request is one line the backdoor evaluates::

    __chassis__.handle(globals(), "collect", "<base64 JSON of keyword arguments>")

A reply is exactly one frame, written in a single write, followed by the backdoor's prompt::

    \\x1e\\x1eCHASSIS <kind> <length> <stall_ms>\\n<payload>\\n

``kind`` is ``j`` (JSON), ``z`` (zlib-compressed JSON, base64) or ``e`` (error: JSON with
``type``, ``message``, ``traceback``). The payload is ASCII, so ``length`` counts bytes and
characters alike. ``stall_ms`` is how long the request held the service's hub up to the write.
The agent then writes a trailer with the whole hold, write included::

    \x1e\x1eSTALL <stall_ms>\n

timed from when the hub switched the backdoor's greenlet in with the request line (read,
compile, handle, encode, write; see ``agent.handle``). :func:`decode_frame` returns the
trailer's figure when there is one (the watchdog's answers have none).

Snapshots travel with two optional extras that stay shared up to the console's model:

- ``frames`` (top level): every distinct stack frame once; stacks (and finished workers'
  tracebacks) are lists of indexes into it (the agent sends its process-wide frame table up
  to the highest index used, so a parked worker's stack encodes once);
- ``unchanged`` (per container): call ids of workers sent before on this connection, still
  parked where they were (see ``agent.collect``); or instead ``unchanged_except``: every
  worker of the container's previous snapshot is, but those named and those sent in full
  (shorter while few workers come and go: ``[]`` when none did);
- ``history_kept`` (per container, delta refreshes): the container's ``history`` is the last
  ``history_kept`` entries of the previous snapshot's, then the entries sent in this one.

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

from . import frames as frame_table

#: The one name the agent takes in the backdoor's shared namespace.
AGENT_NAME = "__chassis__"
FRAME_MARK = "\x1e\x1eCHASSIS "
STALL_MARK = "\x1e\x1eSTALL "
PAGE_MARK = "\x1e\x1ePAGE "
#: Payloads larger than this are compressed. Below it, compressing costs the hub more than
#: writing the bytes to the backdoor's (loopback) socket: a first refresh at 1000 workers is
#: ~280 KB, written in ~0.15 ms, where zlib (level 1) and base64 take ~0.9 ms. Full dumps of
#: several thousand workers (megabytes) still travel compressed.
COMPRESS_OVER = 1024 * 1024
#: The agent's version when it runs in-process; the console sets a hash of the shipped sources.
DEV_VERSION = "dev"


def encode_frame(kind: str, payload: str, stall_ms: float) -> str:
    return f"{FRAME_MARK}{kind} {len(payload)} {stall_ms:.3f}\n{payload}\n"


def stall_trailer(stall_ms: float) -> str:
    return f"{STALL_MARK}{stall_ms:.3f}\n"


class Encoded(str):
    """A result that is JSON text already (:func:`encode_snapshot`'s)."""


def result_payload(result: Any) -> tuple[str, str]:
    """``(kind, payload)`` of a result: JSON, compressed when large."""
    text = result if isinstance(result, Encoded) else _dumps(result)
    if len(text) > COMPRESS_OVER:
        return "z", base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")
    return "j", text


def result_frame(result: Any, t0: float) -> str:
    kind, text = result_payload(result)
    return encode_frame(kind, text, (time.perf_counter() - t0) * 1000)


def error_payload(exc: BaseException) -> str:
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        tb = ""
    body = {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-20000:]}
    return json.dumps(body)


def error_frame(exc: BaseException, t0: float) -> str:
    return encode_frame("e", error_payload(exc), (time.perf_counter() - t0) * 1000)


# one encoder, made once: json.dumps with these options builds a new one on every call
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


def encode_snapshot(snapshot: dict[str, Any]) -> Encoded:
    """The JSON of a snapshot the collector made with ``encoded=True``: its workers are JSON
    texts already and its stacks frame-table indexes; finished workers' tracebacks become
    indexes here (on copies: the bookkeeping's entries stay as they are), and ``frames`` is the
    table up to the highest index used. Built by joining texts, so that nothing a worker
    carries is encoded twice; a container's or the snapshot's other fields go through
    ``json.dumps`` as usual."""
    top = int(snapshot.pop("frames_used", -1))
    parts = []
    for container in snapshot.pop("containers"):
        workers = container.pop("workers")
        history = container.get("history")
        if history:
            out = []
            for entry in history:
                tb = entry.get("traceback") if isinstance(entry, dict) else None
                if tb:
                    refs = [frame_table.index_of(f) for f in tb]
                    top = max(top, *refs)
                    entry = {**entry, "traceback": refs}
                out.append(entry)
            container["history"] = out
        parts.append(f'{_dumps(container)[:-1]},"workers":[{",".join(workers)}]}}')
    text = f'{_dumps(snapshot)[:-1]},"containers":[{",".join(parts)}]'
    if top >= 0:
        text += f',"frames":[{",".join(frame_table.table_json[: top + 1])}]'
    return Encoded(text + "}")


class WireError(ValueError):
    """Bytes that are not a well-formed frame."""


def decode_frame(raw: bytes, start: int) -> tuple[str, Any, float]:
    """``(kind, decoded JSON, stall_ms)`` of the frame whose mark begins at ``raw[start]``;
    ``stall_ms`` is the trailer's when one follows the frame."""
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
    trailer = header_end + 1 + length + 1
    stall = STALL_MARK.encode()
    if raw.startswith(stall, trailer):
        end = raw.find(b"\n", trailer)
        try:
            stall_ms = float(raw[trailer + len(stall): end if end >= 0 else None])
        except ValueError:
            raise WireError("malformed stall trailer") from None
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
