"""The backdoor target: framed requests to the probe, shipped into the service on first use.

:class:`BackdoorClient` speaks the probe's wire format (:mod:`nameko_chassis.probe.wire`) over the
raw line protocol (:mod:`.line`):

1. connect and read the banner up to the first ``>>> ``;
2. bootstrap once per service process: ship the probe package (standard library only; compiled
   here when the service's bytecode is this Python's, else source) in a few lines, each a
   request of its own, the last of which puts the agent under the single name ``__chassis__``
   in the backdoor's shared namespace, tagged with a hash of the sources — skipped when the
   hash already matches;
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
# one name, and nothing else.
#
# It is shipped in several lines, each a backdoor request of its own, so that no line holds
# the service's hub for long (the hub runs the service between them): the first line
# (``begin``) stages an empty package tagged with this attach's token; each next one unmarshals
# and runs a few module bodies into it; the last one installs the agent, marks the package
# ready and puts the agent in the namespace — the only step a later attach trusts. A package
# of the same hash marked ready (an agent that left a backdoor without a nameko runner) is
# linked again by ``begin`` rather than booted twice; one that never got ready (an attach cut
# off halfway) is dropped and staged afresh. A line whose stage another attach replaced
# answers ``superseded``. Each module is a code object compiled by the console when the
# service's bytecode magic is the console's (compiling 180 KB of source on the service's hub
# was most of the first attach's stall), else its source.
_BOOT = '''
def __chassis_begin(namespace, name, root, version, token):
    import sys, types

    def drop():
        for key in [k for k in sys.modules if k == root or k.startswith(root + ".")]:
            del sys.modules[key]

    booted = sys.modules.get(root)
    if getattr(booted, "__chassis_ready__", False):
        namespace[name] = booted.agent
        return "linked"
    drop()
    package = types.ModuleType(root)
    package.__path__ = []
    mods = {}

    def ours(their_token):
        return their_token == token and sys.modules.get(root) is package

    def load(their_token, modules):
        if not ours(their_token):
            return "superseded"
        try:
            for mod_name, code in modules:
                mod = types.ModuleType(root + "." + mod_name)
                mod.__file__ = "<nameko_chassis/probe/" + mod_name + ".py>"
                mod.__package__ = root
                sys.modules[mod.__name__] = mod
                if isinstance(code, str):
                    code = compile(code, mod.__file__, "exec")
                exec(code, mod.__dict__)
                setattr(package, mod_name, mod)
                mods[mod_name] = mod
        except BaseException:
            drop()
            raise

    def finish(their_token, namespace):
        if not ours(their_token):
            return "superseded"
        del package.__chassis_load__, package.__chassis_finish__
        agent = mods["agent"]
        agent.VERSION = version
        agent.install(mods)
        package.__chassis_ready__ = True
        namespace[name] = agent

    package.__chassis_load__ = load
    package.__chassis_finish__ = finish
    sys.modules[root] = package
result = __chassis_begin(*args)
'''
#: What the service's line evaluates to (its repr is the backdoor's output) when another
#: attach's stage replaced this one's, and when ``begin`` found the probe booted and linked it.
SUPERSEDED, LINKED = "'superseded'", "'linked'"
#: Marshalled module bytes per shipped line: each line's hold (reading and compiling the line,
#: unmarshalling, running the module bodies) stays near 3 ms on a 2020s core.
CHUNK_BYTES = 96_000


def _module_file(name: str) -> str:
    return f"<nameko_chassis/probe/{name}.py>"


def _blob(obj: Any) -> str:
    """``obj`` marshalled, compressed and in base64: one string literal of a line. Strings and
    tuples marshal alike on every Python 3; code objects only for the same bytecode magic."""
    return base64.b64encode(zlib.compress(marshal.dumps(obj), 6)).decode("ascii")


def _chunks(modules: list[tuple[str, Any]], size: int) -> list[list[tuple[str, Any]]]:
    """The modules in boot order, cut where a line would pass ``size`` marshalled bytes (a
    module larger than that goes alone)."""
    chunks: list[list[tuple[str, Any]]] = [[]]
    used = 0
    for name, code in modules:
        cost = len(marshal.dumps(code))
        if chunks[-1] and used + cost > size:
            chunks.append([])
            used = 0
        chunks[-1].append((name, code))
        used += cost
    return chunks


class _Payload:
    """The probe's bootstrap lines for one set of sources, tagged with their hash."""

    def __init__(self, sources: list[tuple[str, str]], *, chunk_bytes: int = CHUNK_BYTES
                 ) -> None:
        digest = hashlib.sha256()
        for name, src in sources:
            digest.update(name.encode() + b"\0" + src.encode() + b"\0")
        self.version = digest.hexdigest()[:16]
        self.root = f"nameko_chassis_probe_{self.version}"
        self._sources = sources
        self._chunk_bytes = chunk_bytes
        self._compiled: tuple[str, list[str]] | None = None

    def lines(self, token: str, *, compiled: bool) -> list[str]:
        """The lines of one attach, in order: ``begin`` (which checks the service's bytecode
        magic first when ``compiled``, printing ``chassis: bytecode magic differs``), one line
        per chunk of modules, ``finish``. Each prints nothing when it worked, but the answers
        :data:`LINKED` and :data:`SUPERSEDED`."""
        boot, chunks = self._compiled_parts() if compiled else self._source_parts()
        args = (NAMESPACE_NAME, self.root, self.version, token)
        # exec in a dict of its own: the stage lives on the staged package, the backdoor
        # namespace gets only the agent, from finish
        begin = (f"(lambda c, env: (exec(c, env), env['result'])[1])({_unpack(boot)}, "
                 f"{{'args': (globals(), *{args!r})}})")
        if compiled:
            begin += (f" if __import__('importlib.util').util.MAGIC_NUMBER.hex() == {MAGIC!r}"
                      " else print('chassis: bytecode magic differs')")
        stage = f"getattr(__import__('sys').modules.get({self.root!r}), "
        superseded = f"lambda *a: {SUPERSEDED})({token!r}"
        return ([begin]
                + [f"{stage}'__chassis_load__', {superseded}, {_unpack(chunk)})"
                   for chunk in chunks]
                + [f"{stage}'__chassis_finish__', {superseded}, globals())"])

    def _compiled_parts(self) -> tuple[str, list[str]]:
        if self._compiled is None:
            modules = [(name, compile(src, _module_file(name), "exec", dont_inherit=True,
                                      optimize=0)) for name, src in self._sources]
            boot = compile(_BOOT, "<chassis boot>", "exec", dont_inherit=True, optimize=0)
            self._compiled = (_blob(boot),
                              [_blob(c) for c in _chunks(modules, self._chunk_bytes)])
        return self._compiled

    def _source_parts(self) -> tuple[str, list[str]]:
        # source costs the service ~6x its marshalled code per byte (it compiles it), so a
        # line carries a quarter as much (a module larger than that still goes whole)
        return _blob(_BOOT), [_blob(c) for c in _chunks(self._sources, self._chunk_bytes // 4)]


def _unpack(blob: str) -> str:
    """The expression that turns a :func:`_blob` back into its object in the service."""
    return ("__import__('marshal').loads(__import__('zlib').decompress(__import__('base64')"
            f".b64decode('{blob}')))")


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
            self._bootstrap(payload, compiled=magic == MAGIC)
            hello = self.request("hello")
        self.info = hello
        if not hello.get("services"):
            self.close()
            raise NoRunnerError(
                f"{self.label} is a Python backdoor, but no nameko service runner or container "
                "was found in it — is this `nameko run --backdoor-port`?")

    def _bootstrap(self, payload: _Payload, *, compiled: bool, retried: bool = False) -> None:
        """Ship the probe line by line (see ``_BOOT``): each line a request of its own, so the
        service's hub runs between them. Source instead when the service's bytecode differs;
        once more from the start when another attach replaced this one's stage."""
        lines = payload.lines(self._session or uuid.uuid4().hex, compiled=compiled)
        for i, line in enumerate(lines):
            out = self.conn.command(line, timeout=self.conn.timeout + 10).strip()
            if not out:
                continue
            if i == 0 and out == LINKED:  # booted before in this process: linked again
                return
            if i == 0 and compiled:  # compiled for another Python
                return self._bootstrap(payload, compiled=False, retried=retried)
            if out == SUPERSEDED and not retried:
                return self._bootstrap(payload, compiled=compiled, retried=True)
            self.close()
            raise ProtocolError(
                f"{self.label}: the backdoor did not accept the collector "
                f"({_last_line(out)}) — is this a nameko backdoor on Python >= 3.11?")

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
