"""Sentry error reporting for every entrypoint, through ``sentry-sdk``.

:class:`SentryReporter` initialises the SDK once per process when a DSN is configured
(``SENTRY.DSN`` or ``$SENTRY_DSN``), runs each worker in its own isolation scope tagged with
service, entrypoint, method and call id, and captures the worker's unexpected exception once, with
its redacted arguments and context data (the console's rules: entrypoint ``sensitive_arguments``
and secret-looking keys). Expected exceptions are not reported; nameko's own "error handling
worker" log line is ignored by the logging integration so the event is not sent twice.

Workers get a handle, ``self.sentry``, to add breadcrumbs, tags or capture something themselves
(``captureException``/``captureMessage``, the spelling of 3.2.0's README, work too).
Sending happens on the SDK's background transport: an unreachable DSN never blocks a worker.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from nameko.extensions import DependencyProvider
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

from ..config import SentrySettings, load_settings
from ..probe.entrypoints import kind_of
from ..probe.redaction import redact_mapping, redacted_arguments, scrub_breadcrumb, scrub_event
from .bookkeeping import EXPECTED_ERROR, KILLED, SUCCESS, entrypoint_name, outcome_of

log = logging.getLogger(__name__)

#: nameko logs every failed worker here with ``log.exception``; we capture those ourselves.
NAMEKO_WORKER_LOGGERS = ("nameko.containers",)

_initialised: SentrySettings | None = None
#: the SDK was initialised through :func:`init_sentry_sdk` with the caller's own options
_initialised_by_caller = False


def init_sentry(settings: SentrySettings) -> bool:
    """Initialise sentry-sdk once per process; ``False`` when no DSN is configured (and nobody
    initialised it through :func:`init_sentry_sdk`)."""
    global _initialised
    if _initialised_by_caller:
        return True  # nameko_chassis.dependencies.setup_sentry_sdk() did, with its options
    if not settings.enabled:
        return False
    if _initialised is not None:
        if _initialised != settings:
            log.warning("chassis: sentry-sdk already initialised for another DSN; keeping it")
        return True
    init_sentry_sdk(**_sdk_options(settings))
    _initialised = settings
    return True


#: Seconds sentry-sdk waits at process exit for events still queued (its default is 2 s):
#: part of the chassis' 5 s shutdown bound with a Sentry that never answers (docs/chassis.md,
#: *Shutdown*).
SHUTDOWN_TIMEOUT = 1.0


def _sdk_options(settings: SentrySettings) -> dict[str, Any]:
    return {
        "dsn": settings.dsn,
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "environment": settings.environment,
        "release": settings.release,
        "sample_rate": settings.sample_rate,
        # frame locals would carry the very arguments sensitive_arguments hides
        "include_local_variables": settings.include_local_variables,
        "send_default_pii": False,
        "integrations": [LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
    }


def init_sentry_sdk(*, by_caller: bool = False, **options: Any) -> None:
    """``sentry_sdk.init(**options)`` the chassis way: nameko's own "error handling worker" log
    line is ignored (the :class:`SentryReporter` captures the exception itself, with context),
    so no event is sent twice. ``by_caller``: the options are the caller's (3.2.0's
    ``setup_sentry_sdk``); the reporters then use that SDK as it is instead of their own."""
    global _initialised_by_caller
    for name in NAMEKO_WORKER_LOGGERS:
        ignore_logger(name)
    # every event and breadcrumb through the probe's redaction (messages, extra with sys.argv,
    # contexts, request data) before the caller's own hooks: one policy for every channel
    options["before_send"] = _after(scrub_event, options.get("before_send"))
    options["before_breadcrumb"] = _after(scrub_breadcrumb, options.get("before_breadcrumb"))
    sentry_sdk.init(**options)
    if by_caller:
        _initialised_by_caller = True


def _after(scrub: Any, hook: Any) -> Any:
    """``scrub`` first, then the caller's ``hook`` (if any) on what is left."""
    if hook is None:
        return scrub

    def both(item: Any, hint: Any) -> Any:
        item = scrub(item, hint)
        return None if item is None else hook(item, hint)

    return both


def _tag_scope(scope: Any, worker_ctx: Any) -> None:
    scope.set_tag("service", worker_ctx.service_name)
    scope.set_tag("entrypoint", entrypoint_name(worker_ctx))
    scope.set_tag("method", worker_ctx.entrypoint.method_name)
    scope.set_tag("entrypoint_type", kind_of(worker_ctx.entrypoint))
    scope.set_tag("call_id", worker_ctx.call_id)
    scope.set_transaction_name(entrypoint_name(worker_ctx))


class SentryHandle:
    """``self.sentry`` in a worker: reports into the worker's own isolation scope, tagged like
    the chassis' own events. Every method is safe to call when Sentry is not configured (it
    does nothing) and never raises."""

    def __init__(self, enabled: bool, worker_ctx: Any = None) -> None:
        self.enabled = enabled
        self._worker_ctx = worker_ctx

    def __repr__(self) -> str:
        return f"<SentryHandle {'on' if self.enabled else 'off'}>"

    def capture_exception(self, error: BaseException | None = None) -> str | None:
        return self._call(sentry_sdk.capture_exception, error, tag=True)

    def capture_message(self, message: str, level: str = "info") -> str | None:
        return self._call(sentry_sdk.capture_message, message, level=level, tag=True)

    # the spelling of nameko-chassis 3.2.0's README (raven's), kept for its users
    captureException = capture_exception  # noqa: N815
    captureMessage = capture_message  # noqa: N815

    def add_breadcrumb(self, message: str | None = None, category: str | None = None,
                       level: str = "info", **data: Any) -> None:
        self._call(sentry_sdk.add_breadcrumb, message=message, category=category, level=level,
                   data=data or None)

    def set_tag(self, key: str, value: Any) -> None:
        self._call(sentry_sdk.set_tag, key, value)

    def set_context(self, key: str, value: dict[str, Any]) -> None:
        self._call(sentry_sdk.set_context, key, value)

    def _call(self, fn: Any, *args: Any, tag: bool = False, **kwargs: Any) -> Any:
        if not self.enabled:
            return None
        try:
            if tag and self._worker_ctx is not None:
                _tag_scope(sentry_sdk.get_isolation_scope(), self._worker_ctx)
            return fn(*args, **kwargs)
        except Exception:
            log.exception("chassis: sentry %s failed", getattr(fn, "__name__", fn))
            return None


class SentryReporter(DependencyProvider):
    """Captures each worker's unexpected exception once. A no-op without a DSN.

    Each worker reports from an isolation scope of its own without this provider forking one:
    a nameko worker is a new greenthread, greenlet starts each one in an empty ``contextvars``
    context, and sentry-sdk makes a fresh isolation scope in a context that has none, at its
    first use (a breadcrumb, a tag, a capture). A worker that succeeds without touching Sentry
    costs nothing; tags are set when something is captured.
    """

    def __init__(self) -> None:
        self.enabled = False

    def __repr__(self) -> str:
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<SentryReporter [{service}] {'on' if self.enabled else 'off'}>"

    def setup(self) -> None:
        try:
            self.enabled = init_sentry(load_settings().sentry)
        except Exception:
            log.exception("chassis: Sentry off for %s", self.container.service_name)
            self.enabled = False

    def get_dependency(self, worker_ctx: Any) -> SentryHandle:
        return SentryHandle(self.enabled, worker_ctx)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        if not self.enabled or not exc_info:
            return
        try:
            # an operator's kill from the console is no bug of the service's
            if outcome_of(worker_ctx, exc_info) in (SUCCESS, EXPECTED_ERROR, KILLED):
                return
            args, kwargs = redacted_arguments(worker_ctx.entrypoint, worker_ctx.args,
                                              worker_ctx.kwargs)
            scope = sentry_sdk.get_isolation_scope()
            _tag_scope(scope, worker_ctx)
            scope.set_context("nameko", {
                "service": worker_ctx.service_name,
                "entrypoint": entrypoint_name(worker_ctx),
                "call_id": worker_ctx.call_id,
                "call_id_stack": list(worker_ctx.call_id_stack),
                "args": args,
                "kwargs": kwargs,
                "context_data": redact_mapping(worker_ctx.data),
            })
            sentry_sdk.capture_exception(exc_info)
        except Exception:
            log.exception("chassis: sentry capture failed for %r", worker_ctx)
