"""The raw backdoor line protocol: connect, read the banner, send one line, read to the prompt.

A nameko backdoor is eventlet's ``code.InteractiveConsole`` over a socket. It has no framing of
its own: it prints output, then ``>>> `` (or ``... `` inside a block). Lines after the first in one
``send`` are dropped, so this class sends exactly one line and waits for the prompt each time.
:mod:`chassis_console.targets.backdoor` builds framed requests on top of it.
"""

from __future__ import annotations

import socket
import time

from ..errors import ProtocolError, UnreachableError, UnresponsiveError
from .address import TargetAddress

PROMPT = b">>> "
CONTINUATION = b"... "
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_TIMEOUT = 10.0
#: Seconds of silence after connecting before the console sends one blank line (see connect).
PROBE_AFTER = 1.0
#: Bytes one reply (banner, or output up to the prompt) may take before the peer counts as
#: broken or hostile: 16 MiB, many times the largest real reply (a full dump of 1000 workers is
#: compressed to well under 1 MiB; REPL output is capped at 200 000 characters by the service).
DEFAULT_MAX_REPLY_BYTES = 16 * 1024 * 1024
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class BackdoorConnection:
    """One connection to a backdoor. Not thread-safe; one request at a time."""

    def __init__(
        self,
        address: TargetAddress | str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.address = TargetAddress.parse(address) if isinstance(address, str) else address
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.banner = ""
        self._sock: socket.socket | None = None
        self._buffer = bytearray()  # appended in place: no quadratic copying of a large reply

    def __repr__(self) -> str:
        state = "connected" if self._sock else "closed"
        return f"<BackdoorConnection {self.address} {state}>"

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> str:
        """Connect and read the banner up to the first prompt. Returns the banner."""
        self.close()
        target = str(self.address)
        try:
            if self.address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(self.address.path)
            else:
                sock = socket.create_connection(
                    (self.address.host, self.address.port), timeout=self.connect_timeout
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except ConnectionRefusedError:
            hint = ("is the service running?" if self.address.is_unix else
                    f"is the service running with --backdoor-port {self.address.port}?")
            raise UnreachableError(f"cannot connect to {target}: connection refused — {hint}") from None
        except FileNotFoundError:
            raise UnreachableError(
                f"cannot connect to {target}: no such socket file — is the service running?"
            ) from None
        except TimeoutError:
            raise UnresponsiveError(
                f"cannot connect to {target}: timed out after {self.connect_timeout:g}s — "
                "check the host and port, and any firewall between"
            ) from None
        except socket.gaierror as exc:
            raise UnreachableError(
                f"cannot connect to {target}: unknown host ({exc.strerror}) — check the host name"
            ) from None
        except OSError as exc:
            raise UnreachableError(f"cannot connect to {target}: {exc.strerror or exc}") from None
        self._sock = sock
        self._buffer = bytearray()
        not_a_backdoor = ProtocolError(
            f"{target} answered, but not with a Python prompt — "
            "is this a nameko backdoor port (nameko run --backdoor-port)?"
        )
        try:
            banner = self._read_banner()
        except UnresponsiveError:
            received = self._buffer
            self.close()
            if received:
                raise not_a_backdoor from None
            # Silence: a backdoor whose hub is blocked by a CPU-bound worker looks exactly like
            # a server that waits for the client to speak first. Report it as unresponsive.
            raise UnresponsiveError(
                f"{target} accepted the connection but sent no prompt within {self.timeout:g}s — "
                "the service may be busy (a worker not yielding to the eventlet hub), "
                "or this is not a backdoor port"
            ) from None
        except UnreachableError:
            received = self._buffer
            self.close()
            if received:
                raise not_a_backdoor from None
            # accepted, said nothing, then hung up: a backdoor always greets first, while a
            # server whose client speaks first (AMQP, PostgreSQL, ...) drops a silent client
            raise ProtocolError(
                f"{target} accepted the connection and closed it without a word — not a "
                "Python backdoor (a server that waits for its client to speak first, such "
                "as AMQP?); is this the nameko backdoor port (nameko run --backdoor-port)?"
            ) from None
        self.banner = banner.decode("utf-8", "replace")
        return self.banner

    def _read_banner(self) -> bytes:
        """Up to the first prompt. A backdoor greets at once; after :data:`PROBE_AFTER` seconds
        of silence one blank line is sent: a busy backdoor answers it later with one more
        prompt (read and dropped here), while a server whose client speaks first (AMQP) takes
        it as a bad greeting and answers with something else, or hangs up."""
        deadline = time.monotonic() + self.timeout
        probed = False
        while True:
            try:
                banner = self.read_until_prompt(
                    timeout=min(PROBE_AFTER, max(deadline - time.monotonic(), 0.01))
                    if not probed else max(deadline - time.monotonic(), 0.01),
                    close_on_timeout=probed)
                break
            except UnresponsiveError:
                if probed or self._buffer or time.monotonic() >= deadline:
                    raise
                probed = True
                # one line (a backdoor drops every line after the first of a send) of eight
                # bytes: the length of an AMQP protocol header, which RabbitMQ answers at once
                self._send(b"       \n")
        if probed:  # the empty line's own prompt
            self.read_until_prompt(timeout=self.timeout)
        return banner

    def abort(self) -> None:
        """Close at once, waking a thread blocked reading from this connection."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> BackdoorConnection:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_line(self, line: str) -> None:
        if "\n" in line or "\r" in line:
            raise ValueError("the backdoor drops every line after the first: send one line")
        self._send((line + "\n").encode("utf-8"))

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise UnreachableError(f"not connected to {self.address}")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise UnreachableError(
                f"connection to {self.address} lost: {exc.strerror or exc}"
            ) from None

    def command(self, line: str, timeout: float | None = None) -> str:
        """Send one line and return everything printed before the next prompt."""
        self.send_line(line)
        out = self.read_until_prompt(timeout=timeout)
        return out.decode("utf-8", "replace")

    def recv_some(self, deadline: float, close_on_timeout: bool = True) -> bytes:
        """Receive the next chunk, raising typed errors on timeout or a closed connection."""
        if self._sock is None:
            raise UnreachableError(f"not connected to {self.address}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if close_on_timeout:
                self.close()
            raise UnresponsiveError(self._unresponsive_message())
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(262144)
        except TimeoutError:
            # The reply may still come, late: drop the connection so it can never be read as
            # the answer to the next request.
            if close_on_timeout:
                self.close()
            raise UnresponsiveError(self._unresponsive_message()) from None
        except OSError as exc:
            self.close()
            raise UnreachableError(
                f"connection to {self.address} lost: {exc.strerror or exc} — "
                "the service may have stopped or restarted"
            ) from None
        if not chunk:
            self.close()
            raise UnreachableError(
                f"connection to {self.address} closed by the service — "
                "it may have stopped or restarted"
            )
        if _QUICKACK is not None and self.address.path is None:
            try:  # ACK at once: the reply's last segment should not wait for a delayed ACK
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        return chunk

    def _unresponsive_message(self) -> str:
        return (
            f"{self.address} is not answering (no reply within {self.timeout:g}s) — "
            "a worker may be hogging the CPU without yielding to the eventlet hub"
        )

    def read_until_prompt(self, timeout: float | None = None, *,
                          close_on_timeout: bool = True) -> bytes:
        """Read up to and excluding the next primary prompt ``>>> `` at the end of output."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            buf = self._buffer
            if buf.endswith(PROMPT) and (len(buf) == len(PROMPT) or buf[-5:-4] == b"\n"):
                self._buffer = bytearray()
                return bytes(buf[: -len(PROMPT)])
            if buf.endswith(CONTINUATION) and (len(buf) == 4 or buf[-5:-4] == b"\n"):
                # The console thinks a block is open: close it so the session stays usable.
                self._buffer = bytearray()
                self._send(b"\n")
                deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
                continue
            chunk = self.recv_some(deadline, close_on_timeout)
            if len(buf) + len(chunk) > self.max_reply_bytes:
                self.close()
                self._buffer = bytearray()
                raise ProtocolError(
                    f"{self.address} sent more than {self.max_reply_bytes // (1024 * 1024)} MiB "
                    "without a prompt — not a backdoor reply; connection closed")
            buf += chunk
