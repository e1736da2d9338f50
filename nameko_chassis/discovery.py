"""nameko-chassis 3.2.0's service discovery, kept for its users: :class:`ServiceDiscovery` over a
pyrabbit-like management client (anything with ``.host`` and ``.get_queues()``), and
:class:`ManagementClient`, such a client over the chassis' own management API (no pyrabbit).

For more (instances, event handlers, versions, entrypoints of every service on a vhost), use
:func:`nameko_chassis.amqp.discovery.discover`.
"""

from __future__ import annotations

import logging
from typing import Any

from .amqp.discovery import DiscoveredService, discover
from .amqp.management import AmqpUri, ManagementApi

logger = logging.getLogger(__name__)

__all__ = ["DiscoveredService", "ManagementClient", "ServiceDiscovery", "discover"]

_RPC_PREFIX = "rpc-"


class ManagementClient:
    """The two calls of pyrabbit's ``Client`` that :class:`ServiceDiscovery` uses, over
    :class:`~nameko_chassis.amqp.management.ManagementApi`.

    ``host`` is pyrabbit's: ``"host:port"`` of the management API (no scheme).
    """

    def __init__(self, host: str, username: str = "guest", password: str = "guest", *,
                 timeout: float = 5.0) -> None:
        self.host = host
        name = host.rsplit(":", 1)[0] if ":" in host else host
        amqp = AmqpUri("pyamqp", name or "localhost", 5672, username, password, "/")
        self.api = ManagementApi(amqp, url=f"http://{host}", timeout=timeout)

    def __repr__(self) -> str:
        return f"<ManagementClient {self.host} as {self.api.amqp.username}>"

    def get_queues(self, vhost: str | None = None) -> list[dict[str, Any]]:
        """Queues of ``vhost``, or of every vhost (pyrabbit's default)."""
        if vhost is None:
            return list(self.api.request("GET", "/api/queues"))
        return self.api.queues(vhost)


class ServiceDiscovery:
    """The nameko services on a RabbitMQ cluster, from their RPC queues."""

    def __init__(self, client: Any) -> None:
        self.client = client
        logger.info(f"Service discovery ready: host={self.client.host}")

    def find_services(self) -> list[str]:
        """The service names of the ``rpc-<service>`` queues, in the client's order.

        Any service name counts (3.2.0 only listed names ending in ``_service``); a queue is
        listed whether or not a consumer is attached, as in 3.2.0.
        """
        return [queue["name"][len(_RPC_PREFIX):] for queue in self.client.get_queues()
                if self.is_nameko_service(queue["name"])]

    def is_nameko_service(self, queue_name: str) -> bool:
        """Whether ``queue_name`` is a nameko service's RPC queue (``rpc-<service>``)."""
        return queue_name.startswith(_RPC_PREFIX) and len(queue_name) > len(_RPC_PREFIX)
