"""Chassis settings: nameko config first, the ecosystem's usual environment variables as fallback.

Every provider reads its settings through :func:`load_settings` when its container is set up, so
the values are those of the ``nameko run --config`` file (nameko's global ``config``) and of the
process environment at that moment. The full table of keys is in ``docs/chassis.md``.

This module imports neither nameko nor eventlet at module level: :func:`load_settings` takes the
config mapping, and :func:`nameko_config` fetches nameko's only when asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ChassisError

DEFAULT_HISTORY_SIZE = 100
DEFAULT_OTLP_TIMEOUT = 10.0


class ConfigError(ChassisError, ValueError):
    """A chassis setting has a value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class SentrySettings:
    dsn: str | None = None
    environment: str | None = None
    release: str | None = None
    include_local_variables: bool = False
    sample_rate: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.dsn)


@dataclass(frozen=True)
class TracingSettings:
    #: full URL spans are POSTed to (``.../v1/traces``); ``None`` switches tracing off
    traces_endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    service_name: str | None = None
    resource_attributes: dict[str, str] = field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    sampler_arg: str | None = None
    timeout: float = DEFAULT_OTLP_TIMEOUT

    @property
    def enabled(self) -> bool:
        return bool(self.traces_endpoint)


@dataclass(frozen=True)
class ChassisSettings:
    #: ``(host, port)`` of the chassis HTTP server (``/metrics``, ``/health/*``); ``None``: no server
    http_address: tuple[str, int] | None = None
    metrics: bool = False
    #: ``CHASSIS.METRICS`` as configured (``None``: unset, ``metrics`` holds the default)
    metrics_switch: bool | None = None
    #: also record nameko-prometheus's families (nameko-chassis 3.2.0's), see docs/migrating.md
    legacy_metrics: bool = False
    version: str = ""
    history_size: int = DEFAULT_HISTORY_SIZE


@dataclass(frozen=True)
class Settings:
    chassis: ChassisSettings
    sentry: SentrySettings
    tracing: TracingSettings


def nameko_config() -> Mapping[str, Any]:
    """nameko's global config (what ``nameko run --config`` loaded)."""
    from nameko import config  # service side only

    return config


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"nameko config key {name} must be a mapping, got {type(value).__name__}")
    return value


def _pick(section: Mapping[str, Any], key: str, environ: Mapping[str, str], *env_names: str) -> Any:
    value = section.get(key)
    if value not in (None, ""):
        return value
    for name in env_names:
        env_value = environ.get(name)
        if env_value not in (None, ""):
            return env_value
    return None


def _bool(value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def parse_address(value: Any, key: str = "CHASSIS.HTTP_ADDRESS") -> tuple[str, int]:
    """``"9100"``, ``":9100"`` or ``"0.0.0.0:9100"`` -> ``(host, port)``."""
    text = str(value).strip()
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{key}: port out of range in {value!r}")
    return (host or "0.0.0.0"), number


def parse_key_values(value: Any, key: str) -> dict[str, str]:
    """``"a=1,b=2"`` (the OTEL_* list format) or a mapping -> dict."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in str(value).split(","):
        if not item.strip():
            continue
        name, sep, val = item.partition("=")
        if not sep:
            raise ConfigError(f"{key}: expected key=value pairs, got {item!r}")
        out[name.strip()] = val.strip()
    return out


def legacy_metrics_prefix(config: Mapping[str, Any], service_name: str) -> str:
    """The prefix of a service's legacy (nameko-prometheus) families: ``PROMETHEUS:
    {<service>: {prefix: ...}}`` in the nameko config, else the service name."""
    section = _section(config, "PROMETHEUS")
    service = section.get(service_name) or {}
    prefix = service.get("prefix") if isinstance(service, Mapping) else None
    return str(prefix or service_name)


def _traces_endpoint(otel: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    explicit = _pick(otel, "EXPORTER_OTLP_TRACES_ENDPOINT", environ,
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return str(explicit)
    base = _pick(otel, "EXPORTER_OTLP_ENDPOINT", environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    return str(base).rstrip("/") + "/v1/traces"


def load_settings(config: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read every chassis setting; see ``docs/chassis.md`` for the table of keys."""
    config = nameko_config() if config is None else config
    environ = os.environ if environ is None else environ

    chassis = _section(config, "CHASSIS")
    address = _pick(chassis, "HTTP_ADDRESS", environ, "CHASSIS_HTTP_ADDRESS")
    http_address = parse_address(address) if address else None
    history = _pick(chassis, "HISTORY_SIZE", environ, "CHASSIS_HISTORY_SIZE")
    try:
        history_size = DEFAULT_HISTORY_SIZE if history is None else int(history)
    except ValueError:
        raise ConfigError(f"CHASSIS.HISTORY_SIZE: expected an integer, got {history!r}") from None
    legacy = _bool(_pick(chassis, "LEGACY_METRICS", environ, "CHASSIS_LEGACY_METRICS"),
                   "CHASSIS.LEGACY_METRICS", default=False)
    switch = _pick(chassis, "METRICS", environ, "CHASSIS_METRICS")
    chassis_settings = ChassisSettings(
        http_address=http_address,
        metrics=_bool(switch, "CHASSIS.METRICS", default=http_address is not None or legacy),
        metrics_switch=None if switch is None else _bool(switch, "CHASSIS.METRICS", default=False),
        legacy_metrics=legacy,
        version=str(_pick(chassis, "VERSION", environ, "APP_VERSION", "SENTRY_RELEASE") or ""),
        history_size=max(history_size, 0),
    )

    sentry = _section(config, "SENTRY")
    rate = _pick(sentry, "SAMPLE_RATE", environ, "SENTRY_SAMPLE_RATE")
    try:
        sample_rate = 1.0 if rate is None else float(rate)
    except ValueError:
        raise ConfigError(f"SENTRY.SAMPLE_RATE: expected a number, got {rate!r}") from None
    sentry_settings = SentrySettings(
        dsn=_pick(sentry, "DSN", environ, "SENTRY_DSN"),
        environment=_pick(sentry, "ENVIRONMENT", environ, "SENTRY_ENVIRONMENT"),
        release=_pick(sentry, "RELEASE", environ, "SENTRY_RELEASE", "APP_VERSION"),
        include_local_variables=_bool(sentry.get("INCLUDE_LOCAL_VARIABLES"),
                                      "SENTRY.INCLUDE_LOCAL_VARIABLES", default=False),
        sample_rate=sample_rate,
    )

    otel = _section(config, "OTEL")
    disabled = _bool(_pick(otel, "SDK_DISABLED", environ, "OTEL_SDK_DISABLED"), "OTEL.SDK_DISABLED",
                     default=False)
    timeout = _pick(otel, "EXPORTER_OTLP_TIMEOUT", environ, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TIMEOUT")
    try:
        # the OTEL variables give milliseconds
        timeout_s = DEFAULT_OTLP_TIMEOUT if timeout is None else float(timeout) / 1000.0
    except ValueError:
        raise ConfigError(f"OTEL.EXPORTER_OTLP_TIMEOUT: expected milliseconds, got {timeout!r}") \
            from None
    tracing_settings = TracingSettings(
        traces_endpoint=None if disabled else _traces_endpoint(otel, environ),
        headers=parse_key_values(
            _pick(otel, "EXPORTER_OTLP_HEADERS", environ, "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                  "OTEL_EXPORTER_OTLP_HEADERS"), "OTEL.EXPORTER_OTLP_HEADERS"),
        service_name=_pick(otel, "SERVICE_NAME", environ, "OTEL_SERVICE_NAME"),
        resource_attributes=parse_key_values(
            _pick(otel, "RESOURCE_ATTRIBUTES", environ, "OTEL_RESOURCE_ATTRIBUTES"),
            "OTEL.RESOURCE_ATTRIBUTES"),
        sampler=str(_pick(otel, "TRACES_SAMPLER", environ, "OTEL_TRACES_SAMPLER")
                    or "parentbased_always_on").lower(),
        sampler_arg=_pick(otel, "TRACES_SAMPLER_ARG", environ, "OTEL_TRACES_SAMPLER_ARG"),
        timeout=timeout_s,
    )
    return Settings(chassis=chassis_settings, sentry=sentry_settings, tracing=tracing_settings)
