"""The `server:` settings section, the --server options and docs/narrators.md's settings lines
(no server needed: these run everywhere)."""

from __future__ import annotations

import re

import pytest

from game.cli import build_parser
from game.narrator.remote import ServerConfig, ServerNarrator
from game.settings import Settings, load_settings, save_settings
from tests.conftest import ROOT
from tests.helpers import at, write

pytestmark = pytest.mark.usefixtures("user_dirs")


@pytest.fixture
def settings_path(user_dirs):
    return user_dirs / "config" / "settings.yaml"


def test_the_server_section_round_trips_and_builds_the_config(settings_path):
    settings = Settings(server={"url": "http://127.0.0.1:8080/v1/", "api_style": "chat", "window": 4096})
    save_settings(settings)
    loaded, problems = load_settings()
    assert problems == [] and loaded == settings
    config = loaded.server_config()
    assert config == ServerConfig("http://127.0.0.1:8080/v1", api_style="chat", window=4096)
    assert config.root == "http://127.0.0.1:8080"
    assert loaded.server_config(model="m").model == "m"  # --server-model wins
    assert loaded.server_config(url="http://other:1/v1").url == "http://other:1/v1"  # --server wins
    assert Settings().server_config() is None  # no url: the local Spirit
    text = settings_path.read_text(encoding="utf-8")
    assert "api_key_env: STORYTELLER_API_KEY   # the NAME of the environment variable" in text


@pytest.mark.parametrize("section, message", [
    ("server:\n  url: ftp://box/v1\n", "server: the server address 'ftp://box/v1' is not an http:// or https:// address"),
    ("server:\n  api_key: sk-123\n", "server: 'api_key' cannot be a setting: the key must not be written in a file"),
    ("server:\n  url: http://a/v1\n  api_style: chatty\n", "server: api_style is 'chatty'; choose one of"),
    ("server:\n  url: http://a/v1\n  window: 8\n", "server: window is 8; it must be null"),
    ("server:\n  url: http://a/v1\n  timeout: 0\n", "server: timeout is 0; it must be a number of seconds"),
    ("server:\n  urll: http://a/v1\n", "unknown key 'urll' in server (did you mean 'url'?)"),
    ("server:\n  api_key_env: sk-live-123\n", "server: api_key_env is 'sk-live-123'; it must be the NAME"),
])
def test_a_bad_server_section_is_reported_at_its_line_and_ignored(settings_path, section, message):
    write(settings_path, "seed: 3\n" + section)
    settings, problems = load_settings()
    bad_key = section.splitlines()[-1].split(":")[0].strip()
    assert bad_key not in settings.server and settings.seed == 3  # the rest of the file still counts
    [problem] = problems
    assert message in problem.message and problem.message.endswith("; this server setting is ignored")
    bad_line = section.splitlines()[-1].strip()
    assert (problem.line, problem.col) in (at(settings_path, bad_line), at(settings_path, bad_line.split(": ")[1]))


def test_the_api_key_is_never_a_setting_even_through_with_changes():
    with pytest.raises(ValueError, match="must not be written in a file"):
        Settings().with_changes(server={"url": "http://a/v1", "api_key": "sk-1"})


def test_server_options_on_play_narrate_and_bench():
    parser = build_parser()
    for argv in (["play", "q", "--server", "http://h:1/v1", "--server-model", "m"],
                 ["narrate", "hello", "--server", "http://h:1/v1", "--server-model", "m"],
                 ["bench", "--server", "http://h:1/v1", "--server-model", "m"]):
        args = parser.parse_args(argv)
        assert (args.server, args.server_model) == ("http://h:1/v1", "m")


def settings_blocks():
    text = (ROOT / "docs" / "narrators.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_guide_has_a_settings_block_for_each_server():
    assert len(settings_blocks()) >= 8


@pytest.mark.parametrize("block", settings_blocks())
def test_every_settings_block_in_the_guide_loads_without_problems(block, settings_path):
    write(settings_path, block)
    settings, problems = load_settings()
    assert problems == []
    config = settings.server_config()
    assert config is not None and config.url.endswith("/v1")
    ServerNarrator(config)  # a narrator can be made from it (nothing is contacted)


def test_a_server_narrator_before_connecting_says_where_it_would_go():
    narrator = ServerNarrator(ServerConfig("http://127.0.0.1:9/v1"))
    assert narrator.status == "idle" and narrator.window is None and narrator.tokenizer is None
    assert narrator.describe() == "server http://127.0.0.1:9/v1: idle"
    assert narrator.can_retry and narrator.warm("anything") is None
