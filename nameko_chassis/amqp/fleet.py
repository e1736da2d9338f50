"""The fleet over AMQP: the wire format, both directions, and the console's broadcast client.

Every chassis process consumes one exclusive, auto-delete queue bound to the fanout exchange
:data:`EXCHANGE` of its vhost (:mod:`nameko_chassis.providers.fleet`). A console publishes ONE
request per refresh to that exchange, so every process gets a copy, and gathers the replies on
an exclusive queue of its own until a deadline, as Celery's ``inspect`` does.

Request (console -> every process), JSON, properties ``reply_to``, ``correlation_id`` and
``expiration`` (a request no process took within the deadline is dropped by the broker)::

    {"v": 1, "op": "collect" | "hello",
     "stacks": "none" | "all" | [call ids],   # full stacks only for these workers
     "max_workers": 100,                      # listed per container, oldest first
     "history": 10,                           # recently finished kept per container (null: all)
     "structures": [hash, ...]}               # container structures the console already has

Reply (one process -> the console's queue): JSON, zlib-compressed when larger than
:data:`COMPRESS_OVER` (header ``chassis-encoding: zlib``); headers ``chassis-stall-ms`` (how
long building it held the process's hub, wall clock), ``chassis-cpu-ms`` (the CPU time of
the same: the stall without the time the OS gave to other processes) and ``chassis-bytes``::

    {"v": 1, "op": "collect", "rate_limited": false,
     "replica": {"id", "host", "pid", "services", "versions", "chassis", "nameko", "python",
                 "started_at", "uptime_s"},
     "snapshot": <schema v1, stacks as indexes into "frames" (probe.wire.share_frames); each
                  container has "structure" (a hash), and its entrypoints, dependencies and
                  subextensions only when the console did not list that hash>}

Replicas of one service share their structure, so the static part travels once per service,
not once per replica and refresh. Only read-only operations exist on this path.

kombu only (no nameko, no eventlet): the console uses :class:`Broadcast` from a plain thread;
the service side uses the encoders from its own greenthread.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kombu

#: The fanout exchange every chassis process of a vhost listens on.
EXCHANGE = "chassis.introspect"
PROTOCOL = 1
OPS = ("hello", "collect")
#: Replies larger than this (bytes of JSON) are zlib-compressed.
COMPRESS_OVER = 16 * 1024
#: A process's request queue keeps at most this many requests (the oldest are dropped): a
#: flood piles up at the broker, bounded, not in the service.
REQUEST_QUEUE_LENGTH = 16
#: Call ids a request may name for full stacks.
MAX_STACK_IDS = 100
#: Seconds a request waits at most in a process's queue (at least; else the ask's deadline):
#: a process that was stalled does not answer a backlog of requests nobody waits for.
MIN_EXPIRATION = 0.25
#: Earlier requests whose late replies are still taken.
RECENT_REQUESTS = 8
#: Prefix of the console's reply queues (exclusive, auto-delete).
REPLY_PREFIX = "chassis.fleet.reply-"

HEADER_ENCODING = "chassis-encoding"
HEADER_STALL = "chassis-stall-ms"
HEADER_CPU = "chassis-cpu-ms"
HEADER_BYTES = "chassis-bytes"


class FleetProtocolError(ValueError):
    """A request or reply that does not follow the fleet wire format."""


def exchange() -> kombu.Exchange:
    # durable: every process and console declares it with the same arguments, and it survives
    # the last one leaving (an exchange is cheap; a declare that disagrees would fail)
    return kombu.Exchange(EXCHANGE, type="fanout", durable=True)


def request_queue(host: str, pid: int, boot: str) -> kombu.Queue:
    """The one queue of a process: exclusive (gone with its connection), bounded."""
    return kombu.Queue(
        f"{EXCHANGE}.{host}.{pid}.{boot}", exchange=exchange(), exclusive=True, auto_delete=True,
        queue_arguments={"x-max-length": REQUEST_QUEUE_LENGTH, "x-overflow": "drop-head"})


# -- requests ---------------------------------------------------------------------------------


def request(op: str = "collect", *, stacks: str | list[str] = "none", max_workers: int = 100,
            history: int | None = 10, structures: list[str] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL, "op": op, "stacks": stacks, "max_workers": max_workers,
            "history": history, "structures": list(structures or [])}


def parse_request(body: bytes | str) -> dict[str, Any]:
    """A request as the responder may act on it: known op, bounded, typed. Raises
    :class:`FleetProtocolError` for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FleetProtocolError("request is not JSON") from None
    if not isinstance(data, dict):
        raise FleetProtocolError("request is not an object")
    op = data.get("op")
    if op not in OPS:
        raise FleetProtocolError(f"unknown operation {op!r} (read-only: {', '.join(OPS)})")
    stacks = data.get("stacks", "none")
    if isinstance(stacks, list):
        stacks = [str(s) for s in stacks[:MAX_STACK_IDS]]
    elif stacks not in ("none", "all"):
        raise FleetProtocolError(f"stacks must be 'none', 'all' or call ids, not {stacks!r}")
    try:
        max_workers = max(0, min(int(data.get("max_workers", 100)), 1000))
        history = data.get("history")
        history = None if history is None else max(0, int(history))
    except (TypeError, ValueError):
        raise FleetProtocolError("max_workers and history must be integers") from None
    structures = data.get("structures") or []
    if not isinstance(structures, list):
        raise FleetProtocolError("structures must be a list")
    return {"op": op, "stacks": stacks, "max_workers": max_workers, "history": history,
            "structures": frozenset(str(s) for s in structures[:1000])}


# -- replies ----------------------------------------------------------------------------------


def encode_reply(reply: dict[str, Any]) -> tuple[bytes, str]:
    """(body, encoding): compact JSON, zlib level 1 when large (cheap on the hub, ~5x smaller)."""
    body = json.dumps(reply, separators=(",", ":"), default=str).encode()
    if len(body) > COMPRESS_OVER:
        return zlib.compress(body, 1), "zlib"
    return body, "identity"


def decode_reply(body: bytes, headers: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(body, str):
        body = body.encode()
    if (headers or {}).get(HEADER_ENCODING) == "zlib":
        try:
            body = zlib.decompress(body)
        except zlib.error:
            raise FleetProtocolError("reply does not decompress") from None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FleetProtocolError("reply is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("replica"), dict):
        raise FleetProtocolError("reply has no replica identity")
    return data


@dataclass
class Reply:
    """One process's answer, as the console received it."""

    data: dict[str, Any]
    correlation_id: str
    #: bytes of the message body on the wire (compressed when it was)
    size: int
    #: how long building the reply held the service's hub, as the service measured it
    stall_ms: float | None
    received: float  # time.monotonic()
    #: the CPU time of the same (the stall minus what other processes took meanwhile)
    cpu_ms: float | None = None

    @property
    def replica_id(self) -> str:
        return str(self.data["replica"].get("id") or "")


def consumed_queues(service: str, entrypoints: Iterable[tuple[str, str, Mapping[str, Any]]]
                    ) -> dict[str, tuple[str, set[str]]]:
    """The queues a nameko service consumes, by name, from its entrypoints as a snapshot lists
    them ((method, type, details)): ``rpc-<service>`` (every ``@rpc``), a ``@consume``'s queue,
    an ``@event_handler``'s ``evt-<source>-<event>--<service>.<method>`` (service pool) or
    ``evt-<source>-<event>`` (singleton). Broadcast handlers' queues are each replica's own
    (exclusive), so they are left out. queue -> (entrypoint type, method names)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for method, kind, details in entrypoints:
        if kind == "rpc":
            name: str | None = f"rpc-{service}"
        elif kind == "consumer":
            name = str(details.get("queue") or "") or None
        elif kind == "event_handler":
            source, event = details.get("source_service"), details.get("event_type")
            handler_type = str(details.get("handler_type") or "service_pool")
            name = (f"evt-{source}-{event}--{service}.{method}" if handler_type == "service_pool"
                    else f"evt-{source}-{event}" if handler_type == "singleton" else None)
        else:
            name = None
        if name:
            out.setdefault(name, (kind, set()))[1].add(method)
    return out


class Broadcast:
    """Publish one request to every process of a vhost and gather the replies by a deadline.

    Blocking, one call at a time (the console's poller thread). Replies to an earlier request
    that arrive late are not lost: the next :meth:`ask` returns them too (``Reply.correlation_id``
    tells which request they answer), so a replica slower than the deadline still shows.
    """

    def __init__(self, amqp_uri: str, *, connect_timeout: float = 5.0,
                 ssl: Any = None) -> None:
        self.amqp_uri = amqp_uri
        self._connection = kombu.Connection(amqp_uri, connect_timeout=connect_timeout, ssl=ssl)
        self.reply_queue = f"{REPLY_PREFIX}{uuid.uuid4()}"
        self._replies: list[Reply] = []
        self._recent: list[str] = []  # correlation ids of our last requests
        self.request_bytes = 0
        self.last_correlation_id = ""
        channel = self._connection.channel()
        exchange()(channel).declare()
        queue = kombu.Queue(self.reply_queue, exclusive=True, auto_delete=True)
        self._consumer = kombu.Consumer(channel, queues=[queue], no_ack=True,
                                        on_message=self._on_message)
        self._consumer.consume()
        self._producer = kombu.Producer(self._connection.channel())
        self._declare_channel: Any = None  # passive declares (the backlog column), lazily

    def __repr__(self) -> str:
        return f"<Broadcast {self.reply_queue}>"

    def __enter__(self) -> Broadcast:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._connection.release()
        except Exception:  # closing a broken connection may fail; nothing left to do
            pass

    def _on_message(self, message: Any) -> None:
        correlation_id = str(message.properties.get("correlation_id") or "")
        if correlation_id not in self._recent:
            return  # an answer to a request we no longer remember
        headers = message.headers or {}
        try:
            data = decode_reply(message.body, headers)
        except FleetProtocolError:
            return  # not a chassis reply; nothing to show of it
        stall, cpu = headers.get(HEADER_STALL), headers.get(HEADER_CPU)
        self._replies.append(Reply(data, correlation_id, len(message.body),
                                   float(stall) if isinstance(stall, (int, float)) else None,
                                   time.monotonic(),
                                   float(cpu) if isinstance(cpu, (int, float)) else None))

    def declare_passive(self, names: Iterable[str]) -> dict[str, tuple[int, int] | str]:
        """queue -> (messages ready, consumers), or why not (a refusal such as 404 closes the
        channel, so each refusal costs a new one). Passive: never creates a queue."""
        out: dict[str, tuple[int, int] | str] = {}
        for name in names:
            channel = self._declare_channel
            if channel is None or not channel.is_open:
                channel = self._declare_channel = self._connection.channel()
            try:
                ok = channel.queue_declare(queue=name, passive=True)
            except self._connection.channel_errors as exc:  # amqp's ChannelError and kin
                self._declare_channel = None
                out[name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            out[name] = (int(ok.message_count), int(ok.consumer_count))
        return out

    def ask(self, body: dict[str, Any], *, deadline: float,
            done: Callable[[list[Reply]], bool] | None = None) -> list[Reply]:
        """Publish ``body`` once; return the replies received until ``deadline`` seconds have
        passed or ``done(replies so far)`` says enough (checked after every reply).
        Includes late replies to the previous requests (their ``correlation_id`` differs)."""
        correlation_id = uuid.uuid4().hex
        self._recent = (self._recent + [correlation_id])[-RECENT_REQUESTS:]
        self.last_correlation_id = correlation_id
        payload = json.dumps(body, separators=(",", ":"))
        self.request_bytes = len(payload)
        self._producer.publish(
            payload, exchange=EXCHANGE, routing_key="", content_type="application/json",
            content_encoding="utf-8", reply_to=self.reply_queue, correlation_id=correlation_id,
            expiration=max(deadline, MIN_EXPIRATION), retry=False)
        return self._gather(correlation_id, deadline, done)

    def gather(self, seconds: float) -> list[Reply]:
        """Replies to the recent requests that arrive within ``seconds``, without asking again."""
        return self._gather("", seconds, None)

    def _gather(self, correlation_id: str, deadline: float,
                done: Callable[[list[Reply]], bool] | None) -> list[Reply]:
        end = time.monotonic() + deadline
        while True:
            current = [r for r in self._replies if r.correlation_id == correlation_id]
            if done is not None and done(current):
                break
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._connection.drain_events(timeout=remaining)
            except TimeoutError:
                break
        replies, self._replies = self._replies, []
        return replies
