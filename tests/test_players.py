"""Players of a served game (game.players): names, folders, locks and the guest rules,
without a browser. Hostile names and save names never lead outside the player's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from game import locations
from game.diagnostics import GameFileError
from game.engine import Engine
from game.players import (NAME_MAX, TASTE_KEYS, Guest, PlayerBusy, check_name, folder_name,
                          guest_settings, inside, open_player, player_folder)
from game.world.loader import load_quest
from game.session import Session, autosave_dir, saved_games
from game.settings import Settings
from tests.conftest import QUESTS, ROOT
from tests.helpers import MINI, write

QUEST = QUESTS / "call-of-the-storyteller.yaml"

HOSTILE_NAMES = ["../../etc", "..", ".", "/etc/passwd", "a/b", "a\\b", "~root", "a\x00b", "\x1b[31mred",
                 "C:\\Windows", "bob/../../alice", " ", "", "x" * (NAME_MAX + 1), "a" * 10_000,
                 "con", "NUL", "lpt1", "-rf", "_x", "a\u202eb", "a\u200bb"]


@pytest.fixture(autouse=True)
def no_player():
    """Each test starts (and ends) with no player folder in use: the folders are the usual ones."""
    locations.use_player_folder(None)
    yield
    locations.use_player_folder(None)


@pytest.mark.parametrize("raw", HOSTILE_NAMES)
def test_hostile_names_are_refused_with_a_reason(raw):
    with pytest.raises(ValueError) as exc:
        check_name(raw)
    assert str(exc.value).strip()  # says what is wrong


@pytest.mark.parametrize("raw,name,folder", [("Robin", "Robin", "robin"), ("  Ann   Lee ", "Ann Lee", "ann-lee"),
                                             ("Ольга", "Ольга", "ольга"), ("p_2-x", "p_2-x", "p_2-x"),
                                             ("Ｒｏｂｉｎ", "Robin", "robin")])
def test_good_names_are_tidied_and_give_one_folder(raw, name, folder, tmp_path):
    assert check_name(raw) == name
    assert folder_name(name) == folder
    assert player_folder(raw, tmp_path) == tmp_path / folder


def test_a_name_is_at_most_name_max_characters():
    assert check_name("x" * NAME_MAX) == "x" * NAME_MAX
    with pytest.raises(ValueError, match=str(NAME_MAX)):
        check_name("x" * (NAME_MAX + 1))


def test_a_player_folder_that_is_a_symlink_out_is_refused(tmp_path):
    root, outside = tmp_path / "players", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "mallory").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        open_player("Mallory", root)
    assert locations.player_folder() is None


def test_inside_resolves_dots_and_links(tmp_path):
    (tmp_path / "a").mkdir()
    assert inside(tmp_path / "a" / "x.json", tmp_path / "a")
    assert not inside(tmp_path / "a" / ".." / "b.json", tmp_path / "a")
    (tmp_path / "a" / "link").symlink_to(tmp_path)
    assert not inside(tmp_path / "a" / "link" / "b.json", tmp_path / "a")


def test_opening_a_player_moves_saves_settings_and_transcripts_into_their_folder():
    host_saves, host_settings = locations.saves_dir(), locations.settings_file()
    player = open_player("Robin")
    try:
        folder = locations.players_dir() / "robin"
        assert player.folder == folder and folder.is_dir()
        assert locations.saves_dir() == folder / "saves" != host_saves
        assert locations.settings_file() == folder / "settings.yaml" != host_settings
        assert locations.transcripts_dir() == folder / "transcripts"
        # the quests and personalities stay the host's
        assert not inside(locations.user_quests_dir(), folder)
        assert not inside(locations.user_personalities_dir(), folder)
    finally:
        player.release()


def test_a_session_saves_autosaves_and_exports_only_inside_the_players_folder():
    player = open_player("Robin")
    try:
        session = Session(load_quest(QUEST), seed=1)
        session.engine.act("1")
        written = [session.autosave(), session.save("../../../escape"), session.save("/etc/passwd"),
                   session.save("..\\..\\x"), session.save("a" * 5000), session.export_markdown()]
        for path in written:
            assert inside(path, player.folder), path
        assert all(inside(p, player.folder) for p in saved_games())
    finally:
        player.release()
    host = locations.data_dir()
    stray = [p for p in host.rglob("*") if p.is_file() and not inside(p, locations.players_dir())]
    assert stray == []


def test_one_player_never_sees_anothers_saves():
    alice = open_player("Alice")
    try:
        session = Session(load_quest(QUEST), seed=1)
        session.engine.act("1")
        session.autosave()
        session.save("alice-secret")
    finally:
        alice.release()
    bob = open_player("Bob")
    try:
        assert saved_games() == []
        assert not autosave_dir().exists()
        guest = Guest.for_host()
        alices = locations.players_dir() / "alice" / "saves" / "alice-secret.json"
        assert alices.is_file()
        assert not guest.allows_save(alices)  # Bob's game refuses to load it, even by path
        assert not guest.allows_save(locations.saves_dir() / ".." / ".." / "alice" / "saves" / "alice-secret.json")
        assert guest.allows_save(locations.saves_dir() / "mine.json")
    finally:
        bob.release()


def test_no_saves_are_allowed_before_a_player_is_named():
    assert not Guest.for_host().allows_save(locations.saves_dir() / "x.json")


def test_a_second_tab_with_the_same_name_is_told_it_is_playing(tmp_path):
    """The lock is per process: another process holding it makes this one wait its turn."""
    root = tmp_path / "players"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from game.players import open_player;"
         f"p = open_player('Robin', Path({str(root)!r})); print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PlayerBusy, match="robin is already playing in another tab"):
            open_player("robin", root)
        assert locations.player_folder() is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    open_player("Robin", root).release()  # free again once that game has gone


def test_guest_quests_are_the_bundled_and_the_hosts_only(tmp_path):
    guest = Guest.for_host()
    mine = write(locations.user_quests_dir() / "mini.yaml", MINI)
    assert guest.allows_quest(QUEST)
    assert guest.allows_quest(mine)
    assert not guest.allows_quest(write(tmp_path / "elsewhere" / "mini.yaml", MINI))
    assert not guest.allows_quest(QUESTS / ".." / "README.md")
    assert not guest.allows_quest("")


def test_a_save_naming_a_quest_outside_the_hosts_folders_is_not_loaded(tmp_path):
    elsewhere = write(tmp_path / "elsewhere" / "mini.yaml", MINI)
    player = open_player("Robin")
    try:
        path = Session(load_quest(elsewhere)).save("odd")
        before = path.read_bytes()
        with pytest.raises(GameFileError, match="not among the bundled"):
            Session.load(path)  # its quest is looked up by id among the host's; the path is never opened
        assert path.read_bytes() == before
        good = Session(load_quest(QUEST)).save("good")
        assert Session.load(good).quest.id == "call-of-the-storyteller"
    finally:
        player.release()


def test_guest_settings_take_only_the_narrators_taste_from_the_player():
    host = Settings(model="/host/models/mine", device="cpu", keys={"quit": "ctrl+x"}, autosave=True,
                    server={"url": "http://127.0.0.1:9/v1"})
    player = Settings(model="/etc/passwd", device="cuda", dtype="float16", keys={"quit": "ctrl+w"}, language="ru",
                      personality="merry-bard", persona="A bard.", sampling={"temperature": 1.1},
                      seed=5, autosave=False)
    merged = guest_settings(host, player)
    assert (merged.model, merged.device, merged.dtype, dict(merged.keys), dict(merged.server)) == \
        ("/host/models/mine", "cpu", "auto", {"quit": "ctrl+x"}, dict(host.server))
    for key in TASTE_KEYS:
        assert getattr(merged, key) == getattr(player, key)


def test_a_hostile_save_name_stays_a_slot_in_the_folder():
    player = open_player("Robin")
    try:
        engine = Engine(load_quest(QUEST), seed=1)
        session = Session(engine.quest, engine)
        for name in ["../x", "..", "/", "\x00", "a/../../b", "~", "CON", "\u202e" * 300]:
            path = session.save(name)
            assert path.parent == locations.saves_dir(), (name, path)
            assert json.loads(path.read_text(encoding="utf-8"))["format"] == "storyteller-save"
    finally:
        player.release()
