"""RabbitMQ helpers that need neither nameko nor eventlet: AMQP URI parsing and a small client
for the management HTTP API (vhosts, queues, consumers).

Used by the console (``--demo``, ``--services``), discovery and the test harness.

Errors: :class:`ManagementError` (HTTP error or unreachable API), with a message naming the URL.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..errors import ChassisError

DEFAULT_AMQP_URI = "pyamqp://guest:guest@localhost:5672/"
DEFAULT_MANAGEMENT_PORT = 15672


class ManagementError(ChassisError):
    """The RabbitMQ management API could not be reached or refused a request."""


@dataclass(frozen=True)
class AmqpUri:
    """A parsed AMQP URI. ``vhost`` is decoded (``/`` for the default vhost)."""

    scheme: str
    host: str
    port: int
    username: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, uri: str) -> AmqpUri:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme not in ("amqp", "amqps", "pyamqp", "librabbitmq"):
            raise ValueError(f"not an AMQP URI: {uri!r} (expected pyamqp://user:pass@host:port/vhost)")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        vhost = urllib.parse.unquote(path) if path else "/"
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "localhost",
            port=parts.port or 5672,
            username=urllib.parse.unquote(parts.username or "guest"),
            password=urllib.parse.unquote(parts.password or "guest"),
            vhost=vhost,
        )

    def with_vhost(self, vhost: str) -> AmqpUri:
        return AmqpUri(self.scheme, self.host, self.port, self.username, self.password, vhost)

    def __str__(self) -> str:
        user = urllib.parse.quote(self.username, safe="")
        password = urllib.parse.quote(self.password, safe="")
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"{self.scheme}://{user}:{password}@{self.host}:{self.port}/{vhost}"

    def redacted(self) -> str:
        """The URI with the password hidden, for messages and logs."""
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"{self.scheme}://{self.username}:***@{self.host}:{self.port}/{vhost}"


def amqp_uri_from_env() -> AmqpUri:
    return AmqpUri.parse(os.environ.get("AMQP_URI", DEFAULT_AMQP_URI))


class ManagementApi:
    """A minimal client for the RabbitMQ management HTTP API.

    ``url`` defaults to ``http://<amqp host>:15672`` (``$RABBITMQ_MANAGEMENT_URL`` overrides it);
    credentials come from the AMQP URI.
    """

    def __init__(self, amqp: AmqpUri, url: str | None = None, timeout: float = 5.0) -> None:
        self.amqp = amqp
        self.url = (
            url
            or os.environ.get("RABBITMQ_MANAGEMENT_URL")
            or f"http://{amqp.host}:{DEFAULT_MANAGEMENT_PORT}"
        ).rstrip("/")
        self.timeout = timeout
        token = base64.b64encode(f"{amqp.username}:{amqp.password}".encode()).decode()
        self._auth = f"Basic {token}"

    def __repr__(self) -> str:
        return f"<ManagementApi {self.url} as {self.amqp.username}>"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raise ManagementError(
                f"RabbitMQ management API {method} {self.url}{path}: HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ManagementError(
                f"cannot reach the RabbitMQ management API at {self.url}: {reason} "
                "(is the rabbitmq_management plugin enabled?)"
            ) from None
        return json.loads(payload) if payload else None

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def create_vhost(self, vhost: str) -> None:
        self.request("PUT", f"/api/vhosts/{self._q(vhost)}")
        self.request(
            "PUT",
            f"/api/permissions/{self._q(vhost)}/{self._q(self.amqp.username)}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, vhost: str) -> None:
        try:
            self.request("DELETE", f"/api/vhosts/{self._q(vhost)}")
        except ManagementError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def vhosts(self) -> list[str]:
        return [v["name"] for v in self.request("GET", "/api/vhosts")]

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/api/queues/{self._q(vhost)}"))
