"""The backdoor target: framed requests to the probe, shipped into the service on first use.

:class:`BackdoorClient` speaks the probe's wire format (:mod:`nameko_chassis.probe.wire`) over the
raw line protocol (:mod:`.line`):

1. connect and read the banner up to the first ``>>> ``;
2. bootstrap once per service process: ship the probe package's *source* (standard library only)
   into a private namespace stored under the single name ``__chassis__`` in the backdoor's
   shared namespace, tagged with a hash of the sources — skipped when the hash already matches;
3. one line per request, ``__chassis__.handle(globals(), op, b64json)``; one frame back, then
   the prompt.

Live refreshes are deltas: workers the agent marks unchanged are the previous snapshot's objects
(:meth:`Snapshot.from_wire <nameko_chassis.view.model.Snapshot.from_wire>`). Failures are typed
(:mod:`chassis_console.errors`): unreachable, unresponsive, not a Python backdoor, no nameko
runner found, remote error — and :class:`BlockedError`, an unresponsive service whose hub
watchdog answered in its place (``blocked`` in its hello: since when, and which worker).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import marshal
import re
import time
import uuid
import zlib
from collections.abc import Iterable
from importlib import resources
from typing import Any

from nameko_chassis.probe import MODULES, wire
from nameko_chassis.view.model import Snapshot, SnapshotError
from nameko_chassis.view.text import clip, sanitize_lines

from ..errors import BlockedError, NoRunnerError, ProtocolError, RemoteError, describe_block
from .address import TargetAddress
from .line import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, BackdoorConnection

FRAME_MARK = wire.FRAME_MARK.encode()
NAMESPACE_NAME = wire.AGENT_NAME
_MAGIC_REPLY = re.compile(r"'[0-9a-f]{4,16}'")
#: The first line sent on every connection: a hello frame when the agent is there; when it is
#: not, the service's bytecode magic (hex), so the probe can be shipped compiled when the
#: console's Python makes the same bytecode. The hub watchdog answers it while the hub is
#: blocked.
HELLO_PROBE = (f"__import__('importlib.util').util.MAGIC_NUMBER.hex() if "
               f"globals().get({NAMESPACE_NAME!r}) is None else "
               f"{NAMESPACE_NAME}.handle(globals(), 'hello')")
MAGIC = importlib.util.MAGIC_NUMBER.hex()


def _shipped_sources() -> list[tuple[str, str]]:
    """The probe's modules as (name, source), in the order they boot."""
    pkg = resources.files("nameko_chassis.probe")
    return [(name, pkg.joinpath(f"{name}.py").read_text(encoding="utf-8")) for name in MODULES]


# The probe boots as a package of its own, ``nameko_chassis_probe_<hash>``, registered in
# sys.modules: its relative imports resolve, and the classes it defines can be found by module
# name — nameko serialises an exception by its module path, and a worker killed from the
# console fails with the probe's WorkerKilled. The backdoor namespace holds the agent under
# one name, and nothing else. A package of the same hash booted before (an agent that left a
# backdoor without a nameko runner) is linked again rather than booted twice. Each module is
# a code object compiled by the console when the service's bytecode magic is the console's
# (compiling 180 KB of source on the service's hub was most of the first attach's stall), else
# its source.
_BOOT = '''
def __chassis_boot(modules, version):
    import sys, types
    root = "nameko_chassis_probe_" + version
    booted = sys.modules.get(root)
    if booted is not None and getattr(booted, "agent", None) is not None:
        return booted.agent
    package = types.ModuleType(root)
    package.__path__ = []
    mods = {}
    sys.modules[root] = package
    try:
        for name, code in modules:
            mod = types.ModuleType(root + "." + name)
            mod.__file__ = "<nameko_chassis/probe/" + name + ".py>"
            mod.__package__ = root
            sys.modules[mod.__name__] = mod
            if isinstance(code, str):
                code = compile(code, mod.__file__, "exec")
            exec(code, mod.__dict__)
            setattr(package, name, mod)
            mods[name] = mod
    except BaseException:
        for key in [k for k in sys.modules if k == root or k.startswith(root + ".")]:
            del sys.modules[key]
        raise
    agent = mods["agent"]
    agent.VERSION = version
    agent.install(mods)
    return agent
globals()[%(name)r] = __chassis_boot(__chassis_modules, %(version)r)
'''


def _module_file(name: str) -> str:
    return f"<nameko_chassis/probe/{name}.py>"


class _Payload:
    def __init__(self, sources: list[tuple[str, str]]) -> None:
        digest = hashlib.sha256()
        for name, src in sources:
            digest.update(name.encode() + b"\0" + src.encode() + b"\0")
        self.version = digest.hexdigest()[:16]
        boot = _BOOT % {"name": NAMESPACE_NAME, "version": self.version}
        # exec with a locals dict of its own: the boot function and the modules stay there,
        # only __chassis__ lands in the backdoor namespace
        program = f"exec({boot!r}, globals(), {{'__chassis_modules': {sources!r}}})"
        blob = base64.b64encode(zlib.compress(program.encode("utf-8"), 9)).decode("ascii")
        # one physical line
        self.line = (f"exec(__import__('zlib').decompress(__import__('base64')"
                     f".b64decode('{blob}')).decode('utf-8'))")
        self._sources = sources
        self._compiled: str | None = None

    def compiled_line(self) -> str:
        """The same boot with the modules compiled here, for a service whose bytecode magic
        is this Python's (checked again there before anything is unmarshalled)."""
        if self._compiled is None:
            modules = tuple((name, compile(src, _module_file(name), "exec", dont_inherit=True,
                                           optimize=0)) for name, src in self._sources)
            boot = compile(_BOOT % {"name": NAMESPACE_NAME, "version": self.version},
                           "<chassis boot>", "exec", dont_inherit=True, optimize=0)
            blob = base64.b64encode(zlib.compress(marshal.dumps((boot, modules)), 6)
                                    ).decode("ascii")
            self._compiled = (
                "(lambda c: exec(c[0], globals(), {'__chassis_modules': c[1]}))("
                "__import__('marshal').loads(__import__('zlib').decompress(__import__('base64')"
                f".b64decode('{blob}')))) if __import__('importlib.util').util.MAGIC_NUMBER"
                f".hex() == {MAGIC!r} else print('chassis: bytecode magic differs')")
        return self._compiled


_payload: _Payload | None = None


def _get_payload() -> _Payload:
    global _payload
    if _payload is None:
        _payload = _Payload(_shipped_sources())
    return _payload


class BackdoorClient:
    """A :class:`Target` over a nameko backdoor. Blocking; one request at a time."""

    def __init__(self, address: TargetAddress | str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.address = TargetAddress.parse(address) if isinstance(address, str) else address
        self.label = str(self.address)
        self.conn = BackdoorConnection(self.address, timeout=timeout,
                                       connect_timeout=connect_timeout)
        self.info: dict[str, Any] = {}
        self.last_round_trip_ms: float | None = None
        self.last_stall_ms: float | None = None
        self.last_payload_bytes: int = 0
        # delta refreshes: a session id per connection, and the snapshot it last parsed
        self._session: str | None = None
        self._previous: Snapshot | None = None

    def __repr__(self) -> str:
        state = "connected" if self.conn.connected else "disconnected"
        services = ",".join(self.info.get("services", [])) or "?"
        return f"<BackdoorClient {self.label} {state} services={services}>"

    @property
    def connected(self) -> bool:
        return self.conn.connected

    def __enter__(self) -> BackdoorClient:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- connection ----------------------------------------------------------------------------

    def connect(self, *, _retried: bool = False) -> None:
        """Connect, bootstrap the agent if needed, and check there is something to inspect.
        Raises :class:`BlockedError` when the service's hub watchdog answers instead."""
        self.conn.connect()
        self._session = uuid.uuid4().hex
        self._previous = None
        payload = _get_payload()
        # Probe: prints a frame when an agent is there, the bytecode magic when it is not.
        hello = self._request_raw(HELLO_PROBE, allow_empty=True)
        magic = None
        if isinstance(hello, str):
            magic, hello = hello, None
        if hello is not None and hello.get("blocked") is not None:
            self.close()
            if not hello["blocked"].get("ongoing", True) and not _retried:
                # the watchdog took this connection just as the hub came free: ask again
                return self.connect(_retried=True)
            raise BlockedError(self.label, hello)
        if hello is None or hello.get("version") != payload.version:
            line = payload.compiled_line() if magic == MAGIC else payload.line
            out = self.conn.command(line, timeout=self.conn.timeout + 10)
            if out.strip() and line is not payload.line:  # compiled for another Python
                out = self.conn.command(payload.line, timeout=self.conn.timeout + 10)
            if out.strip():
                self.close()
                raise ProtocolError(
                    f"{self.label}: the backdoor did not accept the collector "
                    f"({_last_line(out)}) — is this a nameko backdoor on Python >= 3.11?")
            hello = self.request("hello")
        self.info = hello
        if not hello.get("services"):
            self.close()
            raise NoRunnerError(
                f"{self.label} is a Python backdoor, but no nameko service runner or container "
                "was found in it — is this `nameko run --backdoor-port`?")

    def check_blocked(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """On a connection of its own (the main one may be waiting for the hub): the hub
        watchdog's answer when the service's hub is blocked, else None (the hub answered, or
        nothing did in time). Safe to call from another thread while a request is pending."""
        conn = BackdoorConnection(self.address, timeout=timeout, connect_timeout=timeout)
        try:
            conn.connect()
            conn.send_line(HELLO_PROBE)
            raw = conn.read_until_prompt()
        except Exception:  # not answering, unreachable...: the main request reports those
            return None
        finally:
            conn.close()
        start = raw.find(FRAME_MARK)
        if start < 0:
            return None
        try:
            kind, data, _stall = wire.decode_frame(raw, start)
        except wire.WireError:
            return None
        if kind != "j" or not isinstance(data, dict) or not data.get("blocked"):
            return None
        return data

    # -- requests ------------------------------------------------------------------------------

    def request(self, op: str, **kwargs: Any) -> Any:
        args = base64.b64encode(json.dumps(kwargs).encode()).decode("ascii") if kwargs else ""
        line = f"{NAMESPACE_NAME}.handle(globals(), {op!r}, {args!r})"
        return self._request_raw(line)

    def _request_raw(self, line: str, *, allow_empty: bool = False) -> Any:
        t0 = time.perf_counter()
        self.conn.send_line(line)
        raw = self.conn.read_until_prompt()
        self.last_round_trip_ms = (time.perf_counter() - t0) * 1000
        start = raw.find(FRAME_MARK)
        if start < 0:
            if allow_empty and not raw.strip():
                return None
            text = raw.decode("utf-8", "replace")
            if allow_empty and _MAGIC_REPLY.fullmatch(text.strip()):
                return text.strip()[1:-1]  # HELLO_PROBE without an agent: the bytecode magic
            if "NameError" in text and NAMESPACE_NAME in text:
                # the service restarted under us: bootstrap again on the next connect
                self.close()
                raise ProtocolError(f"{self.label}: the collector is gone (service restarted?); "
                                    "reconnect")
            raise ProtocolError(f"{self.label}: expected a chassis frame, got "
                                f"{_last_line(text)!r} — is this a nameko backdoor?")
        try:
            kind, data, self.last_stall_ms = wire.decode_frame(raw, start)
        except wire.WireError as exc:
            raise ProtocolError(f"{self.label}: {exc}") from None
        self.last_payload_bytes = len(raw) - start
        if kind == "e":
            # the peer's text is never printed raw: no escape codes, bidi or surrogates
            raise RemoteError(
                f"{self.label}: the service raised {clip(data.get('type'), 100)}: "
                f"{clip(data.get('message'), 2000)}",
                remote_traceback=sanitize_lines(data.get("traceback", "")),
                exc_type=clip(data.get("type"), 100))
        return data

    # -- Target --------------------------------------------------------------------------------

    def _collect(self, stacks: str | Iterable[str], max_workers: int, session: str | None,
                 **limits: Any) -> dict[str, Any]:
        if not self.connected:
            self.connect()
        wire_stacks: Any = stacks if isinstance(stacks, str) else sorted(stacks)
        data = self.request("collect", stacks=wire_stacks, max_workers=max_workers,
                            session=session, **limits)
        if not isinstance(data, dict):
            raise ProtocolError(f"{self.label}: expected a snapshot object")
        if self.last_stall_ms is not None:
            # the agent's whole hold of the hub for this request (its trailer: read, compile,
            # collect, encode, write), not only the collection the payload could time itself
            data["took_ms"] = round(self.last_stall_ms, 3)
        return data

    def collect(self, *, stacks: str | Iterable[str] = "all", max_workers: int = 1000,
                **limits: Any) -> dict[str, Any]:
        """One schema-v1 snapshot as a plain dict, every worker in full (``--json``)."""
        data = self._collect(stacks, max_workers, None, **limits)
        frames = data.pop("frames", None)
        try:
            if frames is not None:  # stacks sent as indexes into a table of distinct frames
                for container in data.get("containers", []):
                    for item in container.get("workers", []) + container.get("managed_threads", []):
                        if item.get("stack"):
                            item["stack"] = [frames[i] for i in item["stack"]]
                    for item in container.get("history") or []:  # finished workers' tracebacks
                        if item.get("traceback"):
                            item["traceback"] = [frames[i] for i in item["traceback"]]
        except (TypeError, IndexError, AttributeError):
            raise ProtocolError(f"{self.label}: malformed snapshot (bad frame index)") from None
        return data

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot:
        """The next live snapshot: a delta against the last one on this connection."""
        data = self._collect(stacks, max_workers, self._session)
        try:
            snapshot = Snapshot.from_wire(data, self._previous)
        except SnapshotError as exc:
            # the agent thinks this one was taken in: the next refresh starts afresh
            self._session, self._previous = uuid.uuid4().hex, None
            raise ProtocolError(f"{self.label}: invalid snapshot: {exc}") from None
        self._previous = snapshot
        return snapshot

    def kill_worker(self, call_id: str) -> bool:
        if not self.connected:
            self.connect()
        return bool(self.request("kill_worker", call_id=call_id).get("killed"))


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return clip(lines[-1], 200) if lines else ""  # the peer's text: made safe to print


__all__ = ["BackdoorClient", "BlockedError", "describe_block"]
