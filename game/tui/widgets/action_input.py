"""The line where the player types what they do, with history on up/down."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class ActionInput(Input):
    BINDINGS = [
        Binding("up", "history(-1)", "Previous action", show=False),
        Binding("down", "history(1)", "Next action", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(placeholder="What do you do? (a number, or your own words; /help)", **kwargs)
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
