"""nameko-chassis 3.2.0's dependency providers and Sentry/OpenTelemetry set-up helpers, kept
for its users. Each delegates to the chassis where the chassis does it better:

- :class:`ContainerProvider` — the worker's ``ServiceContainer`` (``Service.container``);
- :class:`ServiceDiscoveryProvider` — a :class:`~nameko_chassis.discovery.ServiceDiscovery`
  over the chassis' management API client (pyrabbit is not needed);
- :func:`setup_sentry_sdk` — ``sentry_sdk.init`` with 3.2.0's defaults, through the chassis'
  init, so ``Service.sentry`` reports each failed worker once, with its redacted context;
- :func:`before_send_filter`, :func:`filter_transactions` — 3.2.0's event filters;
- :func:`add_sentry_service` — a global ``TracerProvider`` exporting over OTLP/HTTP and to
  Sentry (3.2.0's; the chassis ``tracing`` provider needs none of it).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from nameko.extensions import DependencyProvider

from .discovery import ManagementClient, ServiceDiscovery
from .providers.sentry import init_sentry_sdk
from .service import ContainerProvider

logger = logging.getLogger(__name__)

__all__ = ["ContainerProvider", "ServiceDiscoveryProvider", "add_sentry_service",
           "before_send_filter", "filter_transactions", "setup_sentry_sdk"]


class ServiceDiscoveryProvider(DependencyProvider):
    """Gives workers a :class:`~nameko_chassis.discovery.ServiceDiscovery` of the cluster whose
    management API is at ``management_host`` (``"host:port"``, as pyrabbit takes it)."""

    def __init__(self, management_host: str, username: str, password: str) -> None:
        self.management_host = management_host
        self.username = username
        self.password = password

    def get_dependency(self, worker_ctx: Any) -> ServiceDiscovery:
        return ServiceDiscovery(ManagementClient(self.management_host, self.username,
                                                 self.password))


def setup_sentry_sdk(**kwargs: Any) -> None:
    """Initialise Sentry once per process with 3.2.0's defaults, overridden by ``kwargs``
    (forwarded to ``sentry_sdk.init``): release ``$APP_VERSION``, environment
    ``$SENTRY_ENVIRONMENT``, dsn ``$SENTRY_DSN``, tracing on with the OpenTelemetry
    instrumenter, :func:`before_send_filter` and :func:`filter_transactions`.

    Skipped (logged) without a DSN; an invalid DSN is logged and exits the process, as in 3.2.0.
    The chassis' Sentry provider then reports with this SDK set-up instead of its own.
    """
    from sentry_sdk.utils import BadDsn

    defaults: dict[str, Any] = {
        "release": os.environ.get("APP_VERSION", None),
        "environment": os.environ.get("SENTRY_ENVIRONMENT", None),
        "dsn": os.environ.get("SENTRY_DSN", None),
        "traces_sample_rate": 1.0,
        "enable_tracing": True,
        "before_send": before_send_filter,
        "before_send_transaction": filter_transactions,
        "instrumenter": "otel",
    }
    params = defaults | kwargs
    if params["dsn"] is None:
        logger.info("Skipped sentry init; no DSN configured")
        return
    try:
        init_sentry_sdk(by_caller=True, **params)
        logger.info("Sentry SDK ready")
    except BadDsn as err:
        logger.exception("Error initializing Sentry integration", extra={"error": str(err)})
        sys.exit(1)


def before_send_filter(event: Any, hint: Any) -> Any:
    """Drop log events whose message contains ``Retryable error:``; keep everything else."""
    record = hint.get("log_record") if isinstance(hint, dict) else None
    if record is not None and "Retryable error:" in record.getMessage():
        return None
    return event


def filter_transactions(event: Any, hint: Any) -> Any:
    """Drop the transactions of ``/metrics`` (scrapes); keep everything else."""
    if event.get("transaction") == "/metrics":
        return None
    return event


def add_sentry_service(service_name: str) -> None:
    """Install a global ``TracerProvider`` for ``service_name`` that exports over OTLP/HTTP
    (``$OTEL_EXPORTER_OTLP_ENDPOINT``) and to Sentry, with Sentry's propagator (3.2.0's set-up
    for opentelemetry-instrumentation-nameko)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from sentry_sdk.integrations.opentelemetry import SentryPropagator, SentrySpanProcessor

    provider = TracerProvider(resource=Resource(attributes={SERVICE_NAME: service_name}))
    provider.add_span_processor(SentrySpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    set_global_textmap(SentryPropagator())
