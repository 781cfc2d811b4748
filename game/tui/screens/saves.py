"""Saving to a named slot, and choosing a save to load."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from game.diagnostics import GameFileError
from game.i18n import N_, _
from game.safe_text import inert_line
from game.saves import read_save
from game.session import autosave_dir, saved_games


class SaveScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", N_("Cancel"), id="close")]

    def __init__(self, default: str):
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(_("Save the game"), style="bold"), classes="dialog-title")
            yield Static(Text(_("Name of the save slot (Enter saves, Esc cancels):")))
            yield Input(value=self.default, id="slot")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class LoadScreen(ModalScreen):
    """Named saves, then autosaves (the one kept from before a restart too), each with its
    quest's title, turn and time; a save that cannot be read is listed as such."""

    BINDINGS = [Binding("escape", "dismiss(None)", N_("Cancel"), id="close")]

    def compose(self) -> ComposeResult:
        self.files = saved_games()
        with Vertical(id="dialog"):
            yield Static(Text(_("Load a saved game"), style="bold"), classes="dialog-title")
            if not self.files:
                yield Static(Text(_("No saved games yet. (Esc to go back)")))
            else:
                yield Static(Text(_("Enter loads the highlighted game; Esc goes back."), style="dim"))
            menu = OptionList(id="saves")
            for i, path in enumerate(self.files):
                menu.add_option(Option(Text(describe(path)), id=str(i)))
            yield menu

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        if menu.option_count:
            menu.highlighted = 0
        menu.focus()  # Enter loads the newest save at once

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.files[int(event.option.id)])


def describe(path) -> str:
    """One line for the Load list: which save, the quest's title, the turn and when."""
    try:
        when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    except OSError:
        when = "?"
    if path.parent == autosave_dir():
        quest, _tilde, kind = path.stem.partition("~")
        name = (_("autosave before restart") if kind == "restarted" else _("autosave"))
    else:
        name = path.stem
    try:
        save = read_save(path)
    except GameFileError:
        return inert_line(_("{name}   (cannot be read: Enter says why)   {when}").format(name=name, when=when))
    return inert_line(_("{name}: {title}, turn {turn}   {when}").format(
        name=name, title=save.quest_title, turn=save.state.turn, when=when))
