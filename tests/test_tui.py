"""The Textual TUI, driven through Textual's pilot at 80x24.

Most tests use `ScriptedSpirit`, a stand-in for `NarratorService` with the same
surface `TurnNarrator` and the app use, which streams scripted words (one chunk
per word, optionally one chunk per `step()`) and honours `cancel`; it sits
behind the real `TurnNarrator` and the real GPT-2 tokenizer, so prompts and
token counts are the real ones. A few tests run the real text-generation
pipeline on the tiny GPT-2 (`tiny_model_dir`). Nothing waits a fixed time:
`wait_until` polls the app.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.screen import Screen

from game import locations
from game.narration import TurnNarrator, make_turn_narrator
from game.narrator.service import Loading, Narration, Ready, Silent
from game.personality import load_personalities
from game.saves import read_save
from game.session import autosave_dir
from game.settings import Settings, load_settings
from game.tui.app import StorytellerApp, make_app
from game.tui.screens.ending import EndingScreen
from game.tui.screens.game import GameScreen
from game.tui.screens.help import HelpScreen
from game.tui.screens.inspector import ContextInspector
from game.tui.screens.saves import LoadScreen, SaveScreen
from game.tui.screens.settings import SettingsScreen
from game.tui.screens.title import TitleScreen
from game.tui.widgets.action_input import ActionInput
from game.tui.widgets.status_bar import StatusBar
from game.tui.widgets.story_log import StoryLog, StoryParagraph
from tests.conftest import QUESTS
from tests.helpers import MINI, write
from tests.test_bundled_quest import LESSER_WIN, LOSS

QUEST = QUESTS / "call-of-the-storyteller.yaml"
MARKUP = "[bold]x[/bold] [@click=app.quit]y[/]"

# A small user quest whose texts look like Rich/Textual markup.
MARKUP_QUEST = """\
id: markup-quest
title: "[bold]Loud[/bold] [@click=app.quit]Title[/]"
author: "[i]Sly[/i] Author"
language: fr
summary: "A summary with [red]markup[/red] in it."
start: a
scenes:
  a:
    title: "[b]Hall[/b]"
    description: "A room described with [@click=app.quit]markup[/] and [blink]tags[/blink]."
    exits:
      - label: "Leave [u]now[/u]"
        to: b
  b: {title: Out, description: Outside., ending: e}
endings:
  e: {title: "[b]Free[/b]", text: "You are out.", outcome: win}
"""

# A quest with exactly one problem, on line 3: `start` names a scene that does not exist.
BROKEN_QUEST = MINI.replace("start: a", "start: nowhere")


# -- the scripted Spirit --------------------------------------------------------------
def default_script(n: int) -> str:
    return f"Narration {n}: the Spirit hums of cables and old light."


class ScriptedSpirit:
    """NarratorService's surface, with scripted words instead of a model.

    `start()` reports Loading and (when `wakes`) Ready at once; `wake()` and
    `silence()` settle it later. `narrate` streams `script(n)` (n counts calls
    from 1) one word per chunk; with `stepping` on, each chunk waits for a
    `step()` permit. A set `cancel` ends it at once with `cancelled=True`.
    """

    def __init__(self, tokenizer, script=default_script, *, window: int = 1024,
                 wakes: bool = True, stepping: bool = False, delay: float = 0.002,
                 name: str = "scripted-spirit"):
        self.name = name
        self.status, self.reason = "idle", None
        self.window, self.tokenizer = window, tokenizer
        self.script, self.wakes, self.stepping, self.delay = script, wakes, stepping, delay
        self.calls: list[dict] = []
        self.results: list[Narration] = []
        self.warmed: list[str] = []  # prompt starts the game asked to compute ahead
        self._permits = threading.Semaphore(0)
        self._listener = None
        self._settled = threading.Event()

    def listen(self, callback) -> None:
        self._listener = callback

    def _emit(self, event) -> None:
        if self._listener is not None:
            self._listener(event)

    def start(self) -> None:
        if self.status != "idle":
            return
        self.status = "loading"
        self._emit(Loading("Waking the scripted Spirit..."))
        if self.wakes:
            self.wake()

    def wake(self) -> None:
        self.status = "ready"
        self._settled.set()
        self._emit(Ready(self.name, "cpu", self.window))

    def silence(self, reason: str) -> None:
        self.status, self.reason = "silent", reason
        self._settled.set()
        self._emit(Silent(reason))

    def wait(self, timeout: float | None = None) -> bool:
        return self._settled.wait(timeout)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    def warm(self, prompt: str, ahead=None):  # as NarratorService.warm (ahead: prompts that may come)
        self.warmed.append(prompt)
        self.ahead = [] if ahead is None else ahead()  # the scene-entering prompts played ahead
        return None

    def narrate(self, prompt, sampling, *, seed=None, previous=(), stop_strings=(), on_chunk=None,
                on_restart=None, cancel=None, timeout=None, prefix=None) -> Narration:
        cancel = cancel or threading.Event()
        self.calls.append(dict(prompt=prompt, sampling=sampling, seed=seed))
        sent = ""
        for i, word in enumerate(self.script(len(self.calls)).split(" ")):
            if self.stepping:
                while not self._permits.acquire(timeout=0.01) and not cancel.is_set():
                    pass
            if cancel.is_set():
                break
            time.sleep(self.delay)
            chunk = word if i == 0 else " " + word
            sent += chunk
            if on_chunk is not None:
                on_chunk(chunk)
        result = Narration(text=sent.strip(), raw=sent, new_tokens=len(self.tokenizer.encode(sent)),
                           cancelled=cancel.is_set())
        self.results.append(result)
        return result


# -- helpers ----------------------------------------------------------------------------
@dataclass
class Note:
    message: str
    title: str
    severity: str


@pytest.fixture
def personalities():
    return load_personalities()[0]


@pytest.fixture
def spirit(gpt2_tokenizer):
    return ScriptedSpirit(gpt2_tokenizer)


def scripted(spirit: ScriptedSpirit, personalities) -> TurnNarrator:
    """The real TurnNarrator (default personality) in front of a scripted Spirit."""
    persona, sampling = Settings().effective_sampling(personalities)
    return TurnNarrator(spirit, persona, sampling, seed=1)


def build(personalities, narrator=None, quest: Path | None = QUEST,
          settings: Settings | None = None) -> StorytellerApp:
    """The app as the CLI builds it, with every notification also recorded in `app.notes`."""
    app = make_app(settings or Settings(), personalities, narrator=narrator, quest_path=quest, seed=7)
    app.notes = []
    original = app.notify

    def notify(message, *, title="", severity="information", timeout=None, markup=True):
        app.notes.append(Note(str(message), title, severity))
        return original(message, title=title, severity=severity, timeout=timeout, markup=markup)

    app.notify = notify
    return app


async def wait_until(pilot, predicate, timeout: float = 30, what: str = "") -> None:
    """Let the app run until `predicate()` holds (generous bound: fails after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


def game(app) -> GameScreen:
    return next(s for s in reversed(app.screen_stack) if isinstance(s, GameScreen))


def paragraphs(app) -> list[tuple[str, str]]:
    return [(p.kind, p.text) for p in game(app).query(StoryParagraph)]


def kinds(app, kind: str) -> list[str]:
    return [text for k, text in paragraphs(app) if k == kind]


def status(app) -> StatusBar:
    return game(app).query_one(StatusBar)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def flat_screen(app) -> str:
    """The screen's text with line breaks and runs of spaces made single spaces."""
    return " ".join(screen_text(app).split())


def style_of(app, words: str):
    """The style the screen shows `words` in (they must sit on one line)."""
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if words in segment.text:
                return segment.style
    raise AssertionError(f"{words!r} is not on the screen:\n{screen_text(app)}")


def autosave(quest_id: str = "call-of-the-storyteller"):
    return read_save(autosave_dir() / f"{quest_id}.json")


async def act(pilot, text: str, *, settle: bool = True) -> None:
    """Type an action into the input line and send it; wait for its narration unless told not to."""
    app = pilot.app
    box = game(app).query_one(ActionInput)
    box.value = text
    await pilot.press("enter")
    if settle:
        await wait_until(pilot, lambda: game(app).narrating is None, what=f"narration of {text!r}")


async def play(pilot, actions) -> None:
    """Take each action in turn, each once the narration of the one before is done."""
    for action in actions:
        await act(pilot, action)


async def awake(pilot) -> None:
    """Let the app run until the Spirit is ready: its loader starts only after the first paint."""
    await wait_until(pilot, lambda: pilot.app.spirit_status == "ready", timeout=120, what="the Spirit to wake")


async def showing(pilot, kind: type[Screen]) -> Screen:
    """Let the app run until its current screen is a `kind`; returns that screen."""
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, kind), what=f"the {kind.__name__}")
    return pilot.app.screen


async def playing(pilot) -> GameScreen:
    """Let the app run until it shows the game screen; returns it."""
    return await showing(pilot, GameScreen)


async def opens(pilot, key: str, kind: type[Screen]) -> Screen:
    """Press `key` and let the app run until it shows a `kind` screen; returns that screen."""
    await pilot.press(key)
    return await showing(pilot, kind)


@asynccontextmanager
async def running(app: StorytellerApp, first: type[Screen] = GameScreen, *, wake: bool = False):
    """The app running at 80x24, once it shows its `first` screen (with `wake`, once its
    Spirit is awake too); yields the pilot."""
    async with app.run_test(size=(80, 24)) as pilot:
        await showing(pilot, first)
        if wake:
            await awake(pilot)
        yield pilot


def menu_labels(app) -> list[str]:
    """The entries of the option list on the current screen (title or load screen)."""
    from textual.widgets import OptionList

    menu = app.screen.query_one(OptionList)
    return [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]


async def choose(pilot, label_start: str) -> None:
    """Pick the first entry of the current screen's option list whose label starts so."""
    from textual.widgets import OptionList

    menu = pilot.app.screen.query_one(OptionList)
    menu.highlighted = next(i for i, label in enumerate(menu_labels(pilot.app))
                            if label.startswith(label_start))
    await pilot.press("enter")


def write_user_quest(name: str, text: str) -> Path:
    """A quest file in the player's own quests folder."""
    return write(locations.user_quests_dir() / name, text)


def on_loader_thread(call, *args) -> None:
    """`call(*args)` on another thread, as the real service settles from its loader thread."""
    loader = threading.Thread(target=call, args=args)
    loader.start()
    loader.join()


# -- the title screen -------------------------------------------------------------------
async def test_title_lists_bundled_and_user_quests_and_starts_one(personalities):
    write_user_quest("markup.yaml", MARKUP_QUEST)
    write_user_quest("broken.yaml", BROKEN_QUEST)
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        labels = menu_labels(app)
        assert labels[0] == "Load a saved game..."  # no autosave yet: no "Continue"
        assert "Quest 1.6 — The Call of the Storyteller  by Storyteller team  [en, bundled]" in labels
        assert "[bold]Loud[/bold] [@click=app.quit]Title[/]  by [i]Sly[/i] Author  [fr, user]" in labels
        assert "broken.yaml  [user]  (has errors)" in labels
        await choose(pilot, "[bold]Loud")
        await playing(pilot)
        assert paragraphs(app)[:3] == [
            ("info", "[bold]Loud[/bold] [@click=app.quit]Title[/], by [i]Sly[/i] Author"),
            ("scene-title", "[b]Hall[/b]"),
            ("scene", "A room described with [@click=app.quit]markup[/] and [blink]tags[/blink]."),
        ]
        shown = screen_text(app)
        assert "[bold]Loud[/bold] [@click=app.quit]Title[/]" in shown
        assert "[@click=app.quit]markup[/] and [blink]tags[/blink]" in shown
        assert "1. Leave [u]now[/u]" in shown
        await pilot.click(StoryParagraph)  # a click on quest text runs nothing
        await pilot.pause()
        assert app.is_running and app.return_code is None


async def test_title_shows_summary_of_highlighted_quest(personalities):
    write_user_quest("markup.yaml", MARKUP_QUEST)
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        from textual.widgets import OptionList, Static

        menu = app.screen.query_one(OptionList)
        menu.highlighted = menu_labels(app).index(next(x for x in menu_labels(app) if "Loud" in x))
        summary = app.screen.query_one("#quest-summary", Static)
        await wait_until(pilot, lambda: "markup" in str(summary.render()))
        assert str(summary.render()) == "A summary with [red]markup[/red] in it."
        assert "A summary with [red]markup[/red] in it." in screen_text(app)



async def test_the_title_reads_the_quests_once_when_shown_and_again_on_coming_back(personalities, monkeypatch):
    """Reading every quest file is the title's costly part before the first paint: done once
    (not on mount and again on the first resume), and again when the player comes back."""
    from game.tui.screens import title
    from game.tui.screens.settings import SettingsScreen

    reads = []
    real = title.all_quests
    monkeypatch.setattr(title, "all_quests", lambda: reads.append(1) or real())
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await pilot.pause()
        assert len(reads) == 1
        assert "Quest 1.6 — The Call of the Storyteller  by Storyteller team  [en, bundled]" in menu_labels(app)
        await opens(pilot, "f3", SettingsScreen)
        await pilot.press("escape")
        await showing(pilot, TitleScreen)
        await wait_until(pilot, lambda: len(reads) == 2, what="the quests read again")

async def test_a_quest_that_fails_validation_is_a_notification(personalities):
    broken = write_user_quest("broken.yaml", BROKEN_QUEST)
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await choose(pilot, "broken.yaml")
        await wait_until(pilot, lambda: app.notes)
        note = app.notes[-1]
        assert (note.title, note.severity) == ("This quest cannot be played", "error")
        assert "broken.yaml:3:" in note.message and "nowhere" in note.message, note.message
        assert isinstance(app.screen, TitleScreen) and app.is_running
        assert "(and" not in note.message  # one problem: no "more" to look up
    # Given on the command line, too.
    app = build(personalities, quest=broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.notes)
        assert app.notes[-1].severity == "error" and "broken.yaml" in app.notes[-1].message
        assert isinstance(app.screen, TitleScreen) and app.is_running


async def test_continue_resumes_the_most_recent_autosave(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await play(pilot, ["take the lantern", "go north"])
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    # An older autosave of another quest must not win.
    older = autosave_dir() / "other.json"
    older.write_text((autosave_dir() / "call-of-the-storyteller.json").read_text(encoding="utf-8"),
                     encoding="utf-8")
    os.utime(older, (time.time() - 3600, time.time() - 3600))

    app = build(personalities, scripted(ScriptedSpirit(spirit.tokenizer), personalities), quest=None)
    async with running(app, TitleScreen) as pilot:
        # The quest's title, not its id; the turn and time, not the autosave's path.
        assert menu_labels(app)[0] == "Continue: Quest 1.6 — The Call of the Storyteller"
        summary = app.screen.query_one("#quest-summary")
        await wait_until(pilot, lambda: "Resume" in str(summary.render()))
        assert str(summary.render()).startswith("Resume your most recent game (turn 2, autosaved ")
        assert "autosave" + os.sep not in flat_screen(app) and ".json" not in flat_screen(app)
        await choose(pilot, "Continue")
        await playing(pilot)
        assert app.session.engine.state.turn == 2
        assert kinds(app, "action") == ["take the lantern", "go north"]
        assert kinds(app, "narration") == [default_script(1), default_script(2)]
        assert "The Overgrown Server Hall" in kinds(app, "text")[-1]
        assert (status(app).scene, status(app).turn) == ("The Overgrown Server Hall", 2)
        assert status(app).inventory == ("a cursor lantern",)


async def test_load_a_save_and_a_broken_save(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        game(app).save_to("before the hall")
    broken = locations.saves_dir() / "broken.json"
    broken.write_text('{"format": "storyteller-save", "version": 1, "quest": ', encoding="utf-8")
    os.utime(broken, (time.time() + 60, time.time() + 60))  # newest: listed first

    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await choose(pilot, "Load a saved game")
        await showing(pilot, LoadScreen)
        labels = menu_labels(app)
        title = "Quest 1.6 — The Call of the Storyteller"
        assert [label.rsplit("   ", 1)[0] for label in labels] == [  # each with its time
            "broken   (cannot be read: Enter says why)", f"before-the-hall: {title}, turn 1",
            f"autosave: {title}, turn 1"]
        await choose(pilot, "broken")
        await wait_until(pilot, lambda: app.notes)
        note = app.notes[-1]
        assert note.severity == "error" and "broken.json:1:" in note.message
        assert note.title == "This save cannot be loaded (it was left as it is)"
        assert broken.read_text(encoding="utf-8").endswith('"quest": ')
        assert isinstance(app.screen, TitleScreen) and app.is_running

        await opens(pilot, "ctrl+o", LoadScreen)
        await choose(pilot, "before-the-hall")
        await playing(pilot)
        assert app.session.engine.state.turn == 1
        assert kinds(app, "action") == ["take the lantern"]
        assert kinds(app, "narration") == [default_script(1)]
        # ctrl+o in the game loads too, and Esc backs out of the list.
        await opens(pilot, "ctrl+o", LoadScreen)
        await pilot.press("escape")
        await playing(pilot)


# -- the game screen --------------------------------------------------------------------
async def test_story_log_options_and_status_bar(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        engine = app.session.engine
        assert [k for k, _ in paragraphs(app)] == ["info", "scene-title", "scene"]
        options = str(screen.query_one("#options").render())
        assert options == "\n".join(f"{o.number}. {o.label}" for o in engine.options())
        assert options.startswith("1. Take the cursor lantern\n2. Read the glyphs")
        bar = status(app)
        assert (bar.scene, bar.turn, bar.inventory, bar.spirit) == ("The Gate of Dead Links", 0, (), "ready")
        assert bar.context_window == 0  # no narration yet: no gauge
        assert app.notes[0].message == "The Storyteller Spirit is awake (scripted-spirit on cpu)."

        await act(pilot, "1")
        assert paragraphs(app)[3:] == [
            ("action", "Take the cursor lantern"),  # the option's label, never a bare "1"
            ("text", "You lift the lantern off its hook. Its cursor blinks faster, as if glad of company."),
            ("change", "You now have a cursor lantern."),
            ("narration", default_script(1)),
        ]
        # Narration looks different from the quest's words: its own class, style and mark.
        widgets = {p.kind: p for p in screen.query(StoryParagraph)}
        assert widgets["narration"].has_class("-narration") and not widgets["text"].has_class("-narration")
        assert str(widgets["narration"].render()) == "~ " + default_script(1)
        narration_style, text_style = style_of(app, "Spirit hums"), style_of(app, "lantern off its hook")
        assert narration_style.italic and not text_style.italic
        assert narration_style.color != text_style.color
        # Taken once: the lantern is no longer offered.
        assert str(screen.query_one("#options").render()).startswith("1. Read the glyphs")
        prompt = screen.last_prompt
        assert (bar.scene, bar.turn, bar.inventory, bar.spirit) == (
            "The Gate of Dead Links", 1, ("a cursor lantern",), "ready")
        assert (bar.context_used, bar.context_window) == (prompt.prompt_tokens + prompt.max_new_tokens, 1024)
        assert prompt.prompt_tokens == len(spirit.tokenizer.encode(spirit.calls[0]["prompt"]))
        shown = screen_text(app)
        line = next(x for x in shown.splitlines() if "turn 1" in x)  # one line, at 80 columns too
        assert "The Gate of Dead Links  turn 1  Spirit: ready  carrying: a cursor lantern" in line
        await pilot.resize_terminal(120, 30)  # room for the gauge
        await pilot.pause()
        assert f"context {bar.context_used}/1024 [" in screen_text(app)
        await pilot.resize_terminal(90, 24)  # room for its short form
        await pilot.pause()
        assert f"context {round(100 * bar.context_used / 1024)}%  carrying" in screen_text(app)
        await pilot.resize_terminal(80, 24)
        # Commands that take no turn are answered without the Spirit.
        await act(pilot, "i")
        assert paragraphs(app)[-1] == ("info", "You carry:\n- a cursor lantern: A glass lantern with a "
                                               "blinking cursor inside. It never stops blinking.")
        assert len(spirit.calls) == 1 and bar.turn == 1


async def test_an_option_picked_by_number_shows_and_is_told_by_its_label(spirit, personalities):
    """Cloak of Darkness in the TUI: "2" and "s" appear in the story, the Spirit's prompt and the
    export as what they mean; a catch-all's turn is narrated; the score is in the status bar."""
    app = build(personalities, scripted(spirit, personalities), quest=QUESTS / "cloak-of-darkness.yaml")
    async with running(app, wake=True) as pilot:
        await play(pilot, ["2", "hang cloak on hook", "e", "1"])
        actions = kinds(app, "action")
        assert actions == ["Go west to the cloakroom", "hang cloak on hook", "go east", "Go south into the bar"]
        assert status(app).score == "1/2" and "score 1/2" in screen_text(app)
        prompts = [call["prompt"] for call in spirit.calls]
        assert "Go west to the cloakroom" in prompts[0] and "> 2" not in prompts[-1]
        assert "Score: 1 of 2" in prompts[-1]
        assert "quite empty" in prompts[-1]  # the lit bar's description, the variant in force
        await pilot.press("ctrl+t")
        path = locations.data_dir() / "transcripts" / "cloak-of-darkness-turn-4.md"
        assert "**> Go south into the bar**" in path.read_text(encoding="utf-8")


async def test_input_history_with_up_and_down(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        box = game(app).query_one(ActionInput)
        await pilot.press(*"look", "enter")
        await wait_until(pilot, lambda: game(app).narrating is None)
        await pilot.press(*"i", "enter", *"half typed")
        seen = []
        for key in ("up", "up", "up", "down", "down"):
            await pilot.press(key)
            seen.append(box.value)
        assert seen == ["i", "look", "look", "i", "half typed"]
        await pilot.press("up", "enter")
        await wait_until(pilot, lambda: kinds(app, "action") == ["look", "inventory", "inventory"])  # "i" resolved


async def test_after_a_narration_the_next_prompts_start_is_computed_ahead(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await act(pilot, "take the lantern")
        await wait_until(pilot, lambda: screen.narrating is None and spirit.warmed)
        assert spirit.warmed[-1].endswith(default_script(1) + "\n")  # up to the narration just told
        await act(pilot, "listen to the wind")
        await wait_until(pilot, lambda: len(spirit.calls) == 2)
        assert spirit.calls[1]["prompt"].startswith(spirit.warmed[0])  # the next prompt starts with it
        await wait_until(pilot, lambda: screen.narrating is None and len(spirit.warmed) == 2)
        await pilot.press("ctrl+z")  # back to turn 1: its end is what the next prompt starts with again
        await wait_until(pilot, lambda: len(spirit.warmed) == 3)
        assert spirit.warmed[2] == spirit.warmed[0]


async def test_narration_streams_word_by_word(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await act(pilot, "take the lantern", settle=False)
        words = default_script(1).split(" ")
        assert status(app).spirit == "narrating"
        assert paragraphs(app)[-1] == ("narration", "")
        for n in range(1, len(words)):
            spirit.step()
            await wait_until(pilot, lambda: kinds(app, "narration")[-1] == " ".join(words[:n]))
            assert screen.narrating is not None and "Spirit: narrating" in screen_text(app)
            assert "esc Stop" in screen_text(app)
            if n == 3:  # mid-sentence, the UI still answers at once
                await opens(pilot, "f1", HelpScreen)
                await pilot.press("escape")  # closes help; the narration goes on
                await playing(pilot)
                assert screen.narrating is not None
        spirit.step()
        await wait_until(pilot, lambda: screen.narrating is None)
        assert "esc Stop" not in screen_text(app)
        assert kinds(app, "narration") == [default_script(1)]
        assert status(app).spirit == "ready"
        assert autosave().history[-1].narration == default_script(1)


async def test_the_log_follows_the_story_unless_scrolled_up(gpt2_tokenizer, personalities):
    long = " ".join(f"word{i}" for i in range(400))
    spirit = ScriptedSpirit(gpt2_tokenizer, lambda n: long, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        log = screen.query_one(StoryLog)
        await act(pilot, "take the lantern", settle=False)

        async def stream(words: int) -> None:
            target = len(kinds(app, "narration")[-1].split()) + words
            spirit.step(words)
            await wait_until(pilot, lambda: len(kinds(app, "narration")[-1].split()) == target)
            await pilot.pause()

        await stream(150)
        await wait_until(pilot, lambda: log.max_scroll_y > 10 and log.scroll_y == log.max_scroll_y)
        log.scroll_to(y=2, animate=False)  # the player scrolls up to read
        await pilot.pause()
        before = log.max_scroll_y
        await stream(100)
        await wait_until(pilot, lambda: log.max_scroll_y > before + 5)
        assert log.scroll_y == 2
        log.scroll_end(animate=False)  # back at the end: following again
        await pilot.pause()
        before = log.max_scroll_y
        await stream(100)
        await wait_until(pilot, lambda: log.max_scroll_y > before + 5 and log.scroll_y == log.max_scroll_y)
        spirit.step(100)
        await wait_until(pilot, lambda: screen.narrating is None)


# -- controls ---------------------------------------------------------------------------
async def test_escape_stops_the_narration_and_keeps_the_authored_text(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await act(pilot, "take the lantern", settle=False)
        spirit.step(3)
        await wait_until(pilot, lambda: kinds(app, "narration") == ["Narration 1: the"])
        await pilot.press("escape")
        await wait_until(pilot, lambda: spirit.results)  # the worker saw the cancel
        assert spirit.results[0].cancelled and spirit.results[0].text == "Narration 1: the"
        await pilot.pause()
        assert screen.narrating is None and kinds(app, "narration") == []
        assert kinds(app, "change") == ["You now have a cursor lantern."]
        assert status(app).spirit == "ready" and status(app).turn == 1
        assert app.notes[-1].message == "Narration stopped."
        saved = autosave()
        assert saved.history[-1].action == "take the lantern" and saved.history[-1].narration == ""
        assert "lantern off its hook" in saved.history[-1].authored
        # Esc with nothing to stop does nothing; the next turn narrates as usual.
        await pilot.press("escape")
        assert app.notes[-1].message == "Narration stopped." and app.is_running
        spirit.stepping = False
        spirit.step(100)
        await act(pilot, "go north")
        assert kinds(app, "narration") == [default_script(2)]


async def test_a_retried_narration_stays_under_its_turn(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await act(pilot, "take the lantern")
        await wait_until(pilot, lambda: screen.narrating is None)
        await act(pilot, "i")  # the inventory: no turn, but it goes into the story
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(spirit.calls) == 2 and screen.narrating is None)
        shown = [k for k, _ in paragraphs(app)]
        assert kinds(app, "narration") == [default_script(2)]
        assert shown[-3:] == ["narration", "action", "info"]  # the new take where the old one was


async def test_retry_narrates_again_and_ctrl_b_cycles_back(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await pilot.press("ctrl+r")
        assert app.notes[-1].message == "Nothing to narrate again yet."
        await act(pilot, "take the lantern")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(spirit.calls) == 2 and screen.narrating is None)
        assert kinds(app, "narration") == [default_script(2)]  # replaced, not added
        assert spirit.calls[0]["prompt"] == spirit.calls[1]["prompt"]
        assert spirit.calls[0]["seed"] != spirit.calls[1]["seed"]  # a new sample
        assert app.session.samples[1].texts == [default_script(1), default_script(2)]
        await pilot.press("ctrl+b")
        assert kinds(app, "narration") == [default_script(1)]
        assert app.notes[-1].message == "Narration 1 of 2"
        assert autosave().history[-1].narration == default_script(1)
        await pilot.press("ctrl+b")
        assert kinds(app, "narration") == [default_script(2)]
        # The story so far (for the next prompt) has the narration that is shown.
        await pilot.press("ctrl+b")
        await act(pilot, "go north")
        assert default_script(1) in spirit.calls[-1]["prompt"]
        assert default_script(2) not in spirit.calls[-1]["prompt"]
        await pilot.press("ctrl+b")
        assert app.notes[-1].message == "Only one narration of this turn: ctrl+r makes another."
        # Undo takes back a retried turn whole: its action, text and narration.
        await pilot.press("ctrl+z", "ctrl+r")
        await wait_until(pilot, lambda: len(spirit.calls) == 4 and screen.narrating is None)
        assert kinds(app, "narration") == [default_script(4)]
        assert app.session.samples[1].texts == [default_script(1), default_script(2), default_script(4)]
        await pilot.press("ctrl+z")
        assert paragraphs(app)[3:] == [] and app.session.samples == {}
        assert app.is_running


async def test_undo_goes_back_one_turn_at_a_time_to_the_start(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        opening = paragraphs(app)
        options = str(screen.query_one("#options").render())
        await play(pilot, ["take the lantern", "go north", "listen to the fans"])
        after_two = None
        for turn in (2, 1, 0):
            await pilot.press("ctrl+z")
            assert app.session.engine.state.turn == turn and status(app).turn == turn
            assert app.notes[-1].message == f"Back to turn {turn}."
            assert autosave().state.turn == turn
            if turn == 2:
                after_two = paragraphs(app)
                assert kinds(app, "action") == ["take the lantern", "go north"]
        assert paragraphs(app) == opening
        assert str(screen.query_one("#options").render()) == options
        assert status(app).inventory == () and status(app).scene == "The Gate of Dead Links"
        await pilot.press("ctrl+z")
        assert app.notes[-1].message == "This is the start: nothing to undo."
        # Replaying gives the same story as before.
        await play(pilot, ["take the lantern", "go north"])
        assert [k for k, _ in paragraphs(app)] == [k for k, _ in after_two]


async def test_save_to_a_named_slot_and_load_it_again(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        await opens(pilot, "ctrl+s", SaveScreen)
        from textual.widgets import Input

        slot = app.screen.query_one(Input)
        assert slot.value == "call-of-the-storyteller" and slot.has_focus
        slot.value = ""
        await pilot.press(*"By the gate!", "enter")
        path = locations.saves_dir() / "By-the-gate.json"
        await wait_until(pilot, path.is_file)
        assert app.notes[-1].message == f"Saved to {path}"
        assert read_save(path).state.turn == 1
        await play(pilot, ["go north", "go south"])
        # Esc in the save dialog saves nothing.
        await opens(pilot, "ctrl+s", SaveScreen)
        await pilot.press("escape")
        await playing(pilot)
        assert sorted(p.name for p in locations.saves_dir().glob("*.json")) == ["By-the-gate.json"]

        await opens(pilot, "ctrl+o", LoadScreen)
        await choose(pilot, "By-the-gate")
        await wait_until(pilot, lambda: app.session.engine.state.turn == 1)
        screen = await playing(pilot)
        assert kinds(app, "action") == ["take the lantern"]
        assert kinds(app, "narration") == [default_script(1)]
        assert status(app).turn == 1 and status(app).scene == "The Gate of Dead Links"
        assert sum(isinstance(s, GameScreen) for s in app.screen_stack) == 1
        await act(pilot, "go north")  # and it plays on
        assert status(app).scene == "The Overgrown Server Hall" and screen.is_current


async def test_autosave_after_every_turn(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        assert not (autosave_dir() / "call-of-the-storyteller.json").exists()
        for turn, action in enumerate(["take the lantern", "read the glyphs", "go north"], 1):
            await act(pilot, action)
            saved = autosave()
            assert saved.state.turn == turn and saved.history[-1].action == action
            assert saved.history[-1].narration == default_script(turn)
        await act(pilot, "i")  # takes no turn
        assert autosave().state.turn == 3


async def test_export_transcript_to_markdown(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await play(pilot, ["take the lantern", "go north"])
        await pilot.press("ctrl+t")
        path = locations.data_dir() / "transcripts" / "call-of-the-storyteller-turn-2.md"
        assert app.notes[-1].message == f"Transcript written to {path}"
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Quest 1.6 — The Call of the Storyteller")
        for words in ("take the lantern", "go north", default_script(1), default_script(2),
                      "You lift the lantern off its hook.", "The Overgrown Server Hall"):
            assert words in text


async def test_quit_during_narration_keeps_the_autosave(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        spirit.step(len(default_script(1).split()))
        await act(pilot, "take the lantern")
        await act(pilot, "go north", settle=False)
        spirit.step(2)
        await wait_until(pilot, lambda: kinds(app, "narration")[-1] == "Narration 2:")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0
    saved = autosave()
    assert [t.action for t in saved.history] == ["take the lantern", "go north"]
    assert [t.narration for t in saved.history] == [default_script(1), ""]
    assert saved.state.scene == "server_hall"


async def test_keys_can_be_remapped_in_the_settings(spirit, personalities):
    settings = Settings(keys={"undo": "f5", "retry": "f6"})
    app = build(personalities, scripted(spirit, personalities), settings=settings)
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        await pilot.press("ctrl+z")
        assert app.session.engine.state.turn == 1
        await pilot.press("f6")
        await wait_until(pilot, lambda: len(spirit.calls) == 2 and game(app).narrating is None)
        await pilot.press("f5")
        assert app.session.engine.state.turn == 0
        await opens(pilot, "f1", HelpScreen)
        help_keys = str(app.screen.query("Static").last().render())
        assert "  f5         Undo  [undo]" in help_keys and "  f6         Retry  [retry]" in help_keys
        await pilot.press("escape")
        await playing(pilot)


# -- the ending -------------------------------------------------------------------------
async def test_playing_to_an_ending_shows_the_ending_dialog_and_play_again(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await play(pilot, LESSER_WIN)
        await showing(pilot, EndingScreen)
        ending = app.session.quest.endings["spirit-forgets"]
        shown = screen_text(app)
        assert ending.title in shown and "Play again" in shown
        summary = str(app.screen.query_one("#ending-summary").render())
        assert summary.startswith(f"You won. {len(LESSER_WIN)} turns, ")
        assert f"of {len(app.session.quest.scenes)} places seen" in summary
        assert len(spirit.calls) == len(LESSER_WIN)  # every turn narrated, the last one too
        # The last turn's narration comes before the ending, not after its verdict.
        assert [k for k, _ in paragraphs(app)][-5:] == ["text", "narration", "ending-title", "ending", "info"]
        assert autosave().state.ending == "spirit-forgets"
        await pilot.click("#again")
        await wait_until(pilot, lambda: isinstance(app.screen, GameScreen) and app.session.engine.state.turn == 0)
        assert kinds(app, "action") == [] and status(app).turn == 0
        assert sum(isinstance(s, GameScreen) for s in app.screen_stack) == 1
        await act(pilot, "take the lantern")
        assert status(app).inventory == ("a cursor lantern",)


async def test_ending_dialog_can_return_to_the_quest_list(personalities):
    path = write_user_quest("markup.yaml", MARKUP_QUEST)
    app = build(personalities, quest=path)
    async with running(app) as pilot:
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        shown = screen_text(app)
        assert "[b]Free[/b]" in shown and "You won. 1 turn, 2 of 2 places seen." in shown
        await pilot.click("#read")  # keep reading: the story stays, nothing more to do
        await playing(pilot)
        assert kinds(app, "ending-title") == ["[b]Free[/b]"]
        assert str(game(app).query_one("#options").render()).startswith("The quest has ended.")
        await act(pilot, "/restart")
        await wait_until(pilot, lambda: not kinds(app, "action"))
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        await pilot.click("#quests")
        await showing(pilot, TitleScreen)
        assert menu_labels(app)[0] == "Continue: [bold]Loud[/bold] [@click=app.quit]Title[/]"


# -- plain text, never markup -----------------------------------------------------------
async def test_markup_in_narration_shows_literally_and_runs_nothing(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, lambda n: MARKUP, name="[b]model[/b] [@click=app.quit]x[/]")
    app = build(personalities, scripted(spirit, personalities))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await playing(pilot)
        await wait_until(pilot, lambda: "[b]model[/b]" in screen_text(app), what="the awake toast")
        assert "[@click=app.quit]x[/]" in screen_text(app)
        await act(pilot, "take the lantern")
        assert kinds(app, "narration") == [MARKUP]
        assert f"~ {MARKUP}" in screen_text(app)
        widget = game(app).query(StoryParagraph).last()
        await pilot.click(widget, offset=(len("~ [bold]x[/bold] [@click=app.quit]") + 1, 0))
        await pilot.click(widget, offset=(len("~ [bold]x[/bold] ") + 1, 0))
        await pilot.pause()
        assert app.is_running and app.return_code is None
        # An action with markup in it is shown as typed, too.
        await act(pilot, "shout [red]hello[/red] [@click=app.quit]now[/]")
        assert "> shout [red]hello[/red] [@click=app.quit]now[/]" in screen_text(app)
        await pilot.press("ctrl+t")  # the transcript keeps it as typed
        assert MARKUP in next((locations.data_dir() / "transcripts").glob("*.md")).read_text(encoding="utf-8")
        assert app.is_running


# -- the Spirit's state and errors ------------------------------------------------------
async def test_a_model_that_fails_to_load_leaves_the_game_playable(personalities):
    narrator = make_turn_narrator(Settings(), personalities, model="/nonexistent/folder", seed=1)
    app = build(personalities, narrator)
    async with running(app) as pilot:
        await wait_until(pilot, lambda: status(app).spirit == "silent", what="the Spirit to fall silent")
        # The long reason is said once, whole, in help (F1) and the inspector; the toast and the
        # status bar say only where to read it.
        assert status(app).spirit_detail == "F1 says why"
        await wait_until(pilot, lambda: "Spirit: silent (F1 says why)" in flat_screen(app),
                         what="the state on the status bar")
        note = next(n for n in app.notes if n.severity == "warning")
        assert note.title == "The Storyteller Spirit is silent"
        assert note.message == "The quest's own words go on. F1 says why."
        await opens(pilot, "f1", HelpScreen)
        reason = str(app.screen.query_one("#help-spirit").render())
        assert reason.startswith("The Storyteller Spirit is silent: could not load model '/nonexistent/folder'")
        assert "there is no folder '/nonexistent/folder'" in reason
        await pilot.press("escape")
        await playing(pilot)
        await play(pilot, ["take the lantern", "go north"])
        assert kinds(app, "change") == ["You now have a cursor lantern."]
        assert status(app).scene == "The Overgrown Server Hall" and kinds(app, "narration") == []
        assert autosave().state.turn == 2
        await pilot.press("ctrl+r")
        assert app.notes[-1].message == "The Spirit is silent: it cannot narrate now."
        await opens(pilot, "f2", ContextInspector)
        assert "Nothing yet: the Spirit has not narrated a turn." in screen_text(app)
        assert sum(n.severity == "warning" for n in app.notes) == 1  # told once


@asynccontextmanager
async def waking(app: StorytellerApp, spirit: ScriptedSpirit):
    """The app running with a Spirit that stays asleep (`wakes=False`), once the app has started
    it (after the first paint); yields the pilot."""
    async with running(app) as pilot:
        await wait_until(pilot, lambda: spirit.status == "loading", what="the Spirit's loader to start")
        assert app.spirit_status == "loading"
        yield pilot


async def test_a_turn_taken_while_the_spirit_wakes_is_narrated_when_it_is_ready(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with waking(app, spirit) as pilot:
        assert status(app).spirit == "loading"
        assert "Spirit: waking" in screen_text(app)
        spirit._emit(Loading("Downloading distilgpt2: 176.0 MB of 352.0 MB", 0.5))
        await wait_until(pilot, lambda: "Spirit: waking (50%)" in flat_screen(app),
                         what="download progress on the status bar")
        assert app.spirit_detail == "Downloading distilgpt2: 176.0 MB of 352.0 MB 50%"  # whole in help
        await act(pilot, "take the lantern")
        assert kinds(app, "change") == ["You now have a cursor lantern."]
        assert kinds(app, "narration") == [] and spirit.calls == []
        assert status(app).spirit_detail == "50%; turn 1 waits"
        await act(pilot, "i")  # takes no turn: turn 1 still waits
        on_loader_thread(spirit.wake)
        await wait_until(pilot, lambda: kinds(app, "narration") == [default_script(1)], what="the waiting turn")
        await wait_until(pilot, lambda: game(app).narrating is None)
        assert len(spirit.calls) == 1 and "take the lantern" in spirit.calls[0]["prompt"]
        assert "The Storyteller Spirit is awake (scripted-spirit on cpu)." in [n.message for n in app.notes]
        shown = [k for k, _ in paragraphs(app)]
        assert shown[-3:] == ["narration", "action", "info"]  # under the turn it tells of, not after "i"
        assert shown[shown.index("change") + 1] == "narration"
        assert app.session.engine.history[-1].narration == default_script(1)
        assert autosave().history[-1].narration == default_script(1)
        assert (status(app).spirit, status(app).spirit_detail) == ("ready", "")
        await act(pilot, "go north")
        assert kinds(app, "narration") == [default_script(1), default_script(2)]


async def test_only_the_newest_turn_taken_while_the_spirit_wakes_is_narrated(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with waking(app, spirit) as pilot:
        await act(pilot, "dance with the fog")  # free text: the waking Spirit would answer it...
        assert kinds(app, "info")[1:] == []
        assert "turn 1 waits" in status(app).spirit_detail
        await act(pilot, "take the lantern")  # ...but a newer turn replaces it: nothing answers it now
        assert kinds(app, "info")[1:] == [app.session.engine.say("unanswered")]
        assert status(app).spirit_detail.endswith("turn 2 waits")
        await act(pilot, "go north")
        # The waiting turn (3) is undone: turn 2, passed over for it, is the newest again and waits.
        await pilot.press("ctrl+z")
        assert app.session.engine.state.turn == 2
        assert status(app).spirit_detail.endswith("turn 2 waits")
        spirit.wake()
        await wait_until(pilot, lambda: kinds(app, "narration") and game(app).narrating is None,
                         what="turn 2's narration")
        assert len(spirit.calls) == 1 and "take the lantern" in spirit.calls[0]["prompt"]
        assert [t.narration for t in app.session.engine.history] == ["", default_script(1)]
        # Turn 1 (free text) was told that nothing answers it; turn 2's narration is under turn 2.
        assert paragraphs(app)[-1] == ("narration", default_script(1))
        # Again, with the newest turn left in place when the Spirit wakes.
    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with waking(app, spirit) as pilot:
        await play(pilot, ["take the lantern", "read the glyphs", "go north"])
        spirit.wake()
        await wait_until(pilot, lambda: kinds(app, "narration") and game(app).narrating is None,
                         what="the newest turn's narration")
        assert len(spirit.calls) == 1 and "go north" in spirit.calls[0]["prompt"]
        assert [t.narration for t in app.session.engine.history] == ["", "", default_script(1)]
        assert paragraphs(app)[-1] == ("narration", default_script(1))
        await act(pilot, "go south")  # and play goes on as usual
        assert kinds(app, "narration") == [default_script(1), default_script(2)]


async def test_a_turn_waiting_for_a_spirit_that_falls_silent_keeps_the_quests_words(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with waking(app, spirit) as pilot:
        await act(pilot, "take the lantern")
        await act(pilot, "sing to the gate")  # free text, waiting for the Spirit's answer
        assert kinds(app, "info")[1:] == [] and "turn 2 waits" in status(app).spirit_detail
        on_loader_thread(spirit.silence, "could not load model 'x': out of memory")
        await wait_until(pilot, lambda: status(app).spirit == "silent")
        await pilot.pause()
        assert spirit.calls == [] and kinds(app, "narration") == [] and app.is_running
        assert kinds(app, "change") == ["You now have a cursor lantern."]  # the quest's words stand
        assert paragraphs(app)[-2:] == [("action", "sing to the gate"),
                                        ("info", app.session.engine.say("unanswered"))]
        assert status(app).spirit_detail == "F1 says why" and app.spirit_reason.startswith("could not load model 'x'")
        assert [t.narration for t in autosave().history] == ["", ""]
        await act(pilot, "go north")
        assert kinds(app, "narration") == [] and status(app).turn == 3


async def test_the_spirit_falling_silent_from_its_loader_thread(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with waking(app, spirit) as pilot:
        on_loader_thread(spirit.silence, "could not load model 'x': out of memory")
        await wait_until(pilot, lambda: status(app).spirit == "silent")
        assert status(app).spirit_detail == "F1 says why"
        assert app.notes[-1].severity == "warning" and app.spirit_reason.endswith("out of memory")
        await act(pilot, "take the lantern")
        assert kinds(app, "narration") == [] and app.is_running


# -- the context inspector, settings and help -------------------------------------------
async def test_context_inspector_shows_what_the_spirit_saw(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, window=400)  # small: older parts must be trimmed
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = game(app)
        await opens(pilot, "f2", ContextInspector)
        assert "Nothing yet: the Spirit has not narrated a turn." in screen_text(app)
        await pilot.press("escape")
        await playing(pilot)
        await play(pilot, ["take the lantern", "go north", "listen to the fans", "go west"])
        prompt = screen.last_prompt
        assert prompt.text == spirit.calls[-1]["prompt"]
        assert prompt.prompt_tokens == len(gpt2_tokenizer.encode(prompt.text))
        trimmed = prompt.with_status("trimmed")
        assert trimmed and prompt.prompt_tokens + prompt.max_new_tokens <= 400
        await opens(pilot, "f2", ContextInspector)
        from textual.widgets import DataTable

        inspector = app.screen
        head = (f"Prompt {prompt.prompt_tokens} tokens + {prompt.max_new_tokens} for the reply = "
                f"{prompt.prompt_tokens + prompt.max_new_tokens} of the 400-token window. "
                f"{len(trimmed)} segment(s) trimmed, {len(prompt.with_status('clipped'))} clipped.")
        assert head in [str(w.render()) for w in inspector.query("Static")]
        assert f"Prompt {prompt.prompt_tokens} tokens + {prompt.max_new_tokens} for the reply" in screen_text(app)
        table = inspector.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert [(r[0], r[2], r[3]) for r in rows] == [(s.kind, s.status, s.label) for s in prompt.segments]
        included = [int(r[1]) for r in rows if r[2] == "included"]
        assert sum(included) == sum(s.tokens for s in prompt.segments if s.status == "included")
        assert all(r[1] == str(s.full_tokens) for r, s in zip(rows, prompt.segments) if s.status == "trimmed")
        assert "trimmed" in screen_text(app) or table.row_count > 5  # the table scrolls
        shown = inspector.query_one("#prompt-text").query_one("Static")
        assert str(shown.render()) == prompt.text
        await pilot.press("f2")  # f2 closes it again
        await playing(pilot)


async def test_settings_switch_personality_and_sampling_live(spirit, personalities):
    grim = personalities["grim-chronicler"]
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        default = personalities["storyteller-spirit"]
        assert default.persona.split()[0] in spirit.calls[0]["prompt"]
        assert spirit.calls[0]["sampling"] == default.sampling
        await opens(pilot, "f3", SettingsScreen)
        from textual.widgets import Input, Select, Static

        form = app.screen
        form.query_one("#personality", Select).value = "grim-chronicler"
        temperature = form.query_one("#s-temperature", Input)
        await wait_until(pilot, lambda: temperature.value == str(grim.sampling.temperature))
        assert form.query_one("#s-max_new_tokens", Input).value == str(grim.sampling.max_new_tokens)
        error = form.query_one("#settings-error", Static)
        for bad, message in [("9", "temperature is 9, outside the allowed range 0.05 to 2"),
                             ("warm", "temperature must be a number from 0.05 to 2")]:
            temperature.value = bad
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: str(error.render()) == message)
            assert app.screen is form and not locations.settings_file().exists()
        temperature.value = "0.5"
        await pilot.click("#save")
        await playing(pilot)
        assert app.notes[-1].message == "Settings saved."
        saved, problems = load_settings(personalities=personalities)
        assert problems == []
        assert (saved.personality, dict(saved.sampling)) == ("grim-chronicler", {"temperature": 0.5})
        await act(pilot, "go north")
        assert spirit.calls[-1]["sampling"] == grim.sampling.with_values(temperature=0.5)
        assert grim.persona.strip() in spirit.calls[-1]["prompt"]
        assert default.persona.strip() not in spirit.calls[-1]["prompt"]
        # Cancel keeps everything as it was.
        await opens(pilot, "f3", SettingsScreen)
        app.screen.query_one("#s-temperature", Input).value = "1.5"
        await pilot.click("#cancel")
        await playing(pilot)
        assert load_settings(personalities=personalities)[0] == saved and app.settings == saved


async def test_settings_show_a_players_personality_as_plain_text(spirit):
    write(locations.user_personalities_dir() / "loud.yaml",
          'name: "[bold]Loud[/bold] Bard"\ndescription: "[@click=app.quit]Sings[/]"\n'
          "persona: >\n  The Loud Bard sings every line.\n")
    personalities = load_personalities()[0]
    assert "loud" in personalities
    app = build(personalities, scripted(spirit, personalities), settings=Settings(personality="loud"))
    async with running(app) as pilot:
        await opens(pilot, "f3", SettingsScreen)
        await pilot.pause()
        assert "[bold]Loud[/bold] Bard: [@click=app.quit]Sings[/]" in screen_text(app)
        await pilot.click("#personality")
        await pilot.pause()
        assert app.is_running


async def test_help_lists_the_keys_and_commands(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app) as pilot:
        await opens(pilot, "f1", HelpScreen)
        text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        for words in ("/undo", "/retry", "/save [name]", "/export", "/remember <note>", "/context",
                      "ctrl+z     Undo  [undo]", "ctrl+b     Earlier  [previous-sample]",
                      "ctrl+t     Export  [export]", "escape     Stop  [cancel]", "ctrl+q     Quit  [quit]"):
            assert words in text
        assert text.count("[help]") == 1
        await pilot.press("escape")
        await playing(pilot)
        await act(pilot, "/help")
        await showing(pilot, HelpScreen)
        await pilot.press("f1")
        await playing(pilot)


async def test_slash_commands(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "/remember The lantern is called Blink")
        assert app.notes[-1].message == "The Spirit will remember: The lantern is called Blink"
        await act(pilot, "take the lantern")
        assert "The lantern is called Blink" in spirit.calls[-1]["prompt"]
        await act(pilot, "/memory")
        assert app.notes[-1].message == "1. The lantern is called Blink"
        await act(pilot, "/forget 1")
        await act(pilot, "go north")
        assert "Blink" not in spirit.calls[-1]["prompt"]
        await act(pilot, "/save slash slot")
        assert (locations.saves_dir() / "slash-slot.json").is_file()
        await act(pilot, "/undo")
        assert app.session.engine.state.turn == 1
        await act(pilot, "/dance")
        assert app.notes[-1].title == "Unknown command /dance" and "/undo" in app.notes[-1].message
        assert kinds(app, "action") == ["take the lantern"]  # commands are not actions
        await act(pilot, "/restart")
        from game.tui.screens.confirm import ConfirmScreen

        await showing(pilot, ConfirmScreen)  # a game in progress: the player is asked first
        await pilot.press("y")
        await wait_until(pilot, lambda: app.session.engine.state.turn == 0 and not kinds(app, "action"))
        await act(pilot, "/quit")
        await wait_until(pilot, lambda: app.return_code is not None)


# -- 80x24 ------------------------------------------------------------------------------
async def test_everything_that_matters_is_visible_at_80x24(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        for action in LESSER_WIN[:10]:  # four things carried: a long status bar
            spirit.step(len(default_script(1).split()))
            await act(pilot, action)
        assert len(status(app).inventory) == 4
        await act(pilot, "look", settle=False)  # narrating: "Stop" joins the footer
        await wait_until(pilot, lambda: status(app).spirit == "narrating")
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert len(lines) == 24
        for option in app.session.engine.options():
            assert f"{option.number}. {option.label}" in screen_text(app)
        assert "What do you do?" in screen_text(app)
        assert "Spirit: narrating" in flat_screen(app)
        assert lines[-1].split() == "esc Stop f1 Help ^z Undo ^r Retry ^b Earlier ^s Save ^o Load ^t Export ^q Quit".split()
        spirit.step(100)
        await wait_until(pilot, lambda: status(app).spirit == "ready")
        await wait_until(pilot, lambda: "Spirit: ready" in flat_screen(app))


async def test_a_long_ending_keeps_its_buttons_on_screen(personalities):
    lines = "".join(f"      Line {n} of a very long ending, told slowly.\n" for n in range(40))
    path = write_user_quest("long.yaml", f"""\
id: long-ending
title: Long Ending
start: a
scenes:
  a:
    title: Hall
    description: A hall.
    exits: [{{label: Leave, to: b}}]
  b: {{title: Out, description: Outside., ending: e}}
endings:
  e:
    title: Free
    text: |
{lines}""")
    app = build(personalities, quest=path)
    async with running(app) as pilot:
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        await pilot.pause()
        shown = screen_text(app)
        assert "Line 0 of a very long ending" in shown and "Play again" in shown and "Keep reading" in shown
        await pilot.click("#again")
        await wait_until(pilot, lambda: isinstance(app.screen, GameScreen) and not kinds(app, "action"))


# -- the real pipeline (tiny GPT-2) -----------------------------------------------------
def tiny_narrator(personalities, tiny_model_dir, max_new_tokens: int) -> TurnNarrator:
    settings = Settings(sampling={"max_new_tokens": max_new_tokens})
    return make_turn_narrator(settings, personalities, model=str(tiny_model_dir), seed=1)


async def test_real_spirit_narrates_every_turn_to_an_ending(personalities, tiny_model_dir):
    app = build(personalities, tiny_narrator(personalities, tiny_model_dir, 8))
    async with running(app, wake=True) as pilot:
        assert app.notes[0].message.startswith("The Storyteller Spirit is awake (")
        await play(pilot, LOSS)
        await showing(pilot, EndingScreen)
        assert "You lost." in str(app.screen.query_one("#ending-summary").render())
        history = app.session.engine.history
        assert len(history) == len(LOSS)
        shown = kinds(app, "narration")
        assert all(record.narration for record in history), [r.action for r in history if not r.narration]
        assert shown == [record.narration for record in history]
        assert [t.narration for t in autosave().history] == shown
        prompt = game(app).last_prompt
        assert status(app).context_used == prompt.prompt_tokens + 8 and status(app).context_window == 1024


async def test_real_spirit_streams_and_esc_cancels(personalities, tiny_model_dir):
    narrator = tiny_narrator(personalities, tiny_model_dir, 512)
    results = []
    run = narrator.run

    def recording_run(*args, **kwargs):  # the real run; the test only keeps its result
        results.append(run(*args, **kwargs))
        return results[-1]

    narrator.run = recording_run
    app = build(personalities, narrator)
    async with running(app, wake=True) as pilot:
        generator = narrator.service.generator
        step = generator._advance

        def unhurried(ids, all_logits=False):  # the real model at a model's pace: ~2 ms a token (the
            time.sleep(0.002)  # tiny one would tell all 512 before the test looks, now that the
            return step(ids, all_logits)  # reader no longer slows it down)

        generator._advance = unhurried
        screen = game(app)
        await act(pilot, "take the lantern", settle=False)
        await wait_until(pilot, lambda: kinds(app, "narration") and kinds(app, "narration")[-1],
                         what="the first streamed words")
        assert screen.narrating is not None and status(app).spirit == "narrating"
        await pilot.press("escape")
        await wait_until(pilot, lambda: results, what="the generation to stop")
        assert results[0].cancelled and results[0].new_tokens < 512
        assert kinds(app, "narration") == [] and status(app).spirit == "ready"
        assert kinds(app, "change") == ["You now have a cursor lantern."]
        assert app.session.samples == {}
        # The model is free again: the next turn is narrated in full.
        narrator.sampling = narrator.sampling.with_values(max_new_tokens=8)
        await act(pilot, "go north")
        assert len(results) == 2 and not results[1].cancelled
        assert kinds(app, "narration") == [results[1].text] and results[1].text


def test_the_storyteller_command_opens_the_tui(monkeypatch, tiny_model_dir):
    """`storyteller` with no arguments: the title screen, with the Spirit from the settings file."""
    import asyncio

    from game import cli
    from game.settings import save_settings

    save_settings(Settings(model=str(tiny_model_dir)))
    seen = {}

    def headless_run(app):  # App.run, without a real terminal
        async def drive():
            async with app.run_test(size=(80, 24)) as pilot:
                await showing(pilot, TitleScreen)
                await wait_until(pilot, lambda: app.spirit_status == "ready", timeout=120)
                await pilot.pause()
                seen["labels"] = menu_labels(app)
                seen["screen"] = flat_screen(app)
                await pilot.press("ctrl+q")

        asyncio.run(drive())

    monkeypatch.setattr(StorytellerApp, "run", headless_run)
    assert cli.main([]) == 0
    assert "Quest 1.6 — The Call of the Storyteller  by Storyteller team  [en, bundled]" in seen["labels"]
    assert "S T O R Y T E L L E R" in seen["screen"]
    assert "The Storyteller Spirit is ready" in seen["screen"]


# -- issue 11: nothing lost -----------------------------------------------------------------
async def test_the_settings_screen_shows_the_values_in_force_and_saving_keeps_the_rest(spirit, personalities):
    from textual.widgets import Input, Select

    from game.settings import save_settings

    bard = personalities["merry-bard"]
    save_settings(Settings(personality="merry-bard", sampling={"max_new_tokens": 20}))
    with open(locations.settings_file(), "a", encoding="utf-8") as fh:
        fh.write("# my own note\n")
    settings = load_settings(personalities=personalities)[0]
    app = build(personalities, scripted(spirit, personalities), settings=settings)
    async with running(app, wake=True) as pilot:
        form = await opens(pilot, "f3", SettingsScreen)
        await pilot.pause(0.3)  # the form's own first Select.Changed has come and gone
        assert form.query_one("#personality", Select).value == "merry-bard"
        assert form.query_one("#s-max_new_tokens", Input).value == "20"
        assert form.query_one("#s-temperature", Input).value == str(bard.sampling.temperature)
        form.query_one("#s-temperature", Input).value = "0.5"
        await pilot.press("ctrl+s")
        await playing(pilot)
        saved = load_settings(personalities=personalities)[0]
        assert dict(saved.sampling) == {"max_new_tokens": 20, "temperature": 0.5}
        # Again: the form shows what was saved, and saving it untouched changes nothing.
        form = await opens(pilot, "f3", SettingsScreen)
        await pilot.pause(0.3)
        assert form.query_one("#s-temperature", Input).value == "0.5"
        assert form.query_one("#s-max_new_tokens", Input).value == "20"
        before = locations.settings_file().read_bytes()
        await pilot.press("ctrl+s")
        await playing(pilot)
        assert locations.settings_file().read_bytes() == before and b"# my own note" in before
        assert app.settings == saved


async def test_restart_asks_first_and_the_game_so_far_stays_loadable(spirit, personalities):
    from game.tui.screens.confirm import ConfirmScreen

    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await play(pilot, ["take the lantern", "go north"])
        await act(pilot, "/restart", settle=False)
        dialog = await showing(pilot, ConfirmScreen)
        assert dialog.query_one("#no").has_focus  # the safe answer is the default
        await pilot.press("escape")
        await playing(pilot)
        assert app.session.engine.state.turn == 2
        await act(pilot, "/restart", settle=False)
        await showing(pilot, ConfirmScreen)
        await pilot.press("n")
        await playing(pilot)
        assert app.session.engine.state.turn == 2
        await act(pilot, "/restart", settle=False)
        await showing(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.session.engine.state.turn == 0)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.return_code is not None)

    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await choose(pilot, "Load a saved game")
        await showing(pilot, LoadScreen)
        title = "Quest 1.6 — The Call of the Storyteller"
        labels = [label.rsplit("   ", 1)[0] for label in menu_labels(app)]
        assert app.screen.query_one("#saves").highlighted == 0  # keyboard first: Enter loads the newest
        assert f"autosave: {title}, turn 0" in labels
        assert f"autosave before restart: {title}, turn 2" in labels
        await choose(pilot, "autosave before restart")
        await playing(pilot)
        assert app.session.engine.state.turn == 2
        assert kinds(app, "action") == ["take the lantern", "go north"]


async def test_saving_over_an_existing_slot_asks_first(spirit, personalities):
    from textual.widgets import Input

    from game.tui.screens.confirm import ConfirmScreen

    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        await act(pilot, "/save mine", settle=False)
        path = locations.saves_dir() / "mine.json"
        await wait_until(pilot, path.is_file)
        await act(pilot, "go north")
        for answer, turn in (("escape", 1), ("n", 1), ("y", 2)):
            await opens(pilot, "ctrl+s", SaveScreen)
            slot = app.screen.query_one(Input)
            slot.value = "mine"
            await pilot.press("enter")
            dialog = await showing(pilot, ConfirmScreen)
            assert "Overwrite the save 'mine'?" in flat_screen(app)
            assert dialog.query_one("#no").has_focus
            await pilot.press(answer)
            await playing(pilot)
            assert read_save(path).state.turn == turn
        assert app.notes[-1].message == f"Saved to {path}"


async def test_a_malformed_save_picked_in_the_load_list_is_refused_and_the_app_runs_on(personalities):
    import json

    path = locations.saves_dir() / "odd.json"
    app = build(personalities)
    async with running(app) as pilot:
        await act(pilot, "take the lantern")
        game(app).save_to("odd")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["state"]["turn"] = 1e400  # JSON: Infinity
    data["extra"]["samples"] = "many"
    path.write_text(json.dumps(data), encoding="utf-8")
    before = path.read_bytes()
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await choose(pilot, "Load a saved game")
        await showing(pilot, LoadScreen)
        await choose(pilot, "odd")
        await wait_until(pilot, lambda: app.notes)
        assert "odd.json:1:" in app.notes[-1].message and "state.turn" in app.notes[-1].message
        assert app.is_running and isinstance(app.screen, TitleScreen)
    assert path.read_bytes() == before


async def test_a_context_log_that_cannot_be_written_is_said_once_and_the_spirit_narrates_on(
        tmp_path, spirit, personalities):
    log = tmp_path / "log.jsonl"
    log.mkdir()  # a folder where the log should be: every write fails
    persona, sampling = Settings().effective_sampling(personalities)
    narrator = TurnNarrator(spirit, persona, sampling, seed=1, context_log=log)
    app = build(personalities, narrator)
    async with running(app, wake=True) as pilot:
        await play(pilot, ["take the lantern", "go north"])  # settles: never "narrating" forever
        assert kinds(app, "narration") == [default_script(1), default_script(2)]
        said = [n for n in app.notes if n.title == "Context log"]
        assert len(said) == 1 and "logging stopped" in said[0].message and str(log) in said[0].message
        assert status(app).spirit == "ready"


async def test_the_confirmation_fits_60x20_and_answers_from_the_keyboard(spirit, personalities):
    from game.tui.screens.confirm import ConfirmScreen

    app = build(personalities, scripted(spirit, personalities))
    async with app.run_test(size=(60, 20)) as pilot:
        await playing(pilot)
        await awake(pilot)
        await act(pilot, "take the lantern")
        await act(pilot, "/restart", settle=False)
        await showing(pilot, ConfirmScreen)
        await pilot.pause()
        shown = flat_screen(app)
        for words in ("Restart the quest from the beginning?", "Yes (y)", "No (n, Esc)",
                      "autosave before the restart."):
            assert words in shown, shown
        await pilot.press("tab")  # focus moves to Yes; Enter then agrees
        assert app.screen.query_one("#yes").has_focus
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.session.engine.state.turn == 0)
