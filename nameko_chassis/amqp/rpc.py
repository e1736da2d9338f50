"""A small nameko RPC client over kombu, without nameko or eventlet.

The console (discovery's ``describe()`` calls) and the test harness use it from plain threads or
asyncio processes, where nameko's own clients would need eventlet. It speaks nameko 3's wire
format: a JSON body ``{"args": [...], "kwargs": {...}}`` published to the ``nameko-rpc`` topic
exchange with routing key ``service.method``, context data as ``nameko.<key>`` headers, and the
reply routed back to an exclusive queue bound with its own name.

Errors: :class:`RpcError` (the remote method raised; ``exc_type`` names it), :class:`RpcTimeout`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import kombu

from ..errors import ChassisError

HEADER_PREFIX = "nameko"


class RpcError(ChassisError):
    """The remote method raised. ``exc_type`` and ``exc_path`` name the remote exception."""

    def __init__(self, exc_type: str, value: str, exc_path: str = "") -> None:
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type
        self.exc_path = exc_path
        self.value = value


class RpcTimeout(ChassisError):
    """No reply within the timeout."""


@dataclass
class PendingCall:
    client: RpcClient
    correlation_id: str
    service: str
    method: str
    sent_at: float = field(default_factory=time.monotonic)

    def result(self, timeout: float | None = None) -> Any:
        return self.client.wait(self, timeout)

    def __repr__(self) -> str:
        return f"<PendingCall {self.service}.{self.method} {self.correlation_id[:8]}>"


class RpcClient:
    """Call nameko RPC methods. Use from one thread at a time; close() (or ``with``) when done."""

    def __init__(self, amqp_uri: str, *, exchange: str = "nameko-rpc", timeout: float = 30.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._connection = kombu.Connection(amqp_uri, connect_timeout=5)
        self._exchange = kombu.Exchange(exchange, type="topic", durable=True)
        self._reply_name = f"rpc.reply-chassis-{uuid.uuid4()}"
        self._replies: dict[str, dict[str, Any]] = {}
        channel = self._connection.channel()
        self._exchange(channel).declare()
        queue = kombu.Queue(
            self._reply_name,
            exchange=self._exchange,
            routing_key=self._reply_name,
            exclusive=True,
            auto_delete=True,
        )
        self._consumer = kombu.Consumer(
            channel, queues=[queue], callbacks=[self._on_reply], no_ack=True, accept=["json"]
        )
        self._consumer.consume()
        self._producer = kombu.Producer(self._connection.channel())

    def __repr__(self) -> str:
        return f"<RpcClient {self._reply_name}>"

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._connection.release()
        except Exception:
            pass

    def _on_reply(self, body: dict[str, Any], message: Any) -> None:
        correlation_id = message.properties.get("correlation_id")
        if correlation_id:
            self._replies[correlation_id] = body

    def call_async(
        self,
        service: str,
        method: str,
        *args: Any,
        context: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PendingCall:
        correlation_id = str(uuid.uuid4())
        headers = {f"{HEADER_PREFIX}.{k}": v for k, v in (context or {}).items() if v is not None}
        self._producer.publish(
            {"args": list(args), "kwargs": kwargs},
            exchange=self._exchange,
            routing_key=f"{service}.{method}",
            reply_to=self._reply_name,
            correlation_id=correlation_id,
            headers=headers,
            serializer="json",
            retry=True,
        )
        return PendingCall(self, correlation_id, service, method)

    def call(
        self,
        service: str,
        method: str,
        *args: Any,
        context: dict[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        return self.call_async(service, method, *args, context=context, **kwargs).result(timeout)

    def wait(self, call: PendingCall, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while call.correlation_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcTimeout(f"no reply from {call.service}.{call.method} in time")
            try:
                self._connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        body = self._replies.pop(call.correlation_id)
        error = body.get("error")
        if error:
            raise RpcError(
                error.get("exc_type", "Exception"), str(error.get("value", "")),
                error.get("exc_path", ""),
            )
        return body.get("result")
