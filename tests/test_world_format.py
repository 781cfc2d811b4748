"""The world model's newer parts, each on a small quest: starting items, text that depends on the
state, names inside text, hidden options, responses and catch-alls, conditional effects, things
and their verbs, the score, Inform-style commands, and old saves that keep loading."""

from __future__ import annotations

import json

import pytest

from game.engine import Engine
from game.saves import SAVE_VERSION, read_save, restore, save_game
from game.world.loader import check_quest
from tests.helpers import at, load_quest_text, write

ATTIC = """\
id: attic
title: Attic
start: attic
max_score: 3
carrying: [lamp]
flags:
  lit: false
  noise: 0
responses:
  - anything: true
    also: [look]
    if: {not_flag: lit}
    text: Something stirs.
    effects: [{add: {noise: 1}}]
items:
  lamp:
    name: a brass lamp
    description:
      - if: {flag: lit}
        text: The lamp burns brightly.
      - text: The lamp is cold.
    gained: You pick up the lamp.
    verbs:
      use:
        - if: {not_flag: lit}
          text: You light the lamp.
          effects:
            - set: lit
            - if: {at_most: {noise: 0}}
              then: [{score: 2}]
              else: [{score: 1}]
  lantern:
    name: a brass lantern
scenes:
  attic:
    title: The Attic
    description:
      - if: {not_flag: lit}
        text: It is dark. Score {score} of {max_score}, noise {noise}, carrying {lamp}.
      - text: A dusty attic, now lit.
    first_visit: You climb into the attic for the first time.
    things:
      hook:
        name: a brass hook
        description: Just a hook.
    responses:
      - words: [sing]
        text: You sing softly.
    choices:
      - label: Say the word
        hidden: true
        words: [xyzzy]
        text: A door appears.
        to: out
  out:
    title: Outside
    description: Fresh air.
    ending: free
endings:
  free: {title: Free, text: "You are out, with {score} points."}
"""


@pytest.fixture
def quest(tmp_path):
    return load_quest_text(tmp_path, "attic.yaml", ATTIC)


def test_the_player_starts_with_the_carried_items_and_first_visit_text(quest):
    engine = Engine(quest, seed=1)
    assert engine.state.inventory == ["lamp"]
    opening = [p.text for p in engine.opening().paragraphs]
    assert opening[1] == "You climb into the attic for the first time."
    assert engine.act("look").paragraphs[1].text == \
        "It is dark. Score 0 of 3, noise 0, carrying a brass lamp."  # variant in force, names filled in
    engine.act("use lamp")
    assert engine.act("look").paragraphs[1].text == "A dusty attic, now lit."


def test_a_catch_all_answers_anything_else_and_the_look_it_names(quest):
    engine = Engine(quest, seed=1)
    look = engine.act("look")
    assert look.kind == "response" and look.paragraphs[-1].text == "Something stirs."
    assert engine.act("sing").paragraphs[0].text == "You sing softly."  # a response comes first
    dance = engine.act("dance wildly")
    assert dance.kind == "response" and dance.narrate and dance.counts
    assert engine.state.flags["noise"] == 2
    assert engine.act("i").kind == "inventory"  # not in `also`: the built-in, no turn
    assert engine.state.flags["noise"] == 2
    engine.act("use lamp")  # a thing's verb comes before the quest's catch-all
    assert engine.state.flags["lit"] and engine.state.score == 1  # noise: the `else` branch
    assert engine.act("dance").kind == "free"  # lit: the catch-all's `if` no longer holds


def test_a_hidden_option_is_not_listed_but_answers(quest):
    engine = Engine(quest, seed=1)
    assert [o.label for o in engine.options()] == []
    result = engine.act("xyzzy")
    assert result.kind == "choice" and engine.ended
    assert result.paragraphs[-2].text == "You are out, with 0 points."


def test_item_verbs_conditional_effects_and_score(quest):
    engine = Engine(quest, seed=1)
    assert engine.act("x lamp").paragraphs[0].text == "The lamp is cold."
    engine.act("use lamp")
    assert engine.state.flags["lit"] and engine.state.score == 2  # no noise: the `then` branch
    assert engine.act("x lamp").paragraphs[0].text == "The lamp burns brightly."
    assert engine.act("examine the hook").paragraphs[0].text == "Just a hook."
    engine.act("drop lamp")
    assert engine.state.places == {"lamp": "attic"}
    assert "You can see a brass lamp here." in [p.text for p in engine.act("l").paragraphs]
    assert engine.act("get lamp").paragraphs[0].text == "You pick up the lamp."  # the item's own words
    result = engine.act("xyzzy")
    assert result.paragraphs[-1].text == "You won. You scored 2 of 3 points."


def test_two_things_that_fit_equally_make_the_game_ask(quest):
    engine = Engine(quest, seed=1)
    result = engine.act("x brass")
    assert result.paragraphs[0].text == "Which do you mean, the brass lamp or the brass hook?"
    assert not result.counts
    assert engine.act("hook").paragraphs[0].text == "Just a hook."


def test_again_and_wait_and_directions(quest):
    engine = Engine(quest, seed=1)
    engine.act("use lamp")
    assert engine.act("z").paragraphs[0].text == "Time passes."
    assert engine.act("g").paragraphs[0].text == "Time passes."
    assert [t.action for t in engine.history][-2:] == ["wait", "wait"]
    assert engine.act("n").paragraphs[0].text == "You can't go that way."


def test_an_unknown_name_in_a_text_is_a_located_error(tmp_path):
    path = write(tmp_path / "q.yaml", ATTIC.replace("noise {noise}", "noise {nois}"))
    _, problems = check_quest(path)
    assert [(p.line, p.severity) for p in problems] == [(at(path, "It is dark")[0], "error")]
    assert "unknown name '{nois}' in the text (did you mean 'noise'?)" in problems[0].message


def test_score_needs_max_score(tmp_path):
    path = write(tmp_path / "q.yaml", ATTIC.replace("max_score: 3\n", "").replace(
        "Score {score} of {max_score}, ", ""))
    _, problems = check_quest(path)
    assert any("has no 'max_score'" in p.message for p in problems)


def test_a_save_from_before_the_score_keeps_loading(quest, tmp_path):
    engine = Engine(quest, seed=1)
    engine.act("use lamp")
    path = save_game(tmp_path / "slot.json", engine)
    data = json.loads(path.read_text())
    data["version"] = 1  # what version 1 wrote: no score, no places
    for state in [data["state"]] + [u["state"] for u in data["undo"]]:
        del state["score"], state["places"]
    path.write_text(json.dumps(data))
    assert SAVE_VERSION == 2
    loaded, notes = restore(read_save(path), quest)
    assert loaded.state.score == 0 and loaded.state.places == {} and loaded.state.flags["lit"] is True
    assert loaded.undo() and loaded.state.score == 0
