"""The turn engine and the quest's rules: matching, conditions, effects, endings, undo, seeds."""

from __future__ import annotations

import pytest

from game.engine import Engine
from game.world.rules import apply, holds
from game.state import GameState
from tests.helpers import labels, load_quest_text, snapshot


CELLAR = """\
id: engine-test
title: Engine Test
start: cellar
flags:
  door_open: false
  offerings: 0
items:
  lantern: {name: a brass lantern, description: Dented but working.}
  key: a rusty key
scenes:
  cellar:
    title: The Cellar
    description: A damp cellar.
    recap: You searched the cellar.
    choices:
      - label: Take the lantern
        words: [grab lantern, lantern]
        if: {lacks: lantern}
        effects: [{give: lantern}]
        text: You lift the lantern off its hook.
      - label: Pray at the shrine
        words: [pray]
        once: true
        effects:
          - add: {offerings: 1}
          - say: The shrine hums.
      - label: Open the hatch
        if: {flag: door_open}
        locked: The hatch is bolted shut.
      - label: Read the runes
        if: {has: key}
    exits:
      - label: Go north through the door
        words: [north, door]
        to: hall
        if: {has: lantern}
        locked: It is too dark to find the handle.
  hall:
    title: The Hall
    description: [A dusty hall., A hall full of echoes., A hall lit by your lantern.]
    on_enter:
      - add: {offerings: 10}
    choices:
      - label: Pick up the key
        words: [key]
        if: {lacks: key}
        effects: [{give: key}]
    exits:
      - label: Back down to the cellar
        words: [south, cellar, down]
        to: cellar
      - label: Jump into the well
        words: [well, jump]
        to: well
      - label: Walk into the sunlight
        words: [sunlight, light]
        to: outside
  well:
    title: The Well
    description: Down you go.
    ending: drowned
  outside:
    title: Outside
    description: Fresh air.
    ending: free
endings:
  free: {title: Out of the Dark, text: You climb out into the light.}
  drowned: {title: Deep Water, text: The water closes over you., outcome: lose}
"""


@pytest.fixture
def quest(tmp_path):
    return load_quest_text(tmp_path, "quest.yaml", CELLAR)


@pytest.fixture
def engine(quest):
    return Engine(quest, seed=7)


def texts(result) -> list[str]:
    return [p.text for p in result.paragraphs]


# -- opening and options ----------------------------------------------------------

def test_opening_shows_the_start_scene_and_numbered_options(engine):
    result = engine.opening()
    assert result.kind == "opening" and result.turn == 0 and not result.counts
    assert texts(result)[:2] == ["The Cellar", "A damp cellar."]
    assert [(o.number, o.label, o.is_exit) for o in result.options] == [
        (1, "Take the lantern", False), (2, "Pray at the shrine", False)]
    assert engine.state.visits == {"cellar": 1} and engine.state.turn == 0


def test_options_follow_conditions(engine):
    engine.act("take the lantern")
    assert labels(engine) == ["Pray at the shrine", "Go north through the door"]
    assert engine.options()[-1].is_exit


# -- matching -----------------------------------------------------------------------

def test_numbers_pick_the_listed_options(engine):
    result = engine.act("1")
    assert result.kind == "choice" and engine.state.inventory == ["lantern"]
    # the lantern choice is gone, so 2 is now the exit
    assert labels(engine)[1] == "Go north through the door"
    result = engine.act("2")
    assert result.kind == "exit" and engine.state.scene == "hall" and result.scene_entered


@pytest.mark.parametrize("number", ["0", "3", "99"])
def test_out_of_range_numbers_are_refused_without_a_turn(engine, number):
    before = engine.state.to_dict()
    result = engine.act(number)
    assert result.kind == "invalid" and not result.counts
    assert texts(result) == [f"There is no option {number}: pick 1 to 2."]
    assert engine.state.to_dict() == before and engine.history == [] and not engine.can_undo


def test_number_where_there_are_no_options(tmp_path):
    quest = load_quest_text(tmp_path, "quest.yaml", """\
        id: bare
        title: Bare
        start: room
        scenes:
          room: {title: Room, description: Nothing here.}
        endings:
          e: {title: E, text: E.}
        """)
    result = Engine(quest, seed=1).act("1")
    assert result.kind == "invalid" and "no numbered options" in texts(result)[0]


@pytest.mark.parametrize("action", [
    "Take the lantern", "take lantern", "I grab lantern quickly", "get the lantern",
    "lantern", "Take the lantern!",
])
def test_labels_and_aliases_pick_a_choice(engine, action):
    result = engine.act(action)
    assert result.kind == "choice" and engine.state.inventory == ["lantern"]
    assert "You lift the lantern off its hook." in texts(result)
    assert "You now have a brass lantern." in texts(result)


@pytest.mark.parametrize("action", ["north", "n", "go n", "go north", "open the door",
                                    "I walk to the hall", "go through the door"])
def test_exit_forms(engine, action):
    engine.act("lantern")
    result = engine.act(action)
    assert result.kind == "exit" and engine.state.scene == "hall"
    assert texts(result)[0] == "The Hall"


def test_locked_exit_shows_its_locked_text_and_takes_a_turn(engine):
    before = engine.state.to_dict()
    result = engine.act("go north")
    assert result.kind == "locked" and texts(result) == ["It is too dark to find the handle."]
    assert result.counts and engine.state.turn == 1
    after = engine.state.to_dict()
    assert {**after, "turn": 0} == before  # nothing but the turn changed


def test_locked_choice_with_and_without_locked_text(engine):
    assert texts(engine.act("open the hatch")) == ["The hatch is bolted shut."]
    result = engine.act("read the runes")
    assert result.kind == "locked" and texts(result) == ["You can't do that right now."]
    assert engine.state.turn == 2


def test_once_choice_disappears_after_it_is_taken(engine):
    result = engine.act("pray")
    assert result.kind == "choice" and "The shrine hums." in texts(result)
    assert engine.state.flags["offerings"] == 1
    assert "Pray at the shrine" not in labels(engine)
    again = engine.act("pray")
    assert again.kind == "free" and engine.state.flags["offerings"] == 1


def test_choice_whose_condition_fails_after_use_is_locked_not_repeated(engine):
    engine.act("lantern")
    result = engine.act("take the lantern")
    assert result.kind == "locked" and engine.state.inventory == ["lantern"]


# -- turns that count and turns that do not --------------------------------------

def test_inventory_and_help_do_not_take_a_turn(engine):
    assert texts(engine.act("i")) == ["You carry nothing."]
    engine.act("lantern")
    turn, history = engine.state.turn, list(engine.history)
    inv = engine.act("inventory")
    assert inv.kind == "inventory" and not inv.counts and not inv.narrate
    assert texts(inv) == ["You carry:\n- a brass lantern: Dented but working."]
    helped = engine.act("help")
    assert helped.kind == "help" and "look" in texts(helped)[0] and "undo" in texts(helped)[0]
    assert engine.act("?").kind == "help"
    assert engine.act("   ").kind == "empty"
    assert engine.state.turn == turn and engine.history == history
    assert len(engine.undo_stack) == 1


def test_free_action_takes_a_turn_and_changes_nothing_else(engine):
    before = engine.state.to_dict()
    result = engine.act("I dance a little jig")
    assert result.kind == "free" and result.counts and result.narrate
    assert result.paragraphs == [] and result.turn == 1
    assert {**engine.state.to_dict(), "turn": 0} == before
    assert engine.history[-1].action == "I dance a little jig"
    assert engine.history[-1].kind == "free" and engine.history[-1].scene == "cellar"


def test_look_takes_a_turn_and_repeats_the_description(engine):
    result = engine.act("look")
    assert result.kind == "look" and result.counts
    assert texts(result) == ["The Cellar", "A damp cellar."]
    assert engine.state.visits == {"cellar": 1}


def test_history_records_each_turn(engine):
    engine.act("lantern")
    engine.act("n")
    engine.set_narration("The Spirit whispers.")
    assert [(t.turn, t.action, t.kind, t.scene) for t in engine.history] == [
        (1, "lantern", "choice", "cellar"), (2, "go north", "exit", "cellar")]  # "n" resolved
    assert engine.history[0].authored.startswith("You lift the lantern")
    assert engine.history[1].narration == "The Spirit whispers."


# -- scenes, on_enter, endings ------------------------------------------------------

def test_on_enter_runs_on_every_arrival_and_visits_are_counted(engine):
    engine.act("lantern")
    engine.act("n")
    assert engine.state.flags["offerings"] == 10
    engine.act("south")
    engine.act("north")
    assert engine.state.flags["offerings"] == 20
    assert engine.state.visits == {"cellar": 2, "hall": 2}


def test_recaps_name_earlier_scenes_only(engine):
    assert engine.recaps() == []
    engine.act("lantern")
    engine.act("n")
    assert engine.recaps() == ["You searched the cellar."]


@pytest.mark.parametrize("action, ending, verdict", [
    ("sunlight", "free", "You won."), ("jump into the well", "drowned", "You lost.")])
def test_scene_ending_ends_the_quest(engine, action, ending, verdict):
    engine.act("lantern")
    engine.act("n")
    result = engine.act(action)
    assert result.ending is engine.quest.endings[ending] and engine.ended
    assert engine.state.ending == ending and result.options == [] and engine.available() == []
    assert texts(result)[-3:] == [engine.quest.endings[ending].title,
                                  engine.quest.endings[ending].text, verdict]
    assert engine.act("look").kind == "ended" and engine.act("1").kind == "ended"
    opening = engine.opening()
    assert opening.ending is not None and verdict in texts(opening)


def test_ending_can_be_undone(engine):
    engine.act("lantern")
    engine.act("n")
    engine.act("jump")
    assert engine.undo() and not engine.ended and engine.state.scene == "hall"
    assert engine.act("sunlight").ending.outcome == "win"


EFFECTS_QUEST = """\
id: effects
title: Effects
start: start
flags:
  lit: false
  mood: calm
  count: 5
items:
  key: a key
  coin: a gold coin
scenes:
  start:
    title: Start
    description: Start.
    choices:
      - label: Teleport
        to: start
        effects: [{move: vault}]
        text: Whoosh.
      - label: Give up
        to: vault
        effects: [{end: gave-up}]
      - label: Fall through
        to: chute
      - label: Open the trap
        to: trap
  vault:
    title: Vault
    description: A vault.
  chute:
    title: Chute
    description: You slide.
    on_enter: [{say: Down and down.}, {move: cellar}]
  cellar:
    title: Cellar
    description: A cellar.
    on_enter: [{give: coin}]
  trap:
    title: Trap
    description: Spikes.
    on_enter: [{end: gave-up}]
endings:
  gave-up: {title: Gave Up, text: You stop., outcome: lose}
"""


@pytest.fixture
def effects_engine(tmp_path):
    return Engine(load_quest_text(tmp_path, "quest.yaml", EFFECTS_QUEST), seed=1)


def test_move_effect_overrides_the_exit_target(effects_engine):
    result = effects_engine.act("teleport")
    assert effects_engine.state.scene == "vault" and result.scene_entered
    assert texts(result)[:2] == ["Whoosh.", "Vault"]
    assert effects_engine.state.visits == {"start": 1, "vault": 1}


def test_end_effect_ends_without_entering_the_target(effects_engine):
    result = effects_engine.act("give up")
    assert effects_engine.state.ending == "gave-up" and effects_engine.state.scene == "start"
    assert "vault" not in effects_engine.state.visits and not result.scene_entered
    assert result.ending.outcome == "lose"


def test_on_enter_move_chains_to_the_next_scene(effects_engine):
    result = effects_engine.act("fall through")
    assert effects_engine.state.scene == "cellar"
    assert effects_engine.state.visits == {"start": 1, "chute": 1, "cellar": 1}
    assert texts(result) == ["Chute", "You slide.", "Down and down.", "Cellar", "A cellar.",
                             "You now have a gold coin."]
    assert effects_engine.state.inventory == ["coin"]


def test_on_enter_end_ends_the_quest(effects_engine):
    result = effects_engine.act("open the trap")
    assert effects_engine.state.scene == "trap" and result.ending.id == "gave-up"


def test_on_enter_move_loops_are_cut_off(tmp_path):
    quest = load_quest_text(tmp_path, "quest.yaml", """\
        id: loop
        title: Loop
        start: a
        flags: {n: 0}
        scenes:
          a:
            title: A
            description: A.
            on_enter: [{add: {n: 1}}, {move: b}]
          b:
            title: B
            description: B.
            on_enter: [{move: a}]
        endings:
          e: {title: E, text: E.}
        """)
    engine = Engine(quest, seed=1)  # must not recurse forever
    assert 1 <= engine.state.flags["n"] <= 10


# -- conditions ---------------------------------------------------------------------

RULES_QUEST = """\
id: rules
title: Rules
start: a
flags:
  lit: false
  mood: calm
  offerings: 0
items:
  lantern: a lantern
  key: a key
scenes:
  a:
    title: A
    description: A.
    choices:
      - label: Test
        if: {COND}
  crypt: {title: Crypt, description: Crypt.}
endings:
  e: {title: E, text: E.}
"""


def condition(tmp_path, text: str):
    quest = load_quest_text(tmp_path, "quest.yaml", RULES_QUEST.replace("COND", text))
    return quest.scenes["a"].choices[0].condition


def state(inventory=(), turn=0, visits=None, **flags) -> GameState:
    base = {"lit": False, "mood": "calm", "offerings": 0}
    return GameState(scene="a", inventory=list(inventory), flags={**base, **flags},
                     visits=visits or {"a": 1}, turn=turn)


CONDITION_CASES = [
    ("has: lantern", state(["lantern"]), True),
    ("has: lantern", state(["key"]), False),
    ("has: [lantern, key]", state(["key", "lantern"]), True),
    ("has: [lantern, key]", state(["lantern"]), False),
    ("lacks: lantern", state(), True),
    ("lacks: lantern", state(["lantern"]), False),
    ("lacks: [lantern, key]", state(["key"]), False),
    ("flag: lit", state(lit=True), True),
    ("flag: lit", state(lit=False), False),
    ("flag: offerings", state(offerings=0), False),
    ("flag: offerings", state(offerings=2), True),
    ("flag: mood", state(mood=""), False),
    ("flag: [lit, mood]", state(lit=True), True),
    ("flag: [lit, offerings]", state(lit=True), False),
    ("not_flag: lit", state(lit=False), True),
    ("not_flag: lit", state(lit=True), False),
    ("not_flag: [lit, offerings]", state(offerings=1), False),
    ("flags: {mood: angry}", state(mood="angry"), True),
    ("flags: {mood: angry}", state(), False),
    ("flags: {mood: calm, lit: true}", state(lit=True), True),
    ("flags: {offerings: 2}", state(offerings=2), True),
    ("at_least: {offerings: 2}", state(offerings=2), True),
    ("at_least: {offerings: 2}", state(offerings=3), True),
    ("at_least: {offerings: 2}", state(offerings=1), False),
    ("at_most: {offerings: 2}", state(offerings=2), True),
    ("at_most: {offerings: 2}", state(offerings=-5), True),
    ("at_most: {offerings: 2}", state(offerings=3), False),
    ("visited: crypt", state(visits={"a": 1, "crypt": 1}), True),
    ("visited: crypt", state(), False),
    ("visited: [a, crypt]", state(), False),
    ("not_visited: crypt", state(), True),
    ("not_visited: crypt", state(visits={"a": 1, "crypt": 2}), False),
    ("turn_at_least: 3", state(turn=3), True),
    ("turn_at_least: 3", state(turn=2), False),
    ("turn_at_most: 3", state(turn=3), True),
    ("turn_at_most: 3", state(turn=4), False),
    ("any: [{has: key}, {flag: lit}]", state(lit=True), True),
    ("any: [{has: key}, {flag: lit}]", state(["key"]), True),
    ("any: [{has: key}, {flag: lit}]", state(), False),
    ("all: [{has: key}, {flag: lit}]", state(["key"], lit=True), True),
    ("all: [{has: key}, {flag: lit}]", state(["key"]), False),
    ("not: {has: key}", state(), True),
    ("not: {has: key}", state(["key"]), False),
    ("not: {any: [{has: key}, {visited: crypt}]}", state(visits={"a": 1, "crypt": 1}), False),
    ("has: key, flag: lit", state(["key"], lit=True), True),  # every key must hold
    ("has: key, flag: lit", state(["key"]), False),
]


@pytest.mark.parametrize("text, game_state, expected", CONDITION_CASES,
                         ids=[f"{c[0]}->{c[2]}" for c in CONDITION_CASES])
def test_condition_kinds(tmp_path, text, game_state, expected):
    assert holds(condition(tmp_path, text), game_state) is expected


def test_every_condition_kind_is_covered():
    kinds = {c[0].split(":")[0] for c in CONDITION_CASES}
    assert kinds >= {"has", "lacks", "flag", "not_flag", "flags", "at_least", "at_most", "visited",
                     "not_visited", "turn_at_least", "turn_at_most", "any", "all", "not"}


def test_no_condition_always_holds():
    assert holds(None, GameState(scene="a"))


def test_conditions_in_play_turn_and_visit_gates(tmp_path):
    quest = load_quest_text(tmp_path, "quest.yaml", """\
        id: gates
        title: Gates
        start: a
        scenes:
          a:
            title: A
            description: A.
            choices:
              - label: Early bird
                if: {turn_at_most: 1}
              - label: Patience
                if: {turn_at_least: 2}
              - label: Remember the crypt
                if: {visited: crypt}
            exits:
              - label: To the crypt
                to: crypt
                if: {not_visited: crypt}
          crypt:
            title: Crypt
            description: Crypt.
            exits:
              - {label: Back, to: a}
        endings:
          e: {title: E, text: E.}
        """)
    engine = Engine(quest, seed=1)
    assert labels(engine) == ["Early bird", "To the crypt"]
    engine.act("wait")
    assert labels(engine) == ["Early bird", "To the crypt"]
    engine.act("wait")
    assert labels(engine) == ["Patience", "To the crypt"]
    engine.act("go to the crypt")
    engine.act("back")
    assert labels(engine) == ["Patience", "Remember the crypt"]


# -- effects ------------------------------------------------------------------------

def effects(tmp_path, text: str):
    quest = load_quest_text(tmp_path, "quest.yaml", EFFECTS_QUEST.replace(
        "      - label: Teleport\n", f"      - label: Probe\n        effects: [{text}]\n"
        "      - label: Teleport\n"))
    return quest, quest.scenes["start"].choices[0].effects


def test_give_and_take(tmp_path):
    quest, give = effects(tmp_path, "{give: [key, coin]}")
    s = GameState(scene="start")
    assert apply(give, s, quest).messages == ("You now have a key.", "You now have a gold coin.")
    assert s.inventory == ["key", "coin"]
    assert apply(give, s, quest).messages == () and s.inventory == ["key", "coin"]  # no duplicates
    _, take = effects(tmp_path, "{take: key}")
    assert apply(take, s, quest).messages == ("You no longer have a key.",)
    assert s.inventory == ["coin"]
    assert apply(take, s, quest).messages == () and s.inventory == ["coin"]


@pytest.mark.parametrize("text, flags", [
    ("{set: lit}", {"lit": True, "mood": "calm", "count": 5}),
    ("{set: [lit, mood]}", {"lit": True, "mood": True, "count": 5}),
    ("{set: {mood: angry, count: 3}}", {"lit": False, "mood": "angry", "count": 3}),
    ("{clear: [mood, count]}", {"lit": False, "mood": False, "count": False}),
    ("{add: {count: 2}}", {"lit": False, "mood": "calm", "count": 7}),
    ("{add: {count: -7}}", {"lit": False, "mood": "calm", "count": -2}),
    ("{add: {count: 0.5}}", {"lit": False, "mood": "calm", "count": 5.5}),
    ("{set: lit}, {clear: lit}, {add: {count: 1}}, {add: {count: 1}}",
     {"lit": False, "mood": "calm", "count": 7}),
])
def test_flag_effects(tmp_path, text, flags):
    quest, fx = effects(tmp_path, text)
    s = GameState(scene="start", flags=dict(quest.flags))
    outcome = apply(fx, s, quest)
    assert s.flags == flags and outcome.messages == () and outcome.move_to is None


def test_say_move_and_end_are_reported_in_order(tmp_path):
    quest, fx = effects(tmp_path, "{say: One.}, {give: key}, {say: Two.}, {move: vault}, {end: gave-up}")
    s = GameState(scene="start")
    outcome = apply(fx, s, quest)
    assert outcome.messages == ("One.", "You now have a key.", "Two.")
    assert (outcome.move_to, outcome.end) == ("vault", "gave-up")
    assert s.scene == "start"  # moving is the engine's job


def test_effects_in_play(tmp_path):
    quest, _ = effects(tmp_path, "{give: key}, {set: {mood: odd}}, {add: {count: 1}}, {say: Hm.}")
    engine = Engine(quest, seed=1)
    result = engine.act("probe")
    assert texts(result) == ["You now have a key.", "Hm."]
    assert [p.kind for p in result.paragraphs] == ["change", "change"]
    assert engine.state.flags == {"lit": False, "mood": "odd", "count": 6}
    assert engine.state.scene == "start" and not result.scene_entered


# -- undo ---------------------------------------------------------------------------

def test_undo_restores_every_earlier_state_back_to_the_start(engine):
    snapshots = [snapshot(engine)]
    for action in ["pray", "i", "dance", "go north", "lantern", "look", "3", "n", "key",
                   "help", "south", "n", "sunlight"]:
        result = engine.act(action)
        if result.counts:
            engine.set_narration(f"narration of {action}")
            snapshots.append(snapshot(engine))
    assert engine.ended and len(engine.undo_stack) == len(snapshots) - 1
    while snapshots:
        assert snapshot(engine) == snapshots.pop()
        assert engine.undo() == bool(snapshots)
    assert engine.state.to_dict() == GameState(
        scene="cellar", flags={"door_open": False, "offerings": 0}, visits={"cellar": 1}).to_dict()
    assert engine.history == [] and not engine.can_undo and not engine.undo()


def test_undo_restores_once_choices_and_lets_play_branch(engine):
    engine.act("pray")
    engine.undo()
    assert "Pray at the shrine" in labels(engine) and engine.state.flags["offerings"] == 0
    engine.act("dance")
    assert [t.action for t in engine.history] == ["dance"]


def test_undo_does_not_share_state_with_snapshots(engine):
    engine.act("lantern")
    engine.state.inventory.append("key")  # mutate the live state
    engine.undo()
    assert engine.state.inventory == []
    engine.act("lantern")
    engine.act("n")
    engine.undo()
    assert engine.state.inventory == ["lantern"] and engine.state.flags["offerings"] == 0


def test_opening_after_undo_shows_where_the_player_is(engine):
    engine.act("lantern")
    engine.act("n")
    engine.act("dance")
    engine.undo()
    assert texts(engine.opening())[0] == "The Hall"
    engine.undo()
    engine.undo()
    assert texts(engine.opening())[0] == "The Cellar"


# -- seeds ---------------------------------------------------------------------------

def hall_descriptions(quest, seed: int, visits: int = 4) -> list[str]:
    engine = Engine(quest, seed=seed)
    engine.act("lantern")
    seen = []
    for _ in range(visits):
        seen.append(texts(engine.act("north"))[1])
        engine.act("south")
    return seen


def test_same_seed_gives_the_same_description_variants(quest):
    variants = set(quest.scenes["hall"].descriptions)
    for seed in (0, 1, 12345):
        first = hall_descriptions(quest, seed)
        assert first == hall_descriptions(quest, seed)
        assert set(first) <= variants


def test_different_seeds_give_different_stories(quest):
    stories = {tuple(hall_descriptions(quest, seed)) for seed in range(20)}
    assert len(stories) > 1


def test_look_repeats_this_visits_variant(engine):
    engine.act("lantern")
    shown = texts(engine.act("n"))[1]
    assert texts(engine.act("look"))[1] == shown == engine.description()


def test_undo_and_redo_give_the_same_pick(engine):
    engine.act("lantern")
    picks = []
    for _ in range(3):
        picks.append(texts(engine.act("n"))[1])
        engine.act("s")
    for _ in range(3):
        engine.undo()
        engine.undo()
    assert engine.state.turn == 1
    for expected in picks:
        assert texts(engine.act("n"))[1] == expected
        engine.act("s")


def test_engine_without_a_seed_picks_one(quest):
    engine = Engine(quest)
    assert isinstance(engine.seed, int)


def test_an_open_choice_wins_a_tie_with_a_locked_one(tmp_path):
    quest = load_quest_text(tmp_path, "tie.yaml", """\
        id: tie
        title: Tie
        start: hall
        flags: {lit: false}
        scenes:
          hall:
            title: Hall
            description: A hall.
            choices:
              - label: Read the dark book
                words: [book]
                if: {not_flag: lit}
                text: Too dark to read.
                locked: You cannot see it.
              - label: Read the lit book
                words: [book]
                if: {flag: lit}
                text: You read by the light.
              - label: Light the lamp
                words: [lamp]
                effects: [{set: lit}]
        endings:
          done: {title: Done, text: Done.}
        """)
    engine = Engine(quest, seed=1)
    assert engine.act("read the book").paragraphs[0].text == "Too dark to read."
    engine.act("lamp")
    assert engine.act("read the book").paragraphs[0].text == "You read by the light."


def test_a_built_in_command_is_recorded_in_the_quests_language():
    from game.world.loader import load_quest
    from tests.conftest import QUESTS

    engine = Engine(load_quest(QUESTS / "skazitel.yaml"), seed=1)
    assert engine.act("и").action == "инвентарь"
    engine.act("о")
    assert [r.action for r in engine.history][-1:] == ["осмотреться"]
    english = Engine(load_quest(QUESTS / "call-of-the-storyteller.yaml"), seed=1)
    assert english.act("i").action == "inventory"
    english.act("l")
    assert english.history[-1].action == "look"
