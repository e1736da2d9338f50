"""The chassis test shop's front and back services as a 3.2.0 user runs them with its README's
tracing set-up, kept in place: ``NamekoInstrumentor().instrument()`` at import."""

from __future__ import annotations

from nameko_opentelemetry import NamekoInstrumentor

NamekoInstrumentor().instrument()

from tests.services.chassis_shop import Back, Front  # noqa: E402

__all__ = ["Back", "Front"]
