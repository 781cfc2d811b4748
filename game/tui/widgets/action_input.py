"""The line where the player types what they do, with history on up/down.

Home and End move the cursor while there is text; on an empty line they scroll the
story to its start or end (PageUp/PageDown and ctrl+Home/ctrl+End always scroll it:
the game screen binds them), so the player reads back without leaving the input.
A paste keeps its order and loses its control sequences (`game.safe_text.strip_controls`);
its lines are joined with spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from game.i18n import N_, _
from game.safe_text import strip_controls


class ActionInput(Input):
    PLACEHOLDER = N_("What do you do? (a number, or your own words; /help)")
    BINDINGS = [
        Binding("up", "history(-1)", "Previous action", show=False),
        Binding("down", "history(1)", "Next action", show=False),
    ]

    @dataclass
    class ScrollStory(Message):
        """Scroll the story log: 'home' or 'end'."""

        where: str

    def __init__(self, **kwargs):
        super().__init__(placeholder=_(self.PLACEHOLDER), **kwargs)
        self.history: list[str] = []
        self._index = 0
        self._draft = ""

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._index = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._index == len(self.history):
            self._draft = self.value
        self._index = max(0, min(len(self.history), self._index + step))
        self.value = self.history[self._index] if self._index < len(self.history) else self._draft
        self.cursor_position = len(self.value)

    def action_home(self, select: bool = False) -> None:
        if not self.value and not select:
            self.post_message(self.ScrollStory("home"))
        else:
            super().action_home(select)

    def action_end(self, select: bool = False) -> None:
        if not self.value and not select:
            self.post_message(self.ScrollStory("end"))
        else:
            super().action_end(select)

    def _on_paste(self, event: events.Paste) -> None:
        text = " ".join(line.strip() for line in strip_controls(event.text).splitlines() if line.strip())
        if text:
            selection = self.selection
            if selection.is_empty:
                self.insert_text_at_cursor(text)
            else:
                self.replace(text, *selection)
        event.stop()
        event.prevent_default()  # not Input's own handler too (it keeps only the first line)
