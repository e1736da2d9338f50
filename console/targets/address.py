"""Where a backdoor lives: ``HOST:PORT``, ``PORT`` (localhost) or ``unix:/path``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class TargetAddress:
    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> TargetAddress:
        text = text.strip()
        if not text:
            raise UsageError("empty target: expected HOST:PORT, PORT or unix:/path/to/socket")
        if text.startswith("unix:"):
            path = text[len("unix:"):]
            if not path:
                raise UsageError(f"target {text!r}: expected unix:/path/to/socket")
            return cls(path=path)
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = "localhost", text
        host = host.strip("[]") or "localhost"
        try:
            port = int(port_text)
        except ValueError:
            raise UsageError(
                f"target {text!r}: {port_text!r} is not a port number "
                "(expected HOST:PORT, PORT or unix:/path/to/socket)"
            ) from None
        if not 0 < port < 65536:
            raise UsageError(f"target {text!r}: port {port} is out of range 1-65535")
        return cls(host=host, port=port)

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def is_loopback(self) -> bool:
        if self.is_unix:
            return True
        if self.host in ("localhost", "ip6-localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host or "").is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"
