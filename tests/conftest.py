"""Shared fixtures: the real GPT-2 tokenizer and a tiny real GPT-2 model folder."""

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
