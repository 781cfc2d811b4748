"""The Storyteller Textual app: owns the screens, the settings and the narrator.

`make_app(...)` builds the app from settings and a narrator; the CLI and the
tests both call it. The narrator service loads the model on its own thread and
reports through `SpiritEvent` messages; the app never waits on it. The loader
starts just after the first paint: its `import torch` would otherwise hold the
GIL while the first screen is drawn.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from game.diagnostics import GameFileError
from game.i18n import _
from game.quest_loader import load_quest
from game.session import Session
from game.tui.messages import SpiritEvent


class StorytellerApp(App):
    CSS_PATH = "storyteller.tcss"
    TITLE = "Storyteller"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f1", "show_help_screen", "Help", id="help", show=False),
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
        self.spirit_detail = "" if narrator is not None else "turned off"
        self._told_silent = False

    def on_mount(self) -> None:
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
            self.spirit_status, self.spirit_detail = "silent", service.reason or ""

    def on_spirit_event(self, message: SpiritEvent) -> None:
        event = message.event
        kind = type(event).__name__
        if kind == "Loading":
            self.spirit_status = "loading"
            fraction = getattr(event, "fraction", None)
            self.spirit_detail = event.message + (f" {fraction:.0%}" if fraction is not None else "")
        elif kind == "Ready":
            self.spirit_status, self.spirit_detail = "ready", ""
            self.notify(f"The Storyteller Spirit is awake ({event.model} on {event.device}).", markup=False)
        elif kind == "Silent":
            self.spirit_status, self.spirit_detail = "silent", event.reason
            if not self._told_silent:
                self._told_silent = True
                self.notify(f"{event.reason}. The quest's own words go on.",
                            title="The Storyteller Spirit is silent", severity="warning",
                            timeout=10, markup=False)
        self.refresh_game_status()

    def refresh_game_status(self) -> None:
        """After a Spirit event: game screens narrate a turn that waited for it, and redraw status."""
        for screen in self.screen_stack:
            if not screen.is_mounted:
                continue
            for name in ("narrate_pending", "refresh_status"):
                method = getattr(screen, name, None)
                if method is not None:
                    method()

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
            more = f" (and {len(exc.problems) - 1} more: run storyteller validate)" if len(exc.problems) > 1 else ""
            self.notify(first + more, title="This quest cannot be played", severity="error",
                        timeout=15, markup=False)
            return
        self.open_session(Session(quest, seed=self.seed))

    def open_session(self, session: Session) -> None:
        from game.tui.screens.game import GameScreen
        from game.tui.screens.title import TitleScreen

        self.session = session
        while len(self.screen_stack) > 1 and not isinstance(self.screen, TitleScreen):
            self.pop_screen()
        self.push_screen(GameScreen(session))

    def load_save(self, path: Path) -> None:
        guest = self.guest
        if guest is not None and not guest.allows_save(path):
            self.notify(_("Only your own saves can be loaded."), severity="error", markup=False)
            return
        try:
            session = Session.load(path, quest_allowed=guest.allows_quest if guest else None)
        except GameFileError as exc:
            self.notify(exc.problems[0].format(), title="This save cannot be loaded (it was left as it is)",
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

    def on_unmount(self) -> None:
        if self.player is not None:
            self.player.release()

    def action_quit(self) -> None:  # plain, not async: /quit calls it directly too
        from game.tui.screens.game import GameScreen

        for screen in self.screen_stack:
            if isinstance(screen, GameScreen):
                screen.stop_narration()
                screen.autosave()
        self.exit()


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
