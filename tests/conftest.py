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


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny GPT-2, writing whole characters only (see `whole_characters_only`), as an f16
    GGUF with a chat template (for llama.cpp and its server).

    f16, not q8_0: a natively built llama-cpp-python 0.3.36 has crashed on a GPT-2 q8_0
    file through its AMX buffer type on Intel CPUs with AMX."""
    from game.narrator.gguf_export import export_gguf
    from tests.llama_server import CHAT_TEMPLATE, whole_characters_only

    folder = tmp_path_factory.mktemp("gguf")
    model = whole_characters_only(tiny_model_dir, folder / "tiny-whole-characters")
    return export_gguf(model, folder / "tiny-f16.gguf", "f16", chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def llama_server(tiny_gguf):
    """A REAL llama.cpp server (llama-cpp-python's) serving the tiny GPT-2 on 127.0.0.1:
    `.url` is its OpenAI base URL (…/v1). Shared by the whole session; stopped at the end."""
    from tests.llama_server import LlamaServer, llama_cpp_missing

    if (why := llama_cpp_missing()) is not None:
        pytest.skip(why)
    server = LlamaServer(tiny_gguf).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def english_interface():
    """Each test starts with the game's own words in English (a Russian quest switches them)."""
    from game.i18n import set_language

    set_language("en")
    yield
    set_language("en")
