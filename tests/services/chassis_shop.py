"""Two chassis services covering every entrypoint type, for the chassis tests.

``chassis_front``: RPC (plain, expected error, unexpected error with a sensitive argument, a
relay that calls ``chassis_back`` and dispatches an event, a publisher to a consumer), HTTP, an
eager timer that fires once. ``chassis_back``: RPC and an event handler.
"""

from __future__ import annotations

from kombu import Exchange, Queue
from nameko.events import EventDispatcher, event_handler
from nameko.messaging import Publisher, consume
from nameko.rpc import ServiceRpc, rpc
from nameko.timer import timer
from nameko.web.handlers import http

from nameko_chassis.providers.bookkeeping import WorkerBookkeeping
from nameko_chassis.providers.metrics import PrometheusMetrics
from nameko_chassis.service import Service
from tests.services import parking

JOBS = Exchange("chassis-jobs", type="direct")
JOBS_QUEUE = Queue("chassis-jobs", exchange=JOBS, routing_key="jobs")

_events: list[dict] = []
_jobs: list[dict] = []


class Declined(Exception):
    pass


class Boom(Exception):
    pass


class Front(Service):
    name = "chassis_front"
    version = "1.2.3"

    back = ServiceRpc("chassis_back")
    dispatch = EventDispatcher()
    publish = Publisher(exchange=JOBS)

    @rpc
    def hello(self, who: str = "world") -> str:
        return f"hello {who}"

    @rpc(expected_exceptions=Declined)
    def decline(self, reason: str = "no") -> None:
        raise Declined(reason)

    @rpc(sensitive_arguments=("password",))
    def explode(self, user: str, password: str) -> None:
        self.sentry.add_breadcrumb("about to explode", category="test", user=user)
        raise Boom(f"exploded for {user}")

    @rpc
    def relay(self, value: int) -> int:
        doubled = self.back.double(value)
        self.dispatch("happened", {"value": value})
        return doubled

    @rpc
    def enqueue(self, job: str) -> None:
        self.publish({"job": job}, routing_key="jobs")

    @rpc
    def count_sale(self, item: str) -> None:
        self.metrics.counter("chassis_test_sales_total", "Sales in the test shop", ["item"]) \
            .labels(item).inc()

    @http("GET", "/front/<int:n>")
    def web(self, request, n: int) -> str:
        return f"front {n}"

    @http("GET", "/broken")
    def broken(self, request) -> str:
        raise Boom("broken page")

    @timer(interval=3600, eager=True)
    def warm_up(self) -> None:
        pass

    @consume(JOBS_QUEUE)
    def handle_job(self, body: dict) -> None:
        _jobs.append(body)


class Back(Service):
    name = "chassis_back"

    @rpc
    def double(self, value: int) -> int:
        return value * 2

    @event_handler("chassis_front", "happened")
    def on_happened(self, payload: dict) -> None:
        _events.append(payload)

    @rpc
    def seen(self) -> dict:
        return {"events": list(_events), "jobs": list(_jobs)}


class ParkingLot(Service, parking.Parking):
    """The parking test service on the chassis: workers wait until released."""

    name = "chassis_parking"


class Quiet(Service):
    """Switches off a base RPC method and a provider."""

    name = "chassis_quiet"
    set_log_level = None  # type: ignore[assignment]
    sentry = None  # type: ignore[assignment]

    @rpc
    def hello(self) -> str:
        return "quiet hello"


class Standalone:
    """A plain nameko service using two chassis providers on their own."""

    name = "chassis_standalone"

    metrics = PrometheusMetrics()
    bookkeeping = WorkerBookkeeping()

    @rpc
    def hi(self) -> str:
        return "hi"
