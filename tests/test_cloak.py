"""Cloak of Darkness, the game every interactive-fiction system is compared on, as a bundled quest.

It uses none of the old workarounds: the player starts wearing the cloak (`carrying`),
the bar's description depends on the state, the dark bar's "anything else" is a
catch-all with effects, the refusals are responses and item verbs, the score is kept
by effects and shown by the game, and putting the cloak on the hook says so in its own
words. Both endings are played with Inform-style commands in plain mode (a real
subprocess, what a player types).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from game.engine import Engine
from game.world.loader import check_quest, load_quest
from tests.conftest import QUESTS, ROOT
from tests.helpers import play_plain

CLOAK = QUESTS / "cloak-of-darkness.yaml"

WIN = ["i", "x cloak", "n", "west", "x hook", "hang cloak on hook", "e", "s", "x message"]
LOSE = ["s", "look", "read message", "n", "w", "drop cloak", "east", "s", "read message"]


@pytest.fixture(scope="module")
def quest():
    return load_quest(CLOAK)


def test_validates_strict_with_no_warnings():
    found, problems = check_quest(CLOAK)
    assert found is not None and [p.format() for p in problems] == []
    run = subprocess.run([sys.executable, "-m", "game", "validate", "--strict", str(CLOAK)],
                         capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok:" in run.stdout and "warning" not in run.stdout


def test_none_of_the_workarounds(quest):
    assert quest.carrying == ("cloak",)  # no fake opening scene hands the cloak over
    assert len(quest.scenes) == 3  # one bar, not a dark and a lit copy
    assert all(not c.hidden and c.is_exit for s in quest.scenes.values() for c in s.choices)  # no refusal options
    assert "You now have" not in CLOAK.read_text(encoding="utf-8")
    assert not any("score" in e.text.lower() or "point" in e.text.lower() for e in quest.endings.values())


def test_winning_walkthrough_in_plain_mode():
    result = play_plain(CLOAK, WIN)
    out = result.stdout
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "You carry:\n- a black velvet cloak" in out
    assert "only just arrived" in out  # n: leaving is refused
    assert "A small brass hook screwed to the wall" in out  # x hook
    assert "You hang the cloak on the small brass hook." in out and "You no longer have" not in out
    assert "pitch dark" not in out and "The bar is far rougher" in out
    assert "You have won." in out and "You won. You scored 2 of 2 points." in out
    assert out.rstrip().endswith("THE END")


def test_losing_walkthrough_in_plain_mode():
    result = play_plain(CLOAK, LOSE)
    out = result.stdout
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert out.count("In the dark? You could easily disturb something.") == 2  # look and read
    assert "It is pitch dark in here." in out
    assert "You hang the cloak on the brass hook" in out  # drop cloak in the cloakroom hangs it
    assert "trampled, 2 times over" in out and "You lost. You scored 1 of 2 points." in out
    assert out.rstrip().endswith("THE END")


def test_the_dark_bar_counts_every_other_action_but_north(quest):
    engine = Engine(quest, seed=1)
    engine.act("s")
    for action in ("i", "z", "dance", "x message"):
        result = engine.act(action)
        assert result.kind == "response" and result.counts, action
    assert engine.state.flags["disturbed"] == 4
    assert engine.act("n").kind == "exit" and engine.state.scene == "foyer"
    assert engine.state.flags["disturbed"] == 4


def test_the_cloak_stays_out_of_the_foyer_and_the_bar(quest):
    engine = Engine(quest, seed=1)
    result = engine.act("drop cloak")
    assert "no place to leave a cloak" in result.paragraphs[0].text
    assert engine.state.inventory == ["cloak"]
    assert engine.act("wear cloak").paragraphs[0].text == "You are already wearing it."


def test_the_cloak_can_be_taken_back_and_the_point_is_given_once(quest):
    engine = Engine(quest, seed=1)
    for action in ("w", "put cloak on hook", "take cloak", "hang the cloak on the hook"):
        engine.act(action)
    assert engine.state.score == 1 and engine.state.inventory == []
    assert "hanging from it" in engine.act("x hook").paragraphs[0].text
    result = engine.act("get cloak")
    assert result.paragraphs[0].text == "You take the cloak and settle it around your shoulders again."


def test_actions_are_recorded_resolved(quest):
    engine = Engine(quest, seed=1)
    for action in ("2", "x hook", "e", "s", "l"):
        engine.act(action)
    assert [t.action for t in engine.history] == [
        "Go west to the cloakroom", "examine hook", "go east", "go south", "look"]
