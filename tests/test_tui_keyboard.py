"""Playing by keyboard (issue 13): scrolling the story while typing, dialogs that open
focused and close with Esc, the key bar at every width, the inspector, the ending, the
notifications, the status bar, pastes, long actions and the slash commands' answers.
Driven through Textual's pilot like tests/test_tui.py, whose helpers it uses."""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import Button, DataTable, Input, OptionList, Select

from game.tui.paste import END, START, PasteCleaner
from game.tui.screens.ending import EndingScreen
from game.tui.screens.game import GameScreen
from game.tui.screens.help import HelpScreen
from game.tui.screens.inspector import ContextInspector
from game.tui.screens.saves import LoadScreen, SaveScreen
from game.tui.screens.settings import SettingsScreen
from game.tui.screens.title import TitleScreen
from game.tui.widgets.action_input import ActionInput
from game.tui.widgets.story_log import StoryLog, StoryParagraph
from tests.test_tui import personalities, spirit  # noqa: F401 (fixtures)
from tests.test_tui import (MARKUP_QUEST, ScriptedSpirit, act, build, game, kinds,
                            opens, paragraphs, play, playing, running, screen_text, scripted, showing,
                            status, wait_until, write_user_quest)

LONG = " ".join(f"word{i}" for i in range(600))


# -- 1. the story scrolls by keys while the input keeps the focus ---------------------------
async def test_keys_scroll_the_story_while_typing_stays_in_the_input(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, lambda n: LONG, delay=0)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        log = game(app).query_one(StoryLog)
        box = game(app).query_one(ActionInput)
        await act(pilot, "take the lantern")
        await wait_until(pilot, lambda: log.max_scroll_y > 20 and log.scroll_y == log.max_scroll_y)
        end = log.scroll_y
        await pilot.press("pageup")
        await wait_until(pilot, lambda: log.scroll_y < end)
        assert box.has_focus
        await pilot.press("ctrl+home")
        await wait_until(pilot, lambda: log.scroll_y == 0)
        await pilot.press("pagedown")
        await wait_until(pilot, lambda: log.scroll_y > 0)
        await pilot.press("ctrl+end")
        await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y)
        # Home/End: the story when the input is empty, the cursor when it is not.
        await pilot.press("home")
        await wait_until(pilot, lambda: log.scroll_y == 0)
        await pilot.press("end")
        await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y)
        await pilot.press(*"go", "home")
        assert box.cursor_position == 0 and log.scroll_y == log.max_scroll_y
        box.value = ""
        # Scrolled up, a new turn brings the view to it.
        await pilot.press("ctrl+home")
        await wait_until(pilot, lambda: log.scroll_y == 0)
        await act(pilot, "look")
        await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y and log.scroll_y > 0,
                         what="the view at the new turn")
        assert box.has_focus


async def test_a_resize_while_narrating_keeps_following(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, lambda n: LONG, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        log = game(app).query_one(StoryLog)
        await act(pilot, "take the lantern", settle=False)
        spirit.step(200)
        await wait_until(pilot, lambda: len(kinds(app, "narration")[-1].split()) == 200)
        await wait_until(pilot, lambda: log.max_scroll_y > 10 and log.scroll_y == log.max_scroll_y)
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        spirit.step(200)
        await wait_until(pilot, lambda: len(kinds(app, "narration")[-1].split()) == 400)
        await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="following after the resize")
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="following after the resize")
        spirit.step(300)
        await wait_until(pilot, lambda: game(app).narrating is None)


# -- 2. dialogs open focused; Esc closes every one ------------------------------------------
async def test_dialogs_focus_their_default_and_escape_closes_each(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        game(app).save_to("first")
        await act(pilot, "go north")
        await opens(pilot, "ctrl+o", LoadScreen)
        menu = app.screen.query_one(OptionList)
        assert menu.has_focus and menu.highlighted == 0
        assert "Esc goes back" in screen_text(app)
        await pilot.press("enter")  # the newest save, at once
        await wait_until(pilot, lambda: isinstance(app.screen, GameScreen) and app.session.engine.state.turn == 1)
        screen = await opens(pilot, "f3", SettingsScreen)
        assert screen.query_one("#language", Select).has_focus
        await pilot.press("escape")
        await playing(pilot)
        for key, kind in (("f1", HelpScreen), ("f2", ContextInspector), ("f3", SettingsScreen),
                          ("ctrl+s", SaveScreen), ("ctrl+o", LoadScreen)):
            await opens(pilot, key, kind)
            await pilot.press("escape")
            await playing(pilot)
        await opens(pilot, "f1", HelpScreen)
        assert "Esc closes every dialog" in "\n".join(str(w.render()) for w in app.screen.query("Static"))


async def test_the_title_screens_load_dialog_is_focused(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern")
        game(app).save_to("mine")
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        menu = app.screen.query_one(OptionList)
        menu.highlighted = 1  # "Load a saved game..." (after Continue)
        await pilot.press("enter")
        await showing(pilot, LoadScreen)
        assert app.screen.query_one(OptionList).has_focus
        await pilot.press("enter")
        await playing(pilot)
        assert app.session.engine.state.turn == 1


async def test_the_ending_dialog_is_focused_and_keep_reading_does_not_end_it_again(personalities):
    path = write_user_quest("markup.yaml", MARKUP_QUEST)
    app = build(personalities, quest=path)
    async with running(app) as pilot:
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        assert app.screen.query_one("#again", Button).has_focus
        await pilot.press("escape")  # keep reading
        await playing(pilot)
        await act(pilot, "look")  # typing on after the end: no second ending
        await pilot.pause()
        assert isinstance(app.screen, GameScreen)
        assert kinds(app, "ending-title") == ["[b]Free[/b]"]
        assert paragraphs(app)[-1] == ("info", app.session.engine.say("ended"))
        await act(pilot, "/restart")
        await wait_until(pilot, lambda: not kinds(app, "action"))
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        await pilot.press("enter")  # play again
        await wait_until(pilot, lambda: isinstance(app.screen, GameScreen) and not kinds(app, "action"))
    # Continued from the autosave: the new game after "Play again", with no ending yet.
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await pilot.press("enter")  # Continue
        await playing(pilot)
        assert kinds(app, "ending-title") == []


async def test_a_finished_game_continued_shows_its_ending_once(personalities):
    path = write_user_quest("markup.yaml", MARKUP_QUEST)
    app = build(personalities, quest=path)
    async with running(app) as pilot:
        await act(pilot, "1")
        await showing(pilot, EndingScreen)
        await pilot.press("ctrl+q")
    app = build(personalities, quest=None)
    async with running(app, TitleScreen) as pilot:
        await pilot.press("enter")  # Continue
        await playing(pilot)
        text = [t for _, t in paragraphs(app)]
        assert sum("You are out." in t for t in text) == 1, text
        assert sum("[b]Free[/b]" in t for t in text) == 1  # the title once: in the last turn, not again
        assert paragraphs(app)[-1] == ("info", "You won.")


# -- 3. the key bar --------------------------------------------------------------------------
async def test_the_key_bar_shows_what_matters_first_at_80_and_60_columns(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, stepping=True)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "take the lantern", settle=False)
        await wait_until(pilot, lambda: status(app).spirit == "narrating")
        await pilot.pause()
        bar = screen_text(app).splitlines()[-1]
        assert bar.split()[:4] == ["esc", "Stop", "f1", "Help"] and bar.split()[-2:] == ["^q", "Quit"]
        for words in ("^z Undo", "^r Retry", "^b Earlier", "^t Export"):
            assert words in bar, bar
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        bar = screen_text(app).splitlines()[-1]
        assert "esc Stop" in bar and "f1 Help" in bar and bar.rstrip().endswith("^q Quit"), bar
        words = bar.split()
        labels = {"Stop", "Help", "Undo", "Retry", "Earlier", "Save", "Load", "Export", "Settings", "Context", "Quit"}
        assert all(w in labels for w in words[1::2]), bar  # nothing cut mid-word
        spirit.step(100)
        await wait_until(pilot, lambda: game(app).narrating is None)
        await pilot.pause()
        bar = screen_text(app).splitlines()[-1]
        assert "Stop" not in bar and bar.split()[:2] == ["f1", "Help"] and bar.rstrip().endswith("^q Quit")
    # The title screen keeps Help and Quit at 60 columns too.
    app = build(personalities, quest=None)
    async with app.run_test(size=(60, 20)) as pilot:
        await showing(pilot, TitleScreen)
        await pilot.pause()
        bar = screen_text(app).splitlines()[-1]
        assert "f1 Help" in bar and "^q Quit" in bar, bar


# -- 4. the inspector: table and prompt by keys ----------------------------------------------
async def test_the_inspectors_table_and_prompt_are_both_reachable_by_keys(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, window=400)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await play(pilot, ["take the lantern", "go north", "listen to the fans"])
        inspector = await opens(pilot, "f2", ContextInspector)
        assert "Tab: table or prompt" in screen_text(app)
        table = inspector.query_one(DataTable)
        prompt = inspector.query_one("#prompt-text")
        assert table.has_focus
        await pilot.press("ctrl+pagedown")  # the prompt, from the table
        await wait_until(pilot, lambda: prompt.scroll_y > 0, what="the prompt to scroll")
        await pilot.press("ctrl+pageup")
        await wait_until(pilot, lambda: prompt.scroll_y == 0)
        await pilot.press("tab")
        assert prompt.has_focus
        await pilot.press("pagedown")
        await wait_until(pilot, lambda: prompt.scroll_y > 0)
        await pilot.press("escape")
        await playing(pilot)


# -- 7. notifications keep off the options and the input -------------------------------------
async def test_notifications_do_not_cover_the_options_or_the_input(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await playing(pilot)
        await wait_until(pilot, lambda: app.spirit_status == "ready", timeout=120)
        await play(pilot, ["take the lantern", "go north", "listen to the fans"])
        await pilot.press("ctrl+z", "ctrl+z", "ctrl+z")
        await pilot.pause()
        assert len(app._notifications) >= 3
        shown = screen_text(app)
        for option in app.session.engine.options():
            assert f"{option.number}. {option.label}" in shown, shown
        assert "What do you do?" in shown


# -- 8. the status bar: one line at 80 and 60 columns, no model path -------------------------
async def test_the_status_bar_is_one_line_at_80_and_60_columns(gpt2_tokenizer, personalities):
    from game.narrator.service import Loading

    spirit = ScriptedSpirit(gpt2_tokenizer, wakes=False)
    app = build(personalities, scripted(spirit, personalities))
    async with running(app) as pilot:
        await wait_until(pilot, lambda: spirit.status == "loading")
        spirit._emit(Loading("Waking the Storyteller Spirit (/home/player/models/my-tiny-gpt2)..."))
        await pilot.pause()
        for action in ["take the lantern", "read the glyphs", "go north", "west", "take the ribbon"]:
            await act(pilot, action, settle=False)
        bar = status(app)
        assert bar.outer_size.height == 1
        lines = [x for x in screen_text(app).splitlines() if "Spirit:" in x]
        assert len(lines) == 1 and "/home/player" not in screen_text(app), lines
        assert "turn " in lines[0]
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        lines = [x for x in screen_text(app).splitlines() if "Spirit:" in x]
        assert len(lines) == 1 and "turn " in lines[0] and "Spirit: waking" in lines[0], lines
        assert bar.outer_size.height == 1


# -- 9. pastes ---------------------------------------------------------------------------------
def test_a_bracketed_paste_with_escape_codes_keeps_its_order_and_loses_them():
    cleaner = PasteCleaner()
    raw = f"{START}first part \x1b[1mbold \x1b[0m last{END}x"
    assert cleaner.feed(raw) == f"{START}first part bold  last{END}x"
    # Split anywhere across reads, it comes out the same.
    for cut in range(1, len(raw)):
        cleaner = PasteCleaner()
        assert cleaner.feed(raw[:cut]) + cleaner.feed(raw[cut:]) == f"{START}first part bold  last{END}x"
    # The Escape key alone is not held back.
    assert PasteCleaner().feed("\x1b") == "\x1b"
    # Through Textual's own parser: one paste, in order.
    from textual._xterm_parser import XTermParser

    events_seen = list(XTermParser().feed(PasteCleaner().feed(raw[:-1])))
    pastes = [e for e in events_seen if isinstance(e, events.Paste)]
    assert [p.text for p in pastes] == ["first part bold  last"]
    assert not [e for e in events_seen if isinstance(e, events.Key)]


async def test_a_paste_into_the_input_is_clean_and_in_order(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        box = game(app).query_one(ActionInput)
        box.post_message(events.Paste("first part \x1b[1mbold \x1b[0m last\nsecond line"))
        await wait_until(pilot, lambda: box.value)
        assert box.value == "first part bold  last second line"
        await pilot.press("enter")
        await wait_until(pilot, lambda: game(app).narrating is None and kinds(app, "action"))
        assert kinds(app, "action") == ["first part bold  last second line"]


# -- 10. a long action --------------------------------------------------------------------------
async def test_a_long_action_is_shown_clipped_in_the_log(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        long = "sing " + "la " * 1700  # 5,105 characters
        await act(pilot, long.strip())
        widget = [p for p in game(app).query(StoryParagraph) if p.kind == "action"][-1]
        shown = str(widget.render())
        assert widget.text == long.strip()  # kept whole in the story
        more = len(long.strip()) - 400
        assert shown.endswith(f"... {more:,} more characters") and len(shown) < 460


# -- 11. /forget and /remember say what is wrong ------------------------------------------------
async def test_forget_and_remember_say_what_is_wrong(spirit, personalities):
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        await act(pilot, "/forget")
        assert (app.notes[-1].title, app.notes[-1].message) == (
            "Nothing to forget", "There are no notes to forget: /remember <note> adds one.")
        await act(pilot, "/remember")
        assert app.notes[-1].title == "/remember needs a note" and "/remember The lantern" in app.notes[-1].message
        await act(pilot, "/remember The lantern is called Blink")
        await act(pilot, "/forget 5")
        assert (app.notes[-1].title, app.notes[-1].message) == (
            "No such note", "There is no note 5: there is 1 note; /memory lists it.")
        await act(pilot, "/forget")
        assert app.notes[-1].title == "/forget needs a number"
        assert app.session.memory == ["The lantern is called Blink"]
        assert not any(n.title.startswith("Unknown command") for n in app.notes)


# -- 12. the settings: the model in use, fields that look like fields ---------------------------
async def test_settings_show_the_model_in_use_and_bordered_fields(gpt2_tokenizer, personalities):
    spirit = ScriptedSpirit(gpt2_tokenizer, name="/models/really-in-use")
    app = build(personalities, scripted(spirit, personalities))
    async with running(app, wake=True) as pilot:
        screen = await opens(pilot, "f3", SettingsScreen)
        assert "In use now: /models/really-in-use (awake)." in str(screen.query_one("#model-in-use").render())
        field = screen.query_one("#model", Input)
        assert field.value == "distilgpt2"
        assert field.styles.border_top[0] not in ("", "none", "hidden") and field.outer_size.height == 3


# -- 15. bare `storyteller` takes the game options --------------------------------------------
@pytest.mark.parametrize("argv, narrator, seed", [
    (["--no-spirit", "--seed", "5"], False, 5),
    (["--model", "{model}", "--device", "cpu", "--precision", "fp32", "--personality", "grim-chronicler"],
     True, None),
])
def test_the_bare_command_takes_the_game_options(monkeypatch, tiny_model_dir, argv, narrator, seed):
    from game import cli
    from game.tui.app import StorytellerApp

    seen = {}

    def headless_run(app):  # App.run, without a real terminal
        seen["app"] = app

    monkeypatch.setattr(StorytellerApp, "run", headless_run)
    assert cli.main([a.replace("{model}", str(tiny_model_dir)) for a in argv]) == 0
    app = seen["app"]
    assert (app.narrator is not None) == narrator and app.seed == seed
    if narrator:
        assert app.narrator.service.model_name == str(tiny_model_dir)
        assert app.narrator.persona == app.personalities["grim-chronicler"].persona
