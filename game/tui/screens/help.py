"""Help: how to play, the keys (as currently mapped), the commands and the Spirit's state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from game.i18n import N_, _, base_language, current_language
from game.phrases import phrase
from game.safe_text import inert

# Lines stay under 56 characters: the help dialog keeps them whole at 60 columns.
COMMANDS = N_("""\
Commands (type them in the input line)
  /undo            go back one turn
  /retry           narrate the last turn again
  /save [name]     save to a named slot
  /load            load a save
  /export          write the story so far as Markdown
  /remember <note> pin a note the Spirit always sees
  /forget <n>      remove memory note n
  /memory          list the notes
  /context         what the Spirit saw last turn
  /settings        personality, sampling, language
  /restart         start this quest again
  /quit            quit (the game is autosaved)""")

READING = N_("""\
Reading and moving around (typing stays in the input)
  PageUp/PageDown  scroll the story
  ctrl+Home/End    the story's start / end
  Home/End         the same, when the input is empty
  Up/Down          your earlier actions
  Tab              the next field or button
  Enter            choose; Esc closes every dialog
A new turn brings the story back to its end.""")

SAVING = N_("""\
The game autosaves after every turn; "Continue" on the
title screen resumes it. Keys can be remapped in the
settings file (keys: {binding-id: key}).""")


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1", "dismiss", N_("Close"), id="close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text(_("Help (Esc closes)"), style="bold"), classes="dialog-title")
            with VerticalScroll(id="help-text"):
                yield Static(Text(self.how_to_play() + "\n"))
                yield Static(Text(self.spirit_text() + "\n"), id="help-spirit")
                yield Static(Text(_(READING) + "\n"))
                yield Static(Text(_(COMMANDS) + "\n"))
                yield Static(Text(_(SAVING) + "\n"))
                yield Static(Text(self.keys_text()), id="help-keys")

    def on_mount(self) -> None:
        self.query_one("#help-text").focus()  # PageUp/PageDown and the arrows scroll it

    def how_to_play(self) -> str:
        """The game's own help sentence, in the quest's form of address when it is the quest's language."""
        session = self.app.session
        if session is not None and base_language(session.quest.language) == current_language():
            return session.engine.say("help")
        return phrase(current_language(), "help")

    def spirit_text(self) -> str:
        """The Spirit's state, with the whole reason when it is silent (said once, here)."""
        app = self.app
        if app.spirit_status == "silent":
            return _("The Storyteller Spirit is silent: {reason}. The quest's own words go on.").format(
                reason=inert(_(app.spirit_reason)))
        if app.spirit_status == "loading":
            return _("The Storyteller Spirit is waking: {detail}").format(detail=inert(app.spirit_detail))
        return _("The Storyteller Spirit is awake.")

    def keys_text(self) -> str:
        from game.tui.screens.game import GameScreen

        lines = [_("Keys (binding id in brackets, for remapping)")]
        keymap = dict(self.app.settings.keys)
        seen = set()
        for binding in GameScreen.BINDINGS + list(self.app.BINDINGS):
            if binding.id in seen:
                continue
            seen.add(binding.id)
            key = keymap.get(binding.id, binding.key)
            lines.append(f"  {key:<10} {_(binding.description)}  [{binding.id}]")
        return "\n".join(lines)
