"""Saved games: round trips, atomic writes, damaged and foreign files, edited quests."""

from __future__ import annotations

import json
import os

import pytest

import game.atomic
from game.diagnostics import GameFileError
from game.engine import Engine
from game.saves import SAVE_VERSION, read_save, restore, save_game, slot_path, to_json
from tests.helpers import load_quest_text

QUEST = """\
id: save-test
title: Save Test
start: cellar
flags:
  offerings: 0
  lit: false
items:
  lantern: a brass lantern
  key: a rusty key
scenes:
  cellar:
    title: The Cellar
    description: [A damp cellar., A cold cellar., A dark cellar., A quiet cellar.]
    choices:
      - label: Take the lantern
        words: [lantern]
        if: {lacks: lantern}
        effects: [{give: lantern}, {set: lit}]
      - label: Pray
        once: true
        effects: [{add: {offerings: 1}}]
    exits:
      - {label: North, words: [north], to: hall}
  hall:
    title: The Hall
    description: [A dusty hall., An echoing hall., A narrow hall., A grand hall.]
    choices:
      - label: Pick up the key
        words: [key]
        if: {lacks: key}
        effects: [{give: key}]
    exits:
      - {label: South, words: [south], to: cellar}
      - {label: Leave, words: [leave], to: outside}
  outside:
    title: Outside
    description: Fresh air.
    ending: free
endings:
  free: {title: Free, text: You are free.}
"""


@pytest.fixture
def quest(tmp_path):
    return load_quest_text(tmp_path / "quest", "quest.yaml", QUEST)


@pytest.fixture
def played(quest):
    engine = Engine(quest, seed=42)
    for action in ["lantern", "pray", "north", "key", "dance"]:
        engine.act(action)
        engine.set_narration(f"narrated {action}")
    return engine


def snapshot(engine):
    return (engine.state.to_dict(), [t.to_dict() for t in engine.history],
            [(s.to_dict(), n) for s, n in engine.undo_stack], engine.seed)


def replay(engine, actions):
    return [([(p.kind, p.text) for p in r.paragraphs], r.kind, engine.state.to_dict())
            for r in map(engine.act, actions)]


def load(path, quest):
    engine, notes = restore(read_save(path), quest)
    return engine, notes


# -- round trips ----------------------------------------------------------------------

def test_round_trip_restores_everything_and_plays_on_identically(tmp_path, quest, played):
    path = save_game(tmp_path / "saves" / "slot.json", played, extra={"note": "hi"})
    save = read_save(path)
    assert (save.quest_id, save.quest_title, save.seed) == ("save-test", "Save Test", 42)
    assert save.extra == {"note": "hi"} and save.saved_at
    assert save.quest_path == str(quest.source.resolve())
    loaded, notes = restore(save, quest)
    assert notes == [] and snapshot(loaded) == snapshot(played)
    assert loaded.history[-1].narration == "narrated dance"
    # revisits pick description variants from the seed: both engines must agree
    actions = ["south", "north", "look", "south", "north", "south", "1", "north", "leave"]
    assert replay(loaded, actions) == replay(played, actions)
    assert loaded.ended and played.ended


def test_opening_after_load_shows_the_current_scene(tmp_path, quest, played):
    loaded, _ = load(save_game(tmp_path / "s.json", played), quest)
    opening = loaded.opening()
    assert [p.text for p in opening.paragraphs] == ["The Hall", played.description()]
    assert [o.label for o in opening.options] == [o.label for o in played.options()]


def test_undo_after_load_goes_back_to_the_start(tmp_path, quest, played):
    fresh = Engine(quest, seed=42)
    loaded, _ = load(save_game(tmp_path / "s.json", played), quest)
    steps = 0
    while loaded.undo():
        played.undo()
        steps += 1
        assert snapshot(loaded) == snapshot(played)
    assert steps == 5
    assert loaded.state.to_dict() == fresh.state.to_dict() and loaded.history == []


def test_saving_a_fresh_game_and_an_ended_game(tmp_path, quest):
    fresh = Engine(quest, seed=3)
    loaded, _ = load(save_game(tmp_path / "fresh.json", fresh), quest)
    assert snapshot(loaded) == snapshot(fresh)
    for action in ["north", "leave"]:
        fresh.act(action)
    loaded, _ = load(save_game(tmp_path / "ended.json", fresh), quest)
    assert loaded.ended and loaded.ending.id == "free"
    assert loaded.opening().ending is not None


def test_save_file_is_versioned_readable_json(tmp_path, played):
    path = save_game(tmp_path / "s.json", played)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "storyteller-save" and data["version"] == SAVE_VERSION
    assert data["quest"]["id"] == "save-test" and data["state"]["scene"] == "hall"
    assert len(data["undo"]) == 5 and len(data["history"]) == 5


def test_non_ascii_text_survives(tmp_path, quest):
    engine = Engine(quest, seed=1)
    engine.act("Я танцую 💃")
    engine.set_narration("Дух смеётся.")
    loaded, _ = load(save_game(tmp_path / "s.json", engine), quest)
    assert loaded.history[0].action == "Я танцую 💃"
    assert loaded.history[0].narration == "Дух смеётся."


def test_slot_names_stay_inside_the_folder(tmp_path):
    assert slot_path(tmp_path, "My Save 1") == tmp_path / "My-Save-1.json"
    assert slot_path(tmp_path, "../../etc/passwd").parent == tmp_path
    assert slot_path(tmp_path, "///").name == "save.json"
    assert len(slot_path(tmp_path, "x" * 500).name) <= 70


# -- atomic writes -----------------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "quest")


def test_crash_before_rename_keeps_the_old_save(tmp_path, monkeypatch, quest, played):
    path = save_game(tmp_path / "s.json", Engine(quest, seed=1))
    good = path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_game(path, played)
    assert path.read_bytes() == good
    assert leftovers(tmp_path) == ["s.json"]
    monkeypatch.undo()
    assert read_save(path).state.turn == 0


def test_full_disk_keeps_the_old_save(tmp_path, monkeypatch, quest, played):
    path = save_game(tmp_path / "s.json", Engine(quest, seed=1))
    good = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(game.atomic.os, "fsync", full)
    with pytest.raises(OSError):
        save_game(path, played)
    assert path.read_bytes() == good and leftovers(tmp_path) == ["s.json"]


def test_data_that_cannot_be_saved_never_touches_the_file(tmp_path, quest, played):
    path = save_game(tmp_path / "s.json", Engine(quest, seed=1))
    good = path.read_bytes()
    with pytest.raises(TypeError):
        save_game(path, played, extra={"bad": object()})
    assert path.read_bytes() == good and leftovers(tmp_path) == ["s.json"]


def test_read_only_folder(tmp_path, monkeypatch, quest, played):
    folder = tmp_path / "saves"
    path = save_game(folder / "s.json", Engine(quest, seed=1))
    good = path.read_bytes()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:  # running as root, which ignores folder permissions: refuse the way the OS would
            probe.unlink()

            def denied(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(folder))

            monkeypatch.setattr(game.atomic.tempfile, "mkstemp", denied)
        with pytest.raises(PermissionError):
            save_game(path, played)
        assert path.read_bytes() == good and leftovers(folder) == ["s.json"]
    finally:
        folder.chmod(0o755)


def test_saving_again_replaces_the_file_whole(tmp_path, quest, played):
    path = save_game(tmp_path / "s.json", played)
    played.act("south")
    save_game(path, played)
    assert read_save(path).state.scene == "cellar" and leftovers(tmp_path) == ["s.json"]


# -- damaged and foreign files -------------------------------------------------------------

def problem_of(path):
    with pytest.raises(GameFileError) as info:
        read_save(path)
    assert len(info.value.problems) == 1
    return info.value.first


def test_truncated_file_names_the_line_and_is_left_alone(tmp_path, played):
    path = save_game(tmp_path / "s.json", played)
    text = path.read_text(encoding="utf-8")
    cut = text[: len(text) * 2 // 3]
    path.write_text(cut, encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(cut)
    problem = problem_of(path)
    assert problem.path.endswith("s.json")
    assert (problem.line, problem.col) == (expected.value.lineno, expected.value.colno)
    assert problem.line > 1
    assert "damaged" in problem.message and "truncated" in problem.message
    assert path.read_bytes() == before and leftovers(tmp_path) == ["s.json"]


@pytest.mark.parametrize("content, words", [
    (b"", "damaged"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2, 3]", "not a Storyteller save"),
    (b"[" * 200_000, "nested too deeply"),
    (b'{"format": "something-else", "version": 1}', "not a Storyteller save"),
    (b'{"format": "storyteller-save"}', "no format version"),
    (b'{"format": "storyteller-save", "version": "1"}', "no format version"),
    (b'{"format": "storyteller-save", "version": 1}', "missing"),
    (b'{"format": "storyteller-save", "version": 1, "quest": {"id": "q"}, "seed": 1,'
     b' "state": {"scene": "a", "turn": "many"}}', "wrong type"),
    (b'{"format": "storyteller-save", "version": 1, "quest": "q", "seed": 1, "state": {}}', "damaged"),
])
def test_damaged_or_foreign_files_give_a_clear_error(tmp_path, content, words):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    problem = problem_of(path)
    assert words in problem.message and problem.path.endswith("s.json")
    assert path.read_bytes() == content


def test_missing_file(tmp_path):
    assert "not found" in problem_of(tmp_path / "nope.json").message


def test_newer_format_is_refused(tmp_path, played):
    path = save_game(tmp_path / "s.json", played)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["version"] = SAVE_VERSION + 1
    path.write_text(json.dumps(data), encoding="utf-8")
    problem = problem_of(path)
    assert "newer" in problem.message and "update" in problem.message
    assert str(SAVE_VERSION + 1) in problem.message


def test_save_for_another_quest_is_refused(tmp_path, played):
    other = load_quest_text(tmp_path / "other", "quest.yaml", QUEST.replace("id: save-test", "id: other-quest"))
    save = read_save(save_game(tmp_path / "s.json", played))
    with pytest.raises(GameFileError) as info:
        restore(save, other)
    assert "save-test" in str(info.value) and "other-quest" in str(info.value)


# -- the quest changed after saving ------------------------------------------------------------

def test_removed_item_and_flag_are_dropped_with_notes(tmp_path, played):
    edited = load_quest_text(tmp_path / "edited", "quest.yaml", QUEST
                             .replace("  key: a rusty key\n", "")
                             .replace("      - label: Pick up the key\n        words: [key]\n"
                                      "        if: {lacks: key}\n        effects: [{give: key}]\n",
                                      "      - label: Whistle\n")
                             .replace("  lit: false\n", "  mood: calm\n")
                             .replace(", {set: lit}", ""))
    save = read_save(save_game(tmp_path / "s.json", played))
    engine, notes = restore(save, edited)
    assert engine.state.inventory == ["lantern"]
    assert engine.state.flags == {"offerings": 1, "mood": "calm"}
    assert any("'key'" in n and "dropped" in n for n in notes)
    assert any("'lit'" in n for n in notes)
    assert all("key" not in s.inventory for s, _ in engine.undo_stack)
    assert engine.inventory_text() == "You carry:\n- a brass lantern"
    assert engine.act("south").kind == "exit"
    while engine.undo():
        pass
    assert engine.state.inventory == [] and engine.state.turn == 0


# The quest with the hall cut out (its way north now loops back to the cellar).
WITHOUT_HALL = (QUEST.replace("{label: North, words: [north], to: hall}", "{label: Loop, to: cellar}")
                .replace(QUEST[QUEST.index("  hall:"):QUEST.index("  outside:")], ""))


def test_removed_current_scene_is_refused(tmp_path, played):
    edited = load_quest_text(tmp_path / "edited", "quest.yaml", WITHOUT_HALL)
    save = read_save(save_game(tmp_path / "s.json", played))
    with pytest.raises(GameFileError) as info:
        restore(save, edited)
    assert "'hall'" in str(info.value) and "no longer exists" in str(info.value)


def test_undo_steps_in_a_removed_scene_are_dropped(tmp_path, quest):
    engine = Engine(quest, seed=1)
    for action in ["north", "south", "dance"]:
        engine.act(action)
    edited = load_quest_text(tmp_path / "edited", "quest.yaml", WITHOUT_HALL)
    loaded, _ = restore(read_save(save_game(tmp_path / "s.json", engine)), edited)
    assert loaded.state.scene == "cellar"
    assert [s.scene for s, _ in loaded.undo_stack] == ["cellar", "cellar"]


def test_save_file_is_unchanged_by_loading_and_restoring(tmp_path, quest, played):
    path = save_game(tmp_path / "s.json", played)
    before = path.read_bytes()
    engine, _ = load(path, quest)
    engine.act("south")
    assert path.read_bytes() == before
    assert to_json(engine) != before.decode("utf-8")


# -- `once` options after the quest changed ----------------------------------------------

PRAY_FIRST = QUEST.replace(
    "      - label: Take the lantern\n        words: [lantern]\n        if: {lacks: lantern}\n"
    "        effects: [{give: lantern}, {set: lit}]\n      - label: Pray\n        once: true\n"
    "        effects: [{add: {offerings: 1}}]\n",
    "      - label: Pray\n        once: true\n        effects: [{add: {offerings: 1}}]\n"
    "      - label: Take the lantern\n        words: [lantern]\n        if: {lacks: lantern}\n"
    "        effects: [{give: lantern}, {set: lit}]\n")


def test_a_used_up_once_option_stays_used_up_when_the_options_are_reordered(tmp_path, quest):
    assert PRAY_FIRST != QUEST
    engine = Engine(quest, seed=3)
    engine.act("pray")
    assert "Pray" not in [o.label for o in engine.options()]
    reordered = load_quest_text(tmp_path / "edited", "quest.yaml", PRAY_FIRST)
    loaded, _ = restore(read_save(save_game(tmp_path / "s.json", engine)), reordered)
    assert [o.label for o in loaded.options()] == ["Take the lantern", "North"]
    assert loaded.act("pray").kind != "choice"  # still used up: nothing in the quest answers


def test_a_save_from_before_label_keys_reads_its_used_options_by_position(tmp_path, quest):
    engine = Engine(quest, seed=3)
    engine.act("pray")
    path = save_game(tmp_path / "s.json", engine)
    data = json.loads(path.read_text())
    assert data["state"]["used"] == ["cellar/choices: Pray"]
    data["state"]["used"] = ["cellar/choices/1"]  # how saves named it before: Pray was option 2
    path.write_text(json.dumps(data))
    loaded, _ = restore(read_save(path), quest)
    assert loaded.state.used == ["cellar/choices: Pray"]
    assert [o.label for o in loaded.options()] == ["Take the lantern", "North"]


def test_repeated_labels_get_keys_of_their_own(tmp_path):
    twice = QUEST.replace("      - label: Pray\n        once: true\n",
                          "      - label: Pray\n        once: true\n        words: [kneel]\n"
                          "        effects: [{add: {offerings: 2}}]\n      - label: Pray\n        once: true\n")
    quest = load_quest_text(tmp_path / "twice", "quest.yaml", twice)
    keys = [c.key for c in quest.scenes["cellar"].choices]
    assert keys == ["cellar/choices: Take the lantern", "cellar/choices: Pray", "cellar/choices: Pray #2",
                    "cellar/exits: North"]


# -- every value is checked against the save's schema (issue 11) ------------------------------
def _nested(depth: int):
    value = True
    for _ in range(depth):
        value = {"deeper": value}
    return value


# (what is edited, how, the key path the message names)
MALFORMED = [
    ("ending", lambda d: d["state"].__setitem__("ending", ["e"]), "state.ending", "wrong type"),
    ("extra.memory", lambda d: d["extra"].__setitem__("memory", "remember"), "extra.memory", "wrong type"),
    ("extra.samples", lambda d: d["extra"].__setitem__("samples", [1, 2]), "extra.samples", "wrong type"),
    ("sample texts", lambda d: d["extra"].__setitem__("samples", {"1": {"texts": [5]}}),
     "extra.samples.1.texts.0", "wrong type"),
    ("seed inf", lambda d: d.__setitem__("seed", float("inf")), "seed", "wrong type"),
    ("seed huge", lambda d: d.__setitem__("seed", 2**70), "seed", "out of range"),
    ("turn inf", lambda d: d["state"].__setitem__("turn", float("inf")), "state.turn", "wrong type"),
    ("turn huge", lambda d: d["state"].__setitem__("turn", 10**30), "state.turn", "out of range"),
    ("visits", lambda d: d["state"]["visits"].__setitem__("hall", 1e300), "state.visits.hall", "wrong type"),
    ("negative visits", lambda d: d["state"]["visits"].__setitem__("hall", -1), "state.visits.hall",
     "out of range"),
    ("nested flag", lambda d: d["state"]["flags"].__setitem__("lit", _nested(600)), "state.flags.lit",
     "wrong type"),
    ("nan flag", lambda d: d["state"]["flags"].__setitem__("offerings", float("nan")),
     "state.flags.offerings", "out of range"),
    ("undo turn", lambda d: d["undo"][1]["state"].__setitem__("turn", "x"), "undo.1.state.turn", "wrong type"),
    ("history kind", lambda d: d["history"][2].__setitem__("kind", None), "history.2.kind", "wrong type"),
    ("quest id", lambda d: d["quest"].__setitem__("id", 7), "quest.id", "wrong type"),
]


@pytest.mark.parametrize("name, edit, keys, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_every_malformed_value_is_refused_at_its_line_and_the_file_is_left_alone(
        tmp_path, played, name, edit, keys, words):
    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))  # json.dumps of the 600-deep flag
    path = save_game(tmp_path / "s.json", played, {"memory": [], "opening": "", "samples": {}})
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    before = path.read_bytes()
    problem = problem_of(path)
    assert f"save file is damaged: {keys} " in problem.message and words in problem.message
    assert problem.path.endswith("s.json") and "it was left as it is" in problem.message
    # the line and column are where that value is written
    line_text = before.decode("utf-8").splitlines()[problem.line - 1]
    assert problem.line > 1 and line_text[problem.col - 1:].startswith(tuple('-[{"0123456789INtfn'))
    assert path.read_bytes() == before


def test_a_number_with_thousands_of_digits_is_refused_at_its_line(tmp_path, played):
    path = save_game(tmp_path / "s.json", played)
    text = path.read_text(encoding="utf-8").replace('"seed": 42', '"seed": ' + "9" * 5000)
    path.write_text(text, encoding="utf-8")
    problem = problem_of(path)
    assert "far too long" in problem.message and (problem.line, problem.col) == (at(text, "9" * 10))


def at(text: str, needle: str) -> tuple[int, int]:
    idx = text.index(needle)
    return text.count("\n", 0, idx) + 1, idx - (text.rfind("\n", 0, idx) + 1) + 1


# -- a save finds its quest by id, never by the path it records (issue 11) ----------------------
def test_a_save_finds_its_quest_by_id_and_never_opens_the_path_it_records(tmp_path, played, monkeypatch):
    import sys

    from game import locations
    from game.cli import main
    from game.session import Session

    secret = tmp_path / "passwd-copy"
    secret.write_text("root:\nsecret-user:\nhunter2:\n", encoding="utf-8")
    path = save_game(tmp_path / "s.json", played)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["quest"]["path"] = str(secret)
    path.write_text(json.dumps(data), encoding="utf-8")
    opened = []

    def audit(event, args):
        if event == "open" and args and str(args[0]) == str(secret):
            opened.append(args)

    sys.addaudithook(audit)
    # Not among the known quests: refused, naming the save and how to go on, echoing nothing.
    with pytest.raises(GameFileError) as err:
        Session.load(path)
    message = err.value.problems[0].format()
    assert "s.json:1:1:" in message and "'save-test'" in message and "--load" in message
    assert "secret-user" not in message and "hunter2" not in message and not opened
    # Given on the command line, the quest is that file.
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("look\n"))
    assert main(["play", str(played.quest.source), "--plain", "--no-spirit", "--load", str(path)]) == 0
    # In the player's quests folder, it is found by its id.
    (locations.user_quests_dir()).mkdir(parents=True)
    (locations.user_quests_dir() / "renamed.yaml").write_text(QUEST, encoding="utf-8")
    session = Session.load(path)
    assert session.quest.id == "save-test" and session.quest.source.name == "renamed.yaml"
    assert session.engine.state.to_dict() == played.state.to_dict() and not opened
