"""Property-based tests (hypothesis): the loader, the engine, the narrator's window, saves.

* Loader: any text, any bytes, and bundled quests with random edits either load
  or raise the game's own `GameFileError`, every problem with a file, a line and
  a column; a quest that loads also plays.
* Engine: random action sequences on every bundled quest never raise; after
  every action the state is consistent (the scene exists, carried items exist,
  flags are the declared ones, the turn count is the number of counted turns,
  history and visits agree) and undo restores the exact earlier state.
* Context: random play through `TurnNarrator.prepare` with random unicode
  actions, notes and narrations and random windows and `max_new_tokens`: the
  prompt plus the new tokens always fit the window, counted by the real GPT-2
  tokenizer, and the newest action is always in the prompt.
* Saves: a save of any random game restores the exact game.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.diagnostics import GameFileError, display_path
from game.engine import Engine
from game.narration import TurnNarrator
from game.phrases import UNDO_WORDS
from game.world.loader import check_quest, load_quest
from game.sampling import RANGES, Sampling
from game.saves import read_save, restore, save_game
from game.safe_yaml import load_yaml_text
from tests.conftest import QUESTS
from tests.helpers import snapshot

BUNDLED = {path.stem: load_quest(path) for path in sorted(QUESTS.glob("*.yaml"))}
TEXTS = {name: quest.source.read_text(encoding="utf-8") for name, quest in BUNDLED.items()}
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_every_bundled_quest_is_covered():
    assert len(BUNDLED) >= 4 and "call-of-the-storyteller" in BUNDLED


# -- the loader ----------------------------------------------------------------------------
YAML_BITS = list("abcxyz019 :-_[]{},&*!|>'\"#%@`?\n\t\\.~") + [
    "\n  ", "- ", ": ", "&a ", "*a", "!!python/name:os.system ", "!!str ", "<<: ", "---\n", "...\n",
    "{a: [", "]}", "scenes:\n", "  s:\n    title: T\n", "\ufeff", "\x00", "\x1b[2J", "é", "Ж", "\u2028"]
YAMLISH = st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=80).map("".join)


def check_problems(problems, path: str) -> None:
    assert problems
    for p in problems:
        assert p.path == path and p.line >= 1 and p.col >= 1 and p.message
        assert p.severity in ("error", "warning")
        assert p.format().startswith(f"{path}:{p.line}:{p.col}: {p.severity}: ")


@FUZZ
@given(text=YAMLISH)
def test_any_text_gives_plain_values_or_the_games_own_error(text):
    try:
        load_yaml_text(text, "x.yaml", empty_ok=True)
    except GameFileError as exc:
        check_problems(exc.problems, "x.yaml")


def check_file(data: bytes) -> None:
    """check_quest never raises; a quest without errors also plays a few turns."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "quest.yaml"
        path.write_bytes(data)
        quest, problems = check_quest(path)
        if problems:
            check_problems(problems, display_path(path))
        errors = [p for p in problems if p.severity == "error"]
        assert (quest is None) == bool(errors)
        if quest is not None:
            engine = Engine(quest, seed=1)
            engine.opening()
            for action in ("look", "1", "2", "inventory", "go north"):
                engine.act(action)
        else:
            with pytest.raises(GameFileError):
                load_quest(path)


@FUZZ
@given(data=st.binary(max_size=400) | YAMLISH.map(lambda t: t.encode("utf-8")))
def test_any_bytes_as_a_quest_file_load_or_give_file_line_and_column(data):
    check_file(data)


EDIT_BITS = ["", " ", "  ", "\n", ":", "- ", "[", "{", "}", "]", "&x ", "*x", "'", '"', "#",
             "to: nowhere", "if: {has: ", "effects: [{give: ", "\t", "\x00", "\xff", "ending: ",
             "start: ", "include: [../x.yaml]", "!!python/object:os.system ", "words: 5"]


@FUZZ
@given(name=st.sampled_from(sorted(TEXTS)),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 30), st.sampled_from(EDIT_BITS)),
                      min_size=1, max_size=4))
def test_bundled_quests_with_random_edits_load_or_say_where_they_are_wrong(name, edits):
    text = TEXTS[name]
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut:]
    check_file(text.encode("utf-8", "surrogatepass"))


# -- the engine ----------------------------------------------------------------------------
def quest_words(quest) -> list[str]:
    words = {w for s in quest.scenes.values() for c in s.choices for w in c.words}
    words |= {c.label for s in quest.scenes.values() for c in s.choices}
    words |= {f"go to the {s.title}" for s in quest.scenes.values()}
    return sorted(words)


COMMANDS = ["look", "l", "i", "inventory", "help", "?", "", "   ", "0", "99", "-1", "1.", "²", "٣"]
UNDO = "undo"
assert UNDO in UNDO_WORDS


def actions(quest):
    return st.lists(st.one_of(st.integers(1, 6).map(str), st.sampled_from(COMMANDS),
                              st.sampled_from(quest_words(quest)), st.text(max_size=25),
                              st.just(UNDO)), max_size=60)


def check_consistent(engine: Engine, counted: int) -> None:
    quest, state = engine.quest, engine.state
    assert state.scene in quest.scenes
    assert all(item in quest.items for item in state.inventory)
    assert len(set(state.inventory)) == len(state.inventory)
    assert set(state.flags) == set(quest.flags)
    assert state.ending is None or state.ending in quest.endings
    assert state.turn == counted
    assert set(state.visits) <= set(quest.scenes) and state.visits.get(state.scene, 0) >= 1
    keys = {c.key for s in quest.scenes.values() for c in s.choices}
    assert set(state.used) <= keys
    turns = [r.turn for r in engine.history]
    assert turns == sorted(set(turns)) and (not turns or turns[-1] == state.turn)
    assert all(r.scene in quest.scenes for r in engine.history)
    assert engine.can_undo == (counted > 0)


def play(engine: Engine, moves: list[str]) -> None:
    """Play the moves, checking the invariants after each and undo against snapshots."""
    before: list[tuple] = []  # the exact state and history before each counted turn still played
    check_consistent(engine, 0)
    for move in moves:
        if move == UNDO:
            assert engine.undo() == bool(before)
            if before:
                assert snapshot(engine) == before.pop()
        else:
            was = snapshot(engine)
            result = engine.act(move)
            if result.counts:
                before.append(was)
                engine.set_narration(f"narration of turn {result.turn}")
            else:
                assert snapshot(engine) == was  # commands that take no turn change nothing
            assert result.options == engine.options()
            assert result.scene_id == engine.state.scene
            assert (result.ending is not None) == engine.ended
        check_consistent(engine, len(before))


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(BUNDLED)), seed=st.integers(0, 2**31 - 1))
def test_random_play_on_every_bundled_quest_keeps_the_state_consistent_and_undo_exact(data, name, seed):
    quest = BUNDLED[name]
    engine = Engine(quest, seed=seed)
    play(engine, data.draw(actions(quest)))


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_undo_all_the_way_back_restores_the_opening_exactly(name):
    quest = BUNDLED[name]
    engine = Engine(quest, seed=5)
    start = snapshot(engine)
    words = quest_words(quest)
    for i in range(120):
        engine.act(words[i * 7 % len(words)] if i % 3 else str(i % 4 + 1))
    while engine.undo():
        pass
    assert snapshot(engine) == start


# -- the narrator's window -------------------------------------------------------------------
class Window:
    """What `TurnNarrator.prepare` needs of a narrator service: a tokenizer and a window."""

    status = "ready"

    def __init__(self, tokenizer, window: int):
        self.tokenizer, self.window = tokenizer, window


UNICODE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(BUNDLED)),
       window=st.sampled_from([64, 100, 256, 512, 1024]) | st.integers(48, 1024),
       max_new=st.integers(int(RANGES["max_new_tokens"][1]), int(RANGES["max_new_tokens"][2])),
       persona=UNICODE, memory=st.lists(UNICODE, max_size=3))
def test_random_play_prompts_always_fit_and_keep_the_newest_action(gpt2_tokenizer, data, name, window,
                                                                    max_new, persona, memory):
    quest = BUNDLED[name]
    engine = Engine(quest, seed=3)
    narrator = TurnNarrator(Window(gpt2_tokenizer, window), persona, Sampling(max_new_tokens=max_new))
    narrator.memory = memory
    moves = data.draw(st.lists(UNICODE | st.sampled_from(quest_words(quest)), min_size=1, max_size=12))
    for move in moves:
        result = engine.act(move)
        if not result.narrate:
            continue
        prepared = narrator.prepare(engine, result)
        prompt = prepared.prompt
        assert prompt.prompt_tokens == len(gpt2_tokenizer.encode(prompt.text))
        assert prompt.prompt_tokens + prepared.sampling.max_new_tokens <= window
        # max_new_tokens that leaves the window no room gives way to half the window
        assert prompt.max_new_tokens == prepared.sampling.max_new_tokens in (max_new, window // 2)
        assert max_new < window or prepared.sampling.max_new_tokens == window // 2
        action = " ".join(result.action.split())
        segment = next(s for s in prompt.segments if s.kind == "action")
        assert segment.status in ("included", "clipped")
        line = [text for text in prompt.text.split("\n") if text.startswith("> ")][-1][2:]
        if segment.status == "included":
            assert line == action
        else:  # clipped: its start, and the marker
            assert line.endswith("…") and action.startswith(line[:-1].rstrip())
        engine.set_narration(data.draw(UNICODE))


# -- saves -------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(BUNDLED)), seed=st.integers(0, 2**31 - 1))
def test_a_save_of_any_game_restores_the_exact_game(data, name, seed):
    quest = BUNDLED[name]
    engine = Engine(quest, seed=seed)
    moves = data.draw(actions(quest))
    for move in moves:
        engine.undo() if move == UNDO else engine.act(move)
    with tempfile.TemporaryDirectory() as folder:
        path = save_game(Path(folder) / "s.json", engine)
        loaded, notes = restore(read_save(path), quest)
    assert notes == []
    assert snapshot(loaded) == snapshot(engine) and loaded.seed == engine.seed
    assert [(s.to_dict(), n) for s, n in loaded.undo_stack] == [(s.to_dict(), n) for s, n in engine.undo_stack]
    assert loaded.opening().paragraphs == engine.opening().paragraphs
    for move in ("look", "1", "2"):
        assert loaded.act(move) == engine.act(move)
