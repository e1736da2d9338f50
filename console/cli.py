"""``chassis-console``: argument parsing and the modes (live app, --json, --once, --repl, ...).

Exit codes (also in ``--help`` and docs/cli.md):

    0  ok
    1  other failure a user can act on (message says which)
    2  usage error: malformed target, bad option
    3  cannot reach the target, or it stopped answering
    4  reached something that is not a nameko backdoor, or a protocol error
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from nameko_chassis.amqp.management import AmqpUri

from . import __version__
from .errors import ConsoleError, UsageError, report
from .live.poller import MIN_INTERVAL
from .targets import TargetAddress
from .targets.fleet import DEFAULT_DEADLINE, is_broker_uri, parse_broker

EPILOG = """\
targets:
  HOST:PORT, PORT (localhost) or unix:/path — a nameko backdoor, as started with
  `nameko run --backdoor-port 12345 ...`.
  amqp://user:pass@host:port/vhost (or --broker URI) — the fleet: every replica of every
  chassis service on that vhost, over the broker (read-only; docs/fleet.md).

exit codes:
  0 ok · 1 other failure · 2 usage error (malformed target, bad option)
  3 cannot reach the target or it stopped answering
  4 not a nameko backdoor, or a protocol error · 130 interrupted

docs: docs/index.md in the source tree
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, exit code 2 (argparse's own convention for usage errors)
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="chassis-console",
        description="Live introspection console for nameko services, over their backdoor.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="backdoor(s) to attach to, or a broker URI for the fleet")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true",
                      help="print one schema-v1 snapshot as JSON (an array for several "
                           "targets), with groups and rates per container (docs/schema.md)")
    mode.add_argument("--once", action="store_true",
                      help="print the rendered snapshot once and exit")
    mode.add_argument("--repl", action="store_true",
                      help="a Python REPL over the backdoor (completion, history, safe exit)")
    p.add_argument("--services", nargs="?", const="", metavar="AMQP_URI",
                   help="list the nameko services on a broker's vhost (default $AMQP_URI); "
                        "with --json as JSON")
    mode.add_argument("--demo", action="store_true",
                      help="start the demo shop with a backdoor on a free port and attach to it")
    p.add_argument("--serve", action="store_true",
                   help="with --demo: run the demo services and print how to attach, no console")
    p.add_argument("--broker", action="append", default=[], metavar="AMQP_URI",
                   help="the fleet on this broker's vhost (same as an amqp:// TARGET)")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="SECONDS",
                   help=f"fleet: how long a refresh waits for replicas (default "
                        f"{DEFAULT_DEADLINE:g})")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help=f"refresh interval of the live console (default 1; at least "
                        f"{MIN_INTERVAL:g}, the fastest it sustains at 1000 workers; the "
                        f"+ and - keys step between {MIN_INTERVAL:g} and 30)")
    p.add_argument("--slow", type=float, default=10.0, metavar="SECONDS",
                   help="workers older than this stand out (default 10)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the service to answer (default 10)")
    p.add_argument("--stacks", choices=("all", "none"), default="all",
                   help="--json/--once: include every worker's full stack (default) or none")
    p.add_argument("--width", type=int, default=None, metavar="COLUMNS",
                   help="--once: page width (default: the terminal's, $COLUMNS, or 160 into a "
                        "pipe or file)")
    p.add_argument("--max-workers", type=int, default=1000, metavar="N",
                   help="list at most N workers per container (default 1000)")
    p.add_argument("--allow-actions", action="store_true",
                   help="enable actions that change the target (kill a worker), with confirmation")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _targets(args: argparse.Namespace, parser: argparse.ArgumentParser
             ) -> list[TargetAddress | AmqpUri]:
    texts = list(args.targets) + list(args.broker)
    if not texts:
        parser.error("a TARGET is required (HOST:PORT, PORT, unix:/path or amqp://...)")
    return [parse_broker(t) if is_broker_uri(t) else TargetAddress.parse(t) for t in texts]


def _warn_remote(addresses: Sequence[TargetAddress | AmqpUri]) -> None:
    for address in addresses:
        if isinstance(address, TargetAddress) and not address.is_loopback:
            print(
                f"warning: {address} is not a loopback address — a backdoor gives anyone who "
                "reaches it full control of the service; prefer an SSH tunnel to 127.0.0.1",
                file=sys.stderr,
            )


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deadline <= 0:
        parser.error("--deadline must be > 0")
    if args.interval <= 0 or args.timeout <= 0 or args.slow < 0 or args.max_workers < 1:
        parser.error("--interval and --timeout must be > 0, --slow >= 0, --max-workers >= 1")
    if args.interval < MIN_INTERVAL:
        parser.error(f"--interval must be at least {MIN_INTERVAL:g} seconds (the fastest the "
                     f"console sustains at 1000 workers; got {args.interval:g})")
    if args.width is not None and not 40 <= args.width <= 1000:
        parser.error("--width must be between 40 and 1000 columns")
    if args.serve and not args.demo:
        parser.error("--serve only goes with --demo")
    if args.demo and (args.targets or args.broker):
        parser.error(f"--demo starts its own services and attaches to them; it takes no TARGET "
                     f"(got {' '.join(args.targets)})")

    if args.demo:
        from .demo import run_demo

        return run_demo(serve_only=args.serve, args=args)
    if args.services is not None:
        if args.once or args.repl or args.demo or args.targets or args.broker:
            parser.error("--services takes an AMQP URI (or none), not a TARGET, and goes with "
                         "--json only")
        from .services import run_services

        return run_services(args.services or None, timeout=args.timeout, as_json=args.json)

    addresses = _targets(args, parser)
    _warn_remote(addresses)
    if args.json or args.once:
        from .oneshot import run_oneshot

        return run_oneshot(addresses, args)
    if args.repl:
        address = addresses[0] if len(addresses) == 1 else None
        if not isinstance(address, TargetAddress):
            parser.error("--repl takes exactly one backdoor TARGET (the fleet is read-only)")
        from .repl import run_repl

        return run_repl(address, timeout=args.timeout)
    from .live.app import run_app

    return run_app(addresses, args)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = run(argv)
    except ConsoleError as exc:
        report(exc)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # output piped into `head` and the like: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)


__all__ = ["main", "run", "build_parser", "UsageError"]
