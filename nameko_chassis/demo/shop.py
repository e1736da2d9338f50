"""The demo shop: four nameko services that keep a console busy.

- ``shopper``: a timer that places a few orders every second, with context data (user id, an
  auth token the console must redact).
- ``orders``: RPC ``place`` charges the card (a sensitive argument) through ``payments`` and dispatches
  ``order_placed``; HTTP ``GET /orders/<id>`` and ``POST /orders``.
- ``payments``: RPC ``charge`` takes a variable time, now and then a slow one (the kind of worker
  the console is for); the card number is a sensitive argument.
- ``notifications``: handles ``order_placed`` events, sending a (pretend) e-mail.

Each is a chassis :class:`~nameko_chassis.service.Service` (worker start times and history for the
console, ``ping``/``describe``/``set_log_level``; the other providers stay off unless configured).

The services log a line per order, charge and e-mail (INFO, loggers ``shop.<service>``), which the
console's log tail (``l``) shows with the call id of the worker that logged it.

Run with ``nameko run --config CONFIG --backdoor-port 12345 nameko_chassis.demo.shop``, or let
``chassis-console --demo`` do it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random

import eventlet
from nameko.events import EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import ServiceRpc, rpc
from nameko.timer import timer
from nameko.web.handlers import http

from nameko_chassis.service import Service

# `chassis-console --demo` keeps the root logger at WARNING (nameko's own chatter stays out);
# the shop's records are INFO, so its logger says so itself. The loggers below it are looked up
# when they log: `nameko run` applies the config's LOGGING after importing this module, and
# dictConfig disables the loggers that existed before it.
logging.getLogger("shop").setLevel(logging.INFO)


def log(service: str) -> logging.Logger:
    return logging.getLogger(f"shop.{service}")


ITEMS = ("espresso beans", "grinder", "milk jug", "tamper", "kettle", "scale", "filter papers")


class PaymentDeclined(Exception):
    pass


class Payments(Service):
    name = "payments"

    @rpc(sensitive_arguments=("card",), expected_exceptions=PaymentDeclined)
    def charge(self, order_id: int, amount: float, card: str) -> dict:
        # the card in the message is redacted before the record leaves the service
        log("payments").info("charging %.2f for order %s card=%s", amount, order_id, card)
        # most charges take a moment at the (pretend) card processor; one in ten is slow
        delay = random.uniform(0.2, 2.5)
        if random.random() < 0.1:
            delay = random.uniform(8, 15)
            log("payments").info("card processor slow for order %s, waiting up to %.0f s",
                                 order_id, delay)
        self._wait_for_processor(delay)
        if random.random() < 0.05:
            log("payments").warning("card declined for order %s (%.2f)", order_id, amount)
            raise PaymentDeclined(f"card declined for order {order_id}")
        return {"order_id": order_id, "amount": amount, "status": "captured"}

    def _wait_for_processor(self, seconds: float) -> None:
        eventlet.sleep(seconds)


class Orders(Service):
    name = "orders"

    payments = ServiceRpc("payments")
    dispatch = EventDispatcher()

    _ids = itertools.count(1000)

    @rpc(sensitive_arguments=("card",))
    def place(self, item: str, quantity: int, card: str) -> dict:
        order_id = next(self._ids)
        amount = round(quantity * random.uniform(3, 40), 2)
        receipt = self.payments.charge(order_id, amount, card)
        log("orders").info("order %s placed for %.2f: %d x %s", order_id, amount, quantity, item)
        self.dispatch("order_placed", {"order_id": order_id, "item": item, "amount": amount})
        return {"order_id": order_id, "item": item, "quantity": quantity, "receipt": receipt}

    @http("GET", "/orders/<int:order_id>")
    def get_order(self, request, order_id: int) -> str:
        eventlet.sleep(random.uniform(0.05, 0.3))
        return json.dumps({"order_id": order_id, "status": "shipped"})

    @http("POST", "/orders")
    def create_order(self, request) -> tuple[int, str]:
        body = json.loads(request.get_data(as_text=True) or "{}")
        result = self.place(body.get("item", "espresso beans"), int(body.get("quantity", 1)),
                            body.get("card", "4111111111111111"))
        return 201, json.dumps(result)


class Notifications(Service):
    name = "notifications"

    @event_handler("orders", "order_placed")
    def send_confirmation(self, payload: dict) -> None:
        # rendering and sending the e-mail
        eventlet.sleep(random.uniform(0.1, 1.5))
        log("notifications").info("confirmation for order %s (%s) sent", payload["order_id"],
                                  payload["item"])


class ContextData(DependencyProvider):
    """The worker's context data, which nameko propagates with every RPC call and event."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.data


class Shopper(Service):
    """Generates load: a few orders a second from made-up customers."""

    name = "shopper"

    orders = ServiceRpc("orders")
    context = ContextData()

    @timer(interval=1)
    def browse_and_buy(self) -> None:
        pending = []
        for _ in range(random.randint(1, 3)):
            user = random.randint(1, 500)
            # propagated to orders and payments; the console must redact the token
            self.context["user_id"] = f"user-{user}"
            self.context["auth_token"] = f"tok_{random.getrandbits(64):016x}"
            pending.append(
                self.orders.place.call_async(
                    random.choice(ITEMS), random.randint(1, 4), "4111111111111111"
                )
            )
        # wait for the first order so the timer worker is visible too, but do not queue up
        try:
            pending[0].result()
        except Exception:  # a declined card is part of the demo
            pass
