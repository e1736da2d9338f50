"""Nothing from the peer reaches the operator's terminal raw: fake backdoor servers that put
escape codes in error frames and bootstrap rejections, or flood the console with garbage; hostile
text in a real service's workers through ``--once``; ``debug_runner`` on a lone surrogate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from nameko_chassis.probe import wire
from nameko_chassis.view.text import clip, sanitize
from tests.harness import REPO

pytestmark = pytest.mark.timeout(120)

HOSTILE = ("\x1b]0;pwned-title\x07\x1b[2J\x1b[31mred\u202egnp.exe\u202c\u2066x\u2069"
           "\u2028next\u2029para\u200bzw\ufeff\udcff\x9b6n")
#: What must never reach stdout/stderr as raw characters (they come out as visible escapes).
UNSAFE = ["\x1b", "\x07", "\x9b", "\u202e", "\u202c", "\u2066", "\u2069", "\u2028", "\u2029",
          "\u200b", "\ufeff"]


def test_clip_and_sanitize_escape_everything_that_acts_on_a_terminal() -> None:
    for text in (clip(HOSTILE, 1000), sanitize(HOSTILE)):
        assert not any(c in text for c in UNSAFE)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        text.encode("utf-8")  # strict: no lone surrogate left
        assert "\\x1b" in text and "\\u202e" in text and "\\udcff" in text
    assert sanitize("ordinary text, ünïcode ✓") == "ordinary text, ünïcode ✓"


class FakeBackdoor:
    """A plain TCP server that speaks just enough of the backdoor to be attached to."""

    def __init__(self, answer: Callable[[bytes, int], bytes | None]) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"Python 3.11 fake\n>>> ")
                n = 0
                buf = b""
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        reply = self.answer(line, n)
                        n += 1
                        if reply is None:
                            return
                        conn.sendall(reply + b">>> ")
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[bytes, int], bytes | None]], FakeBackdoor]]:
    servers: list[FakeBackdoor] = []

    def start(answer: Callable[[bytes, int], bytes | None]) -> FakeBackdoor:
        servers.append(FakeBackdoor(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def console(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "chassis_console", *args], capture_output=True,
                          cwd=REPO, timeout=60, env={**os.environ, "COLUMNS": "120"})


def assert_clean(out: bytes) -> None:
    text = out.decode("utf-8")  # strict: valid UTF-8, so no raw 0xFF either
    found = [repr(c) for c in UNSAFE if c in text]
    assert not found, f"raw {found} in {text!r}"


def error_frame_everywhere(line: bytes, n: int) -> bytes:
    body = json.dumps({"type": "Evil" + HOSTILE, "message": HOSTILE,
                       "traceback": f"Traceback\n  {HOSTILE}\nEvil: {HOSTILE}\n"})
    return wire.encode_frame("e", body, 0.1).encode()


def reject_bootstrap(line: bytes, n: int) -> bytes:
    # the hello probe gets no frame (no agent yet); the upload gets a "rejection" with codes
    return b"\n" if n == 0 else f"SyntaxError: {HOSTILE}\n".encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("mode", ["--json", "--once"])
@pytest.mark.parametrize("answer", [error_frame_everywhere, reject_bootstrap])
def test_a_fake_server_cannot_write_escape_codes_to_the_terminal(fake, mode, answer) -> None:
    server = fake(answer)
    done = console(mode, f"127.0.0.1:{server.port}")
    assert done.returncode != 0
    assert done.stderr.startswith(b"chassis-console: ")
    assert_clean(done.stdout)
    assert_clean(done.stderr)
    assert b"\\x9b" in done.stderr  # shown, as an escape


def test_a_flood_of_garbage_fails_with_a_protocol_error_in_bounded_memory(fake) -> None:
    chunk = b"garbage " * 8192

    def flood(line: bytes, n: int) -> bytes | None:
        return None

    class Flood(FakeBackdoor):
        def _session(self, conn: socket.socket) -> None:
            with conn:
                try:
                    for _ in range(100 * 1024 * 1024 // len(chunk)):  # 100 MB, never a prompt
                        conn.sendall(chunk)
                except OSError:
                    return

    server = Flood(flood)
    try:
        # the peak RSS of the console alone: a forked child starts with its parent's peak, so
        # reset it first (Linux: clear_refs 5), then read VmHWM at the end
        code = ("import sys\n"
                "open('/proc/self/clear_refs', 'w').write('5')\n"
                "from chassis_console.cli import run\n"
                "from chassis_console.errors import ConsoleError\n"
                "try:\n    rc = run(['--json', sys.argv[1]])\n"
                "except ConsoleError as exc:\n    rc = exc.exit_code; print(exc, file=sys.stderr)\n"
                "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
                "print('RSS', hwm[0], 'RC', rc)\n")
        done = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{server.port}"],
                              capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        server.close()
    _, rss_kb, _, rc = done.stdout.split()
    assert int(rc) == 4, done.stderr
    assert "without a prompt" in done.stderr
    assert int(rss_kb) < 100 * 1024, f"console took {int(rss_kb) // 1024} MB"


def test_hostile_text_in_a_real_worker_is_escaped_by_once(start_service) -> None:
    service = start_service()
    service.hold(1, tag="h", context={"note": HOSTILE}, payload=HOSTILE)
    try:
        done = subprocess.run([sys.executable, "-m", "chassis_console", "--once", service.target],
                              capture_output=True, cwd=REPO, timeout=60,
                              env={**os.environ, "COLUMNS": "200", "LC_ALL": "C",
                                   "PYTHONIOENCODING": "utf-8:surrogateescape"})
        assert done.returncode == 0, done.stderr
        assert_clean(done.stdout)
        assert b"\xff" not in done.stdout
        # debug_runner in a raw backdoor: a lone surrogate in a value never loses the page
        page = service.eval("__import__('nameko_chassis.debug', fromlist=['x']).debug_runner("
                            "runner, color=False)")
        assert "parking" in page
    finally:
        service.release("h")


def test_debug_runner_writes_a_page_with_a_lone_surrogate_to_a_strict_stream() -> None:
    import io

    from nameko_chassis.debug import _encodable

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    out.write(_encodable("page \udcff end", out))
    out.flush()
    assert out.buffer.getvalue() == b"page \\udcff end"  # type: ignore[attr-defined]
