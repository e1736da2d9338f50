"""A chassis service whose workers use their span as users do: attributes, events, a child
span of their own, a recorded exception, an error status (tests/providers/test_worker_spans.py).
"""

from __future__ import annotations

from nameko.rpc import rpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from nameko_chassis.service import Service


class Spans(Service):
    name = "spans"

    @rpc
    def annotate(self, item: str) -> str:
        span = trace.get_current_span()
        span.set_attribute("shop.item", item)
        span.set_attributes({"shop.sizes": [1, 2, 3], "shop.bad": object()})  # type: ignore
        span.add_event("picked", {"shop.shelf": 7})
        with self.tracing.start_as_current_span("pack") as child:
            child.set_attribute("shop.box", "small")
        try:
            raise KeyError(item)
        except KeyError as exc:
            span.record_exception(exc, attributes={"shop.handled": True})
        span.set_status(Status(StatusCode.ERROR, "partly"))
        span.update_name("spans/annotated")
        return item
