"""The bundled quest, "Quest 1.6 — The Call of the Storyteller": it validates, it fits
the narrator's window, and a player can reach each of its three endings by playing
it in plain mode (a real subprocess, the same command a player types)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from game.phrases import phrase

from game.world.loader import check_quest, load_quest
from tests.conftest import QUESTS, ROOT
from tests.helpers import play_plain

QUEST = QUESTS / "call-of-the-storyteller.yaml"
NEVER_READ = "this line is never read"


@pytest.fixture(scope="module")
def quest():
    return load_quest(QUEST)


def play(actions: list[str], tmp_path) -> subprocess.CompletedProcess:
    """Play the bundled quest in plain mode without the Spirit, typing `actions` one per line."""
    return play_plain(QUEST, actions, tmp_path)


def flat(text: str) -> str:
    """Text with line wrapping undone, so authored paragraphs can be found whole."""
    return " ".join(text.split())


def clean_output(run: subprocess.CompletedProcess) -> str:
    """The run's output, flat (see `flat`), once it is checked that the game exited cleanly."""
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    return flat(run.stdout)


def assert_ended_with(run: subprocess.CompletedProcess, quest, ending_id: str) -> None:
    ending = quest.endings[ending_id]
    out = clean_output(run)
    assert ending.title in out
    assert flat(ending.text) in out
    assert phrase(quest.language, "won" if ending.outcome == "win" else "lost_game", quest.address) in out
    # The quest ended the game: the line after the last action was never read.
    assert run.stdout.rstrip().endswith(phrase(quest.language, "the_end", quest.address))
    assert NEVER_READ not in run.stdout
    for other in set(quest.endings) - {ending_id}:
        assert quest.endings[other].title not in out


def test_validates_without_problems():
    found, problems = check_quest(QUEST)
    assert found is not None
    assert [p.format() for p in problems] == []
    run = subprocess.run([sys.executable, "-m", "game", "validate", str(QUEST)],
                         capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok:" in run.stdout and "error" not in run.stdout


def test_shape_of_the_quest(quest):
    assert quest.id == "call-of-the-storyteller"
    assert quest.title == "Quest 1.6 — The Call of the Storyteller"
    assert (quest.author, quest.language, quest.personality) == ("Storyteller team", "en",
                                                                  "storyteller-spirit")
    assert quest.summary and quest.author_note
    assert len(quest.scenes) >= 10 and len(quest.items) >= 4 and len(quest.lore) >= 3
    assert sorted(e.outcome for e in quest.endings.values()) == ["lose", "win", "win"]
    assert any(isinstance(v, int) and not isinstance(v, bool) for v in quest.flags.values())
    for scene in quest.scenes.values():
        assert scene.hints and scene.recap, scene.id
        assert "\n" not in scene.recap.strip(), scene.id
        for text in scene.descriptions:
            assert len(text.split()) < 100, scene.id


def test_every_scene_fits_the_narrators_window(quest, gpt2_tokenizer):
    """Description, hints and recap of a scene must leave most of 1024 tokens free."""
    for scene in quest.scenes.values():
        for text in scene.descriptions:
            parts = [text, *scene.hints, scene.recap]
            assert len(gpt2_tokenizer("\n".join(parts))["input_ids"]) < 250, scene.id
    for entry in quest.lore.values():
        assert len(gpt2_tokenizer(entry.text)["input_ids"]) < 60, entry.id


# Explores everything: the true name, four memories, prompt and ember on the altar.
TRUE_WIN = [
    "look", "take the lantern", "go north", "listen to the fans", "go west to the archive",
    "read the scroll", "take the shard", "climb the spiral stair", "take a token",
    "study the mural", "go down", "go back", "go down the steps", "take the coal",
    "read the frost", "climb back", "south", "east", "pay the toll", "cross the bridge",
    "touch the oldest tree", "i", "approach the gate", "speak the true name",
    "pass through the gate", "place the shard", "kindle the brazier",
    "call the spirit by its true name",
]

# Gathers only what the ritual needs (no name, no memories), by number.
LESSER_WIN = [
    "1",                # take the lantern
    "2",                # north to the server hall
    "2",                # west into the archive
    "2",                # take the shard
    "2",                # up to the loom
    "1",                # golden token
    "2",                # down to the archive
    "3",                # east to the server hall
    "3",                # down to the crypt
    "1",                # the ember
    "2",                # up to the server hall
    "4",                # south to the gate of dead links
    "3",                # east to the river
    "1",                # pay the toll
    "2",                # cross to the garden
    "1",                # pick a seed
    "2",                # approach the attention gate
    "1",                # offer the seed
    "2",                # pass into the circle (after "ask the faces")
    "1",                # the shard on the altar
    "1",                # kindle the brazier
    "1",                # call it without its name (the true name is not offered)
]

# The same true win, typed only as numbers: every option it needs is on the menu.
TRUE_WIN_BY_NUMBER = "1 2 1 1 1 1 1 1 1 1 2 2 1 1 1 3 3 1 2 2 2 1 2 1 1 1".split()

# Reaches the circle, then walks past the last stone.
LOSS = [
    "take the lantern", "2", "enter the archive", "climb the spiral stair",
    "grab a golden token", "d", "return to the server hall", "s", "e", "pay the toll",
    "cross the bridge", "pick a seed", "go to the gate", "offer the seed",
    "pass through the gate", "summon the spirit", "step past the last stone",
]


@pytest.mark.parametrize("actions, ending_id", [
    (TRUE_WIN, "spirit-remembers"),
    (TRUE_WIN_BY_NUMBER, "spirit-remembers"),
    (LESSER_WIN, "spirit-forgets"),
    (LOSS, "lost-beyond-the-window"),
], ids=["true-win", "true-win-by-number", "lesser-win", "loss"])
def test_each_ending_is_reachable(actions, ending_id, quest, tmp_path):
    run = play(actions + [NEVER_READ], tmp_path)
    assert_ended_with(run, quest, ending_id)


def test_true_win_passes_the_story_beats(quest, tmp_path):
    out = clean_output(play(TRUE_WIN, tmp_path))
    for beat in ("You now have a cursor lantern.", "Its true name is Distil.",
                 "You no longer have a golden token.", "The Circle of 1024 Stones",
                 "The nearest stones flicker as you enter"):
        assert beat in out


def test_calling_too_early_explains_the_ritual(quest, tmp_path):
    out = clean_output(play(LOSS, tmp_path))
    assert "> summon the spirit The stones stay dark. To wake whole" in out
    assert "you could still call it without its name." in out


def test_locked_ways_explain_themselves(quest, tmp_path):
    run = play(["go north", "go west", "s", "e", "cross the bridge", "pay the toll", "look"],
               tmp_path)
    out = clean_output(run)
    assert "You would need a light to find your way among the shelves." in out
    assert "The toll-post beside you waits for a coin." in out
    assert "nothing in your pockets fits it." in out
    assert "The Forgotten Archive of Tokens" not in out
    assert "The Garden of Weights" not in out


def test_input_ending_midway_exits_cleanly(quest, tmp_path):
    run = play(["take the lantern", "go north"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    out = run.stdout
    assert "The Overgrown Server Hall" in out
    assert "THE END" not in out
    assert not any(e.title in out for e in quest.endings.values())
    assert out.rstrip().endswith("Return south to the Gate of Dead Links")
