"""``chassis-console --demo``: run the demo shop with a backdoor on a free port.

The shop runs in a ``nameko run`` subprocess on a vhost of its own (created through the
management API when it answers, deleted afterwards), so the demo never touches other services on
the broker and leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nameko_chassis.amqp.management import (
    AmqpUri,
    ManagementApi,
    ManagementError,
    amqp_uri_from_env,
)

from .launch import NamekoProcess, free_port

DEMO_MODULE = "nameko_chassis.demo.shop"
#: Seconds the demo's services get to stop gracefully before they are killed.
DEMO_STOP_TIMEOUT = 2.0


@contextmanager
def demo_services(*, web_port: int | None = None) -> Iterator[NamekoProcess]:
    """Start the demo shop; stop it and delete its vhost on exit."""
    base = amqp_uri_from_env()
    api = ManagementApi(base)
    vhost = f"chassis-demo-{uuid.uuid4().hex[:8]}"
    try:
        api.create_vhost(vhost)
        uri = base.with_vhost(vhost)
    except ManagementError as exc:
        print(f"note: {exc}; running the demo on vhost {base.vhost!r}", file=sys.stderr)
        vhost, uri = "", base
    web_port = web_port or free_port()
    config = {
        "AMQP_URI": str(uri),
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
        "max_workers": 20,
        # nameko run applies this after importing the services: keep their loggers (and
        # nameko-chassis's) alive, and the shop's INFO lines for the console's log tail
        "LOGGING": {"version": 1, "disable_existing_loggers": False,
                    "root": {"level": "WARNING"}, "loggers": {"shop": {"level": "INFO"}}},
    }
    process = NamekoProcess([DEMO_MODULE], config, cwd=Path.cwd(), env=dict(os.environ))
    process.amqp_uri = uri
    try:
        process.start()
        yield process
    finally:
        if process.running:
            print(f"stopping the demo shop (nameko run pid {process.pid})"
                  + (f" and deleting its vhost {vhost!r}" if vhost else "") + " ...",
                  file=sys.stderr, flush=True)
        # throwaway services: a short grace period, not the minutes a slow payment may take
        process.stop(timeout=DEMO_STOP_TIMEOUT)
        process.remove_workdir()
        if vhost:
            try:
                api.delete_vhost(vhost)
            except ManagementError as exc:
                print(f"warning: could not delete demo vhost {vhost!r}: {exc}", file=sys.stderr)


def uri_hint(uri: AmqpUri | None) -> str:
    """The demo's AMQP URI to type, the password hidden unless it is RabbitMQ's default."""
    if uri is None:
        return ""
    return str(uri) if uri.password == "guest" else uri.redacted()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_demo(*, serve_only: bool, args: object) -> int:
    """Start the shop; attach the live console to it (or, with ``--serve``, wait for Ctrl-C)."""
    print("starting the demo shop (orders, payments, notifications, shopper) ...", file=sys.stderr)
    # A closed terminal (SIGHUP) or a `kill` (SIGTERM) must clean up like Ctrl-C does: by
    # default Python dies on them at once and would leave the services and their vhost behind.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    with demo_services() as process:
        if not serve_only:
            from .live.app import run_app

            return run_app([process.address], args, demo=process)
        web = process.config["WEB_SERVER_ADDRESS"]
        print(
            f"demo shop running (pid {process.pid}); HTTP on http://{web}/orders/1\n"
            f"attach with:  chassis-console {process.target}\n"
            f"         or:  chassis-console {process.target} --once\n"
            f"services on its vhost:  chassis-console --services {uri_hint(process.amqp_uri)}\n"
            "Ctrl-C stops the demo and deletes its vhost.",
            flush=True,
        )
        try:
            while process.running:
                try:
                    if process.proc is not None:
                        process.proc.wait(1)
                except subprocess.TimeoutExpired:
                    continue
        except KeyboardInterrupt:
            return 0
        print(f"the demo services exited:\n{process.log_text()[-2000:]}", file=sys.stderr)
        return 1
