"""Editing rules of the REPL: when Enter runs the input, indentation, Tab, and completion from
the live objects in the service."""

from __future__ import annotations

import codeop
import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.completion.base import get_common_complete_suffix
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

if TYPE_CHECKING:
    from .session import Repl

INDENT = "    "
_DEDENT_AFTER = re.compile(r"^\s*(return|pass|break|continue|raise)\b")


def input_state(text: str) -> str:
    """``"complete"``, ``"incomplete"`` or ``"invalid"``, as the interactive prompt decides
    (:func:`codeop.compile_command`); several statements count as complete (the service runs
    them one by one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "is" with a literal
            code = codeop.compile_command(text, "<input>", "single")
    except (SyntaxError, ValueError, OverflowError) as exc:
        if "multiple statements" in str(exc):
            return "complete"
        return "invalid"
    return "incomplete" if code is None else "complete"


def should_run(text: str) -> bool:
    """Enter with the cursor at the end runs the input when the prompt would: a complete or
    invalid single line; a block once its last line is empty (and no bracket is left open — two
    empty lines run it anyway, to show the error)."""
    if not text.strip():
        return True
    lines = text.split("\n")
    if len(lines) == 1:
        return input_state(text) != "incomplete"
    if lines[-1].strip():
        return False
    if len(lines) > 2 and not lines[-2].strip():
        return True
    return input_state(text.rstrip() + "\n") != "incomplete"


def next_indent(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    if line.rstrip().endswith(":"):
        return indent + INDENT
    if _DEDENT_AFTER.match(line):
        return indent[: -len(INDENT)] if indent.endswith(INDENT) else ""
    return indent


def key_bindings(completer: Completer) -> KeyBindings:
    kb = KeyBindings()

    @Condition
    def blank_before_cursor() -> bool:
        from prompt_toolkit.application.current import get_app

        return not get_app().current_buffer.document.current_line_before_cursor.strip()

    @kb.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.complete_state is not None:
            picked = buffer.complete_state.current_completion is not None
            buffer.complete_state = None
            if picked:  # Enter takes the completion chosen in the menu, and runs nothing yet
                return
        document = buffer.document
        at_end = not document.text_after_cursor.strip()
        if (at_end or "\n" not in document.text) and should_run(document.text):
            buffer.validate_and_handle()
            return
        buffer.insert_text("\n" + next_indent(document.current_line_before_cursor))

    @kb.add("escape", "enter")
    def _run_now(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @kb.add("tab", filter=blank_before_cursor)
    def _indent(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text(INDENT)

    @kb.add("tab", filter=~blank_before_cursor)
    def _complete(event: KeyPressEvent) -> None:
        # Synchronous, like readline: a single match is inserted before the next key is
        # handled, so "Tab Enter" typed quickly runs the completed text.
        buffer = event.current_buffer
        if buffer.complete_state is not None:
            buffer.complete_next()
            return
        completions = list(completer.get_completions(
            buffer.document, CompleteEvent(completion_requested=True)))
        if len(completions) == 1:
            buffer.apply_completion(completions[0])
        elif completions:
            common = get_common_complete_suffix(buffer.document, completions)
            if common:
                buffer.insert_text(common)
            else:
                buffer.start_completion(select_first=False)

    @kb.add("backspace", filter=blank_before_cursor)
    def _dedent(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        before = buffer.document.current_line_before_cursor
        if before and len(before) % len(INDENT) == 0:
            buffer.delete_before_cursor(len(INDENT))
        else:
            buffer.delete_before_cursor(1)

    return kb


# ---------------------------------------------------------------------------------------------
# completion


class RemoteCompleter(Completer):
    """Completions computed in the service, from the live namespace (on Tab only)."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        line = document.current_line_before_cursor
        if not line.strip():
            return
        start, matches = self.repl.complete(line)
        typed = line[start:]
        # the menu shows what is new: "service_map", not "runner.service_map"
        base = typed[: max(typed.rfind("."), typed.rfind("[")) + 1]
        for match in matches:
            display = match[len(base):] if base and match.startswith(base) else match
            yield Completion(match, start_position=start - len(line), display=display)
