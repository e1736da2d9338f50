"""nameko-chassis 3.2.0's health helpers, kept for its users: :class:`ServiceTimeout` and
:func:`is_service_responsive`, a check that a service answers an RPC in time.

Its default method, ``say_hello``, is a base RPC method of every chassis service (old and new).
For a process's own health, see :mod:`nameko_chassis.providers.health` (``/health/live``,
``/health/ready``).
"""

from __future__ import annotations

import logging
from typing import Any

import eventlet

from .errors import ChassisError

logger = logging.getLogger(__name__)

__all__ = ["ServiceTimeout", "is_service_responsive"]


class ServiceTimeout(ChassisError):
    """The service did not answer within the timeout."""


def is_service_responsive(service_proxy: Any, fail_gracefully: bool = False,
                          timeout: float = 5, method_name: str = "say_hello") -> bool:
    """Call ``service_proxy.<method_name>()`` and wait at most ``timeout`` seconds.

    ``service_proxy`` is a nameko RPC client for one service (``ServiceRpc`` in a worker,
    ``ClusterRpcClient()["service"]``, ...). ``True`` when it answered; on a timeout, logs a
    warning and raises :class:`ServiceTimeout`, or returns ``False`` when ``fail_gracefully``.
    Any other error of the call (``RemoteError``, ``UnknownService``) is raised as it is.
    """
    try:
        with eventlet.Timeout(timeout, ServiceTimeout):
            getattr(service_proxy, method_name)()
            return True
    except ServiceTimeout:
        name = getattr(service_proxy, "service_name", None) or service_proxy
        message = f"{name} is unreachable after {timeout} seconds"
        logger.warning(message)
        if fail_gracefully:
            return False
        raise ServiceTimeout(message) from None
