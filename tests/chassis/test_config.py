"""Chassis settings: nameko config first, environment variables as fallback; the OTel resource
honours OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES and defaults to the nameko service name."""

from __future__ import annotations

import pytest

from nameko_chassis.config import ConfigError, load_settings
from nameko_chassis.providers.tracing import make_resource, make_sampler


def test_nothing_configured_means_everything_off() -> None:
    s = load_settings({}, {})
    assert s.chassis.http_address is None and s.chassis.metrics is False
    assert not s.sentry.enabled and not s.tracing.enabled
    assert s.chassis.history_size == 100


def test_environment_fallbacks() -> None:
    env = {
        "CHASSIS_HTTP_ADDRESS": "9100",
        "SENTRY_DSN": "http://k@sentry/1", "SENTRY_ENVIRONMENT": "prod", "APP_VERSION": "2.0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc, team=shop",
        "OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    s = load_settings({}, env)
    assert s.chassis.http_address == ("0.0.0.0", 9100) and s.chassis.metrics is True
    assert s.chassis.version == "2.0"
    assert s.sentry.dsn == "http://k@sentry/1" and s.sentry.environment == "prod"
    assert s.sentry.release == "2.0"
    assert s.tracing.traces_endpoint == "http://collector:4318/v1/traces"
    assert s.tracing.headers == {"api-key": "abc", "team": "shop"}
    assert s.tracing.sampler == "parentbased_traceidratio"
    assert "0.25" in make_sampler(s.tracing).get_description()


def test_nameko_config_wins_over_the_environment() -> None:
    config = {
        "CHASSIS": {"HTTP_ADDRESS": "127.0.0.1:9200", "METRICS": False, "HISTORY_SIZE": 5},
        "SENTRY": {"DSN": "http://k@config/2", "RELEASE": "r1"},
        "OTEL": {"EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/traces", "SDK_DISABLED": "no"},
    }
    env = {"CHASSIS_HTTP_ADDRESS": "9100", "SENTRY_DSN": "http://k@env/1",
           "SENTRY_RELEASE": "r2", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}
    s = load_settings(config, env)
    assert s.chassis.http_address == ("127.0.0.1", 9200) and s.chassis.metrics is False
    assert s.chassis.history_size == 5
    assert s.sentry.dsn == "http://k@config/2" and s.sentry.release == "r1"
    assert s.tracing.traces_endpoint == "http://c/traces"
    assert not load_settings({"OTEL": {"SDK_DISABLED": True}}, env).tracing.enabled


@pytest.mark.parametrize("config", [
    {"CHASSIS": {"HTTP_ADDRESS": "host:port"}},
    {"CHASSIS": {"METRICS": "maybe"}},
    {"CHASSIS": {"HISTORY_SIZE": "lots"}},
    {"OTEL": {"RESOURCE_ATTRIBUTES": "novalue"}},
    {"SENTRY": "not a mapping"},
])
def test_bad_values_name_the_key(config: dict) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(config, {})
    assert any(key in str(err.value) for key in ("CHASSIS", "OTEL", "SENTRY"))


def test_resource_defaults_to_the_nameko_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    resource = make_resource(load_settings({}, {}).tracing, "orders", "1.0")
    assert resource.attributes["service.name"] == "orders"
    assert resource.attributes["service.version"] == "1.0"


def test_resource_honours_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,team=shop")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-eu")
    resource = make_resource(load_settings({}, {}).tracing, "orders")
    assert resource.attributes["service.name"] == "orders-eu"
    assert resource.attributes["deployment.environment"] == "staging"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")
    assert make_resource(load_settings({}, {}).tracing, "orders").attributes["service.name"] == \
        "from-attrs"
    # the nameko config wins over both
    settings = load_settings({"OTEL": {"SERVICE_NAME": "from-config"}}, {})
    assert make_resource(settings.tracing, "orders").attributes["service.name"] == "from-config"
