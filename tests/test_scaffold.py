"""`storyteller new`: the starter quest validates, plays to both endings, never overwrites."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.world import schema
from game.world.loader import check_quest, load_quest
from game.scaffold import quest_id, quest_title, render, scaffold
from tests.helpers import play_plain


def test_scaffold_validates_with_no_problems(tmp_path):
    path = scaffold("my-quest", tmp_path)
    assert path == tmp_path / "my-quest.yaml"
    quest, problems = check_quest(path)
    assert problems == []
    assert quest.id == "my-quest" and quest.title == "My Quest"


def test_scaffold_shows_every_kind_of_thing(tmp_path):
    quest = load_quest(scaffold("showcase", tmp_path))
    assert 3 <= len(quest.scenes) <= 4
    assert quest.items and quest.flags and quest.lore
    assert {e.outcome for e in quest.endings.values()} == {"win", "lose"}
    choices = [c for s in quest.scenes.values() for c in s.choices]
    assert any(c.is_exit and c.condition is not None and c.locked for c in choices)
    playable = [s for s in quest.scenes.values() if s.ending is None]
    assert all(s.hints and s.recap for s in playable)


def test_every_key_has_a_comment(tmp_path):
    """Each quest-format key the file uses is explained on its line (or the line above) at least once."""
    lines = scaffold("commented", tmp_path).read_text(encoding="utf-8").splitlines()
    known = (schema.TOP_KEYS | schema.SCENE_KEYS | schema.CHOICE_KEYS
             | schema.ITEM_KEYS | schema.ENDING_KEYS | schema.LORE_KEYS
             | set(schema.CONDITION_KEYS) | set(schema.EFFECT_KEYS))
    used: dict[str, bool] = {}
    for i, line in enumerate(lines):
        keys = re.findall(r"^\s*(?:- )?([a-z_]+):", line) + re.findall(r"\{\s*([a-z_]+):", line)
        commented = "#" in line or (i > 0 and lines[i - 1].lstrip().startswith("#"))
        for key in keys:
            if key in known:
                used[key] = used.get(key, False) or commented
    assert len(used) >= 25  # the scaffold really does use most of the format
    assert [k for k, ok in used.items() if not ok] == []


def test_plays_to_the_win_ending(tmp_path):
    path = scaffold("winner", tmp_path)
    result = play_plain(path, ["take lantern", "go outside", "climb down the well", "pull the lever",
                               "climb up", "go through the gate"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "The Tower Remembers" in result.stdout and "You won." in result.stdout
    assert "THE END" in result.stdout


def test_plays_to_the_lose_ending(tmp_path):
    path = scaffold("loser", tmp_path)
    result = play_plain(path, ["go outside", "well", "go back", "take lantern", "garden", "well",
                               "jump into the water"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "too dark to climb down" in result.stdout  # the locked exit said why
    assert "Lost in the Well" in result.stdout and "You lost." in result.stdout


def test_never_overwrites(tmp_path):
    path = scaffold("mine", tmp_path)
    path.write_text("my precious work\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="mine.yaml already exists"):
        scaffold("mine", tmp_path)
    with pytest.raises(FileExistsError):
        scaffold("Mine", tmp_path)  # the same id, so the same file
    assert path.read_text(encoding="utf-8") == "my precious work\n"


def test_default_folder_is_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = scaffold("here")
    assert path.resolve() == (tmp_path / "here.yaml").resolve() and path.is_file()


def test_creates_a_missing_folder(tmp_path):
    path = scaffold("deep", tmp_path / "a" / "b")
    assert path.is_file() and check_quest(path)[1] == []


@pytest.mark.parametrize("name, ident, title", [
    ("my-quest", "my-quest", "My Quest"),
    ("My Quest", "my-quest", "My Quest"),
    ("the_dark  tower", "the_dark-tower", "The Dark Tower"),
    ("my-quest.yaml", "my-quest", "My Quest"),
    ('The "Odd": Quest #1', "the-odd-quest-1", 'The "Odd": Quest #1'),
    ("../../etc/passwd", "etcpasswd", "../../etc/passwd"),
])
def test_names(tmp_path, name, ident, title):
    path = scaffold(name, tmp_path)
    assert path == tmp_path / f"{ident}.yaml"
    quest, problems = check_quest(path)
    assert problems == []
    assert (quest.id, quest.title) == (ident, title)


@pytest.mark.parametrize("name", ["", "   ", "!!!", "---", "Мой квест"])
def test_names_without_an_id_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="storyteller new my-quest"):
        scaffold(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=40))
def test_any_name_gives_a_valid_quest_or_a_clear_refusal(name):
    if not quest_id(name):
        with pytest.raises(ValueError):
            render(name)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "q.yaml"
        path.write_text(render(name), encoding="utf-8")
        quest, problems = check_quest(path)
        assert problems == []
        assert quest.id == quest_id(name) and quest.title == quest_title(name)
