"""What the REPL prints: text made safe for the local terminal, and pages rendered here."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from nameko_chassis.probe import wire


def printable(text: str, stream: Any) -> str:
    """``text`` as ``stream`` can encode it: what a service prints may hold lone surrogates, or
    characters the local terminal's encoding lacks."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        return text.encode(encoding, "replace").decode(encoding, "replace")


def write_output(text: str, stream: Any = None, *, color: bool = False) -> bool:
    """Write what the service printed; a page (a snapshot the service sent for the console to
    draw) is rendered with the page renderer. Returns whether the output ended a line."""
    out = stream if stream is not None else sys.stdout
    ended = True
    for piece in wire.split_pages(text):
        if isinstance(piece, str):
            out.write(printable(piece, out))
            ended = piece.endswith("\n")
            continue
        from nameko_chassis.view.model import Snapshot, SnapshotError
        from nameko_chassis.view.page import render_snapshot, to_text

        try:
            page = to_text(render_snapshot(Snapshot.from_dict(piece)),
                           width=shutil.get_terminal_size().columns, color=color)
        except SnapshotError as exc:
            page = f"(the service sent a page that is not a snapshot: {exc})\n"
        out.write(printable(page, out))
        ended = True
    out.flush()
    return ended
