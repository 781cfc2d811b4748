"""The title screen: continue the latest game, load a save, or pick a quest.

In a served game (`storyteller serve`) it first asks for the player's name; the
quests, saves and settings appear once the game knows whose they are.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from game.catalog import all_quests
from game.diagnostics import GameFileError
from game.i18n import N_, _, ngettext
from game.players import NAME_MAX
from game.safe_text import inert
from game.session import latest_autosave
from game.tui.widgets.key_bar import KeyBar

BANNER = "S T O R Y T E L L E R"
TAGLINE = N_("Quests in YAML, narrated by the Storyteller Spirit")
KEY_BAR = ("help", "quit", "load", "settings", "rescan")
ORIGINS = {"bundled": N_("bundled"), "user": N_("user")}  # where a quest comes from
SPIRIT_WORDS = {"loading": N_("waking"), "ready": N_("ready"), "silent": N_("silent")}


class TitleScreen(Screen):
    BINDINGS = [
        Binding("ctrl+o", "app.load_game", N_("Load"), id="load"),
        Binding("f3", "app.settings", N_("Settings"), id="settings"),
        Binding("f1", "app.show_help_screen", N_("Help"), id="help"),
        Binding("r", "refresh", N_("Rescan"), id="rescan"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="title-box"):
            yield Static(Text(BANNER, style="bold"), id="banner")
            yield Static(Text(_(TAGLINE), style="italic"), id="tagline")
            if self.app.guest is not None:
                with Vertical(id="player-box"):
                    yield Static(_("Your name (your saves are kept under it, apart from other "
                                   "players'):"), markup=False)
                    yield Input(placeholder=_("a name, e.g. Robin"), max_length=NAME_MAX, id="player-name")
                    yield Static(id="player-error")
                yield Static(id="player-line")
            yield OptionList(id="quests")
            yield Static(id="quest-summary")
        yield Static(id="title-spirit")
        yield KeyBar(KEY_BAR)

    def on_mount(self) -> None:
        self.entries = {}
        self.autosave_info = ""
        if self.waiting_for_player:
            self.query_one("#quests").display = False
            self.query_one("#player-name", Input).focus()
        # the quests are read in on_screen_resume, which Textual sends once the screen is
        # first shown, just after this, and again each time the player comes back to it

    def on_screen_resume(self) -> None:  # shown, or back from a game or the settings (the language may differ)
        self.query_one("#tagline", Static).update(Text(_(TAGLINE), style="italic"))
        self.refresh_entries()
        self.refresh_status()

    @property
    def waiting_for_player(self) -> bool:
        return self.app.guest is not None and self.app.player is None

    @on(Input.Submitted, "#player-name")
    def player_named(self, event: Input.Submitted) -> None:
        problem = self.app.claim_player(event.value)
        if problem is not None:
            self.query_one("#player-error", Static).update(Text(inert(problem), style="bold red"))
            return
        self.query_one("#player-box").display = False
        self.query_one("#player-line", Static).update(
            Text(_("Playing as {name}").format(name=inert(self.app.player.name)), style="bold"))
        self.query_one("#quests").display = True
        self.refresh_entries()

    def refresh_status(self) -> None:
        """The Spirit's state, in words, while the player picks a quest."""
        app = self.app
        words = _(SPIRIT_WORDS.get(app.spirit_status, app.spirit_status))
        detail = app.spirit_detail if app.spirit_status == "loading" else ""
        line = _("The Storyteller Spirit is {state}").format(state=words)
        if detail:
            line += f": {inert(detail)}"
        elif app.spirit_status == "silent":
            line += " " + _("(F1 says why)")
        self.query_one("#title-spirit", Static).update(Text(line))

    def check_action(self, action: str, parameters) -> bool | None:
        return not (action == "refresh" and self.waiting_for_player)  # nothing to rescan yet

    def action_refresh(self) -> None:
        self.refresh_entries()

    def refresh_entries(self) -> None:
        if self.waiting_for_player:
            return
        menu = self.query_one(OptionList)
        menu.clear_options()
        self.entries = {}
        self.autosave_info = ""
        autosave = latest_autosave()
        if autosave is not None:
            menu.add_option(Option(Text(_("Continue: {quest}").format(quest=inert(self.continue_label(autosave)))),
                                   id="continue"))
            self.entries["continue"] = autosave
        menu.add_option(Option(Text(_("Load a saved game...")), id="load"))
        for i, entry in enumerate(all_quests()):
            label = Text()
            label.append(inert(entry.title), style="bold")
            if entry.author:
                label.append("  " + _("by {author}").format(author=inert(entry.author)))
            origin = _(ORIGINS.get(entry.origin, entry.origin or ""))
            label.append(f"  [{', '.join(inert(x) for x in (entry.language, origin) if x)}]")
            if not entry.playable:
                label.append("  " + _("(has errors)"), style="bold red")
            key = f"quest-{i}"
            menu.add_option(Option(label, id=key))
            self.entries[key] = entry
        menu.focus()
        # Continue when there is a game to continue, else the first quest.
        menu.highlighted = 0 if "continue" in self.entries else min(1, menu.option_count - 1)

    def continue_label(self, path) -> str:
        """The autosaved game's quest title (its file name if the save cannot be read), and the
        turn and time it was saved at, for the summary line."""
        from game.saves import read_save

        when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        try:
            save = read_save(path)
        except (GameFileError, OSError):
            self.autosave_info = _("autosaved {when}").format(when=when)
            return path.stem
        turn = save.state.turn
        self.autosave_info = ngettext("turn {n}, autosaved {when}", "turn {n}, autosaved {when}", turn).format(
            n=turn, when=when)
        return save.quest_title or save.quest_id

    @on(OptionList.OptionHighlighted)
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        entry = self.entries.get(event.option.id)
        summary = self.query_one("#quest-summary", Static)
        if entry is None:
            summary.update(Text(_("Choose a save: named saves first, then each quest's autosave.")
                                if event.option.id == "load" else ""))
        elif event.option.id == "continue":
            summary.update(Text(_("Resume your most recent game ({info}).").format(info=self.autosave_info)))
        else:
            text = entry.summary if entry.playable else "; ".join(p.format() for p in entry.problems[:3])
            summary.update(Text(inert(text)))

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        key = event.option.id
        if key == "load":
            self.app.action_load_game()
        elif key == "continue":
            self.app.load_save(self.entries[key])
        else:
            self.app.start_quest(self.entries[key].path)
