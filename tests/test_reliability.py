"""Nothing crashes and nothing is lost: saves under crashes and full disks, broken settings,
a model that fails, untrusted text, and a thousand-turn session.

The model tests run the real tiny GPT-2 (`tiny_model_dir`) through the real
`NarratorService`; failures are made by replacing the model's forward pass (the
fast path's `backend.forward`) with one that raises, hangs, crawls or writes
escape sequences. Processes that must really die (SIGKILL, `os._exit`) or that
need a memory limit run as children.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import game.atomic
from game.cli import main
from game.engine import HISTORY_LIMIT, Engine
from game.narration import TurnNarrator
from game.narrator.service import NarratorService
from game.plain import PlainGame, PlainSpirit
from game.world.loader import load_quest
from game.sampling import Sampling
from game.saves import SAVE_VERSION, backup_path, read_save, save_game
from game.session import AUTOSAVE_COPIES, Session, autosave_dir, autosaves, latest_autosave
from tests.conftest import QUESTS

ROOT = Path(__file__).resolve().parent.parent
QUEST = QUESTS / "call-of-the-storyteller.yaml"
PERSONA = "The Storyteller Spirit tells what happens next."
FEW = Sampling(max_new_tokens=8)


def env_for(tmp_path: Path, **extra) -> dict:
    """A child's environment: its own config and data folders, no network."""
    return {**os.environ, "STORYTELLER_CONFIG_DIR": str(tmp_path / "cfg"),
            "STORYTELLER_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **extra}


def plain(game, lines: str, narrate=None, autosave: bool = True) -> tuple[int, str]:
    out = io.StringIO()
    code = PlainGame(game, out=out, inp=io.StringIO(lines), narrate=narrate, autosave=autosave).run()
    return code, out.getvalue()


def autosave_file(quest_id: str = "call-of-the-storyteller") -> Path:
    return autosave_dir() / f"{quest_id}.json"


# == saves =====================================================================================
CHILD_SAVE = """
import os, sys
from game.engine import Engine
from game.world.loader import load_quest
from game.saves import save_game
engine = Engine(load_quest(sys.argv[1]), seed=1)
path = sys.argv[2]
save_game(path, engine)  # turn 0: the good save
engine.act("take the lantern")
engine.act("go north")
os.replace = lambda src, dst: os._exit(1)  # the process dies between writing and renaming
save_game(path, engine)
"""


def test_a_process_that_dies_between_write_and_rename_leaves_the_previous_save(tmp_path):
    path = tmp_path / "saves" / "slot.json"
    proc = subprocess.run([sys.executable, "-c", CHILD_SAVE, str(QUEST), str(path)], cwd=ROOT,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    save = read_save(path)
    assert save.state.turn == 0 and save.state.inventory == []
    assert [p.name for p in path.parent.glob("*.json")] == ["slot.json"]  # the half-save is a hidden temp file
    Session.load(path).engine.act("look")  # and the game plays on from it


CHILD_AUTOSAVE = """
import sys
from game.world.loader import load_quest
from game.session import Session
session = Session(load_quest(sys.argv[1]), seed=1)
moves = ["take the lantern", "go north", "listen to the fans", "south", "look", "dance"]
turn = 0
while True:
    session.engine.act(moves[turn % len(moves)])
    turn += 1
    session.autosave()
    print(session.engine.state.turn, flush=True)
"""


def test_sigkill_at_random_moments_of_autosaving_never_leaves_a_broken_save(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYTELLER_DATA_DIR", str(tmp_path / "data"))
    rng = random.Random(2024)
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", CHILD_AUTOSAVE, str(QUEST)], cwd=ROOT,
                                 env=env_for(tmp_path), stdout=subprocess.PIPE, text=True)
        try:
            wanted, last = rng.randint(2, 25), 0
            while last < wanted:
                last = int(child.stdout.readline())
            time.sleep(rng.uniform(0, 0.02))  # somewhere inside the next save or rotation
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            child.kill()
            child.stdout.close()
        current = read_save(autosave_file())
        assert current.state.turn >= last  # no save the player was told about is lost
        for n in range(1, AUTOSAVE_COPIES + 1):
            copy = backup_path(autosave_file(), n)
            if copy.exists():
                assert read_save(copy).state.turn <= current.state.turn  # killed after rotating: equal
        assert autosaves() == [autosave_file()]  # leftover temp files are never taken for saves
        Session.load(autosave_file()).engine.act("look")


def test_full_disk_during_autosave_is_said_and_play_goes_on(tmp_path, monkeypatch):
    quest = load_quest(QUEST)
    code, _ = plain(Engine(quest, seed=1), "take the lantern\n")
    assert code == 0 and read_save(autosave_file()).state.turn == 1
    real_fsync = game.atomic.os.fsync

    def full(fd):
        real_fsync(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(game.atomic.os, "fsync", full)
    session = Session.load(autosave_file())
    code, out = plain(session, "go north\nlisten to the fans\n")
    assert code == 0
    assert out.count("(Autosave failed: No space left on device. The previous autosave is intact.)") == 2
    assert session.engine.state.turn == 3  # the game went on
    assert read_save(autosave_file()).state.turn == 1  # the last good autosave is intact
    monkeypatch.setattr(game.atomic.os, "fsync", real_fsync)
    files = sorted(p for p in autosave_dir().iterdir() if not p.name.endswith(".lock"))  # (locks: empty)
    assert files and all(read_save(p).state.turn == 1 for p in files)  # no half-written file anywhere


def test_a_saves_folder_that_cannot_be_made_is_said_and_play_goes_on(tmp_path, monkeypatch):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")  # mkdir fails here, even for root
    monkeypatch.setenv("STORYTELLER_DATA_DIR", str(blocker))
    code, out = plain(Engine(load_quest(QUEST), seed=1), "take the lantern\ngo north\n")
    assert code == 0 and "== The Overgrown Server Hall ==" in out
    assert out.count("(Autosave failed: ") == 2 and "The previous autosave is intact.)" in out
    assert "Traceback" not in out


def test_autosave_keeps_the_three_turns_before_each_loadable(tmp_path):
    session = Session(load_quest(QUEST), seed=1)
    moves = ["take the lantern", "go north", "listen to the fans", "south", "look", "read the glyphs", "dance"]
    for move in moves:
        session.engine.act(move)
        session.autosave()
    path = autosave_file()
    assert read_save(path).state.turn == len(moves)
    for n in range(1, AUTOSAVE_COPIES + 1):
        copy = Session.load(backup_path(path, n))
        assert copy.engine.state.turn == len(moves) - n
        assert copy.engine.history[-1].action == moves[len(moves) - n - 1]
        copy.engine.act("look")
    assert not backup_path(path, AUTOSAVE_COPIES + 1).exists()
    assert latest_autosave() == path


def test_quests_whose_ids_look_like_numbered_copies_keep_their_own_autosaves(tmp_path):
    text = QUEST.read_text(encoding="utf-8")
    sessions = {}
    for quest_id in ("tale", "tale.1", "tale.2", "2024"):
        path = tmp_path / f"{quest_id}.yaml"
        path.write_text(text.replace("id: call-of-the-storyteller", f"id: {quest_id}"), encoding="utf-8")
        sessions[quest_id] = Session(load_quest(path), seed=1)
    for turn in range(4):  # "tale" makes tale.1, tale.2 and tale.3 copies on the way
        for session in sessions.values():
            session.engine.act("look")
            session.autosave()
    for quest_id, session in sessions.items():
        save = read_save(session.autosave_path())
        assert save.quest_id == quest_id and save.state.turn == 4
    assert sorted(read_save(p).quest_id for p in autosaves()) == sorted(sessions)


@pytest.fixture
def good_save(tmp_path):
    engine = Engine(load_quest(QUEST), seed=1)
    for move in ("take the lantern", "go north"):
        engine.act(move)
    return save_game(tmp_path / "slot.json", engine)


def damage(path: Path, how: str) -> bytes:
    text = path.read_text(encoding="utf-8")
    if how == "truncated":
        text = text[: len(text) // 2]
    elif how == "edited":
        data = json.loads(text)
        data["state"]["turn"] = "many"
        text = json.dumps(data)
    elif how == "newer":
        data = json.loads(text)
        data["version"] = SAVE_VERSION + 1
        text = json.dumps(data)
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


@pytest.mark.parametrize("how, words", [("truncated", "damaged (truncated or edited)"),
                                        ("edited", "wrong type"),
                                        ("newer", f"format {SAVE_VERSION + 1} is newer than this game")])
def test_a_damaged_or_newer_save_is_refused_clearly_and_never_overwritten(good_save, how, words,
                                                                          monkeypatch, capsys):
    before = damage(good_save, how)
    monkeypatch.setattr(sys, "stdin", io.StringIO("look\n"))
    assert main(["play", "--plain", "--no-spirit", "--load", str(good_save)]) == 1
    err = capsys.readouterr().err
    assert f"{good_save}:" in err and words in err and "The save was left as it is." in err
    assert good_save.read_bytes() == before
    # The same file as the autosave: --continue refuses it, and a new game keeps it as a copy.
    autosave_file().parent.mkdir(parents=True)
    autosave_file().write_bytes(before)
    assert main(["play", "--plain", "--no-spirit", "--continue"]) == 1
    assert words in capsys.readouterr().err and autosave_file().read_bytes() == before
    code, _ = plain(Engine(load_quest(QUEST), seed=1), "look\n")
    assert code == 0 and backup_path(autosave_file(), 1).read_bytes() == before


def test_a_save_from_an_earlier_version_of_the_quest_plays_on_with_notes(tmp_path, monkeypatch, capsys):
    original = QUEST.read_text(encoding="utf-8")
    path = tmp_path / "quest.yaml"
    path.write_text(original, encoding="utf-8")
    engine = Engine(load_quest(path), seed=1)
    for move in ("take the lantern", "go north", "south", "read the glyphs", "go north"):
        engine.act(move)
    assert engine.state.inventory == ["lantern"] and engine.state.scene == "server_hall"
    save = save_game(tmp_path / "slot.json", engine)
    # The author edits the quest: the lantern item is gone, a flag is added.
    edited = original.replace("  lantern:\n", "  lamp:\n", 1).replace("give: lantern", "give: lamp") \
        .replace("has: lantern", "has: lamp").replace("lacks: lantern", "lacks: lamp") \
        .replace("take: lantern", "take: lamp")
    edited = edited.replace("flags:\n", "flags:\n  brand_new: 7\n", 1)
    path.write_text(edited, encoding="utf-8")
    load_quest(path)  # the edit is a valid quest
    monkeypatch.setattr(sys, "stdin", io.StringIO("look\nundo\nundo\n"))
    # The edited quest is not among the known quests (its id is a bundled one's): name its file.
    assert main(["play", str(path), "--plain", "--no-spirit", "--load", str(save)]) == 0
    captured = capsys.readouterr()
    assert "note: item 'lantern' no longer exists in the quest and was dropped" in captured.err
    assert "== The Overgrown Server Hall ==" in captured.out and "Traceback" not in captured.err
    session = Session.load(save, load_quest(path))
    assert session.engine.state.inventory == [] and session.engine.state.flags["brand_new"] == 7
    assert session.engine.undo() and session.engine.state.scene == "threshold"


# == settings ==================================================================================
@pytest.mark.parametrize("kind", ["binary", "syntax", "folder", "pipe", "out-of-range"])
def test_a_broken_settings_file_never_stops_plain_play(tmp_path, kind):
    settings = tmp_path / "cfg" / "settings.yaml"
    settings.parent.mkdir(parents=True)
    if kind == "binary":
        settings.write_bytes(random.Random(3).randbytes(3000))
    elif kind == "syntax":
        settings.write_text("seed: 3\nsampling: {temperature: [\n")
    elif kind == "folder":
        settings.mkdir()
    elif kind == "pipe":
        if not hasattr(os, "mkfifo"):
            pytest.skip("named pipes are POSIX")
        os.mkfifo(settings)
    else:
        settings.write_text("seed: -5\nsampling:\n  temperature: 9\n  max_new_tokens: 4096\ndevice: gpu\n")
    proc = subprocess.run([sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--no-spirit"],
                          input="take the lantern\ngo north\n", cwd=ROOT, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "You now have a cursor lantern." in proc.stdout and "== The Overgrown Server Hall ==" in proc.stdout
    assert f"{settings}:" in proc.stderr
    if kind == "out-of-range":
        for words in ("seed is -5; it must be null", "from 0 to 4294967295",
                      "temperature is 9, outside the allowed range 0.05 to 2",
                      "max_new_tokens is 4096, outside the allowed range 8 to 512",
                      "device is 'gpu'", "choose one of: auto, cpu, cuda"):
            assert words in proc.stderr
    if kind in ("binary", "syntax", "folder", "pipe"):
        assert "the default settings are used" in proc.stderr
    assert settings.is_dir() if kind == "folder" else settings.exists()


# == the model =================================================================================
@pytest.fixture(scope="module")
def service(tiny_model_dir) -> NarratorService:
    spirit = NarratorService(str(tiny_model_dir), device="cpu")
    spirit.load()
    assert spirit.status == "ready"
    return spirit


def spirit(service, sampling: Sampling = FEW) -> PlainSpirit:
    return PlainSpirit(TurnNarrator(service, PERSONA, sampling, seed=1), out_err=io.StringIO())


def patch_forward(monkeypatch, service, make):
    """Replace the model's forward pass: make(original) -> the new forward."""
    backend = service.generator.backend
    monkeypatch.setattr(backend, "forward", make(backend.forward))


def broken_model(tmp_path: Path, tiny: Path, how: str) -> str:
    import shutil

    folder = tmp_path / f"model-{how}"
    if how == "missing":
        return str(folder)
    if how == "offline-hub":
        return "no-such-org/no-such-model-xyz"
    shutil.copytree(tiny, folder)
    if how == "corrupt-weights":
        (folder / "model.safetensors").write_bytes(random.Random(1).randbytes(5000))
    elif how == "truncated-weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif how == "no-weights":
        (folder / "model.safetensors").unlink()
    elif how == "garbage-config":
        (folder / "config.json").write_bytes(b"\x00\xff not json")
    return str(folder)


@pytest.mark.parametrize("how", ["offline-hub", "missing", "corrupt-weights", "truncated-weights",
                                 "no-weights", "garbage-config"])
def test_a_model_that_cannot_load_is_one_line_and_the_quest_plays_on(tmp_path, tiny_model_dir, how,
                                                                      monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # no network
    model = broken_model(tmp_path, tiny_model_dir, how)
    broken = NarratorService(model, device="cpu")
    began = time.monotonic()
    broken.start()
    assert broken.wait(60) and time.monotonic() - began < 30
    assert broken.status == "silent" and "\n" not in broken.reason
    assert broken.reason.startswith(f"could not load model '{model}': ")
    code, out = plain(Engine(load_quest(QUEST), seed=1), "take the lantern\ngo north\nlook\n",
                      narrate=spirit(broken))
    assert code == 0
    assert out.count(f"(The Storyteller Spirit is silent: {broken.reason}. The quest's own words go on.)") == 1
    assert "You now have a cursor lantern." in out and "== The Overgrown Server Hall ==" in out
    assert read_save(autosave_file()).state.turn == 3


def test_running_out_of_memory_while_loading_is_said_and_the_quest_plays_on(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "absurd"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["n_positions"] = 2**31  # a position table of 256 GB
    (folder / "config.json").write_text(json.dumps(config))
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30)); "
    code = limit + "from game.cli import main; raise SystemExit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "play", str(QUEST), "--plain", "--model", str(folder)],
                          input="take the lantern\ngo north\n", cwd=ROOT, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    silent = [line for line in proc.stdout.splitlines() if "The Storyteller Spirit is silent" in line]
    assert len(silent) == 1 and "can't allocate memory" in silent[0], proc.stdout
    assert "== The Overgrown Server Hall ==" in proc.stdout


def test_an_error_in_the_middle_of_a_generation_is_said_and_the_next_turn_narrates(service, monkeypatch):
    calls = {"n": 0}

    def make(original):
        def forward(ids, start, all_logits=False):
            calls["n"] += 1
            if calls["n"] == 4:  # a few tokens into the first narration
                raise RuntimeError("CUDA error: an illegal memory access was encountered\n"
                                   "CUDA kernel errors might be asynchronously reported")
            return original(ids, start, all_logits)
        return forward

    patch_forward(monkeypatch, service, make)
    engine = Engine(load_quest(QUEST), seed=1)
    code, out = plain(engine, "take the lantern\ngo north\nlook\n", narrate=spirit(service))
    assert code == 0 and calls["n"] > 4
    assert out.count("(The Spirit lost its words: generation failed: CUDA error: an illegal memory "
                     "access was encountered)\n") == 1
    after = out[out.index("(The Spirit lost its words"):]
    assert "== The Overgrown Server Hall ==" in after and "\n~ " in after  # later turns are narrated
    assert engine.state.turn == 3 and read_save(autosave_file()).state.turn == 3


class Script(io.StringIO):
    """Input lines, with a callback run before a given line is read."""

    def __init__(self, lines: str, before: dict):
        super().__init__(lines)
        self.before, self.read = before, 0

    def readline(self, *args):
        if self.read in self.before:
            self.before.pop(self.read)()
        self.read += 1
        return super().readline(*args)


def test_a_generation_that_never_ends_is_abandoned_with_a_message_and_play_goes_on(service, monkeypatch):
    release = threading.Event()
    calls = {"n": 0}

    def make(original):
        def forward(ids, start, all_logits=False):
            if threading.current_thread().name != "storyteller-generate":
                return original(ids, start, all_logits)  # a warm-up computing ahead never hangs here
            calls["n"] += 1
            if calls["n"] == 2:  # the model hangs after its first token
                release.wait(120)
            return original(ids, start, all_logits)
        return forward

    patch_forward(monkeypatch, service, make)
    monkeypatch.setattr(service, "timeout", 0.5)

    def unstick():  # the hung generation thread may finish now; wait for it before the next turn
        release.set()
        for thread in threading.enumerate():
            if thread.name == "storyteller-generate":
                thread.join(30)
                assert not thread.is_alive()

    engine = Engine(load_quest(QUEST), seed=1)
    out = io.StringIO()
    began = time.monotonic()
    game = PlainGame(engine, out=out, inp=Script("take the lantern\ngo north\n", {1: unstick}),
                     narrate=spirit(service), autosave=True)
    assert game.run() == 0
    assert time.monotonic() - began < 60
    text = out.getvalue()
    assert text.count("(The Spirit lost its words: the model wrote nothing for 0.5 s; narration abandoned)") == 1
    after = text[text.index("(The Spirit lost its words"):]
    assert "== The Overgrown Server Hall ==" in after and "\n~ " in after
    assert engine.state.turn == 2 and read_save(autosave_file()).state.turn == 2


def test_a_generation_that_crawls_on_is_cut_at_the_time_limit_and_play_goes_on(service, monkeypatch):
    def make(original):
        def forward(ids, start, all_logits=False):
            time.sleep(0.05)
            return original(ids, start, all_logits)
        return forward

    patch_forward(monkeypatch, service, make)
    monkeypatch.setattr(service, "timeout", 1.0)
    engine = Engine(load_quest(QUEST), seed=1)
    began = time.monotonic()
    code, out = plain(engine, "take the lantern\ngo north\n", narrate=spirit(service, Sampling(max_new_tokens=512)))
    assert code == 0 and time.monotonic() - began < 30  # 512 tokens would take 25 s or more each
    assert "== The Overgrown Server Hall ==" in out and engine.state.turn == 2
    assert all(len(service.tokenizer.encode(t.narration)) < 200 for t in engine.history)


def test_a_window_too_small_for_max_new_tokens_narrates_shorter_instead_of_crashing(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from game.narrator.model_builder import write_tokenizer

    folder = write_tokenizer(tmp_path / "small-window")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=128, vocab_size=50257,
                               bos_token_id=50256, eos_token_id=50256)).save_pretrained(folder)
    small = NarratorService(str(folder), device="cpu")
    small.load()
    assert small.window == 128
    engine = Engine(load_quest(QUEST), seed=1)
    code, out = plain(engine, "take the lantern\ngo north\n",
                      narrate=spirit(small, Sampling(max_new_tokens=200)))
    assert code == 0 and "== The Overgrown Server Hall ==" in out
    assert "cannot narrate" not in out and out.count("\n~ ") >= 1


async def test_the_app_says_when_the_spirit_lost_its_words_and_the_next_turn_narrates(service, monkeypatch):
    from game.tui.app import make_app
    from game.tui.screens.game import GameScreen
    from game.tui.widgets.action_input import ActionInput
    from game.tui.widgets.story_log import StoryParagraph

    calls = {"n": 0}

    def make(original):
        def forward(ids, start, all_logits=False):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(GPU 0; 4 GiB total)")
            return original(ids, start, all_logits)
        return forward

    patch_forward(monkeypatch, service, make)
    app = make_app(narrator=TurnNarrator(service, PERSONA, FEW, seed=1), quest_path=QUEST)
    notes = []
    original_notify = app.notify
    app.notify = lambda message, **kw: (notes.append((str(message), kw.get("severity"))),
                                        original_notify(message, **kw))[1]

    async def until(predicate, what):
        deadline = time.monotonic() + 60
        while not predicate():
            assert time.monotonic() < deadline, what
            await pilot.pause(0.05)

    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: isinstance(app.screen, GameScreen), "the game screen")
        screen = app.screen
        for action in ("take the lantern", "go north"):
            screen.query_one(ActionInput).value = action
            await pilot.press("enter")
            await until(lambda: screen.narrating is None, f"the narration of {action!r}")
        assert ("The Spirit lost its words: generation failed: CUDA out of memory. Tried to allocate "
                "2.00 GiB", "error") in notes
        texts = [(p.kind, p.text) for p in screen.query(StoryParagraph)]
        assert ("change", "You now have a cursor lantern.") in texts  # the turn kept its authored text
        hall = texts.index(("scene-title", "The Overgrown Server Hall"))
        assert any(kind == "narration" and text for kind, text in texts[hall:])  # the next turn was narrated
        assert app.is_running and screen.engine.state.turn == 2
    assert read_save(autosave_file()).state.turn == 2


# == untrusted text ============================================================================
EVIL = "Look: \x1b]8;;http://x\x07link\x1b]8;;\x07 and [red]x[/] [@click=app.quit]q[/]\x1b[2J\x9b6n done."


def test_escape_sequences_written_by_the_model_reach_the_terminal_inert(service, monkeypatch):
    import torch

    wanted = service.tokenizer.encode(EVIL) + [service.tokenizer.eos_token_id]
    step = {"k": 0, "last": None}

    def make(original):
        def forward(ids, start, all_logits=False):  # the model writes EVIL, token by token
            logits = original(ids, start, all_logits)
            fed_back = list(ids) == [step["last"]]  # else a new generation starts from its prompt
            step["k"] = min(step["k"] + 1, len(wanted) - 1) if fed_back else 0
            step["last"] = wanted[step["k"]]
            forced = torch.full_like(logits, -100.0)
            forced[step["last"]] = 100.0
            return forced
        return forward

    patch_forward(monkeypatch, service, make)
    engine = Engine(load_quest(QUEST), seed=1)
    code, out = plain(engine, "take the lantern\n", narrate=spirit(service, Sampling(max_new_tokens=64)))
    assert code == 0
    assert "\x1b]8;;" in engine.history[-1].narration  # the model really wrote them
    assert not any(c in out for c in "\x1b\x07\x9b")
    assert "~ Look: \ufffd]8;;http://x\ufffdlink\ufffd]8;;\ufffd and [red]x[/] [@click=app.quit]q[/]" \
           "\ufffd[2J\ufffd6n done." in out


def test_escape_sequences_in_a_quest_reach_the_validator_output_inert(tmp_path, capsys):
    path = tmp_path / "quest.yaml"
    path.write_text(textwrap.dedent("""\
        id: evil
        title: "Evil \\e]0;pwned\\a title"
        start: a
        "\\e[2J\\e]8;;http://x\\alink": 1
        scenes:
          a: {title: A, description: D, ending: e}
        endings:
          e: {title: E, text: T}
        """), encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "unknown key '\ufffd[2J\ufffd]8;;http://x\ufffdlink'" in out
    assert not any(c in out for c in "\x1b\x07\x9b")


async def test_escape_sequences_and_markup_in_a_quest_show_inert_and_literal_in_the_app(tmp_path):
    from game.tui.app import make_app
    from game.tui.screens.game import GameScreen

    path = tmp_path / "quest.yaml"
    path.write_text(textwrap.dedent("""\
        id: evil-tui
        title: "Evil \\e]0;pwned\\a [i]quest[/i]"
        start: a
        scenes:
          a:
            title: "Hall [b]bold[/b] \\e[7m"
            description: "Here \\e]8;;http://x\\alink\\e]8;;\\a and [red]x[/] \\e[31mred\\e[0m end."
            exits:
              - {label: "Leave [u]now[/u] \\e[5mblink", to: b}
          b: {title: Out, description: Outside., ending: e}
        endings:
          e: {title: E, text: T}
        """), encoding="utf-8")
    app = make_app(narrator=None, quest_path=path)
    async with app.run_test(size=(120, 30)) as pilot:
        deadline = time.monotonic() + 30
        while not isinstance(app.screen, GameScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()
        strips = list(app.screen._compositor.render_strips())
        screen = "\n".join(strip.text for strip in strips)
        assert "Here \ufffd]8;;http://x\ufffdlink\ufffd]8;;\ufffd and [red]x[/] \ufffd[31mred\ufffd[0m end." \
               in " ".join(screen.split())
        assert "Hall [b]bold[/b] \ufffd[7m" in screen and "Leave [u]now[/u] \ufffd[5mblink" in screen
        assert not any(c in screen for c in "\x1b\x07\x9b")
        for strip in strips:
            for segment in strip:
                if "[red]x[/]" in segment.text:
                    assert segment.style is None or segment.style.color is None or \
                           segment.style.color.name != "red"
                assert segment.style is None or segment.style.link is None  # no hyperlink was made
        assert app.is_running


# == a long session ============================================================================
def test_a_thousand_turns_stay_flat_in_memory_prompt_and_autosave(service):
    """1,000 plain-mode turns: every prompt built and checked, every 50th narrated by the model."""
    engine = Engine(load_quest(QUEST), seed=1)
    session = Session(engine.quest, engine)
    narrator = TurnNarrator(service, PERSONA, Sampling(max_new_tokens=8), seed=1)
    real = PlainSpirit(narrator, out_err=io.StringIO())
    window = service.window
    measured, sizes, narrated = {}, [], []

    def narrate(engine, result, write):
        turn = result.turn
        if turn == 150:
            tracemalloc.start()
        if turn in (200, 600, 1000):
            measured[turn] = (tracemalloc.get_traced_memory()[0], _rss())
        prepared = narrator.prepare(engine, result)  # the real prompt, with the real tokenizer
        assert prepared.prompt.prompt_tokens + prepared.sampling.max_new_tokens <= window
        assert f"> {' '.join(result.action.split())}" in prepared.prompt.text
        if turn % 50 == 0:
            told = real(engine, result, write)
            narrated.append(engine.history[-1].narration)
            text = engine.history[-1].narration
        else:
            told, text = True, f"The Spirit recalls turn {turn}: the ruins hum and the fans turn slowly."
            engine.set_narration(text)
        session.add_sample(turn, text)
        if turn % 100 == 0:
            sizes.append(session.autosave().stat().st_size)
        return told

    moves = "".join(f"{m}\n" for i in range(250) for m in
                    ("go north", "south", "look", f"I hum a song about pattern {i}"))
    out = io.StringIO()
    try:
        code = PlainGame(session, out=out, inp=io.StringIO(moves), narrate=narrate).run()
    finally:
        tracemalloc.stop()
    assert code == 0 and engine.state.turn == 1000
    assert len(narrated) == 20 and "Traceback" not in out.getvalue()
    assert len(engine.history) == HISTORY_LIMIT and len(engine.undo_stack) == HISTORY_LIMIT
    assert len(session.samples) <= HISTORY_LIMIT + 1
    (heap_200, rss_200), (heap_600, _), (heap_1000, rss_1000) = measured[200], measured[600], measured[1000]
    assert heap_1000 - heap_200 < 8_000_000, measured  # Python objects: bounded by the history...
    assert heap_1000 - heap_600 < 3_000_000, measured  # ...and about flat once the history is full (turn 500;
    # what remains is bounded caches, e.g. the context builder's token counts)
    assert rss_1000 - rss_200 < 150_000_000, (rss_200, rss_1000)  # the process: no runaway growth
    assert max(sizes) < 1_500_000 and sizes[-1] < sizes[4] * 1.3, sizes  # flat once history is full
    restored = Session.load(autosave_file())
    assert restored.engine.state.turn == 1000 and len(restored.samples) <= HISTORY_LIMIT + 1


def _rss() -> int:
    """The process's resident memory in bytes (Linux; 0 elsewhere, where only the heap is checked)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# == issue 11: nothing lost, nothing leaks =====================================================
def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def autosave_turn(path: Path) -> int:
    try:
        return read_save(path).state.turn
    except Exception:
        return -1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_in_plain_mode_saves_the_game_and_ends_cleanly(tmp_path, sig):
    env = env_for(tmp_path)
    saved = tmp_path / "data" / "saves" / "autosave" / "call-of-the-storyteller.json"
    child = subprocess.Popen([sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--no-spirit"],
                             cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        child.stdin.write("take the lantern\n")
        child.stdin.flush()
        wait_for(lambda: autosave_turn(saved) == 1, what="the first turn's autosave")
        child.send_signal(sig)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 128 + sig, err
    assert "Traceback" not in err and err.strip() == ""
    save = read_save(saved)
    assert save.state.turn == 1 and save.history[-1].action == "take the lantern"


def test_the_turn_is_autosaved_as_soon_as_it_is_taken_and_again_after_its_narration(tmp_path):
    seen = []

    def narrate(engine, result, write):  # what a kill during the narration would leave
        seen.append(autosave_turn(autosave_file()))
        engine.set_narration("The Spirit speaks.")
        return True

    code, _ = plain(Engine(load_quest(QUEST), seed=1), "take the lantern\ngo north\n", narrate=narrate)
    assert code == 0 and seen == [1, 2]
    assert [t.narration for t in read_save(autosave_file()).history] == ["The Spirit speaks."] * 2


APP_UNDER_PTY = """
import os, sys
os.environ.setdefault("TERM", "xterm-256color")
from game.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run_in_pty(args: list[str], env: dict):
    """The game in a real terminal (a pty, 80x24): (process, master fd, collected output)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    child = subprocess.Popen([sys.executable, "-c", APP_UNDER_PTY] + args, cwd=ROOT,
                             env={**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
                             stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = bytearray()

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            output.extend(data)

    threading.Thread(target=read, daemon=True).start()
    return child, master, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_in_the_app_saves_the_game_restores_the_terminal_and_exits(tmp_path, sig):
    saved = tmp_path / "data" / "saves" / "autosave" / "call-of-the-storyteller.json"
    child, master, output = run_in_pty(["play", str(QUEST), "--no-spirit"], env_for(tmp_path))
    try:
        wait_for(lambda: b"Gate" in output, timeout=120, what="the game screen")
        time.sleep(0.5)
        os.write(master, b"take the lantern\r")
        wait_for(lambda: autosave_turn(saved) == 1, what="the first turn's autosave")
        child.send_signal(sig)
        child.wait(60)
        time.sleep(0.2)
    finally:
        child.kill()
        os.close(master)
    assert child.returncode == 128 + sig, bytes(output[-2000:])
    assert b"Traceback" not in output
    tail = bytes(output[-400:])
    assert b"\x1b[?1049l" in tail  # the alternate screen is left: the terminal is the player's again
    assert read_save(saved).history[-1].action == "take the lantern"


CHILD_ROTATE = """
import sys
from game.world.loader import load_quest
from game.session import Session
session = Session(load_quest(sys.argv[1]), seed=int(sys.argv[2]))
failures = 0
for turn in range(int(sys.argv[3])):
    session.engine.act("look" if turn % 2 else "take the lantern")
    try:
        session.autosave()
    except OSError as exc:
        failures += 1
        print("Autosave failed:", exc, flush=True)
print("failures", failures, flush=True)
"""


def test_two_games_of_the_same_quest_autosave_at_once_without_failing(tmp_path):
    env = env_for(tmp_path)
    children = [subprocess.Popen([sys.executable, "-c", CHILD_ROTATE, str(QUEST), str(seed), "250"],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for seed in (1, 2)]
    outs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outs):
        assert child.returncode == 0, err
        assert out.strip().splitlines()[-1] == "failures 0", out[-2000:]
    folder = tmp_path / "data" / "saves" / "autosave"
    for path in [folder / "call-of-the-storyteller.json"] + \
            [backup_path(folder / "call-of-the-storyteller.json", n) for n in range(1, AUTOSAVE_COPIES + 1)]:
        read_save(path)  # every copy is whole


def test_temporary_files_a_killed_process_left_are_removed_at_start(tmp_path):
    folder = tmp_path / "data" / "saves" / "autosave"
    folder.mkdir(parents=True)
    old = time.time() - 600
    stale = [folder / ".call-of-the-storyteller.json.k3j4h5g6.tmp", folder / ".call-of-the-storyteller.json.link",
             folder.parent / ".slot.json.abcdefgh.tmp", tmp_path / "cfg" / ".settings.yaml.a1b2c3d4.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (old, old))
    kept = [folder / "notes.tmp", folder.parent / ".my-own-file", folder.parent / ".fresh.json.zzzzzzzz.tmp"]
    for path in kept:
        path.write_bytes(b"mine")
    os.utime(kept[0], (old, old))
    os.utime(kept[1], (old, old))
    proc = subprocess.run([sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--no-spirit"],
                          input="look\n", cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)  # not ours, or too fresh to be left over


@pytest.mark.parametrize("how", ["folder", "device", "under-a-file"])
def test_an_unusable_context_log_is_refused_before_play(tmp_path, how, monkeypatch, capsys):
    path = {"folder": tmp_path, "device": Path("/dev/full"), "under-a-file": tmp_path / "f" / "log.jsonl"}[how]
    if how == "under-a-file":
        (tmp_path / "f").write_text("a file")
    monkeypatch.setattr(sys, "stdin", io.StringIO("look\n"))
    assert main(["play", str(QUEST), "--plain", "--no-spirit", "--context-log", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(f"storyteller: --context-log {path}")


def test_a_context_log_that_fails_later_is_said_once_and_play_goes_on(tmp_path, service):
    log = tmp_path / "log.jsonl"
    narrator = TurnNarrator(service, PERSONA, FEW, seed=1, context_log=log)
    err = io.StringIO()
    engine = Engine(load_quest(QUEST), seed=1)
    out = io.StringIO()
    lines = io.StringIO("take the lantern\nlook around\ngo north\nsouth\n")

    class Breaking(PlainSpirit):
        def __call__(self, engine, result, write):
            if engine.state.turn == 2 and log.is_file():  # the disk goes away mid-game
                log.unlink()
                log.mkdir()
            return super().__call__(engine, result, write)

    code = PlainGame(engine, out=out, inp=lines, narrate=Breaking(narrator, out_err=err)).run()
    assert code == 0 and engine.state.turn == 4
    said = [line for line in err.getvalue().splitlines() if "context log" in line]
    assert len(said) == 1 and "logging stopped" in said[0] and str(log) in said[0]
    assert sum(t.narration != "" for t in engine.history) >= 3  # narration went on


@pytest.mark.parametrize("errors", ["", "utf-8:strict"], ids=["locale-default", "strict-decoding"])
def test_invalid_utf8_typed_or_piped_in_is_decoded_safely(tmp_path, errors):
    proc = subprocess.run([sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--no-spirit"],
                          input=b"go \xff north\ntake the lantern\n", cwd=ROOT, capture_output=True,
                          env=env_for(tmp_path, PYTHONIOENCODING=errors, LC_ALL="C.UTF-8"), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in proc.stderr and b"Autosave failed" not in proc.stdout
    save = read_save(tmp_path / "data" / "saves" / "autosave" / "call-of-the-storyteller.json")
    assert save.history[0].action == "go \ufffd north"


COMMANDS = {"play": ["play", str(QUEST), "--plain", "--no-spirit"], "narrate": ["narrate", "Once", "--model",
            "/nonexistent/model"], "quests": ["quests"], "validate": ["validate", str(QUEST)],
            "map": ["map", str(QUEST)]}


@pytest.mark.parametrize("command, stream", [(c, s) for c in sorted(COMMANDS) for s in
                                             ("stdout-full", "stdout-closed", "stdin-closed")
                                             if s != "stdin-closed" or c == "play"])
def test_closed_or_full_standard_streams_give_one_line_and_exit_74(tmp_path, command, stream):
    redirect = {"stdout-full": "> /dev/full", "stdout-closed": ">&-", "stdin-closed": "<&-"}[stream]
    args = " ".join(f"'{a}'" for a in COMMANDS[command])
    proc = subprocess.run(["bash", "-c", f"exec '{sys.executable}' -m game {args} {redirect}"],
                          cwd=ROOT, env=env_for(tmp_path), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    err = proc.stderr
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if command == "narrate" and stream == "stdout-full":
        assert proc.returncode in (1, 74)
    else:
        assert proc.returncode == 74, err
    assert len(err.strip().splitlines()) <= 2 and err.strip().splitlines()[-1].startswith("storyteller: ")


@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999", "ten"])
def test_a_seed_out_of_range_is_refused_when_parsing(seed, capsys):
    for command in (["play", str(QUEST), "--plain"], ["narrate", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(command + ["--seed", seed])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "--seed" in err and ("0 to 4294967295" in err or "not a whole number" in err)


def test_every_test_the_reliability_page_names_exists():
    """docs/reliability.md stays true: each `tests/file.py::test` (and `::test` after it) it cites is a test."""
    import re

    missing = []
    for line in (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").splitlines():
        current = None
        for file, name in re.findall(r"`(?:(tests/\w+\.py))?::(test_\w+)`", line):
            current = file or current
            if current is None:
                continue
            source = (ROOT / current).read_text(encoding="utf-8")
            if not re.search(rf"^(async )?def {name}\(", source, re.M):
                missing.append(f"{current}::{name}")
    assert missing == []


def test_play_quest_continue_resumes_that_quests_own_autosave(monkeypatch, capsys):
    lantern = QUESTS / "the-last-lantern.yaml"
    first = Session(load_quest(QUEST), seed=1)
    first.engine.act("take the lantern")
    first.autosave()
    time.sleep(0.05)
    Session(load_quest(lantern), seed=1).autosave()  # the newest autosave is another quest's
    monkeypatch.setattr(sys, "stdin", io.StringIO("inventory\n"))
    assert main(["play", "call-of-the-storyteller", "--continue", "--plain", "--no-spirit"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Quest 1.6 — The Call of the Storyteller") and "lantern" in out.split("> inventory")[1]
