"""game.world.loader: valid quests become the right `Quest` values; every mistake in a
quest (YAML, schema, references, includes) is one problem at the offending file:line:col."""

from __future__ import annotations

import os
import time

import pytest

from game.diagnostics import GameFileError
from game.world.model import Condition, Effect, Ending, Item, LoreEntry, Where
from game.world.loader import check_quest, load_quest
from tests.helpers import MINI, at, write_quest


def scene_with(extra: str) -> str:
    """MINI with `extra` (flow YAML) added to scene a."""
    return MINI.replace("ending: e}", f"ending: e, {extra}}}")


def problems_of(path):
    quest, problems = check_quest(path)
    assert quest is None, "a quest with errors must not be built"
    assert problems and all(p.severity == "error" for p in problems)
    return problems


def only_problem(path):
    problems = problems_of(path)
    assert len(problems) == 1, "\n".join(p.format() for p in problems)
    return problems[0]


def assert_problem(path, needle: str, *words: str, nth: int = 1, file=None):
    """Exactly one problem, at `needle` in `file` (default: path), mentioning every word."""
    p = only_problem(path)
    file = file or path
    assert (p.path, p.line, p.col) == (str(file), *at(file, needle, nth)), p.format()
    for word in words:
        assert word in p.message, p.format()
    return p


def find_problem(path, needle: str, *words: str, nth: int = 1, file=None):
    """The problem mentioning words[0], at `needle` in `file`, mentioning every word.

    For mistakes that also leave other things broken (a scene that is not a mapping
    also leaves `start:` pointing nowhere)."""
    file = file or path
    problems = problems_of(path)
    matches = [p for p in problems if words[0] in p.message]
    assert len(matches) == 1, "\n".join(p.format() for p in problems)
    p = matches[0]
    assert (p.path, p.line, p.col) == (str(file), *at(file, needle, nth)), p.format()
    for word in words:
        assert word in p.message, p.format()
    return p


# -- valid quests ----------------------------------------------------------------------

LANTERN = """\
id: lantern-test
title: The Lantern Test
author: You
summary: Find the lantern, open the door.
language: en
version: "1.2"
persona: An old spirit.
personality: storyteller-spirit
author_note: Keep the tone eerie.
model: distilgpt2
start: cellar

flags:
  door_open: false
  offerings: 0
  mood: calm

items:
  lantern:
    name: a brass lantern
    description: Dented but working.
  key: an iron key

scenes:
  cellar:
    title: The Cellar
    description: |
      A damp cellar. A brass lantern hangs from a hook.
    hints: [It is cold and dark here., Do not mention the key.]
    recap: You searched the cellar.
    on_enter:
      - say: Water drips somewhere.
    choices:
      - label: Take the lantern
        words: [Take Lantern, lantern]
        if: {lacks: lantern}
        effects:
          - give: lantern
          - set: {mood: brave}
          - add: {offerings: 2}
        text: You lift the lantern off its hook.
        once: true
      - label: Pray
        words: pray
        if:
          any: [{flag: door_open}, {not: {visited: hall}}]
          at_least: {offerings: 1}
          turn_at_most: 10
        effects: {clear: door_open, take: [key, lantern], set: door_open}
    exits:
      - label: Go north through the door
        words: [north, door]
        to: hall
        if: {has: lantern}
        locked: It is too dark to find the handle.
  hall:
    title: The Hall
    description: [Light spills over a dusty hall., The hall is quiet.]
    ending: found-the-way

endings:
  found-the-way:
    title: Out of the Dark
    text: You climb out of the cellar.
    outcome: win
  lost:
    title: Lost
    text: The dark keeps you.
    outcome: lose

lore:
  lantern-lore:
    keywords: [lantern, light]
    text: The lantern was forged by the spirit.
"""


def test_valid_single_file_quest_builds_every_part(tmp_path):
    path = write_quest(tmp_path, "lantern.yaml", LANTERN)
    quest, problems = check_quest(path)
    assert problems == []
    assert quest == load_quest(path)
    assert (quest.id, quest.title, quest.author, quest.start) == (
        "lantern-test", "The Lantern Test", "You", "cellar")
    assert (quest.summary, quest.language, quest.version) == ("Find the lantern, open the door.", "en", "1.2")
    assert (quest.persona, quest.personality, quest.author_note, quest.model) == (
        "An old spirit.", "storyteller-spirit", "Keep the tone eerie.", "distilgpt2")
    assert quest.source == path and quest.files == (path,)

    assert quest.flags == {"door_open": False, "offerings": 0, "mood": "calm"}
    assert quest.items == {
        "lantern": Item("lantern", "a brass lantern", "Dented but working.", Where(str(path), *at(path, "lantern:"))),
        "key": Item("key", "an iron key", "", Where(str(path), *at(path, "key: an iron"))),
    }
    assert quest.endings["found-the-way"] == Ending(
        "found-the-way", "Out of the Dark", "You climb out of the cellar.", "win",
        Where(str(path), *at(path, "found-the-way:")))
    assert quest.endings["lost"].outcome == "lose"
    assert quest.lore == {"lantern-lore": LoreEntry(
        "lantern-lore", ("lantern", "light"), "The lantern was forged by the spirit.",
        Where(str(path), *at(path, "lantern-lore:")))}

    cellar, hall = quest.scene("cellar"), quest.scene("hall")
    assert list(quest.scenes) == ["cellar", "hall"]
    assert cellar.title == "The Cellar"
    assert cellar.descriptions == ("A damp cellar. A brass lantern hangs from a hook.",)
    assert cellar.hints == ("It is cold and dark here.", "Do not mention the key.")
    assert cellar.recap == "You searched the cellar."
    assert [(e.kind, e.args) for e in cellar.on_enter] == [("say", ("Water drips somewhere.",))]
    assert cellar.ending is None and cellar.where == Where(str(path), *at(path, "cellar:"))
    assert hall.descriptions == ("Light spills over a dusty hall.", "The hall is quiet.")
    assert hall.ending == "found-the-way" and hall.choices == ()

    take, pray, north = cellar.choices  # choices first, then exits
    assert take.label == "Take the lantern" and take.words == ("take lantern", "lantern")
    assert take.to is None and not take.is_exit and take.once and take.key == "cellar/choices: Take the lantern"
    assert take.condition == Condition("lacks", ("lantern",), Where(str(path), *at(path, "lacks")))
    assert take.effects == (
        Effect("give", ("lantern",), Where(str(path), *at(path, "give"))),
        Effect("set", (("mood", "brave"),), Where(str(path), *at(path, "set: {mood"))),
        Effect("add", (("offerings", 2),), Where(str(path), *at(path, "add"))),
    )
    assert take.text == "You lift the lantern off its hook." and take.where.line == at(path, "- label: Take")[0]

    assert pray.words == ("pray",) and not pray.once and pray.key == "cellar/choices: " + pray.label
    cond = pray.condition
    assert cond.kind == "all" and [c.kind for c in cond.args] == ["any", "at_least", "turn_at_most"]
    any_, at_least, turn = cond.args
    assert [(c.kind, c.args) for c in any_.args] == [
        ("flag", ("door_open",)),
        ("not", (Condition("visited", ("hall",), Where(str(path), *at(path, "visited"))),))]
    assert at_least.args == (("offerings", 1),) and turn.args == (10,)
    # a single mapping of effects is one entry, applied in written order
    assert [(e.kind, e.args) for e in pray.effects] == [
        ("clear", ("door_open",)), ("take", ("key", "lantern")), ("set", (("door_open", True),))]

    assert north.is_exit and north.to == "hall" and north.key == "cellar/exits: " + north.label
    assert north.words == ("north", "door") and north.locked == "It is too dark to find the handle."
    assert north.condition == Condition("has", ("lantern",), Where(str(path), *at(path, "has")))


def test_defaults_for_optional_keys(tmp_path):
    quest = load_quest(write_quest(tmp_path, "q.yaml", MINI))
    assert (quest.author, quest.summary, quest.language, quest.version) == ("Anonymous", "", "en", "")
    assert (quest.persona, quest.personality, quest.author_note, quest.model) == (None,) * 4
    assert quest.items == {} and quest.flags == {} and quest.lore == {}
    a = quest.scene("a")
    assert (a.hints, a.recap, a.choices, a.on_enter, a.ending) == ((), "", (), (), "e")
    assert quest.endings["e"].outcome == "win"


def test_folder_quest_with_includes(tmp_path):
    folder = tmp_path / "deep-woods"
    main = write_quest(folder, "quest.yaml", """\
        id: deep-woods
        title: Deep Woods
        start: edge
        include: [scenes/forest.yaml, extras.yaml]
        flags:
          lost: false
        scenes:
          edge:
            title: Forest Edge
            description: Trees.
            exits:
              - label: In
                to: glade
        endings:
          home: {title: Home, text: You are home.}
        """)
    forest = write_quest(folder, "scenes/forest.yaml", """\
        scenes:
          glade:
            title: Glade
            description: A glade.
            choices:
              - label: Pick the mushroom
                if: {not_flag: lost}
                effects: [{give: mushroom}, {set: lost}, {end: eaten}]
            exits:
              - label: Back
                to: edge
        """)
    extras = write_quest(folder, "extras.yaml", """\
        items:
          mushroom: {name: a red mushroom}
        flags:
          wolves: 3
        endings:
          eaten: {title: Eaten, text: Oops., outcome: lose}
        lore:
          wolves:
            keywords: [wolf]
            text: Wolves live here.
        """)
    quest = load_quest(folder)  # the folder, or its quest.yaml
    assert quest == load_quest(main)
    assert quest.source == main and quest.files == (main, forest, extras)
    assert list(quest.scenes) == ["edge", "glade"]  # the quest's own first, then included files
    assert quest.flags == {"lost": False, "wolves": 3}
    assert list(quest.items) == ["mushroom"] and list(quest.lore) == ["wolves"]
    assert quest.endings["eaten"].outcome == "lose" and quest.endings["home"].outcome == "win"
    glade = quest.scene("glade")
    assert glade.where == Where(str(forest), 2, 3)
    pick, back = glade.choices
    assert [(e.kind, e.args) for e in pick.effects] == [
        ("give", ("mushroom",)), ("set", (("lost", True),)), ("end", ("eaten",))]
    assert pick.effects[0].where == Where(str(forest), *at(forest, "give"))
    assert back.to == "edge" and back.is_exit


def test_relative_paths_are_shown_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_quest(tmp_path, "q/quest.yaml", MINI.replace("start: a", "start: b"))
    p = only_problem("q")
    assert p.format().startswith("q/quest.yaml:3:8: error: unknown scene 'b'")


# -- YAML problems through the loader ------------------------------------------------

def test_yaml_syntax_error(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("title: Mini", "title: Mini: the quest"))
    assert_problem(path, ": the quest", "YAML syntax error", "quotes")


def test_duplicate_key(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI + "title: Again\n")
    assert_problem(path, "title: Again", "duplicate key 'title'", "first defined at line 2")


def test_tab_indentation(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("  e: {", "\te: {"))
    assert_problem(path, "\te:", "tab")


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes(MINI.replace("title: Mini", "title: Mini\xe9").encode("latin-1"))
    p = only_problem(path)
    assert (p.line, p.col) == (2, 12) and "not valid UTF-8" in p.message


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_empty_file(tmp_path, text):
    path = write_quest(tmp_path, "q.yaml", text)
    p = only_problem(path)
    assert (p.line, p.col) == (1, 1) and "empty" in p.message


@pytest.mark.parametrize("text, what", [
    ("# a list\n- id: x\n- title: y\n", "not a list"),
    ("just some words\n", "not text"),
    ("42\n", "not a number"),
])
def test_top_level_must_be_a_mapping(tmp_path, text, what):
    path = write_quest(tmp_path, "q.yaml", text)
    p = only_problem(path)
    assert "a quest file must be a mapping" in p.message and what in p.message
    assert p.line == (2 if text.startswith("#") else 1) and p.col == 1


def test_missing_quest_file(tmp_path):
    p = only_problem(tmp_path / "nope.yaml")
    assert "file not found" in p.message
    p = only_problem(tmp_path)  # a folder without quest.yaml
    assert p.path == str(tmp_path / "quest.yaml") and "file not found" in p.message


# -- schema: unknown keys, wrong types, missing keys ---------------------------------------

@pytest.mark.parametrize("old, new, needle, words", [
    ("title: Mini", "title: Mini\nsumary: S", "sumary",
     ["unknown key 'sumary' in the quest", "did you mean 'summary'"]),
    ("{title: A,", "{title: A, descripton: x,", "descripton",
     ["unknown key 'descripton' in scene 'a'", "did you mean 'description'"]),
    ("{title: E,", "{title: E, outcom: win,", "outcom", ["in ending 'e'", "did you mean 'outcome'"]),
    ("ending: e}", "ending: e, exits: [{label: L, to: a, lokced: x}]}", "lokced",
     ["unknown key 'lokced' in exit 1 of scene 'a'", "did you mean 'locked'"]),
    ("ending: e}", "ending: e, choices: [{label: L, if: {hass: k}}]}", "hass",
     ["unknown condition 'hass' in choice 1 of scene 'a'", "did you mean 'has'"]),
    ("ending: e}", "ending: e, choices: [{label: L, effects: [{giv: k}]}]}", "giv",
     ["unknown effect 'giv' in choice 1 of scene 'a'", "did you mean 'give'"]),
    ("title: Mini", "title: Mini\nzzz: 1", "zzz", ["unknown key 'zzz'", "allowed keys: address, author"]),
])
def test_unknown_keys_with_did_you_mean(tmp_path, old, new, needle, words):
    path = write_quest(tmp_path, "q.yaml", MINI.replace(old, new))
    p = assert_problem(path, needle, *words)
    if needle == "zzz":
        assert "did you mean" not in p.message


@pytest.mark.parametrize("old, new, needle, words", [
    ("title: Mini", "title: [Mini]", "[Mini]", ["'title' in the quest must be text, not a list"]),
    ("title: Mini", "title: yes", "yes", ["must be text, not true/false (true)", "put it in quotes"]),
    ("scenes:\n  a: {title: A, description: D, ending: e}", "scenes: [a, b]", "[a, b]",
     ["'scenes' in the quest must be a mapping", "not a list"]),
    ("  a: {title: A, description: D, ending: e}", "  a: just text", "just text",
     ["scene 'a' must be a mapping"]),
    ("ending: e}", "ending: e, choices: {label: L}}", "{label: L}",
     ["'choices' in scene 'a' must be a list", "not a mapping"]),
    ("ending: e}", "ending: e, choices: [take it]}", "take it",
     ["choice 1 of scene 'a' must be a mapping starting with 'label:', not text"]),
    ("ending: e}", "ending: e, choices: [{label: L, once: sometimes}]}", "sometimes",
     ["'once' in choice 1 of scene 'a' must be true or false"]),
    ("ending: e}", "ending: e, choices: [{label: L, if: has lantern}]}", "has lantern",
     ["the condition ('if') of choice 1 of scene 'a' must be a mapping"]),
    ("ending: e}", "ending: e, choices: [{label: L, if: {turn_at_least: -1}}]}", "-1",
     ["'turn_at_least' in the condition of choice 1 of scene 'a' must be a whole number"]),
    ("ending: e}", "ending: e, choices: [{label: L, if: {any: {flag: x}}}]}", "{flag: x}",
     ["'any' in the condition of choice 1 of scene 'a' must be a list of conditions"]),
    ("ending: e}", "ending: e, choices: [{label: L, effects: give lantern}]}", "give lantern",
     ["'effects' in choice 1 of scene 'a' must be a list of effects"]),
    ("ending: e}", "ending: e, on_enter: [say hi]}", "say hi",
     ["each entry of 'on_enter' in scene 'a' must be a mapping"]),
    ("ending: e}", "ending: e, hints: [ok, [nested]]}", "[nested]",
     ["each entry of 'hints' in scene 'a' must be text, not a list"]),
    ("{title: E, text: T}", "{title: E, text: T, outcome: draw}", "draw",
     ["outcome of ending 'e' must be 'win' or 'lose', not 'draw'"]),
    ("endings:", "flags:\n  f: [1, 2]\nendings:", "[1, 2]",
     ["flag 'f' must start as true/false, a number or text, not a list"]),
    ("endings:", "items:\n  k: [1]\nendings:", "[1]", ["item 'k' must be a mapping"]),
    ("endings:", "lore:\n  l: {keywords: [], text: T}\nendings:", "[]",
     ["lore entry 'l' needs at least one keyword"]),
])
def test_wrong_types(tmp_path, old, new, needle, words):
    path = write_quest(tmp_path, "q.yaml", MINI.replace(old, new))
    find_problem(path, needle, *words)


def test_key_without_a_value_points_just_after_its_colon(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("title: Mini", "title:"))
    p = only_problem(path)
    assert (p.line, p.col) == (2, 7) and p.message == "'title' in the quest must be text, not nothing"


def test_empty_description_and_label(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("description: D", "description: ''"))
    assert_problem(path, "''", "the description of scene 'a' is empty")
    path = write_quest(tmp_path, "q.yaml", scene_with("choices: [{label: ' '}]"))
    assert_problem(path, "' '", "'label' in choice 1 of scene 'a' is empty")


def test_bad_ids(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("start: a", "start: dark cellar")
                 .replace("  a: {", "  dark cellar: {"))
    find_problem(path, "dark cellar:", "scene id 'dark cellar' must be a short word")
    path = write_quest(tmp_path, "q.yaml", MINI.replace("id: mini", "id: my quest!"))
    assert_problem(path, "my quest!", "quest id 'my quest!'")


@pytest.mark.parametrize("key", ["id", "title", "start", "scenes", "endings"])
def test_missing_required_top_level_key(tmp_path, key):
    # scenes and endings may come from included files, so their absence is reported once all are read
    lines = MINI.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f"{key}:")]
    if key in ("scenes", "endings"):  # drop the entry under it too
        idx = lines.index(f"{key}:\n")
        kept.remove(lines[idx + 1])
    path = write_quest(tmp_path, "q.yaml", "".join(kept))
    problems = problems_of(path)
    wanted = (f"the quest has no {key}; add at least one under {key}:" if key in ("scenes", "endings")
              else f"the quest is missing the required key '{key}'")
    p = next(p for p in problems if p.message == wanted)
    assert (p.line, p.col) == (1, 1)  # the quest mapping itself
    if key not in ("scenes", "endings"):  # without them, references are left dangling too
        assert len(problems) == 1, problems


@pytest.mark.parametrize("old, new, needle, message", [
    ("{title: A, description: D, ending: e}", "{description: D, ending: e}", "{description",
     "scene 'a' is missing the required key 'title'"),
    ("{title: A, description: D, ending: e}", "{title: A, ending: e}", "{title: A, ending",
     "scene 'a' is missing the required key 'description'"),
    ("{title: E, text: T}", "{title: E}", "{title: E}", "ending 'e' is missing the required key 'text'"),
    ("ending: e}", "ending: e, exits: [{label: Out}]}", "{label: Out}",
     "exit 1 of scene 'a' is missing the required key 'to'"),
    ("ending: e}", "ending: e, choices: [{text: hi}]}", "{text: hi}",
     "choice 1 of scene 'a' is missing the required key 'label'"),
    ("endings:", "items:\n  k: {description: shiny}\nendings:", "{description",
     "item 'k' is missing the required key 'name'"),
    ("endings:", "lore:\n  l: {text: T}\nendings:", "{text: T}",
     "lore entry 'l' is missing the required key 'keywords'"),
])
def test_missing_required_keys_point_at_their_mapping(tmp_path, old, new, needle, message):
    path = write_quest(tmp_path, "q.yaml", MINI.replace(old, new))
    p = assert_problem(path, needle)
    assert p.message == message


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path = write_quest(tmp_path, "q.yaml", MINI.replace("title: Mini", "titel: Mini")
                 .replace("ending: e}", "ending: nope}"))
    problems = problems_of(path)
    assert [(p.line, p.message.split(" '")[0]) for p in problems] == [
        (1, "the quest is missing the required key"), (2, "unknown key"), (5, "unknown ending")]


# -- references --------------------------------------------------------------------------

@pytest.mark.parametrize("quest, needle, message", [
    (MINI.replace("start: a", "start: cellar"), "cellar",
     "unknown scene 'cellar'; defined scenes: a"),
    (scene_with("exits: [{label: Go, to: hal}]").replace("  a: {", "  hall: {title: H, description: D}\n  a: {"),
     "hal}", "unknown scene 'hal' (did you mean 'hall'?); defined scenes: a, hall"),
    (MINI.replace("ending: e}", "ending: fin}"), "fin", "unknown ending 'fin'; defined endings: e"),
    (scene_with("choices: [{label: L, effects: [{end: win}]}]"), "win", "unknown ending 'win'; defined endings: e"),
    (scene_with("choices: [{label: L, effects: [{move: b}]}]"), "b}", "unknown scene 'b'; defined scenes: a"),
    (scene_with("choices: [{label: L, if: {visited: [a, crypt]}}]"), "crypt", "unknown scene 'crypt'; defined scenes: a"),
    (scene_with("choices: [{label: L, if: {has: lantern}}]"), "lantern",
     "unknown item 'lantern'; declare it under items:"),
    (scene_with("on_enter: [{give: [coin, lantern]}]").replace("endings:", "items: {lanter: L, coin: C}\nendings:"),
     "lantern", "unknown item 'lantern' (did you mean 'lanter'?); declare it under items:"),
    (scene_with("choices: [{label: L, if: {flag: door_open}}]"), "door_open",
     "unknown flag 'door_open'; declare it under flags:"),
    (scene_with("choices: [{label: L, effects: [{set: {mood: calm}}]}]"), "mood", "unknown flag 'mood'; declare it under flags:"),
    (scene_with("choices: [{label: L, if: {at_least: {coins: 2}}}]"), "coins", "unknown flag 'coins'; declare it under flags:"),
])
def test_unknown_references(tmp_path, quest, needle, message):
    path = write_quest(tmp_path, "q.yaml", quest)
    p = assert_problem(path, needle)
    assert p.message == message


def test_number_flag_used_with_text(tmp_path):
    path = write_quest(tmp_path, "q.yaml", scene_with("choices: [{label: L, effects: [{add: {mood: 1}}]}]")
                 .replace("endings:", "flags: {mood: calm}\nendings:"))
    assert_problem(path, "mood: 1", "flag 'mood' is used as a number here but starts as text")


def test_effect_that_needs_one_id(tmp_path):
    path = write_quest(tmp_path, "q.yaml", scene_with("choices: [{label: L, effects: [{move: [a, a]}]}]"))
    assert_problem(path, "[a, a]", "'move' in choice 1 of scene 'a' takes exactly one scene id")


# -- folders and includes ------------------------------------------------------------------

def folder_quest(tmp_path, include: str, name="quest"):
    folder = tmp_path / name
    main = write_quest(folder, "quest.yaml", MINI + f"include: {include}\n")
    return folder, main


def test_include_outside_the_folder_is_refused(tmp_path):
    write_quest(tmp_path, "x.yaml", "items: {k: K}\n")
    folder, main = folder_quest(tmp_path, "[../x.yaml]")
    assert_problem(folder, "../x.yaml", "included file '../x.yaml' lies outside the quest's folder", file=main)


def test_include_by_absolute_path_is_refused(tmp_path):
    outside = write_quest(tmp_path, "x.yaml", "items: {k: K}\n")
    folder, main = folder_quest(tmp_path, f"['{outside}']")
    assert_problem(folder, f"'{outside}'", "lies outside the quest's folder", file=main)


def test_include_through_a_symlink_pointing_out_is_refused(tmp_path):
    outside = write_quest(tmp_path, "secret.yaml", "items: {k: K}\n")
    folder, main = folder_quest(tmp_path, "[link.yaml]")
    os.symlink(outside, folder / "link.yaml")
    assert_problem(folder, "link.yaml", "included file 'link.yaml' lies outside", file=main)


def test_symlinked_folder_pointing_out_is_refused(tmp_path):
    write_quest(tmp_path, "elsewhere/more.yaml", "items: {k: K}\n")
    folder, main = folder_quest(tmp_path, "[parts/more.yaml]")
    os.symlink(tmp_path / "elsewhere", folder / "parts")
    assert_problem(folder, "parts/more.yaml", "lies outside", file=main)


def test_symlink_inside_the_folder_is_fine(tmp_path):
    folder, main = folder_quest(tmp_path, "[link.yaml]")
    write_quest(folder, "real.yaml", "items: {k: K}\n")
    os.symlink(folder / "real.yaml", folder / "link.yaml")
    assert list(load_quest(folder).items) == ["k"]


def test_symlink_loop_is_an_error_not_a_crash(tmp_path):
    folder, main = folder_quest(tmp_path, "[loop.yaml]")
    os.symlink(folder / "loop.yaml", folder / "loop.yaml")
    p = only_problem(folder)
    assert p.path == str(main) and (p.line, p.col) == at(main, "loop.yaml")
    assert "'loop.yaml'" in p.message


@pytest.mark.parametrize("include", ["[quest.yaml]", "quest.yaml", "[./quest.yaml]"])
def test_self_include_is_refused(tmp_path, include):
    folder, main = folder_quest(tmp_path, include)
    assert_problem(folder, include.strip("[]"), "is included twice (or is the quest file itself)", file=main)


def test_same_file_included_twice_is_refused(tmp_path):
    folder, main = folder_quest(tmp_path, "[more.yaml, ./more.yaml]")
    write_quest(folder, "more.yaml", "items: {k: K}\n")
    assert_problem(folder, "./more.yaml", "'./more.yaml' is included twice", file=main)


def test_missing_include_points_at_the_include_line(tmp_path):
    folder, main = folder_quest(tmp_path, "[nope.yaml]")
    assert_problem(folder, "nope.yaml", "included file 'nope.yaml' not found", file=main)
    (folder / "sub").mkdir()
    write_quest(folder, "quest.yaml", MINI + "include: sub\n")
    assert_problem(folder, "sub", "included file 'sub' is not a file", file=main)


def test_include_entry_must_be_a_file_name(tmp_path):
    folder, main = folder_quest(tmp_path, "[more.yaml, {a: 1}]")
    write_quest(folder, "more.yaml", "items: {k: K}\n")
    assert_problem(folder, "{a: 1}", "each entry of 'include' must be a file name, not a mapping", file=main)


@pytest.mark.parametrize("kind, section", [
    ("scene", "scenes:\n  a: {title: A2, description: D2}\n"),
    ("ending", "endings:\n  e: {title: E2, text: T2}\n"),
    ("item", "items:\n  k: {name: K2}\n"),
    ("lore entry", "lore:\n  l: {keywords: [x], text: T2}\n"),
    ("flag", "flags:\n  f: 2\n"),
])
def test_duplicate_ids_across_files(tmp_path, kind, section):
    folder = tmp_path / "q"
    main = write_quest(folder, "quest.yaml", MINI.replace("endings:", "items: {k: K}\nflags: {f: 1}\n"
                                                    "lore: {l: {keywords: [y], text: T}}\nendings:")
                 + "include: [more.yaml]\n")
    more = write_quest(folder, "more.yaml", "# more of the quest\n" + section)
    ident = section.split("\n")[1].split(":")[0].strip()
    p = only_problem(folder)
    assert (p.path, p.line, p.col) == (str(more), 3, 3)  # the second definition's id
    first = next(i for i, line in enumerate(main.read_text().splitlines(), 1)
                 if line.startswith(f"  {ident}:") or f"{{{ident}:" in line)
    assert p.message.startswith(f"{kind} '{ident}' is already defined at {main}:{first}"), p.format()


def test_duplicate_ids_between_two_included_files(tmp_path):
    folder = tmp_path / "q"
    write_quest(folder, "quest.yaml", MINI + "include: [one.yaml, two.yaml]\n")
    one = write_quest(folder, "one.yaml", "scenes:\n  cave: {title: C, description: D}\n")
    two = write_quest(folder, "two.yaml", "# second copy\nscenes:\n  cave: {title: C, description: D}\n")
    p = assert_problem(folder, "cave", "scene 'cave' is already defined at", file=two)
    assert f"{one}:2" in p.message


def test_problems_in_included_files_name_that_file(tmp_path):
    folder = tmp_path / "q"
    write_quest(folder, "quest.yaml", MINI + "include: [more.yaml]\n")
    more = write_quest(folder, "more.yaml", """\
        scenes:
          cave:
            title: Cave
            description: Damp.
            exits: [{label: Back, to: b}]
        """)
    assert_problem(folder, "b}", "unknown scene 'b'", file=more)
    write_quest(folder, "more.yaml", "scenes:\n  cave: {title: C, description: D\n")
    p = only_problem(folder)
    assert p.path == str(more) and p.line == 3 and "YAML syntax error" in p.message


def test_included_file_may_not_hold_quest_keys(tmp_path):
    folder = tmp_path / "q"
    write_quest(folder, "quest.yaml", MINI + "include: [more.yaml]\n")
    more = write_quest(folder, "more.yaml", "start: a\nitems: {k: K}\n")
    assert_problem(folder, "start", "unknown key 'start' in an included file", file=more)


def test_included_file_must_be_a_mapping(tmp_path):
    folder = tmp_path / "q"
    write_quest(folder, "quest.yaml", MINI + "include: [more.yaml]\n")
    more = write_quest(folder, "more.yaml", "- a\n- b\n")
    p = assert_problem(folder, "- a", "an included file must be a mapping", file=more)
    assert "not a list" in p.message


def test_references_may_cross_files(tmp_path):
    folder = tmp_path / "q"
    write_quest(folder, "quest.yaml", scene_with("exits: [{label: In, to: cave, if: {has: torch}}]")
          + "include: [more.yaml]\n")
    write_quest(folder, "more.yaml", """\
        items: {torch: a torch}
        scenes:
          cave:
            title: Cave
            description: Damp.
            exits: [{label: Back, to: a}]
        """)
    quest = load_quest(folder)
    assert quest.scene("a").choices[0].to == "cave" and quest.scene("cave").choices[0].to == "a"


# -- hostile quests ----------------------------------------------------------------------

def test_python_tag_in_a_quest_is_not_run(tmp_path):
    marker = tmp_path / "MARKER"
    path = write_quest(tmp_path, "q.yaml", MINI.replace(
        "title: Mini", f"title: !!python/object/apply:os.system ['touch {marker}']"))
    assert_problem(path, "!!python", "is not allowed")
    assert not marker.exists()
    with pytest.raises(GameFileError):
        load_quest(path)
    assert not marker.exists()


def test_alias_bomb_in_a_quest_is_refused_quickly(tmp_path):
    lines = ["id: bomb", "title: Bomb", "start: a", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 6) + "]" for i in range(1, 12)]
    path = write_quest(tmp_path, "q.yaml", "\n".join(lines) + "\n")
    start = time.monotonic()
    p = only_problem(path)
    assert time.monotonic() - start < 5
    assert "values" in p.message and "aliases" in p.message


def test_huge_quest_file_is_refused_quickly(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(MINI + "summary: " + "x" * 5_000_000 + "\n")
    start = time.monotonic()
    p = only_problem(path)
    assert time.monotonic() - start < 5
    assert (p.line, p.col) == (1, 1) and "larger than" in p.message


def test_deeply_nested_conditions_are_refused(tmp_path):
    cond = "{not: " * 40 + "{flag: f}" + "}" * 40
    path = write_quest(tmp_path, "q.yaml", scene_with(f"choices: [{{label: L, if: {cond}}}]")
                 .replace("endings:", "flags: {f: true}\nendings:"))
    p = only_problem(path)
    assert "conditions in choice 1 of scene 'a' are nested too deeply" in p.message and p.line == 5


def test_too_many_scenes_is_an_error_not_a_slowdown(tmp_path):
    body = "".join(f"  s{i}: {{title: S, description: D}}\n" for i in range(2001))
    path = write_quest(tmp_path, "q.yaml", MINI.replace("scenes:\n", "scenes:\n" + body))
    problems = problems_of(path)
    assert any("too many scenes" in p.message for p in problems)
