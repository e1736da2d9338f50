"""The redaction corpus (tests/redaction_corpus.py) into Sentry and OTel: a real ``nameko run``
chassis service with the real sentry-sdk transport and OTLP/HTTP exporter into local sinks.
Every event (contexts, exception, breadcrumbs from the log line and ``self.sentry``, ``extra``
with ``sys.argv``) and every span (exception events, status) is searched; leaks asserted 0."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nameko_chassis.amqp.management import AmqpUri, ManagementApi
from tests.harness import IsolatedVhost, wait_for
from tests.redaction_corpus import (
    ARGV_SECRET,
    CANARY,
    clean_env,
    corpus,
    fail_corpus,
    leaks,
    park_corpus,
    start_vault,
)
from tests.services.chassis_sinks import OtlpSink, SentrySink

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def sinks(management: ManagementApi, broker: AmqpUri, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[object, SentrySink, OtlpSink]]:
    with SentrySink() as sentry, OtlpSink() as otlp, IsolatedVhost(management, broker) as vh:
        config = {"SENTRY": {"DSN": sentry.dsn},
                  "OTEL": {"EXPORTER_OTLP_ENDPOINT": otlp.endpoint}}
        service = start_vault(vh.uri, tmp_path_factory.mktemp("vault"), config=config,
                              env=clean_env(OTEL_BSP_SCHEDULE_DELAY="100"))
        try:
            yield service, sentry, otlp
        finally:
            service.close()


def test_corpus_leaks_nothing_into_sentry_or_otel(sinks: tuple) -> None:
    service, sentry, otlp = sinks
    shapes = corpus()
    calls = park_corpus(service, shapes)
    failed = fail_corpus(service, shapes, calls)
    service.rpc.call("vault", "release", tag="corpus")
    events = wait_for(lambda: (e := sentry.events_for("Leak")) and len(e) >= failed and e,
                      timeout=30, what=f"{failed} Sentry events")
    spans = wait_for(lambda: (s := otlp.find(name="vault/fail")) and len(s) >= failed and s,
                     timeout=30, what=f"{failed} fail spans")
    outputs = {"Sentry": json.dumps(events), "OTel": json.dumps(spans)}
    table = {name: leaks(shapes, text) for name, text in outputs.items()}
    print("\n" + "\n".join(f"{name:8} {len(shapes)} shapes, leaks: {len(found)}"
                           for name, found in table.items()))
    assert table == {"Sentry": [], "OTel": []}, table
    # not vacuous: what the channels carry is there, with the secrets hidden
    assert CANARY in outputs["Sentry"]
    assert all(e["contexts"]["nameko"]["kwargs"] or e["contexts"]["nameko"]["context_data"]
               for e in events)
    assert all("sys.argv" in e.get("extra", {}) for e in events)
    argv = " ".join(events[0]["extra"]["sys.argv"])
    assert "CHASSIS_TEST_URI=pyamqp://guest:" in argv and ARGV_SECRET not in argv
    crumbs = [c for e in events for c in e.get("breadcrumbs", {}).get("values", [])]
    assert any("about to fail" in (c.get("message") or "") for c in crumbs)
    assert any("crumb:" in (c.get("message") or "") for c in crumbs)
    exc_events = [ev for sp in spans for ev in sp["events"] if ev["name"] == "exception"]
    assert exc_events and all("********" in ev["attributes"]["exception.message"]
                              for ev in exc_events)
    assert all("********" in sp["status_message"] for sp in spans)
