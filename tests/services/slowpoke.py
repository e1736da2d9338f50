"""A test service whose pool fills: run it with ``MAX_WORKERS=1`` and calls to ``slow`` queue
up behind one another in ``rpc-slowpoke``. It logs, with and without secrets, from inside its
workers, and consumes an event and a plain queue too (one queue of each kind)."""

from __future__ import annotations

import logging

import eventlet
from kombu.messaging import Exchange, Queue
from nameko.events import event_handler
from nameko.messaging import consume
from nameko.rpc import rpc

log = logging.getLogger("slowpoke")
chatty = logging.getLogger("slowpoke.chatty")

#: Anything in it opens the gate: every ``slow`` call returns at once (a test's teardown, so that
#: the service stops without waiting for its queue): ``OPEN.append(1)`` over the backdoor.
OPEN: list[int] = []

WORK_QUEUE = Queue("slowpoke-work", exchange=Exchange("slowpoke-work"), routing_key="work")


class Slowpoke:
    name = "slowpoke"

    @rpc
    def slow(self, seconds: float = 1.0) -> float:
        with eventlet.Timeout(seconds, False):
            while not OPEN:
                eventlet.sleep(0.05)
        return seconds

    @rpc
    def talk(self, text: str, token: str = "") -> str:
        """Logs ``text`` at INFO and ``token=<token>`` (a secret) from inside the worker."""
        log.info("talk says %s", text)
        log.warning("calling the bank with token=%s", token)
        chatty.debug("debug detail of %s", text)
        return text

    @rpc
    def ping(self) -> str:
        return "pong"

    @event_handler("nobody", "happened")
    def on_happened(self, payload) -> None:
        pass

    @consume(WORK_QUEUE)
    def on_work(self, body) -> None:
        pass
