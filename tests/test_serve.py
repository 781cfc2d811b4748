"""`storyteller serve`: the guest game in the TUI (Pilot), and a real server on 127.0.0.1
driven through textual-serve's websocket the way the browser page drives it: one game
per tab, the player's name, the table limit, and hostile players (path traversal, huge
input, rapid reconnects) who never leave their folder nor stop the others' games."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from game import locations
from game.cli import main
from game.players import ACTION_MAX, Guest, inside
from game.saves import read_save
from game.serve import (FOOTPRINT, MB, PASTE_END, PASTE_START, STDIN_MAX, bounded_input, default_max_players,
                         full_page, game_command, is_loopback)
from game.settings import Settings, load_settings
from game.tui.screens.settings import SettingsScreen
from game.tui.screens.title import TitleScreen
from game.tui.widgets.action_input import ActionInput
from tests.serving import Terminal, get, serving
from tests.test_tui import (act, build, choose, flat_screen, game, kinds, menu_labels, opens, personalities, playing,
                            running)  # noqa: F401 (personalities is a fixture)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="serve's tests use /proc and fcntl")


@pytest.fixture(autouse=True)
def no_player():
    locations.use_player_folder(None)
    yield
    locations.use_player_folder(None)


# -- the host's side, in plain Python ------------------------------------------------------
@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                       ("127.8.0.1", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                       ("::", False), ("example.org", False)])
def test_only_loopback_addresses_are_private(host, loop):
    assert is_loopback(host) is loop


def test_serving_beyond_this_computer_needs_public(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--no-spirit"]) == 2
    err = capsys.readouterr().err
    assert "--public" in err and "no login" in err and "docs/serving.md" in err


def test_max_players_must_be_positive(capsys):
    assert main(["serve", "--max-players", "0"]) == 2
    assert "--max-players" in capsys.readouterr().err


def test_default_table_size_follows_free_memory_and_the_narrators_footprint():
    gib = 1024 * MB
    assert default_max_players("local", 8 * gib) == int(8 * gib * 0.75) // FOOTPRINT["local"]
    assert default_max_players("server", 8 * gib) > default_max_players("local", 8 * gib)
    assert default_max_players("local", 100 * MB) == 1  # never zero
    assert default_max_players("silent", 10_000 * gib) == 64
    assert default_max_players("local", None) == 4


def test_memory_figures_come_from_proc_and_are_none_where_they_cannot_be_read():
    from game import procfs

    assert procfs.available_memory() > 0
    now, peak = procfs.process_memory(), procfs.process_memory("self", "VmHWM")
    assert 0 < now <= peak
    assert procfs.process_memory(2 ** 30) is None  # no such process
    assert procfs.process_memory("self", "NoSuchField") is None


def test_each_game_is_a_guest_with_the_hosts_narrator_options():
    command = game_command({"model": "/models/my gpt2", "device": "cpu", "personality": None},
                           no_spirit=False, seed=3)
    assert " play --guest " in command
    assert "--model '/models/my gpt2'" in command and "--device cpu" in command and "--seed 3" in command
    assert "--personality" not in command


def test_the_full_page_escapes_nothing_in():
    page = full_page(3)
    assert "3" in page and "<h1 id='full'>" in page


@pytest.mark.parametrize("flag", [["--load", "x.json"], ["--continue"], ["--watch"], ["--plain"],
                                  ["--context-log", "/tmp/x"], ["call-of-the-storyteller"]])
def test_a_guest_game_takes_no_paths_nor_watching(flag, capsys):
    argv = ["play", "--guest", "--no-spirit"] + flag
    if flag[0] == "call-of-the-storyteller":
        argv = ["play", flag[0], "--guest", "--no-spirit"]
    assert main(argv) == 2
    assert "served game" in capsys.readouterr().err


# -- the guest game in the TUI -------------------------------------------------------------
def guest_app(personalities, settings=None):
    app = build(personalities, quest=None, settings=settings)
    app.guest = Guest.for_host()
    app.host_settings = app.settings
    return app


async def name_player(pilot, name: str) -> None:
    box = pilot.app.screen.query_one("#player-name")
    box.value = name
    box.focus()
    await pilot.press("enter")
    await pilot.pause()


async def test_a_served_game_asks_the_players_name_before_anything_else(personalities):
    app = guest_app(personalities)
    async with running(app, TitleScreen) as pilot:
        assert "Your name" in flat_screen(app)
        assert "Rescan" not in flat_screen(app) and "Load" not in flat_screen(app)  # nothing of theirs yet
        assert not app.screen.query_one("#quests").display
        for key in ("ctrl+o", "f3"):  # no saves nor settings to show before the name
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, TitleScreen)
        await name_player(pilot, "../../etc")
        assert "A name may hold" in flat_screen(app)
        assert locations.player_folder() is None
        await name_player(pilot, "Robin")
        assert "Playing as Robin" in flat_screen(app)
        assert "Rescan" in flat_screen(app) and "Load" in flat_screen(app)
        assert app.player.folder == locations.players_dir() / "robin"
        assert any(label.startswith("Quest 1.6") for label in menu_labels(app))


async def test_a_served_player_plays_saves_and_exports_into_their_folder(personalities):
    app = guest_app(personalities)
    async with running(app, TitleScreen) as pilot:
        await name_player(pilot, "Robin")
        await choose(pilot, "Quest 1.6")
        await playing(pilot)
        await act(pilot, "1")
        await act(pilot, "look")
        game(app).slash("/save ../../../../tmp/evil")
        game(app).action_export()
        await pilot.pause()
        folder = locations.players_dir() / "robin"
        autosave = read_save(folder / "saves" / "autosave" / "call-of-the-storyteller.json")
        assert [t.action for t in autosave.history][:1] and len(autosave.history) >= 1
        assert (folder / "saves" / "tmp-evil.json").is_file()
        assert list((folder / "transcripts").glob("*.md"))
        notes = " ".join(n.message for n in app.notes)
        assert "Saved to saves/tmp-evil.json" in notes and str(folder) not in notes
        host_files = [p for p in locations.data_dir().rglob("*") if p.is_file()]
        assert host_files and all(inside(p, folder) for p in host_files)


async def test_a_served_players_action_is_bounded(personalities):
    app = guest_app(personalities)
    async with running(app, TitleScreen) as pilot:
        await name_player(pilot, "Robin")
        await choose(pilot, "Quest 1.6")
        await playing(pilot)
        box = game(app).query_one(ActionInput)
        box.focus()
        box.insert_text_at_cursor("x" * (ACTION_MAX * 20))  # a huge paste is refused whole
        assert box.value == ""
        box.insert_text_at_cursor("x" * ACTION_MAX)
        await pilot.press("y")  # typing stops at the limit
        assert box.value == "x" * ACTION_MAX
        await pilot.press("enter")
        await pilot.pause()
        assert len(kinds(app, "action")[-1]) == ACTION_MAX


async def test_served_settings_are_the_narrators_taste_in_the_players_file(personalities):
    host = Settings(model="host-model", device="cpu")
    app = guest_app(personalities, settings=host)
    async with running(app, TitleScreen) as pilot:
        await name_player(pilot, "Robin")
        screen = await opens(pilot, "f3", SettingsScreen)
        assert not screen.query("#model") and not screen.query("#device")
        screen.query_one("#s-temperature").value = "1.3"
        screen.action_apply()
        await pilot.pause()
        assert app.settings.sampling["temperature"] == 1.3 and app.settings.model == "host-model"
    mine = locations.players_dir() / "robin" / "settings.yaml"
    assert mine.is_file()
    assert not locations.config_dir().joinpath("settings.yaml").exists()  # the host's is untouched
    locations.use_player_folder(None)
    again = guest_app(personalities, settings=host)
    async with running(again, TitleScreen) as pilot:  # the player comes back: their taste, the host's model
        await name_player(pilot, "Robin")
        assert again.settings.sampling["temperature"] == 1.3 and again.settings.model == "host-model"
    assert load_settings(mine)[0].sampling["temperature"] == 1.3


# -- a real server, driven as the browser page drives it -------------------------------------
async def ready(terminal: Terminal) -> None:
    """Let a new tab's game show its name box and settle (keys sent while it mounts are lost,
    as they would be in a browser)."""
    await terminal.wait_for("Your name")
    await terminal.read(1.5)


async def play_as(terminal: Terminal, name: str) -> None:
    """Type a player's name in the name box and wait until the game has taken it."""
    await terminal.type(name + "\r")
    await terminal.wait_for(f"Playing as {name}")


async def test_each_tab_is_its_own_game_and_the_table_has_a_limit():
    import aiohttp

    with serving("--no-spirit", "--max-players", "2") as served:
        assert "http://127.0.0.1:" in served.url
        async with aiohttp.ClientSession() as session:
            async with Terminal(session, served.url) as robin, Terminal(session, served.url) as ann:
                await ready(robin)
                await ready(ann)
                assert len(served.games()) == 2  # one process per tab
                status, page = get(served.url)
                assert status == 503 and "The game is full" in page and "All 2 places" in page
                async with Terminal(session, served.url) as third:
                    await third.wait_for("The game is full")
                await play_as(robin, "Robin")
                await play_as(ann, "Ann")
            deadline = time.monotonic() + 30  # the tabs closed: their games end, the table frees up
            while served.games() or get(served.url)[0] != 200:
                assert time.monotonic() < deadline, "closed games kept their places"
                await asyncio.sleep(0.2)
    assert (locations.players_dir() / "robin").is_dir() and (locations.players_dir() / "ann").is_dir()


async def test_hostile_players_stay_in_their_folder_and_the_host_keeps_serving():
    import aiohttp

    with serving("--no-spirit", "--max-players", "3") as served:
        async with aiohttp.ClientSession() as session:
            async with Terminal(session, served.url) as alice:
                await ready(alice)
                await play_as(alice, "Alice")
                async with Terminal(session, served.url) as eve:
                    await ready(eve)
                    mark = eve.mark()
                    await eve.type("../alice\r")
                    await eve.wait_for("A name may hold", since=mark)
                    await eve.type("\x7f" * 10)
                    mark = eve.mark()
                    await eve.paste(PASTE_START + "A" * 200_000 + PASTE_END)  # a huge paste is refused
                    await eve.type("Alice\r")  # Alice is playing: not twice
                    await eve.wait_for("already playing", since=mark)
                    await eve.type("\x7f" * 10)
                    await play_as(eve, "Eve")
                    await eve.paste("B" * 200_000)  # a flood of keys: only Eve's own game is busy
                    mark = alice.mark()
                    await alice.type("\r")  # Alice plays on: her quest starts
                    await alice.wait_for("Call of the Storyteller", since=mark)
                # rapid reconnects: tabs opened and closed at once, many times
                for _ in range(15):
                    async with Terminal(session, served.url):
                        pass
                mark = alice.mark()
                await alice.type("look\r")
                await alice.wait_for("look", since=mark)
            deadline = time.monotonic() + 60
            while served.games():
                assert time.monotonic() < deadline, "games outlived their tabs"
                await asyncio.sleep(0.2)
            assert get(served.url)[0] == 200
    players = locations.players_dir()
    assert sorted(p.name for p in players.iterdir()) == ["alice", "eve"]
    stray = [p for p in locations.data_dir().rglob("*") if not inside(p, players) and p != players]
    assert stray == []
    assert [p.name for p in (players / "eve").iterdir() if p.name != ".playing"] == []
    saves = read_save(players / "alice" / "saves" / "autosave" / "call-of-the-storyteller.json")
    assert [t.action for t in saves.history] == ["look"]


async def test_an_exported_story_is_kept_in_the_players_folder_and_sent_to_the_browser():
    import aiohttp

    with serving("--no-spirit", "--max-players", "1") as served:
        async with aiohttp.ClientSession() as session:
            async with Terminal(session, served.url) as robin:
                await ready(robin)
                await play_as(robin, "Robin")
                await robin.type("\r")
                await robin.wait_for("Gate of Dead Links")
                await robin.read(1)
                await robin.type("1\r")
                await robin.type("/export\r")
                await robin.read(1)
                await robin.type("/export\r")  # (a second time: the first may come while the turn is drawn)
                await robin.wait_for("Transcript written")
                deadline = time.monotonic() + 30
                while not any(m[0] == "deliver_file_start" for m in robin.messages):
                    assert time.monotonic() < deadline, f"no download was offered: {robin.messages}"
                    await robin.read(0.2)
                key = next(m[1] for m in robin.messages if m[0] == "deliver_file_start")
                async with session.get(f"{served.url}download/{key}") as reply:
                    body = await reply.text()
                    assert reply.status == 200 and "attachment" in reply.headers["Content-Disposition"]
    exported = list((locations.players_dir() / "robin" / "transcripts").glob("*.md"))
    assert len(exported) == 1 and body == exported[0].read_text(encoding="utf-8")  # one per turn: overwritten
    assert "You lift the lantern" in body


def test_a_browser_message_is_bounded():
    assert bounded_input("x" * 10) == "x" * 10
    assert len(bounded_input("x" * (STDIN_MAX * 3))) == STDIN_MAX
    cut = bounded_input(PASTE_START + "x" * (STDIN_MAX * 3) + PASTE_END)
    assert len(cut) == STDIN_MAX and cut.startswith(PASTE_START) and cut.endswith(PASTE_END)


def test_a_port_out_of_range_or_taken_is_one_line_not_a_traceback(capsys):
    import socket

    with pytest.raises(SystemExit) as out:
        main(["serve", "--port", "99999", "--no-spirit"])
    assert out.value.code == 2 and "99999 is not a port" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--no-spirit"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.parametrize("header, shown", [
    ("games.example.org", "games.example.org"), ("[::1]:8000", "[::1]:8000"),
    ('x"><script>alert(1)</script>', "127.0.0.1:8000"),
])
def test_a_forwarded_host_reaches_the_page_only_when_it_is_a_host_name(header, shown):
    from types import SimpleNamespace

    from game.serve import make_server

    server = make_server("true", "127.0.0.1", 8000, 1)
    request = SimpleNamespace(headers={"X-Forwarded-Host": header}, scheme="http", host="127.0.0.1:8000")
    assert server._base_url(request) == f"http://{shown}"
