"""The key bar: one line of the keys that matter most, fitted to the width.

Textual's Footer shows every shown binding in declaration order and cuts the line
at the screen's edge, so Quit goes first at 60 columns. This bar takes the screen's
active bindings (so remapped keys and a disabled "Stop" are shown as they are), lists
them in the screen's order of importance, and drops the least important ones that
do not fit. Help and Quit are always shown; F1 lists every key.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from game.i18n import _

ALWAYS = ("help", "quit")


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; width: 100%; background: $panel; color: $text; }
    """

    def __init__(self, order: tuple[str, ...], **kwargs):
        super().__init__(**kwargs)
        self.order = order  # binding ids, most important first

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda *_: self.refresh())

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.refresh()

    def entries(self) -> list[tuple[str, str, str]]:
        """(id, key, description) of each active binding the bar lists, most important first."""
        found: dict[str, tuple[str, str, str]] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.id in self.order and binding.id not in found and active.enabled:
                found[binding.id] = (binding.id, self.app.get_key_display(binding), _(binding.description))
        return [found[i] for i in self.order if i in found]

    def fitted(self, width: int) -> list[tuple[str, str, str]]:
        """The entries that fit in `width` cells: Help and Quit first, then by importance."""
        entries = self.entries()
        chosen = {e[0] for e in entries if e[0] in ALWAYS}
        used = sum(len(k) + len(d) + 2 for i, k, d in entries if i in chosen)
        for i, key, description in entries:
            if i in chosen:
                continue
            size = len(key) + len(description) + 2
            if used + size <= width:
                chosen.add(i)
                used += size
        shown = [e for e in entries if e[0] in chosen and e[0] != "quit"]
        return shown + [e for e in entries if e[0] == "quit"]  # Quit at the end, where it is looked for

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for n, (_id, key, description) in enumerate(self.fitted(max(self.size.width, 1) + 1)):
            if n:
                text.append(" ")
            text.append(key, style="bold reverse")
            text.append(" " + description)
        return text
