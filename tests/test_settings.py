"""Settings: the commented settings.yaml, validation, fallbacks, and the folders."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from game import locations
from game.personality import DEFAULT_PERSONALITY, load_personalities
from game.sampling import RANGES
from game.settings import (SEED_MAX, Settings, load_settings, render_settings,
                           save_settings)
from tests.conftest import ROOT
from tests.helpers import write

CUSTOM = Settings(personality="merry-bard", persona="A fox tells the tale.\nIt lies a lot.",
                  sampling={"temperature": 1.1, "top_k": 20}, model="/models/my gpt2",
                  device="cpu", dtype="float32", seed=7, autosave=False,
                  keys={"quit": "ctrl+q", "help": "f1"})


pytestmark = pytest.mark.usefixtures("user_dirs")  # every user folder in tmp_path (conftest)


@pytest.fixture
def settings_path(user_dirs) -> Path:
    return user_dirs / "config" / "settings.yaml"


# --- first run and round trip ---------------------------------------------

def test_first_run_creates_the_file_with_every_key_explained(settings_path):
    assert not settings_path.exists()
    settings, problems = load_settings()
    assert settings == Settings() and problems == []
    lines = settings_path.read_text(encoding="utf-8").splitlines()
    for field in dataclasses.fields(Settings):
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"{field.name}:")]
        assert lines[at - 1].startswith("# "), f"no comment explains '{field.name}'"
    text = "\n".join(lines)
    for name, (_, lo, hi, _) in RANGES.items():
        assert f"{name}: {lo:g} to {hi:g}" in text
    assert "grim-chronicler" in text and "merry-bard" in text
    assert str(locations.user_personalities_dir()) in text
    assert load_settings() == (Settings(), [])


def test_round_trip_keeps_values_and_comments(settings_path):
    save_settings(CUSTOM)
    assert load_settings() == (CUSTOM, [])
    text = settings_path.read_text(encoding="utf-8")
    assert text.startswith("# Storyteller settings")
    assert text.count("\n#") > 30
    assert [p.name for p in settings_path.parent.iterdir()] == ["settings.yaml"]  # no temp files
    save_settings(Settings())
    assert load_settings() == (Settings(), [])


@hyp_settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(persona=st.text(min_size=1, max_size=200).filter(str.strip),
       keys=st.dictionaries(st.text(min_size=1, max_size=12),  # any action, any valid key name
                            st.one_of(st.from_regex(r"(ctrl|alt)\+[a-z0-9]", fullmatch=True),
                                      st.from_regex(r"f[1-9]|f1[0-2]|escape|pageup|home", fullmatch=True)),
                            max_size=4),
       model=st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and "\n" not in t.strip()))
def test_any_text_round_trips(settings_path, persona, keys, model):
    chosen = Settings(persona=persona, keys=keys, model=model)
    save_settings(chosen, settings_path)
    assert load_settings(settings_path) == (chosen, [])


def test_loading_never_rewrites_an_existing_file(settings_path):
    before = write(settings_path, "# my own note\nseed: 3\n").read_bytes()
    assert load_settings() == (Settings(seed=3), [])
    assert settings_path.read_bytes() == before


def test_empty_file_means_defaults(settings_path):
    write(settings_path, "# nothing set\n")
    assert load_settings() == (Settings(), [])


# --- bad files --------------------------------------------------------------

def test_broken_yaml_gives_defaults_and_leaves_the_file_alone(settings_path):
    before = write(settings_path, "seed: 3\ndevice: cpu\nmodel: [unclosed\n").read_bytes()
    settings, problems = load_settings()
    assert settings == Settings()
    assert problems[0].severity == "error" and "YAML syntax error" in problems[0].message
    assert problems[0].path.endswith("settings.yaml") and problems[0].line >= 3
    assert "default settings" in problems[-1].message
    assert settings_path.read_bytes() == before


def test_bad_values_fall_back_one_by_one(settings_path):
    before = write(settings_path, "\n".join([
        "personality: grim-chronicler",  # 1 fine
        "device: gpu",                   # 2
        "seed: -4",                      # 3
        "autosave: maybe",               # 4
        "sampling:",                     # 5
        "  temperature: 5",              # 6
        "  top_p: 0.5",                  # 7 fine
        "keys:",                         # 8
        "  quit: ctrl+q",                # 9 fine
        "  help: 1",                     # 10
        "dtype: float16",                # 11 fine
        "",
    ])).read_bytes()
    settings, problems = load_settings()
    assert settings == Settings(personality="grim-chronicler", dtype="float16",
                                sampling={"top_p": 0.5}, keys={"quit": "ctrl+q"})
    found = {(p.line, p.col): p.message for p in problems}
    assert set(found) == {(2, 9), (3, 7), (4, 11), (6, 16), (10, 9)}
    assert "did you mean 'cpu'" in found[2, 9] and "auto, cpu, cuda" in found[2, 9]
    assert "using the default: auto" in found[2, 9]
    assert f"0 to {SEED_MAX}" in found[3, 7] and "using the default: null" in found[3, 7]
    assert "true or false" in found[4, 11]
    assert "outside the allowed range 0.05 to 2" in found[6, 16]
    assert "personality's value is used" in found[6, 16]
    assert "quotes" in found[10, 9]
    assert all(p.path.endswith("settings.yaml") for p in problems)
    assert settings_path.read_bytes() == before


@pytest.mark.parametrize("text, col, words", [
    ("persnality: merry-bard\n", 1, ["did you mean 'personality'"]),
    ("autosav: false\n", 1, ["did you mean 'autosave'"]),
    ("temprature: 1.0\n", 1, ["did you mean 'temperature'", "under 'sampling:'"]),
    ("sampling:\n  top_kk: 4\n", 3, ["did you mean 'top_k'"]),
])
def test_unknown_keys_get_did_you_mean(settings_path, text, col, words):
    write(settings_path, text)
    settings, [problem] = load_settings()
    assert settings == Settings()
    assert (problem.line, problem.col) == (text.count("\n"), col)
    for word in words:
        assert word in problem.message


def test_not_a_mapping_gives_defaults(settings_path):
    write(settings_path, "- personality\n")
    settings, [problem] = load_settings()
    assert settings == Settings() and "name: value" in problem.message


def test_unknown_personality_is_reported_when_personalities_are_given(settings_path):
    write(settings_path, "autosave: false\npersonality: merry-bardd\n")
    personalities, _ = load_personalities()
    settings, [problem] = load_settings(personalities=personalities)
    assert settings == Settings(autosave=False, personality=DEFAULT_PERSONALITY)
    assert (problem.line, problem.col) == (2, 14)
    assert "did you mean 'merry-bard'" in problem.message


def test_unwritable_config_folder_is_a_warning_not_a_crash(user_dirs):
    blocker = user_dirs / "a-file"
    blocker.write_text("not a folder")
    settings, [problem] = load_settings(blocker / "settings.yaml")
    assert settings == Settings() and problem.severity == "warning"
    assert "could not create" in problem.message


# --- the settings object ----------------------------------------------------

def test_with_changes_validates_with_the_allowed_range():
    base = Settings()
    assert base.with_changes(temperature=1.5, seed=9).sampling == {"temperature": 1.5}
    with pytest.raises(ValueError, match=r"outside the allowed range 0\.05 to 2"):
        base.with_changes(temperature=2.5)
    with pytest.raises(ValueError, match=r"between 8 and 512"):
        base.with_changes(sampling={"max_new_tokens": "many"})
    with pytest.raises(ValueError, match="auto, float32, bfloat16, float16"):
        base.with_changes(dtype="half")
    with pytest.raises(ValueError, match="did you mean 'seed'"):
        base.with_changes(sed=3)
    with pytest.raises(ValueError, match=f"0 to {SEED_MAX}"):
        base.with_changes(seed=SEED_MAX + 1)
    with pytest.raises(ValueError, match="true or false"):
        base.with_changes(autosave="no")
    assert base == Settings()


def test_sampling_overrides_can_be_set_and_cleared_one_by_one():
    s = Settings().with_changes(temperature=1.2, top_k=10)
    assert dict(s.with_changes(temperature=None).sampling) == {"top_k": 10}
    assert s.with_changes(sampling={}).sampling == {}


def test_settings_are_immutable():
    s = Settings(keys={"quit": "ctrl+q"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3
    with pytest.raises(TypeError):
        s.keys["quit"] = "x"
    with pytest.raises(TypeError):
        s.sampling["temperature"] = 1.0
    assert hash(s) == hash(Settings(keys={"quit": "ctrl+q"}))


def test_effective_sampling_applies_overrides_over_the_personality():
    personalities, _ = load_personalities()
    grim = personalities["grim-chronicler"]
    persona, sampling = Settings(personality="grim-chronicler").effective_sampling(personalities)
    assert (persona, sampling) == (grim.persona, grim.sampling)
    chosen = Settings(personality="grim-chronicler", persona="A crow watches you.",
                      sampling={"temperature": 1.3})
    persona, sampling = chosen.effective_sampling(personalities)
    assert persona == "A crow watches you."
    assert sampling == grim.sampling.with_values(temperature=1.3)
    missing = Settings(personality="not-installed")
    assert missing.active_personality(personalities).id == DEFAULT_PERSONALITY


# --- folders and imports ----------------------------------------------------

def test_folders_follow_environment_variables(user_dirs, monkeypatch):
    assert locations.config_dir() == user_dirs / "config"
    assert locations.settings_file() == user_dirs / "config" / "settings.yaml"
    assert locations.saves_dir() == user_dirs / "saves"
    assert locations.user_quests_dir() == user_dirs / "quests"
    monkeypatch.delenv(locations.ENV["saves"])
    monkeypatch.delenv(locations.ENV["quests"])
    assert locations.saves_dir() == user_dirs / "data" / "saves"
    assert locations.user_quests_dir() == user_dirs / "data" / "quests"
    monkeypatch.setenv(locations.ENV["assets"], str(user_dirs / "art"))
    assert locations.preset_personalities_dir() == user_dirs / "art" / "personalities"


def test_bundled_folders_are_at_the_repository_root():
    assert locations.bundled_quests_dir() == ROOT / "quests"
    assert locations.preset_personalities_dir() == ROOT / "assets" / "personalities"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders are Linux's")
def test_without_overrides_platformdirs_decides(user_dirs, monkeypatch):
    monkeypatch.delenv(locations.ENV["config"])
    monkeypatch.setenv(locations.ENV["data"], "")  # empty counts as unset
    assert locations.config_dir() == user_dirs / "xdg-config" / "storyteller"
    assert locations.data_dir() == user_dirs / "xdg-data" / "storyteller"


def test_importing_never_loads_torch_transformers_or_textual():
    code = ("import sys, game.locations, game.personality, game.settings; "
            "bad = [m for m in ('torch', 'transformers', 'textual') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_render_matches_what_is_saved(settings_path):
    save_settings(CUSTOM)
    assert settings_path.read_text(encoding="utf-8") == render_settings(CUSTOM)


# --- saving keeps what the player did not touch (issue 11) ------------------------------------
def test_saving_rewrites_only_the_changed_settings_and_keeps_the_players_notes(settings_path):
    write(settings_path, "\n".join([
        "# my own note at the top",
        "personality: merry-bard   # the fun one",
        "sampling:",
        "  max_new_tokens: 20   # short, please",
        "# a note about the model",
        "model: distilgpt2",
        "seed: 5",
        "",
    ]))
    loaded, problems = load_settings(settings_path)
    assert problems == [] and dict(loaded.sampling) == {"max_new_tokens": 20}
    save_settings(loaded.with_changes(temperature=0.5), settings_path)
    text = settings_path.read_text(encoding="utf-8")
    saved = load_settings(settings_path)[0]
    assert dict(saved.sampling) == {"max_new_tokens": 20, "temperature": 0.5}
    assert (saved.personality, saved.seed) == ("merry-bard", 5)
    for kept in ("# my own note at the top", "personality: merry-bard   # the fun one",
                 "# a note about the model", "model: distilgpt2", "seed: 5"):
        assert kept in text.splitlines()
    # A setting not in the file is added; saving the same settings again changes nothing.
    save_settings(saved.with_changes(device="cpu"), settings_path)
    assert load_settings(settings_path)[0] == saved.with_changes(device="cpu")
    before = settings_path.read_bytes()
    save_settings(saved.with_changes(device="cpu"), settings_path)
    assert settings_path.read_bytes() == before and b"# my own note at the top" in before


def test_a_wrong_value_is_rewritten_when_saving_and_the_rest_is_kept(settings_path):
    write(settings_path, "# note\ndevice: gpu\nseed: 3\n")
    settings, problems = load_settings(settings_path)
    assert [p.line for p in problems] == [2]
    save_settings(settings, settings_path)
    assert settings_path.read_text(encoding="utf-8") == "# note\ndevice: auto\nseed: 3\n"
    assert load_settings(settings_path) == (settings, [])


def test_a_one_line_flow_style_file_is_saved_whole_and_loads_again(settings_path):
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_text("{personality: merry-bard, seed: 3}\n", encoding="utf-8")
    before, problems = load_settings(settings_path)
    assert problems == [] and before.seed == 3
    for change in ({"personality": DEFAULT_PERSONALITY}, {"seed": 5}, {"autosave": False}):
        changed = before.with_changes(**change)
        save_settings(changed, settings_path)  # no endless loop, nothing lost, valid YAML
        assert load_settings(settings_path) == (changed, [])


# --- key bindings are checked (issue 11) -------------------------------------------------------
@pytest.mark.parametrize("key, words", [
    ("e", "types a character"), ("E", "types a character"), ("shift+e", "types a character"),
    ("space", "types a character"), ("full_stop", "types a character"),
    ("slash", "types a character"), ("shift+slash", "types a character"), ("minus", "types a character"),
    ("less_than_sign", "types a character"),
    ("ctrl+\x1b]0;pwned\x07", "not a key name"), ("q\x1b[31m", "not a key name"), ("a b", "not a key name"),
])
def test_a_key_that_types_or_holds_escape_codes_is_refused_with_its_line(settings_path, key, words):
    write(settings_path, f'keys:\n  undo: ctrl+u\n  quit: "{key.encode("unicode_escape").decode()}"\n')
    settings, problems = load_settings(settings_path)
    assert dict(settings.keys) == {"undo": "ctrl+u"}  # the bad binding falls back to the game's key
    [problem] = problems
    assert (problem.line, problem.col) == (3, 9) and words in problem.message
    assert "this binding is ignored" in problem.message
    assert "\x1b" not in problem.format() and "\x07" not in problem.format()
    with pytest.raises(ValueError, match=words):
        Settings(keys={"quit": key})


def test_keys_with_a_modifier_function_keys_and_typing_free_actions_are_accepted():
    keys = {"quit": "ctrl+e", "undo": "f5", "retry": "alt+r,f6", "cancel": "escape", "rescan": "r"}
    assert dict(Settings(keys=keys).keys) == keys
