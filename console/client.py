"""The console's seam to a service: the :class:`Target` interface and its backdoor implementation.

:class:`BackdoorClient` speaks framed requests over the raw line protocol
(:mod:`chassis_console.backdoor`):

1. connect and read the banner up to the first ``>>> ``;
2. bootstrap once per service process: ship the collector and agent *source* (standard library
   only) into a private namespace stored under the single name ``__chassis__`` in the backdoor's
   shared namespace, tagged with a hash of the sources — skipped when the hash already matches;
3. one line per request, ``__chassis__.handle(globals(), op, b64json)``; one frame back (see
   :mod:`nameko_chassis.agent`), then the prompt.

Failures are typed (:mod:`chassis_console.errors`): unreachable, unresponsive, not a Python
backdoor, no nameko runner found, remote error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Iterable
from importlib import resources
from typing import Any, Protocol

from nameko_chassis.snapshot import Snapshot, SnapshotError

from .backdoor import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, BackdoorConnection
from .errors import NoRunnerError, ProtocolError, RemoteError, UnresponsiveError
from .target import TargetAddress

FRAME_MARK = b"\x1e\x1eCHASSIS "
NAMESPACE_NAME = "__chassis__"

#: Shipped into the service, in this order: (module name inside the agent, source file).
SHIPPED_MODULES: tuple[tuple[str, str], ...] = (
    ("introspection", "introspection.py"),
    ("agent", "agent.py"),
)
OPTIONAL_SHIPPED_MODULES: tuple[tuple[str, str], ...] = (("remote_repl", "remote_repl.py"),)


class Target(Protocol):
    """What the console talks to. :class:`BackdoorClient` is the real one; tests use an
    in-memory one behind the same interface."""

    label: str

    def connect(self) -> None: ...

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot: ...

    def kill_worker(self, call_id: str) -> bool: ...

    def close(self) -> None: ...


def _shipped_sources() -> list[tuple[str, str]]:
    pkg = resources.files("nameko_chassis")
    out = [(name, pkg.joinpath(filename).read_text(encoding="utf-8"))
           for name, filename in SHIPPED_MODULES]
    for name, filename in OPTIONAL_SHIPPED_MODULES:
        path = pkg.joinpath(filename)
        if path.is_file():
            out.append((name, path.read_text(encoding="utf-8")))
    return out


_BOOTSTRAP = '''
def __chassis_boot(sources, version):
    import sys, types
    mods = {}
    for name, src in sources:
        mod = types.ModuleType("nameko_chassis_remote." + name)
        mod.__file__ = "<nameko_chassis_remote/" + name + ".py>"
        sys.modules[mod.__name__] = mod  # dataclasses and typing look modules up by name
        try:
            exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        finally:
            del sys.modules[mod.__name__]
        mods[name] = mod
    agent = mods["agent"]
    agent.VERSION = version
    agent.install(mods)
    return agent
__chassis__ = __chassis_boot(%(sources)r, %(version)r)
del __chassis_boot
'''


class _Payload:
    def __init__(self, sources: list[tuple[str, str]]) -> None:
        digest = hashlib.sha256()
        for name, src in sources:
            digest.update(name.encode() + b"\0" + src.encode() + b"\0")
        self.version = digest.hexdigest()[:16]
        program = _BOOTSTRAP % {"sources": sources, "version": self.version}
        blob = base64.b64encode(zlib.compress(program.encode("utf-8"), 9)).decode("ascii")
        # one physical line; exec runs in the backdoor namespace, so the boot function's name
        # is deleted again and only __chassis__ remains
        self.line = (f"exec(__import__('zlib').decompress(__import__('base64')"
                     f".b64decode('{blob}')).decode('utf-8'))")


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
        # delta refreshes: a session id per connection, and the full workers it has seen
        self._session: str | None = None
        self._known: dict[str, dict[str, Any]] = {}

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

    def connect(self) -> None:
        """Connect, bootstrap the agent if needed, and check there is something to inspect."""
        self.conn.connect()
        self._session = uuid.uuid4().hex
        self._known = {}
        payload = _get_payload()
        # Probe: prints a frame when an agent is there, nothing when it is not.
        hello = self._request_raw(
            f"None if globals().get({NAMESPACE_NAME!r}) is None else "
            f"{NAMESPACE_NAME}.handle(globals(), 'hello')",
            allow_empty=True,
        )
        if hello is None or hello.get("version") != payload.version:
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
            if "NameError" in text and NAMESPACE_NAME in text:
                # the service restarted under us: bootstrap again on the next connect
                self.close()
                raise ProtocolError(f"{self.label}: the collector is gone (service restarted?); "
                                    "reconnect")
            raise ProtocolError(f"{self.label}: expected a chassis frame, got "
                                f"{_last_line(text)!r} — is this a nameko backdoor?")
        header_end = raw.find(b"\n", start)
        try:
            kind, length_text, stall_text = raw[start + len(FRAME_MARK):header_end].decode(
                "ascii").split()
            length = int(length_text)
            self.last_stall_ms = float(stall_text)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"{self.label}: malformed frame header") from None
        body = raw[header_end + 1: header_end + 1 + length]
        if len(body) != length:
            raise ProtocolError(f"{self.label}: truncated frame ({len(body)} of {length} bytes)")
        self.last_payload_bytes = length
        if kind == "z":
            body = zlib.decompress(base64.b64decode(body))
        try:
            data = json.loads(body)
        except ValueError:
            raise ProtocolError(f"{self.label}: frame is not valid JSON") from None
        if kind == "e":
            raise RemoteError(
                f"{self.label}: the service raised {data.get('type')}: {data.get('message')}",
                remote_traceback=str(data.get("traceback", "")), exc_type=str(data.get("type")))
        return data

    # -- Target --------------------------------------------------------------------------------

    def collect(self, *, stacks: str | Iterable[str] = "all", max_workers: int = 1000,
                **limits: Any) -> dict[str, Any]:
        """The raw schema-v1 snapshot dict."""
        if not self.connected:
            self.connect()
        wire_stacks: Any = stacks if isinstance(stacks, str) else sorted(stacks)
        data = self.request("collect", stacks=wire_stacks, max_workers=max_workers,
                            session=self._session, **limits)
        if not isinstance(data, dict):
            raise ProtocolError(f"{self.label}: expected a snapshot object")
        return self._merge(data)

    def _merge(self, data: dict[str, Any]) -> dict[str, Any]:
        """Rebuild schema v1 from a delta refresh: each container's ``unchanged`` call ids are
        workers sent before on this connection, still parked where they were (see
        ``nameko_chassis.agent.collect``); their ages follow from the snapshot's time."""
        known: dict[str, dict[str, Any]] = {}
        try:
            frames = data.pop("frames", None)
            if frames is not None:  # stacks sent as indexes into a table of distinct frames
                for container in data.get("containers", []):
                    for item in container.get("workers", []) + container.get("managed_threads", []):
                        if item.get("stack"):
                            item["stack"] = [frames[i] for i in item["stack"]]
            now = float(data["time"])
            for container in data.get("containers", []):
                workers = container.get("workers", [])
                unchanged = container.pop("unchanged", None) or []
                for call_id in unchanged:
                    previous = self._known.get(call_id)
                    if previous is None:
                        raise ProtocolError(f"{self.label}: refresh names a worker it never sent")
                    worker = dict(previous)
                    since = worker["started_at"] if worker["started_at"] is not None \
                        else worker["first_seen"]
                    worker["age_s"] = round(max(now - since, 0.0), 3)
                    worker["stack"] = None
                    workers.append(worker)
                if unchanged:
                    workers.sort(key=lambda w: -w["age_s"])
                for worker in workers:
                    known[worker["call_id"]] = worker
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ProtocolError(f"{self.label}: malformed snapshot") from None
        self._known = known
        return data

    def snapshot(self, *, stacks: str | frozenset[str] = "none",
                 max_workers: int = 1000) -> Snapshot:
        data = self.collect(stacks=stacks, max_workers=max_workers)
        try:
            return Snapshot.from_dict(data)
        except SnapshotError as exc:
            raise ProtocolError(f"{self.label}: invalid snapshot: {exc}") from None

    def kill_worker(self, call_id: str) -> bool:
        if not self.connected:
            self.connect()
        return bool(self.request("kill_worker", call_id=call_id).get("killed"))


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


__all__ = ["BackdoorClient", "Target", "UnresponsiveError"]
