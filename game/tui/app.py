"""The Storyteller Textual app: owns the screens, the settings and the narrator.

`make_app(...)` builds the app from settings and a narrator; the CLI and the
tests both call it. The narrator service loads the model on its own thread and
reports through `SpiritEvent` messages; the app never waits on it. The loader
starts just after the first paint: its `import torch` would otherwise hold the
GIL while the first screen is drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from game.diagnostics import GameFileError
from game.i18n import N_, _, language_for, set_language
from game.world.loader import load_quest
from game.safe_text import inert, inert_line
from game.session import Session
from game.tui.messages import SpiritEvent


class StorytellerApp(App):
    CSS_PATH = "storyteller.tcss"
    TITLE = "Storyteller"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "quit", N_("Quit"), id="quit", priority=True),
        Binding("f1", "show_help_screen", N_("Help"), id="help", show=False),
    ]

    def __init__(self, settings, personalities, narrator=None, quest_path: Path | None = None,
                 session: Session | None = None, seed: int | None = None, watch: bool = False,
                 guest=None):
        super().__init__()
        # A served game (game.players.Guest): it asks for a player name and plays from that
        # player's folder; no watching files, no paths from outside.
        self.guest = guest
        self.player = None  # game.players.Player, once the served player has given a name
        self.host_settings = settings
        self.watch_quest = watch and guest is None  # reload the quest when its files are saved
        self.settings = settings
        self.personalities = personalities
        self.narrator = narrator  # game.narration.TurnNarrator, or None to play without the Spirit
        self.quest_path = quest_path
        self.initial_session = session
        self.seed = seed
        self.session: Session | None = None
        self.spirit_status = "loading" if narrator is not None else "silent"
        self.spirit_detail = ""  # while waking: what it is doing (no long paths)
        self.spirit_progress: float | None = None  # while downloading: how far
        self.spirit_reason = "" if narrator is not None else N_("turned off (--no-spirit)")  # silent: why
        self._told_silent = False
        self.handle_signals = False  # the CLI sets it: SIGTERM/SIGHUP/SIGINT save and exit
        set_language(language_for(None, settings.language))
        self._told_notes: set[str] = set()

    def notify(self, message, *, title="", severity="information", timeout=None, markup=True):
        """Every notification goes out inert (a save's or quest's names may hold escape codes),
        one-line titles, and never as markup."""
        return super().notify(inert(str(message)), title=inert_line(str(title)), severity=severity,
                              timeout=timeout, markup=False)

    def _catch_signals(self) -> None:
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP", "SIGINT"):
            if hasattr(signal, name):
                loop.add_signal_handler(getattr(signal, name), self.quit_saving, getattr(signal, name))

    def get_driver_class(self):
        from game.tui.paste import driver_class

        return driver_class(super().get_driver_class())

    def use_language(self, quest_language: str | None) -> None:
        """The game's own words follow the quest's language, unless the settings name one."""
        set_language(language_for(quest_language, self.settings.language))

    def on_mount(self) -> None:
        if self.handle_signals:
            self._catch_signals()
        if self.settings.keys:
            self.set_keymap(dict(self.settings.keys))
        if self.narrator is not None:
            service = self.narrator.service
            service.listen(lambda event: self.post_message(SpiritEvent(event)))
            if service.status == "idle":  # every change from here on arrives as a SpiritEvent
                self.call_after_refresh(service.start)
            else:  # started before the app: take its state as it is now
                self._sync_spirit()
        from game.tui.screens.title import TitleScreen

        self.push_screen(TitleScreen())
        if self.initial_session is not None:
            self.open_session(self.initial_session)
        elif self.quest_path is not None:
            self.start_quest(self.quest_path)

    # -- the Spirit ------------------------------------------------------------------
    def _sync_spirit(self) -> None:
        service = self.narrator.service
        if service.status == "ready":
            self.spirit_status, self.spirit_detail = "ready", ""
        elif service.status == "silent":
            self.spirit_status, self.spirit_detail, self.spirit_reason = "silent", "", service.reason or ""

    def on_spirit_event(self, message: SpiritEvent) -> None:
        event = message.event
        kind = type(event).__name__
        if kind == "Loading":
            self.spirit_status = "loading"
            fraction = self.spirit_progress = getattr(event, "fraction", None)
            self.spirit_detail = short_paths(event.message) + (f" {fraction:.0%}" if fraction is not None else "")
        elif kind == "Ready":
            self.spirit_status, self.spirit_detail = "ready", ""
            self.notify(_("The Storyteller Spirit is awake ({model} on {device}).").format(
                model=short_paths(str(event.model)), device=event.device), markup=False)
            notes_for = getattr(self.narrator.service, "notes_for", None)  # a server: values it cannot take
            for note in notes_for(self.narrator.sampling) if notes_for else ():  # each said once
                if note not in self._told_notes:
                    self._told_notes.add(note)
                    self.notify(note, markup=False)
        elif kind == "Silent":
            self.spirit_status, self.spirit_detail, self.spirit_reason = "silent", "", event.reason
            if not self._told_silent:  # short: the whole reason is in help (F1), once
                self._told_silent = True
                self.notify(_("The quest's own words go on. F1 says why."),
                            title=_("The Storyteller Spirit is silent"), severity="warning",
                            timeout=8, markup=False)
        self.refresh_game_status()

    def refresh_game_status(self) -> None:
        """After a Spirit event: game screens narrate a turn that waited for it, and redraw status."""
        for screen in self.screen_stack:
            for name in ("narrate_pending", "refresh_status"):
                method = getattr(screen, name, None)
                if method is None:
                    continue
                if screen.is_mounted:
                    method()
                else:  # still mounting: once it is, or it would show the state from before the event
                    screen.call_later(method)

    # -- the served player -------------------------------------------------------------
    def claim_player(self, name: str) -> str | None:
        """Play as `name` (a served game): their folder, their settings. Returns what is wrong
        with the name instead, or None when it is taken."""
        from game import locations
        from game.players import PlayerBusy, guest_settings, open_player
        from game.settings import load_settings

        try:
            player = open_player(name)
        except (ValueError, PlayerBusy) as exc:
            return str(exc)
        except OSError as exc:
            return _("Your folder could not be made: {reason}").format(reason=exc.strerror or exc)
        if self.player is not None:
            self.player.release()
        self.player = player
        mine = self.host_settings  # a new player starts with the host's narrator
        if locations.settings_file().exists():
            mine, _problems = load_settings(personalities=self.personalities)
        self.apply_settings(guest_settings(self.host_settings, mine))
        self.refresh_bindings()  # saves, settings and rescan are offered from now on
        return None

    def shown_path(self, path: Path) -> str:
        """A path for the player's eyes: in a served game, relative to the player's folder."""
        if self.player is not None:
            try:
                return str(Path(path).relative_to(self.player.folder))
            except ValueError:
                return Path(path).name
        return str(path)

    def check_action(self, action: str, parameters) -> bool | None:
        # A served game has no saves or settings to show until it knows whose they are.
        if self.guest is not None and self.player is None and action in ("load_game", "settings"):
            return False
        return True

    # -- starting and loading games ----------------------------------------------------
    def start_quest(self, path) -> None:
        if self.guest is not None and (self.player is None or not self.guest.allows_quest(path)):
            return
        try:
            quest = load_quest(path)
        except GameFileError as exc:
            first = exc.problems[0].format()
            more = (" " + _("(and {n} more: run storyteller validate)").format(n=len(exc.problems) - 1)
                    if len(exc.problems) > 1 else "")
            self.notify(first + more, title=_("This quest cannot be played"), severity="error",
                        timeout=15, markup=False)
            return
        self.open_session(Session(quest, seed=self.seed))

    def open_session(self, session: Session) -> None:
        from game.tui.screens.game import GameScreen
        from game.tui.screens.title import TitleScreen

        self.session = session
        self.use_language(session.quest.language)
        while len(self.screen_stack) > 1 and not isinstance(self.screen, TitleScreen):
            self.pop_screen()
        self.push_screen(GameScreen(session))

    def load_save(self, path: Path) -> None:
        guest = self.guest
        if guest is not None and not guest.allows_save(path):
            self.notify(_("Only your own saves can be loaded."), severity="error", markup=False)
            return
        try:
            session = Session.load(path)  # its quest by id: bundled or the host's, never a path
        except GameFileError as exc:
            self.notify(exc.problems[0].format(), title=_("This save cannot be loaded (it was left as it is)"),
                        severity="error", timeout=15, markup=False)
            return
        self.open_session(session)

    def action_load_game(self) -> None:
        from game.tui.screens.saves import LoadScreen

        self.push_screen(LoadScreen(), lambda path: self.load_save(path) if path else None)

    def show_ending(self, session: Session) -> None:
        from game.tui.screens.ending import EndingScreen

        self.push_screen(EndingScreen(session), self._after_ending)

    def _after_ending(self, choice: str | None) -> None:
        if choice == "again" and self.session is not None:
            self.start_quest(self.session.quest.source)
        elif choice == "quests":
            from game.tui.screens.title import TitleScreen

            while not isinstance(self.screen, TitleScreen):
                self.pop_screen()
            self.use_language(None)
            self.screen.refresh_entries()

    def action_settings(self) -> None:
        from game.tui.screens.settings import SettingsScreen

        self.push_screen(SettingsScreen())

    def action_show_help_screen(self) -> None:
        from game.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def apply_settings(self, settings) -> None:
        """Use new settings: sampling and persona from the next turn on."""
        self.settings = settings
        if self.narrator is not None:
            persona, sampling = settings.effective_sampling(self.personalities)
            self.narrator.persona, self.narrator.sampling = persona, sampling
        self.set_keymap(dict(settings.keys))
        self.use_language(self.session.quest.language if self.session is not None else None)
        self.refresh_game_status()

    def on_unmount(self) -> None:
        if self.player is not None:
            self.player.release()

    def action_quit(self) -> None:  # plain, not async: /quit calls it directly too
        self.quit_saving()

    def quit_saving(self, signum: int = 0) -> None:
        """Stop narrating, autosave every game and exit (128 + signum after a signal);
        Textual restores the terminal on the way out."""
        from game.tui.screens.game import GameScreen

        for screen in self.screen_stack:
            if isinstance(screen, GameScreen):
                screen.stop_narration()
                screen.autosave()
        self.exit(return_code=128 + signum if signum else 0)


_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s\\/'\"()]+[\\/])+([^\s\\/'\"()]+)")


def short_paths(text: str) -> str:
    """Local paths in a status message shown by their last part ('/home/x/models/tiny' -> 'tiny')."""
    return _PATH.sub(r"\1", text)


def make_app(settings=None, personalities=None, narrator=None, quest_path=None, session=None,
             seed=None, watch=False, guest=None) -> StorytellerApp:
    """Build the app; settings and personalities are loaded when not given."""
    if personalities is None:
        from game.personality import load_personalities

        personalities, _ = load_personalities()
    if settings is None:
        from game.settings import load_settings

        settings, _ = load_settings(personalities=personalities)
    return StorytellerApp(settings, personalities, narrator=narrator, quest_path=quest_path,
                          session=session, seed=seed, watch=watch, guest=guest)
