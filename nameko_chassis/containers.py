"""nameko-chassis 3.2.0's container class, kept for its users (``SERVICE_CONTAINER_CLS``).

::

    SERVICE_CONTAINER_CLS: nameko_chassis.containers.ServiceContainerWithLogging
"""

from __future__ import annotations

import logging
import os

from nameko.containers import ServiceContainer

logger = logging.getLogger(__name__)

__all__ = ["ServiceContainerWithLogging"]


class ServiceContainerWithLogging(ServiceContainer):
    """A ``ServiceContainer`` that logs ``Service <name> version <version> is ready`` once
    started. The version is the service class's ``version``, else ``$APP_VERSION``, else
    ``unknown`` (3.2.0 read only ``$APP_VERSION``)."""

    def start(self) -> None:
        super().start()
        version = getattr(self.service_cls, "version", "") or os.environ.get("APP_VERSION") or \
            "unknown"
        logger.info(f"Service {self.service_name} version {version} is ready")
