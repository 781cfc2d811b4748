"""Personalities: the shipped presets, player files that add or replace them, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from game import locations
from game.personality import (DEFAULT_PERSONALITY, FALLBACK, MAX_PERSONA_CHARS,
                              load_personalities)
from game.sampling import Sampling
from tests.helpers import write

GOOD = """\
name: The Lighthouse Keeper
description: Slow and kind.
persona: >
  An old lighthouse keeper tells you what happens next, slowly and kindly.
sampling:
  temperature: 0.7
"""


@pytest.fixture(autouse=True)
def personalities_dir(user_dirs) -> Path:
    """Every user folder in tmp_path (conftest's `user_dirs`); the player's personalities
    folder is there and empty."""
    (user_dirs / "personalities").mkdir()
    return user_dirs / "personalities"


def user_file(user_dirs, name: str, text: str) -> Path:
    return write(user_dirs / "personalities" / name, text)


def test_three_distinct_presets_load_cleanly():
    found, problems = load_personalities()
    assert problems == []
    assert list(found)[0] == DEFAULT_PERSONALITY
    assert {"storyteller-spirit", "grim-chronicler", "merry-bard"} <= set(found)
    chosen = [found[i] for i in ("storyteller-spirit", "grim-chronicler", "merry-bard")]
    for field in ("name", "description", "persona", "sampling"):
        assert len({getattr(p, field) for p in chosen}) == 3, field
    spirit, grim, bard = chosen
    assert grim.sampling.temperature < spirit.sampling.temperature < bard.sampling.temperature
    assert bard.sampling.max_new_tokens < spirit.sampling.max_new_tokens
    assert spirit.sampling == Sampling(temperature=0.8, top_k=50, top_p=0.95,
                                       repetition_penalty=1.2,
                                       no_repeat_ngram_size=spirit.sampling.no_repeat_ngram_size,
                                       max_new_tokens=150)
    assert spirit.sampling.no_repeat_ngram_size in (0, 3)
    assert "Storyteller Spirit" in spirit.persona and "digital realm" in spirit.persona


def test_personas_are_short_prose_for_a_small_model(gpt2_tokenizer):
    found, _ = load_personalities()
    for p in found.values():
        assert "\n" not in p.description
        assert 20 <= len(gpt2_tokenizer(p.persona)["input_ids"]) <= 120, p.id
        assert not p.persona.lower().startswith(("you are", "instruction", "system")), p.id
        assert p.persona.rstrip().endswith("."), p.id


def test_player_file_adds_a_personality(user_dirs):
    user_file(user_dirs, "lighthouse-keeper.yaml", GOOD)
    found, problems = load_personalities()
    assert problems == []
    keeper = found["lighthouse-keeper"]
    assert keeper.name == "The Lighthouse Keeper"
    assert keeper.persona.startswith("An old lighthouse keeper")
    assert keeper.sampling == Sampling(temperature=0.7)  # left-out keys keep the defaults
    assert keeper.source.endswith("lighthouse-keeper.yaml")
    assert "grim-chronicler" in found and list(found)[0] == DEFAULT_PERSONALITY


def test_player_file_replaces_the_preset_with_its_id(user_dirs):
    user_file(user_dirs, "grim-chronicler.yaml", GOOD)
    found, problems = load_personalities()
    assert problems == []
    assert found["grim-chronicler"].name == "The Lighthouse Keeper"
    assert found["merry-bard"].name == "The Merry Bard"


def test_bad_player_file_is_reported_with_position_and_the_preset_stays(user_dirs):
    path = user_file(user_dirs, "grim-chronicler.yaml", GOOD.replace("0.7", "7"))
    found, problems = load_personalities()
    assert found["grim-chronicler"].name == "The Grim Chronicler"
    [problem] = problems
    assert problem.path.endswith("grim-chronicler.yaml") and Path(problem.path).name == path.name
    assert (problem.line, problem.col) == (6, 16)
    assert "0.05 to 2" in problem.message


@pytest.mark.parametrize("text, line, col, words", [
    (GOOD.replace("persona:", "persna:"), 3, 1, ["'persna'", "did you mean 'persona'"]),
    (GOOD + "temperature: 0.5\n", 7, 1, ["'temperature' is a sampling setting", "'sampling:'"]),
    (GOOD.replace("temperature", "temprature"), 6, 3, ["did you mean 'temperature'"]),
    (GOOD.replace("The Lighthouse Keeper", "42"), 1, 7, ["'name' must be text"]),
    (GOOD.replace("sampling:\n  temperature: 0.7\n", "sampling: hot\n"), 5, 11, ["mapping"]),
    (GOOD.replace("temperature: 0.7", "top_k: 2.5"), 6, 10, ["whole number", "between 0 and 50257"]),
    ("name: X\n", 1, 1, ["missing 'persona:'"]),
    (GOOD.replace("Slow and", "Slow: and"), 2, 18, ["YAML syntax error", "quotes"]),
    ("- a list\n", 1, 1, ["must be a mapping"]),
    ("", 1, 1, ["empty"]),
])
def test_bad_player_files_are_reported_not_fatal(user_dirs, text, line, col, words):
    user_file(user_dirs, "keeper.yaml", text)
    found, problems = load_personalities()
    assert "keeper" not in found and DEFAULT_PERSONALITY in found
    assert problems, "expected a problem"
    first = problems[0]
    assert first.path.endswith("keeper.yaml")
    assert (first.line, first.col) == (line, col), first.format()
    for word in words:
        assert word in first.message, first.format()


def test_overlong_persona_is_reported(user_dirs):
    user_file(user_dirs, "wordy.yaml", "name: Wordy\npersona: " + "word " * MAX_PERSONA_CHARS + "\n")
    found, problems = load_personalities()
    assert "wordy" not in found
    assert f"under {MAX_PERSONA_CHARS}" in problems[0].message
    assert problems[0].line == 2


def test_file_name_must_be_a_usable_id(user_dirs):
    user_file(user_dirs, "My Voice.yaml", GOOD)
    found, problems = load_personalities()
    assert "My Voice" not in found
    assert "rename it" in problems[0].message and "'my-voice.yaml'" in problems[0].message


def test_same_id_twice_in_one_folder_is_a_warning(user_dirs):
    user_file(user_dirs, "keeper.yaml", GOOD)
    user_file(user_dirs, "keeper.yml", GOOD.replace("Lighthouse", "Other"))
    found, problems = load_personalities()
    assert found["keeper"].name == "The Lighthouse Keeper"
    assert [p.severity for p in problems] == ["warning"]
    assert "keeper.yml" in problems[0].path


def test_missing_presets_fall_back_to_a_built_in_default(tmp_path):
    found, problems = load_personalities(preset_dir=tmp_path / "nowhere")
    assert found == {DEFAULT_PERSONALITY: FALLBACK}
    assert problems[0].severity == "warning" and "reinstall" in problems[0].message


def test_user_personalities_folder_follows_the_config_folder(user_dirs, monkeypatch):
    monkeypatch.delenv(locations.ENV["personalities"])
    assert locations.user_personalities_dir() == user_dirs / "config" / "personalities"
    monkeypatch.setenv(locations.ENV["personalities"], str(user_dirs / "voices"))
    assert locations.user_personalities_dir() == user_dirs / "voices"
