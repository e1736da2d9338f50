"""The hub watchdog in a chassis service: started when the container starts, no console needed.

:class:`HubWatchdog` starts (or joins) the process's one watchdog
(:mod:`nameko_chassis.probe.watchdog`) and tells it the container and the backdoor port of
``nameko run --backdoor-port``. On top of what any service gets, each block over the threshold
is, once per process:

- observed by the ``nameko_hub_block_seconds`` histogram (labels ``service``, ``entrypoint`` of
  the culprit; empty when it was no worker) when Prometheus metrics are on;
- sent to Sentry as a warning event when it lasted at least ``CHASSIS.WATCHDOG_SENTRY_MS``
  (default 1000) and Sentry is configured: the culprit's stack as the event's thread, and its
  redacted arguments and context data (the watchdog redacts them like any snapshot).

Settings (nameko config, then environment): ``CHASSIS.WATCHDOG`` / ``$CHASSIS_WATCHDOG`` (on by
default), ``CHASSIS.WATCHDOG_THRESHOLD_MS`` / ``$CHASSIS_WATCHDOG_THRESHOLD_MS`` (250) and
``CHASSIS.WATCHDOG_SENTRY_MS`` / ``$CHASSIS_WATCHDOG_SENTRY_MS`` (1000).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from ..config import ConfigError, _bool, _pick, _section, load_settings, nameko_config
from ..probe import watchdog as probe_watchdog
from ..probe.schema import IncidentDict
from .metrics import ChassisMetrics
from .sentry import init_sentry

log = logging.getLogger(__name__)

#: Block durations (seconds) the histogram counts, from the default threshold up.
BLOCK_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DEFAULT_SENTRY_MS = 1000.0


def _ms(section: Mapping[str, Any], key: str, env: str, default: float) -> float:
    value = _pick(section, key, os.environ, env)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"CHASSIS.{key}: expected milliseconds, got {value!r}") from None


class BlockReporter:
    """The chassis' listener on the watchdog (one per process): metrics and Sentry. Runs on the
    hub, in the heartbeat greenthread, right after a block ends."""

    _histograms: dict[int, Histogram] = {}

    def __init__(self) -> None:
        self.histogram: Histogram | None = None
        self.sentry_over: float | None = None  # seconds; None: no Sentry

    def __repr__(self) -> str:
        return (f"<BlockReporter metrics={'on' if self.histogram else 'off'} "
                f"sentry={'off' if self.sentry_over is None else f'over {self.sentry_over}s'}>")

    def use_registry(self, registry: CollectorRegistry) -> None:
        metrics = ChassisMetrics.of(registry)  # the registry /metrics renders
        histogram = self._histograms.get(id(metrics.registry))
        if histogram is None:
            histogram = self._histograms[id(metrics.registry)] = Histogram(
                "nameko_hub_block_seconds", "Blocks of the eventlet hub over the watchdog's "
                "threshold: how long no other greenthread ran", ["service", "entrypoint"],
                buckets=BLOCK_BUCKETS, registry=metrics.registry)
        self.histogram = histogram

    def __call__(self, incident: IncidentDict) -> None:
        culprit: Any = incident.get("culprit") or {}
        if self.histogram is not None:
            try:
                self.histogram.labels(culprit.get("service") or "",
                                      culprit.get("entrypoint") or "").observe(
                    incident["duration_s"])
            except Exception:
                log.exception("chassis: hub block metric failed")
        if self.sentry_over is not None and incident["duration_s"] >= self.sentry_over:
            try:
                send_to_sentry(incident)
            except Exception:
                log.exception("chassis: hub block Sentry event failed")


def sentry_event(incident: IncidentDict) -> dict[str, Any]:
    """The Sentry event of one block: message, tags, the culprit's stack as the hub thread's,
    and its redacted arguments in the ``nameko`` context."""
    culprit: Any = incident.get("culprit") or {}
    who = culprit.get("entrypoint") or culprit.get("target") or "something unseen"
    where = culprit.get("where") or {}
    frames = [{"filename": f["file"], "abs_path": f["file"], "lineno": f["line"],
               "function": f["function"], "context_line": f["code"],
               "in_app": not f["library"]} for f in culprit.get("stack") or ()]
    tags = {"watchdog": "hub_blocked", "service": culprit.get("service") or "",
            "entrypoint": culprit.get("entrypoint") or "", "call_id": culprit.get("call_id")
            or ""}
    return {
        "level": "warning",
        "logger": "nameko_chassis.watchdog",
        "message": f"eventlet hub blocked for {incident['duration_s']:.1f}s by {who}",
        "tags": {k: v for k, v in tags.items() if v},
        "fingerprint": ["hub-blocked", str(who), f"{where.get('file')}:{where.get('function')}"],
        "threads": {"values": [{"id": "hub", "name": "eventlet hub", "current": True,
                                "crashed": False, "stacktrace": {"frames": frames}}]},
        "contexts": {
            "hub_block": {"duration_s": incident["duration_s"],
                          "started_at": incident["started_at"]},
            "nameko": {k: culprit.get(k) for k in (
                "kind", "service", "entrypoint", "call_id", "call_id_stack", "args", "kwargs",
                "context_data", "target")},
        },
    }


def send_to_sentry(incident: IncidentDict) -> None:
    import sentry_sdk

    sentry_sdk.capture_event(sentry_event(incident))  # type: ignore[arg-type]


_reporter = BlockReporter()


class HubWatchdog(DependencyProvider):
    """Starts the process's hub watchdog when the container starts (a console attaching later
    joins it). Nothing for workers; ``get_dependency`` gives the running watchdog or None."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry
        self.enabled = False
        self.threshold: float | None = None
        self.sentry_over: float | None = None
        self.metrics = False

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<HubWatchdog [{service}] {'on' if self.enabled else 'off'}>"

    def setup(self) -> None:
        try:
            config = nameko_config()
            chassis = _section(config, "CHASSIS")
            self.enabled = _bool(_pick(chassis, "WATCHDOG", os.environ,
                                       probe_watchdog.ENV_ENABLED), "CHASSIS.WATCHDOG", True)
            if not self.enabled:
                return
            threshold_ms = _ms(chassis, "WATCHDOG_THRESHOLD_MS",
                               probe_watchdog.ENV_THRESHOLD_MS,
                               probe_watchdog.DEFAULT_THRESHOLD * 1000)
            self.threshold = max(threshold_ms, 10.0) / 1000.0
            settings = load_settings(config)
            self.metrics = settings.chassis.metrics
            if init_sentry(settings.sentry):
                self.sentry_over = _ms(chassis, "WATCHDOG_SENTRY_MS",
                                       "CHASSIS_WATCHDOG_SENTRY_MS", DEFAULT_SENTRY_MS) / 1000.0
        except Exception:
            log.exception("chassis: hub watchdog off for %s", self.container.service_name)
            self.enabled = False

    def start(self) -> None:
        if not self.enabled:
            return
        try:
            if self.metrics:
                _reporter.use_registry(self.registry or REGISTRY)
            if self.sentry_over is not None:
                _reporter.sentry_over = self.sentry_over
            probe_watchdog.ensure(containers=[self.container],
                                  backdoor=probe_watchdog.backdoor_from_argv(sys.argv),
                                  threshold=self.threshold, listener=_reporter)
        except Exception:
            log.exception("chassis: hub watchdog failed to start for %s",
                          self.container.service_name)

    def get_dependency(self, worker_ctx: Any) -> Any:
        return probe_watchdog.current()
