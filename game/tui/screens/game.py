"""The game screen: the story log, the options, the input line and the status bar.

The screen renders the session's state and sends the player's actions to the
engine. Narration runs on a worker thread that only posts messages; every
widget change happens here, on the UI thread. Each narration has a generation
number, so chunks from a cancelled or superseded narration are ignored.

A turn taken while the Spirit is still waking is kept as `pending`: when the
Spirit wakes, `narrate_pending` narrates it if it is still the newest turn and
has no narration (a newer turn or an undo lets it go); if the Spirit falls
silent instead, the quest's own words stand.
"""

from __future__ import annotations

import threading

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from game.engine import Para, TurnResult
from game.i18n import N_, _, ngettext
from game.safe_text import inert_line
from game.narrator import cleaning
from game.players import ACTION_MAX
from game.session import Session
from game.tui.messages import NarrationChunk, NarrationDone, NarrationPrompt, NarrationRestart
from game.tui.widgets.action_input import ActionInput
from game.tui.widgets.key_bar import KeyBar
from game.tui.widgets.status_bar import StatusBar
from game.tui.widgets.story_log import StoryLog, plain

SLASH_HELP = ("/undo  /retry  /save [name]  /load  /export  /context  /settings  /help  "
              "/remember <note>  /forget <n>  /memory  /restart  /quit")
# The key bar's order of importance (Help and Quit are always shown; F1 lists every key).
KEY_BAR = ("cancel", "help", "quit", "undo", "retry", "previous-sample", "save", "load", "export",
           "settings", "context")


class GameScreen(Screen):
    BINDINGS = [
        Binding("escape", "cancel_narration", N_("Stop"), id="cancel",
                tooltip=N_("Stop the Spirit's narration (the turn keeps the quest's text)")),
        Binding("ctrl+r", "retry", N_("Retry"), id="retry", tooltip=N_("Narrate the last turn again")),
        Binding("ctrl+b", "previous_sample", N_("Earlier"), id="previous-sample",
                tooltip=N_("Show an earlier narration of the last turn")),
        Binding("ctrl+z", "undo", N_("Undo"), id="undo", tooltip=N_("Go back one turn")),
        Binding("ctrl+s", "save", N_("Save"), id="save"),
        Binding("ctrl+o", "load", N_("Load"), id="load"),
        Binding("ctrl+t", "export", N_("Export"), id="export", tooltip=N_("Export the story as Markdown")),
        Binding("f1", "help", N_("Help"), id="help"),
        Binding("f2", "context", N_("Context"), id="context",
                tooltip=N_("What the Spirit saw last turn, token by token")),
        Binding("f3", "settings", N_("Settings"), id="settings"),
        Binding("pageup", "scroll_story('page_up')", N_("Scroll the story up"), id="story-page-up",
                show=False),
        Binding("pagedown", "scroll_story('page_down')", N_("Scroll the story down"),
                id="story-page-down", show=False),
        Binding("ctrl+home", "scroll_story('home')", N_("The story's start"), id="story-start",
                show=False),
        Binding("ctrl+end", "scroll_story('end')", N_("The story's end"), id="story-end", show=False),
    ]

    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.generation = 0
        self.narrating: int | None = None  # generation number in progress
        self.narrating_turn: int | None = None
        self.cancel_event: threading.Event | None = None
        self.streamed = ""
        self.last_prompt = None  # BuiltPrompt of the last narration
        self.narration_widgets: dict[int, object] = {}
        self.turn_widgets: dict[int, list] = {}
        self.pending: tuple[TurnResult, object] | None = None  # (result, its TurnRecord) awaiting the Spirit
        self.passed_over: list = []  # TurnRecords let go while the Spirit woke (a newer turn came)
        self._offers_stop = False

    @property
    def engine(self):
        return self.session.engine

    def compose(self) -> ComposeResult:
        yield StoryLog(id="story")
        yield Static(id="options")
        # a served player's action is bounded (game.players.ACTION_MAX); a local one is not
        yield ActionInput(id="action", max_length=ACTION_MAX if self.app.guest is not None else 0)
        yield StatusBar(id="status")
        yield KeyBar(KEY_BAR)

    def on_mount(self) -> None:
        story = self.query_one(StoryLog)
        quest = self.session.quest
        story.add("info", _("{title}, by {author}").format(title=quest.title, author=quest.author))
        if self.engine.history:
            self.replay_history()
        else:
            story.add_paragraphs(self.engine.opening().paragraphs)
        for note in self.session.load_notes:
            self.notify(note, title=_("The quest has changed"), severity="warning", markup=False)
        self.refresh_options()
        self.refresh_status()
        self.query_one(ActionInput).focus()
        if self.app.watch_quest:
            from game.live_reload import QuestWatcher

            self.watcher = QuestWatcher(self.session.quest.files)
            self.set_interval(1.0, self.check_reload)

    def check_reload(self) -> None:
        """Live reload: the quest's files were saved; carry the game over or keep the old one."""
        if not self.watcher.poll():
            return
        result = self.session.reload()
        if result.engine is None:
            errors = [p.format() for p in result.problems if p.severity == "error"]
            more = "\n" + _("(and {n} more)").format(n=len(errors) - 3) if len(errors) > 3 else ""
            self.notify("\n".join(errors[:3]) + more,
                        title=_("The quest has errors: still playing the old version"),
                        severity="error", timeout=15, markup=False)
            return
        self.watcher.watch(self.session.quest.files)
        self.notify("; ".join(result.notes), title=_("Quest reloaded"), markup=False)
        self.refresh_options()
        self.refresh_status()

    def replay_history(self) -> None:
        """Show a loaded game: the opening, then each turn as it was played."""
        story = self.query_one(StoryLog)
        if self.session.opening:
            story.add("scene", self.session.opening)
        for record in self.engine.history:
            widgets = [story.add("action", record.action)]
            if record.authored:
                widgets.append(story.add("text", record.authored))
            if record.narration:
                widget = story.add("narration", record.narration)
                widgets.append(widget)
                self.narration_widgets[record.turn] = widget
            self.turn_widgets[record.turn] = widgets
        if self.engine.ended:  # the ending's title and text are in the last turn: only the verdict
            story.add_paragraphs(self.engine.opening().paragraphs[-1:])

    # -- rendering -----------------------------------------------------------------
    def refresh_options(self) -> None:
        options = self.engine.options()
        widget = self.query_one("#options", Static)
        if self.engine.ended:
            widget.update(plain(_("The quest has ended. /restart to play again, ctrl+o to load a save.")))
        elif options:
            widget.update(plain("\n".join(f"{o.number}. {o.label}" for o in options)))
        else:
            widget.update(plain(_("(No listed options: type what you do.)")))

    def refresh_status(self) -> None:
        box = self.query_one(ActionInput)
        if box.placeholder != _(box.PLACEHOLDER):  # the language was changed in the settings
            box.placeholder = _(box.PLACEHOLDER)
            self.refresh_options()
        bar = self.query_one(StatusBar)
        engine, app = self.engine, self.app
        bar.scene = engine.scene.title
        bar.turn = engine.state.turn
        bar.score = f"{engine.state.score}/{engine.quest.max_score}" if engine.quest.scored else ""
        bar.inventory = tuple(engine.quest.items[i].name for i in engine.state.inventory
                              if i in engine.quest.items)
        bar.spirit = "narrating" if self.narrating is not None else app.spirit_status
        # Short: the whole message is on the title screen and in help (F1), the reason too.
        progress = app.spirit_progress if app.spirit_status == "loading" else None
        detail = f"{progress:.0%}" if progress is not None else ""
        if app.spirit_status == "silent":
            detail = _("F1 says why")
        if self.pending is not None and app.spirit_status == "loading":
            promise = _("turn {turn} waits").format(turn=self.pending[0].turn)
            detail = f"{detail}; {promise}" if detail else promise
        bar.spirit_detail = detail
        if self.last_prompt is not None:
            bar.context_used = self.last_prompt.prompt_tokens + self.last_prompt.max_new_tokens
            bar.context_window = self.last_prompt.window
        if self._offers_stop != (self.narrating is not None):
            self._offers_stop = self.narrating is not None
            self.refresh_bindings()  # "Stop" is in the footer only while the Spirit narrates

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cancel_narration":
            return self.narrating is not None
        return True

    # -- the player's input ----------------------------------------------------------
    @on(ActionInput.Submitted)
    def submitted(self, event: ActionInput.Submitted) -> None:
        text = event.value.strip()
        box = self.query_one(ActionInput)
        box.value = ""
        if not text:
            return
        box.remember(text)
        if text.startswith("/"):
            self.slash(text)
        else:
            self.act(text)

    def action_scroll_story(self, where: str) -> None:
        self.query_one(StoryLog).scroll_story(where)

    @on(ActionInput.ScrollStory)
    def scroll_from_input(self, message: ActionInput.ScrollStory) -> None:
        self.query_one(StoryLog).scroll_story(message.where)

    def slash(self, text: str) -> None:
        word, _sep, rest = text[1:].partition(" ")
        word, rest = word.lower(), rest.strip()
        simple = {"undo": self.action_undo, "retry": self.action_retry, "load": self.action_load,
                  "export": self.action_export, "context": self.action_context,
                  "settings": self.action_settings, "help": self.action_help,
                  "quit": self.app.action_quit, "restart": self.restart, "memory": self.show_memory}
        if word in simple:
            simple[word]()
        elif word == "save":
            self.save_to(rest) if rest else self.action_save()
        elif word == "remember":
            self.remember(rest)
        elif word == "forget":
            self.forget(rest)
        else:
            self.notify(_("Commands: {commands}").format(commands=SLASH_HELP),
                        title=_("Unknown command /{word}").format(word=word), markup=False)

    def remember(self, note: str) -> None:
        if not note:
            self.notify(_("Write the note after it: /remember The lantern is called Blink"),
                        title=_("/remember needs a note"), severity="warning", markup=False)
            return
        self.session.memory.append(note)
        self.notify(_("The Spirit will remember: {note}").format(note=note), markup=False)

    def forget(self, number: str) -> None:
        notes = self.session.memory
        if not notes:
            self.notify(_("There are no notes to forget: /remember <note> adds one."),
                        title=_("Nothing to forget"), severity="warning", markup=False)
        elif not number:
            self.notify(_("Say which note: /forget 1 (/memory lists them)."),
                        title=_("/forget needs a number"), severity="warning", markup=False)
        elif not number.isdigit() or not 1 <= int(number) <= len(notes):
            self.notify(ngettext("There is no note {n}: there is {count} note; /memory lists it.",
                                 "There is no note {n}: there are {count} notes; /memory lists them.",
                                 len(notes)).format(n=number, count=len(notes)),
                        title=_("No such note"), severity="warning", markup=False)
        else:
            note = notes.pop(int(number) - 1)
            self.notify(_("Forgotten: {note}").format(note=note), markup=False)

    def show_memory(self) -> None:
        notes = self.session.memory
        body = "\n".join(f"{i}. {n}" for i, n in enumerate(notes, 1)) or _("(none: /remember <note> adds one)")
        self.notify(body, title=_("Pinned memory notes"), markup=False)

    def act(self, text: str) -> None:
        self.stop_narration()
        result = self.engine.act(text)
        if result.counts:
            self.let_go_pending()  # a newer turn: only the newest is narrated
        story = self.query_one(StoryLog)
        story.follow()  # a new turn: the view goes to it, wherever the player had scrolled
        widgets = [story.add("action", result.action or text)]  # an option's label, not "3"
        for p in result.paragraphs:
            if p.text:
                widget = story.add(p.kind, p.text)
                widget.ending = p.kind in ("ending-title", "ending") or bool(widgets and widgets[-1].ending)
                widgets.append(widget)
        if result.kind == "free" and (self.app.narrator is None or self.app.spirit_status == "silent"):
            widgets.append(story.add("info", self.engine.say("unanswered")))  # waking: it answers later
        if result.counts:
            self.turn_widgets[result.turn] = widgets
            self.autosave()
        self.refresh_options()
        if result.narrate:
            self.narrate(result)
        self.refresh_status()
        if result.ending is not None and result.counts:  # the turn that ended it, not one after
            self.app.show_ending(self.session)

    # -- narration -------------------------------------------------------------------
    def narrate(self, result: TurnResult, attempt: int = 0) -> None:
        app = self.app
        if app.narrator is None:
            return
        if app.spirit_status == "silent":
            service = app.narrator.service
            if not getattr(service, "can_retry", False):
                return
            app.spirit_status = "loading"  # a server narrator tries again: it may be back
            service.start()
        if app.spirit_status != "ready":  # still waking: narrate it when the Spirit is ready
            history = self.engine.history
            if history and history[-1].turn == result.turn:
                self.pending = (result, history[-1])
            return
        app.narrator.memory = list(self.session.memory)  # the player's pinned notes (/remember)
        # The game's state is read here; the tokens are counted on the worker (a server narrator
        # counts with the server's tokenizer, over the network: never on the app's thread).
        turn_request = app.narrator.request(self.engine, result, attempt)
        self.generation += 1
        generation = self.generation
        self.narrating, self.narrating_turn, self.streamed = generation, result.turn, ""
        self.cancel_event = cancel = threading.Event()
        # Under the turn it tells of (before its ending, if it ended the quest), even if the story went on.
        told = [w for w in self.turn_widgets.get(result.turn, [])
                if w.is_attached and not getattr(w, "ending", False)]
        self.narration_widgets[result.turn] = self.query_one(StoryLog).begin_narration(
            after=told[-1] if told else None)
        self.turn_widgets.setdefault(result.turn, []).append(self.narration_widgets[result.turn])
        narrator = app.narrator

        def work() -> None:
            try:
                prepared = narrator.build(turn_request)
            except ValueError as exc:  # a model window too small for any prompt
                from game.narrator.service import Narration

                self.post_message(NarrationDone(generation, Narration(), refused=str(exc)))
                return
            self.post_message(NarrationPrompt(generation, prepared.prompt))
            try:
                narration = narrator.run(
                    prepared,
                    on_chunk=lambda c: self.post_message(NarrationChunk(generation, c)),
                    on_restart=lambda r: self.post_message(NarrationRestart(generation, r)),
                    cancel=cancel)
            except Exception as exc:  # never leave "narrating" on: the turn keeps its text
                from game.narrator.service import Narration

                narration = Narration(error=str(exc).splitlines()[0] if str(exc) else repr(exc))
            self.post_message(NarrationDone(generation, narration))

        self.run_worker(work, thread=True, group="narration", exit_on_error=False,
                        name=f"narration-{generation}")
        self.refresh_status()

    def narrate_pending(self) -> None:
        """The Spirit has settled: narrate the turn taken while it woke, or let it go (the app
        calls this, then `refresh_status`, after each Spirit event)."""
        if self.pending is None or self.app.spirit_status == "loading":
            return
        result, record = self.pending
        history = self.engine.history
        if self.app.spirit_status == "ready":
            self.pending = None
            if history and history[-1] is record and not record.narration and self.narrating is None:
                self.narrate(result)
        else:  # silent: the quest's own words stand
            self.let_go_pending()

    def let_go_pending(self) -> None:
        """Forget the pending turn; a free-text one is told that nothing in the quest answers it.
        It is remembered as passed over: if an undo makes it the newest turn again, it is narrated."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        result, record = pending
        self.passed_over = [r for r in self.passed_over if r is not record][-20:] + [record]
        if result.kind == "free" and any(r is record for r in self.engine.history):
            widget = self.query_one(StoryLog).add("info", self.engine.say("unanswered"))
            widget.unanswered = True
            self.turn_widgets.setdefault(result.turn, []).append(widget)

    def narrate_passed_over(self) -> None:
        """After an undo: the newest turn, if it waited for the Spirit and was passed over by a
        turn now undone, is narrated now (or when the Spirit wakes)."""
        record = self.last_narrated()
        if record is None or record.narration or not any(r is record for r in self.passed_over):
            return
        self.passed_over = [r for r in self.passed_over if r is not record]
        if self.app.narrator is None or self.app.spirit_status == "silent":
            return
        widgets = self.turn_widgets.get(record.turn, [])
        for widget in [w for w in widgets if getattr(w, "unanswered", False)]:
            widget.remove()  # the Spirit answers it after all
            widgets.remove(widget)
        result = self.result_of(record)
        if self.app.spirit_status == "ready":
            self.narrate(result)
        else:
            self.pending = (result, record)

    @on(NarrationChunk)
    def chunk(self, message: NarrationChunk) -> None:
        if message.generation != self.narrating:
            return
        self.streamed += message.text
        self.query_one(StoryLog).stream(cleaning.collapse_whitespace(self.streamed).strip())

    @on(NarrationRestart)
    def restart_stream(self, message: NarrationRestart) -> None:
        if message.generation == self.narrating:
            self.streamed = ""
            self.query_one(StoryLog).stream("")

    @on(NarrationPrompt)
    def prompt_built(self, message: NarrationPrompt) -> None:
        if message.generation == self.narrating:
            self.last_prompt = message.prompt
            self.refresh_status()

    @on(NarrationDone)
    def done(self, message: NarrationDone) -> None:
        if message.generation != self.narrating:
            return
        if message.refused is not None:
            self.notify(_("The Spirit cannot narrate this turn: {reason}").format(reason=message.refused),
                        severity="warning", markup=False)
        narration, turn = message.narration, self.narrating_turn
        self.narrating = None
        story = self.query_one(StoryLog)
        if narration.cancelled or not narration.text:
            story.end_narration("")
            self.forget_narration_widget(turn)
        else:
            story.end_narration(narration.text)
            self.session.add_sample(turn, narration.text)
            self.autosave()
            self.warm_up()
        if narration.error:
            self.notify(_("The Spirit lost its words: {error}").format(error=narration.error),
                        severity="error", markup=False)
        problem = getattr(self.app.narrator, "take_log_problem", lambda: None)()
        if problem:
            self.notify(problem, title=_("Context log"), severity="warning", markup=False)
        self.refresh_status()

    def warm_up(self) -> None:
        """Have the Spirit compute the next prompt's known start while the player reads and types."""
        if self.app.narrator is not None and self.app.spirit_status == "ready" and self.narrating is None:
            self.app.narrator.warm(self.engine)

    def forget_narration_widget(self, turn: int):
        """Stop tracking a turn's narration paragraph (being removed); returns it, if any."""
        widget = self.narration_widgets.pop(turn, None)
        if widget is not None:
            self.turn_widgets[turn] = [w for w in self.turn_widgets.get(turn, []) if w is not widget]
        return widget

    def stop_narration(self) -> bool:
        """Cancel the narration in progress; its half-written text is removed."""
        if self.narrating is None:
            return False
        if self.cancel_event is not None:
            self.cancel_event.set()
        self.narrating = None
        self.query_one(StoryLog).end_narration("")
        self.forget_narration_widget(self.narrating_turn)
        self.refresh_status()
        return True

    # -- actions ---------------------------------------------------------------------
    def action_cancel_narration(self) -> None:
        if self.stop_narration():
            self.notify(_("Narration stopped."))

    def last_narrated(self):
        history = self.engine.history
        return history[-1] if history else None

    def action_retry(self) -> None:
        record = self.last_narrated()
        if record is None:
            self.notify(_("Nothing to narrate again yet."))
            return
        if self.app.spirit_status != "ready":
            state = {"loading": _("still waking"), "silent": _("silent")}.get(self.app.spirit_status,
                                                                             self.app.spirit_status)
            self.notify(_("The Spirit is {state}: it cannot narrate now.").format(state=state))
            return
        self.stop_narration()
        old = self.forget_narration_widget(record.turn)
        if old is not None:
            old.remove()
        attempt = len(self.session.samples.get(record.turn).texts) if record.turn in self.session.samples else 1
        self.narrate(self.result_of(record), attempt=attempt)

    @staticmethod
    def result_of(record) -> TurnResult:
        """A recorded turn as the TurnResult the narrator takes."""
        result = TurnResult(record.turn, record.action, record.kind, [], record.scene, counts=True, narrate=True)
        result.paragraphs = [Para("text", record.authored)] if record.authored else []
        return result

    def action_previous_sample(self) -> None:
        record = self.last_narrated()
        if record is None or self.narrating is not None:
            return
        text = self.session.cycle_sample(record.turn, -1)
        widget = self.narration_widgets.get(record.turn)
        if text is None or widget is None:
            self.notify(_("Only one narration of this turn: ctrl+r makes another."))
            return
        samples = self.session.samples[record.turn]
        widget.set_text(text)
        self.notify(_("Narration {n} of {count}").format(n=samples.shown + 1, count=len(samples.texts)))
        self.autosave()
        self.warm_up()

    def action_undo(self) -> None:
        self.stop_narration()
        turn = self.engine.state.turn
        if not self.session.undo():
            self.notify(_("This is the start: nothing to undo."))
            return
        self.pending = None  # an undone turn is not narrated
        for widget in self.turn_widgets.pop(turn, []):
            widget.remove()
        self.narration_widgets.pop(turn, None)
        self.narrate_passed_over()
        self.refresh_options()
        self.refresh_status()
        self.autosave()
        self.warm_up()
        self.notify(_("Back to turn {turn}.").format(turn=self.engine.state.turn), timeout=3)

    def autosave(self) -> None:
        if not self.app.settings.autosave:
            return
        try:
            self.session.autosave()
        except OSError as exc:
            self.notify(_("Autosave failed: {reason}. Your earlier autosave is intact.").format(
                reason=exc.strerror or exc), severity="error", markup=False)

    def action_save(self) -> None:
        from game.tui.screens.saves import SaveScreen

        self.app.push_screen(SaveScreen(self.session.quest.id), self._saved)

    def _saved(self, name: str | None) -> None:
        if name:
            self.save_to(name)

    def save_to(self, name: str, confirmed: bool = False) -> None:
        """Save to a named slot; an existing slot is overwritten only after the player agrees."""
        from game import locations
        from game.saves import slot_path
        from game.tui.screens.confirm import ConfirmScreen

        target = slot_path(locations.saves_dir(), name)
        if target.exists() and not confirmed:
            self.app.push_screen(
                ConfirmScreen(_("Overwrite the save '{name}'?").format(name=inert_line(target.stem)),
                              _("That save holds another game; it will be replaced by this one.")),
                lambda yes: self.save_to(name, confirmed=True) if yes else None)
            return
        try:
            path = self.session.save(name)
        except OSError as exc:
            self.notify(_("Could not save: {reason}. Nothing was overwritten.").format(
                reason=exc.strerror or exc), severity="error", markup=False)
            return
        self.notify(_("Saved to {path}").format(path=self.app.shown_path(path)), markup=False)

    def action_load(self) -> None:
        self.app.action_load_game()

    def action_export(self) -> None:
        try:
            path = self.session.export_markdown()
        except OSError as exc:
            self.notify(_("Could not export: {reason}").format(reason=exc.strerror or exc),
                        severity="error", markup=False)
            return
        self.notify(_("Transcript written to {path}").format(path=self.app.shown_path(path)), markup=False)
        if self.app.guest is not None and self.app.is_web:  # the player's folder is on the host:
            self.app.deliver_text(path, save_filename=path.name)  # hand the browser a copy

    def action_context(self) -> None:
        from game.tui.screens.inspector import ContextInspector

        service = self.app.narrator.service if self.app.narrator is not None else None
        describe = getattr(service, "describe", None)  # a server narrator: API style, window, counts
        self.app.push_screen(ContextInspector(self.last_prompt, about=describe() if describe else None))

    def action_settings(self) -> None:
        self.app.action_settings()

    def action_help(self) -> None:
        self.app.action_show_help_screen()

    def restart(self) -> None:
        """/restart: ask first (unless the quest has ended or has not begun); the game so far
        stays loadable (Load lists it)."""
        from game.tui.screens.confirm import ConfirmScreen

        if self.engine.ended or not self.engine.history:
            self._restart()
            return
        self.app.push_screen(
            ConfirmScreen(_("Restart the quest from the beginning?"),
                          _("Your game so far is kept: Load (ctrl+o) lists it as the autosave "
                            "before the restart.")),
            lambda yes: self._restart() if yes else None)

    def _restart(self) -> None:
        self.stop_narration()
        try:
            self.session.keep_abandoned()
        except OSError as exc:
            self.notify(_("Could not keep the game so far: {reason}. Nothing was restarted.").format(
                reason=exc.strerror or exc), severity="error", markup=False)
            return
        self.app.start_quest(self.session.quest.source)

    def on_unmount(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
