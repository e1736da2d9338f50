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
discovery lists) and ``set_log_level(logger, level)``.
"""

from __future__ import annotations

import logging
import types
from typing import Any, ClassVar

from nameko.rpc import rpc

from . import __version__
from .config import load_settings
from .probe import entrypoints
from .providers.bookkeeping import WorkerBookkeeping
from .providers.fleet import FleetIntrospection
from .providers.health import Health
from .providers.metrics import PrometheusMetrics
from .providers.sentry import SentryReporter
from .providers.tracing import Tracing

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")

#: RPC methods every subclass gets unless it sets the attribute to ``None``.
BASE_RPC_METHODS = ("ping", "describe", "set_log_level")


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

    name: ClassVar[str]
    #: the service's version, reported by describe() and the nameko_service_info metric
    version: ClassVar[str] = ""

    chassis = WorkerBookkeeping()
    metrics = PrometheusMetrics()
    sentry = SentryReporter()
    tracing = Tracing()
    health = Health()
    fleet = FleetIntrospection()  # read-only snapshots over the broker (docs/fleet.md)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in BASE_RPC_METHODS:
            if method in cls.__dict__:
                continue  # the subclass defines its own, or switches it off with None
            if getattr(cls, method, None) is Service.__dict__[method]:
                setattr(cls, method, rpc(_copy_function(Service.__dict__[method])))

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

    def set_log_level(self, logger: str, level: str) -> dict[str, str]:
        """Set ``logger``'s level (``""`` or ``"root"`` for the root logger); returns the
        previous and new level names. Raises ``ValueError`` for an unknown level."""
        name = str(level).upper()
        if name not in _LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
        target = logging.getLogger(None if logger in ("", "root", None) else logger)
        previous = logging.getLevelName(target.level)
        target.setLevel(name)
        return {"logger": target.name, "previous": previous, "level": name}
