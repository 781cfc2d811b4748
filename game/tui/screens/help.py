"""Help: the keys (as currently mapped) and the commands."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from game.phrases import phrase

# Lines stay under 72 characters: the help dialog is that wide at 80 columns.
COMMANDS = """\
Commands (type them in the input line)
  /undo            go back one turn (all the way to the start)
  /retry           narrate the last turn again with a new sample
  /save [name]     save to a named slot        /load     load a save
  /export          write the story so far as Markdown
  /remember <note> pin a memory note the Spirit always sees
  /forget <n>      remove memory note n        /memory   list them
  /context         what the Spirit saw last turn
  /settings        narrator personality and sampling
  /restart         start this quest again
  /quit            quit (the game is autosaved)

The game autosaves after every turn; "Continue" on the title screen
resumes it. Keys can be remapped in the settings file
(keys: {binding-id: key})."""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1", "dismiss", "Close", id="close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text("Help", style="bold"), classes="dialog-title")
            with VerticalScroll():
                yield Static(Text(phrase("en", "help") + "\n"))
                yield Static(Text(COMMANDS + "\n"))
                yield Static(Text(self.keys_text()))

    def keys_text(self) -> str:
        from game.tui.screens.game import GameScreen

        lines = ["Keys (binding id in brackets, for remapping)"]
        keymap = dict(self.app.settings.keys)
        seen = set()
        for binding in GameScreen.BINDINGS + list(self.app.BINDINGS):
            if binding.id in seen:
                continue
            seen.add(binding.id)
            key = keymap.get(binding.id, binding.key)
            lines.append(f"  {key:<10} {binding.description}  [{binding.id}]")
        return "\n".join(lines)
