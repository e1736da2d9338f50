"""The chassis ``Service`` base class: subclass it and a nameko service gets the providers.

::

    from nameko.rpc import rpc
    from nameko_chassis.service import Service

    class Orders(Service):
        name = "orders"
        version = "1.4.2"     # optional; else CHASSIS.VERSION / $APP_VERSION

        @rpc
        def place(self, item): ...

Each provider is an ordinary nameko ``DependencyProvider`` and can be used on its own; each is
silent until configured (see ``docs/chassis.md``). A subclass switches a provider or a base RPC
method off by setting the attribute to ``None`` (``sentry = None``, ``set_log_level = None``).

Base RPC methods: ``ping()``, ``describe()`` (name, version, entrypoints with their types — what
discovery lists) and ``set_log_level(logger, level)``; and nameko-chassis 3.2.0's, which its
callers keep using: ``say_hello()``, ``query_state()`` (:class:`ServiceState`, built from the
console's collector, so arguments are redacted), ``serve_metrics`` (``GET /metrics`` on nameko's
web server, see :class:`~nameko_chassis.providers.metrics.MetricsRoute`). ``set_log_level`` takes
3.2.0's int levels too and then answers what 3.2.0 answered. docs/migrating.md has the details.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from . import __version__
from .config import load_settings
from .probe import entrypoints
from .probe.collect import collect
from .probe.schema import FrameDict
from .providers.bookkeeping import WorkerBookkeeping
from .providers.fleet import FleetIntrospection
from .providers.health import Health
from .providers.metrics import PrometheusMetrics, metrics_route
from .providers.sentry import SentryReporter
from .providers.tracing import Tracing
from .providers.watchdog import HubWatchdog

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")

#: When this module was imported: ``ServiceState.uptime`` counts from here (as in 3.2.0).
START_TIME = time.time()

#: The entrypoint each base method gets in every subclass (unless it sets the attribute to
#: ``None``): ours, and nameko-chassis 3.2.0's.
BASE_ENTRYPOINTS: dict[str, Callable[[Any], Any]] = {
    "ping": rpc,
    "describe": rpc,
    # an unknown level name is the caller's mistake, not the service's: not reported to Sentry
    "set_log_level": rpc(expected_exceptions=ValueError),
    "say_hello": rpc,
    "query_state": rpc,
    "serve_metrics": metrics_route("GET", "/metrics"),
}
#: RPC methods every subclass gets unless it sets the attribute to ``None``.
BASE_RPC_METHODS = ("ping", "describe", "set_log_level", "say_hello", "query_state")


@dataclass(frozen=True)
class WorkerState:
    """One running worker, as 3.2.0's ``query_state()`` listed it. ``args``, ``kwargs`` and
    ``data`` are the collector's redacted, bounded reprs (3.2.0 had ``str()`` of each, secrets
    included); ``stacktrace`` is in ``traceback.format_list`` form. ``call_id`` and ``age_s``
    are new."""

    class_name: str
    method_name: str
    args: list[str]
    kwargs: dict[str, str]
    data: dict[str, str]
    stacktrace: list[str]
    call_id: str = ""
    age_s: float | None = None


@dataclass(frozen=True)
class ServiceState:
    """A service container and its running workers (3.2.0's ``query_state()`` answer, as
    ``dataclasses.asdict``)."""

    version: str
    service_name: str
    uptime: float
    entrypoints: list[str]
    dependencies: list[str]
    running_workers: int
    max_workers: int
    worker_states: list[WorkerState] = field(default_factory=list)

    @classmethod
    def from_container(cls, container: Any) -> ServiceState:
        """Read ``container`` with the console's collector (:func:`nameko_chassis.probe.collect.collect`):
        bounded and redacted like every snapshot."""
        snapshot = collect(container)
        data = snapshot["containers"][0] if snapshot["containers"] else None
        service_cls = container.service_cls
        version = getattr(service_cls, "version", "") or os.environ.get("APP_VERSION") or \
            "unknown"
        workers = []
        for w in data["workers"] if data else []:
            context = {k: str(v) for k, v in w["context_data"].items()}
            context["call_id_stack"] = str(w["call_id_stack"])
            workers.append(WorkerState(
                class_name=service_cls.__name__,
                method_name=w["entrypoint"].rpartition(".")[2],
                args=list(w["args"]),
                kwargs=dict(w["kwargs"]),
                data=context,
                stacktrace=[_format_frame(f) for f in w["stack"] or ()],
                call_id=w["call_id"],
                age_s=w["age_s"],
            ))
        return cls(
            version=version,
            service_name=container.service_name,
            uptime=time.time() - START_TIME,
            entrypoints=[e.method_name for e in container.entrypoints],
            dependencies=[d.attr_name for d in container.dependencies],
            running_workers=data["workers_running"] if data else len(workers),
            max_workers=container.max_workers,
            worker_states=workers,
        )


def _format_frame(frame: FrameDict) -> str:
    # what traceback.format_list writes for a frame
    line = f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}\n'
    code = (frame.get("code") or "").strip()
    return line + (f"    {code}\n" if code else "")


class ContainerProvider(DependencyProvider):
    """Gives workers the ``ServiceContainer`` that runs them (3.2.0's ``container``)."""

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.container


def _copy_function(fn: Any) -> Any:
    """A distinct function object with the same code and signature (nameko registers an
    entrypoint on the function object itself, and checks call arguments against it)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__annotations__ = dict(fn.__annotations__)
    copy.__doc__ = fn.__doc__
    copy.__qualname__ = fn.__qualname__
    copy.__module__ = fn.__module__
    return copy


class Service:
    """Base class for chassis services. Subclasses set ``name`` (as for any nameko service).

    ``Service`` itself has no entrypoints — so a module that imports it is not mistaken for
    one more service by ``nameko run`` — each subclass gets its own ``@rpc`` copies of
    :data:`BASE_RPC_METHODS` when it is defined. ``describe()`` uses the ``chassis`` provider.
    """

    #: 3.2.0's default; a service sets its own
    name: ClassVar[str] = "no name"
    #: the service's version, reported by describe() and the nameko_service_info metric
    version: ClassVar[str] = ""

    chassis = WorkerBookkeeping()
    metrics = PrometheusMetrics()
    sentry = SentryReporter()
    tracing = Tracing()
    health = Health()
    #: the ServiceContainer running the worker (3.2.0's; query_state() uses it)
    container = ContainerProvider()
    hub_watchdog = HubWatchdog()
    fleet = FleetIntrospection()  # read-only snapshots over the broker (docs/fleet.md)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method, entrypoint in BASE_ENTRYPOINTS.items():
            if method in cls.__dict__:
                continue  # the subclass defines its own, or switches it off with None
            if getattr(cls, method, None) is Service.__dict__[method]:
                setattr(cls, method, entrypoint(_copy_function(Service.__dict__[method])))

    def ping(self) -> str:
        """Answer ``"pong"``: the service consumes its RPC queue."""
        return "pong"

    def describe(self) -> dict[str, Any]:
        """What discovery shows: name, version, libraries and every entrypoint with its type."""
        chassis = getattr(self, "chassis", None)
        container = getattr(chassis, "container", None)
        if container is None:
            raise RuntimeError("describe() needs the chassis provider (chassis = None switches it off)")
        listed = []
        for ep in sorted(container.entrypoints, key=lambda e: (e.method_name, type(e).__name__)):
            if not getattr(ep, "active", True):
                continue  # serve_metrics without a web server to answer on
            kind = entrypoints.kind_of(ep)
            details = entrypoints.details(ep, kind)
            details.pop("class", None)
            listed.append({"method": ep.method_name, "type": kind, "details": details})
        version = type(self).version or load_settings().chassis.version
        return {
            "name": container.service_name,
            "version": version,
            "chassis": __version__,
            "max_workers": container.max_workers,
            "entrypoints": listed,
        }

    def set_log_level(self, logger: str | None = None, level: str | int | None = None, *,
                      logger_name: str | None = None) -> dict[str, str] | str:
        """Set ``logger``'s level (``""`` or ``"root"`` for the root logger).

        - A level name (``"debug"``, ``"INFO"``) answers ``{"logger", "previous", "level"}``;
          an unknown name raises ``ValueError`` (an expected exception: not reported).
        - An int level (3.2.0's callers send ``logging.DEBUG``) is set as given and answers
          3.2.0's message string, with the call that reverts it.

        ``logger_name=`` is 3.2.0's keyword for ``logger``. It changes one instance: call it
        once per replica.
        """
        name = logger_name if logger is None else logger
        target = logging.getLogger(None if name in ("", "root", None) else name)
        if isinstance(level, int) and not isinstance(level, bool):
            return self._set_log_level_int(name or "", target, level)
        upper = str(level).upper()
        if upper not in _LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)} "
                             "or an int")
        previous = logging.getLevelName(target.level)
        target.setLevel(upper)
        return {"logger": target.name, "previous": previous, "level": upper}

    def _set_log_level_int(self, logger_name: str, target: logging.Logger, level: int) -> str:
        # 3.2.0's exact answer: its callers may show or parse it
        logging.getLogger(__name__).info(
            f"Updating level for {logger_name} from {target.level} to {level}")
        message = f"""
        Log level changed on host {socket.gethostname()}. Revert with:

            n.rpc.{self.name}.set_log_level({logger_name!r}, {target.level!r})
        """
        target.setLevel(level)
        return message

    def say_hello(self) -> str:
        """3.2.0's reachability check (``is_service_responsive`` calls it): ``"Hello from <name>!"``."""
        return f"Hello from {self.name}!"

    def query_state(self) -> dict[str, Any]:
        """3.2.0's state dump: ``dataclasses.asdict(ServiceState.from_container(...))``, read by
        the console's collector (arguments and context data redacted)."""
        container = getattr(self, "container", None)
        if container is None:
            raise RuntimeError("query_state() needs the container provider (container = None "
                               "switches it off)")
        return asdict(ServiceState.from_container(container))

    def serve_metrics(self, request: Any) -> Any:
        """``GET /metrics`` on nameko's web server (3.2.0's route): the same registry as the
        chassis server's ``/metrics``."""
        return self.metrics.expose_metrics(request)
