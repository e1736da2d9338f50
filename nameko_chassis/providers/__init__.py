"""The chassis providers: nameko ``DependencyProvider``s, each silent until configured and none
able to hurt a worker (every hook catches and logs). :class:`nameko_chassis.service.Service`
wires them all in; each can be used on its own.

- :mod:`.bookkeeping` — exact worker start times, recently finished workers;
- :mod:`.metrics` — Prometheus families, ``/metrics``;
- :mod:`.sentry` — error reporting through sentry-sdk;
- :mod:`.tracing` — OpenTelemetry spans over OTLP/HTTP;
- :mod:`.health` — ``/health/live`` and ``/health/ready``;
- :mod:`.http` — the process's one chassis HTTP server behind ``/metrics`` and ``/health``.
"""
