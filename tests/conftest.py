"""Shared fixtures: the real GPT-2 tokenizer, a tiny real GPT-2 model folder, and private
user folders (plain helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTS = ROOT / "quests"


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory) -> Path:
    from game.narrator.model_builder import write_tokenizer

    return write_tokenizer(tmp_path_factory.mktemp("gpt2-tokenizer"))


@pytest.fixture(scope="session")
def gpt2_tokenizer(gpt2_tokenizer_dir):
    """The real GPT-2 tokenizer (exact vocabulary and merges of distilgpt2)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 (random weights, real vocabulary, 1024-token window) on disk."""
    from game.narrator.model_builder import build_gpt2

    return build_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), shape="tiny")


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path_factory, monkeypatch):
    """Every test gets its own config and data folders: the real home is never touched."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("STORYTELLER_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("STORYTELLER_DATA_DIR", str(home / "data"))
    return home


@pytest.fixture
def user_dirs(tmp_path, monkeypatch) -> Path:
    """Every user folder (`locations.ENV`, bar the project's own), HOME and the XDG folders
    pointed into tmp_path, which is returned: the test knows each folder the game uses."""
    from game import locations

    for name, var in locations.ENV.items():
        if name not in ("assets", "bundled_quests"):
            monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path


@pytest.fixture(autouse=True)
def english_interface():
    """Each test starts with the game's own words in English (a Russian quest switches them)."""
    from game.i18n import set_language

    set_language("en")
    yield
    set_language("en")
