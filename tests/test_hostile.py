"""Hostile quest files, from strangers: refused with file:line:col, quickly, running and reading nothing else.

Every file in `CASES` goes through each front end that can meet it: the loader
(`check_quest` / `load_quest`), the validator (`storyteller validate`), plain
mode (`storyteller play --plain`) and, for a few, the Textual app. An audit hook
(`sys.addaudithook`) watches the loader: it must not start a process or open a
file outside the quest's own folder. Time bounds are generous (the machine is
shared); docs/reliability.md lists the timings measured.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from game.cli import main
from game.diagnostics import GameFileError, display_path
from game.world.loader import check_quest, load_quest
from game.world.schema import MAX_CHOICES, MAX_INCLUDES, MAX_SCENES
from tests.conftest import ROOT
from tests.helpers import MINI, write

LIMIT_S = 3.0  # "well under a second" on a quiet machine; generous here
FORMAT = re.compile(r"^.+:\d+:\d+: error: .+$")


# -- the hostile files -------------------------------------------------------------------
@dataclass
class Case:
    load: Path  # what the player or author passes: a file or a quest folder
    bad: Path  # the file the error must name
    words: str  # a regular expression the error message must match
    line: int | None = None  # the line the error must point at, when it is certain
    marker: Path | None = None  # a file that exists only if the quest ran code
    limit_s: float = LIMIT_S


def single(tmp: Path, text: str | bytes, words: str, line: int | None = None, **kw) -> Case:
    path = write(tmp / "quest" / "quest.yaml", text)
    return Case(path, path, words, line, **kw)


def folder(tmp: Path, include: str, words: str, bad: str = "quest.yaml", line: int | None = 8) -> Case:
    main_file = write(tmp / "quest" / "quest.yaml", MINI + f"include: {include}\n")
    return Case(main_file.parent, main_file.parent / bad, words, line)


def alias_bomb(tmp):
    lines = [MINI.rstrip("\n"), 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 12)]
    return single(tmp, "\n".join(lines) + "\n", "aliases|values")


def nested_flow(tmp):
    return single(tmp, MINI + "summary: " + "[" * 5000 + "]" * 5000 + "\n", "nested", 8)


def nested_block(tmp):
    return single(tmp, MINI + "summary:\n  " + "- " * 3000 + "deep\n", "nested", 9)


def fifty_megabytes(tmp):
    path = tmp / "quest" / "quest.yaml"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        fh.write(MINI.encode() + b"summary: ")
        for _ in range(50):
            fh.write(b"x" * 1_000_000)
    return Case(path, path, "larger than", 1)


def binary_garbage(tmp):
    return single(tmp, random.Random(7).randbytes(64_000), "UTF-8|NUL")


def invalid_utf8(tmp):
    return single(tmp, MINI.encode().replace(b"title: Mini", b"title: Mini \xff\xfe"),
                  "not valid UTF-8", 2)


def python_tag(tag: str, line: int):
    def build(tmp):
        marker = tmp / "MARKER"
        text = MINI.replace("title: Mini", f"title: Mini\nsummary: {tag.format(marker=marker)}")
        return single(tmp, text, "tag .* is not allowed", line, marker=marker)
    return build


def top_level(text: str):
    return lambda tmp: single(tmp, text, "must be a mapping", 1)


def includes_itself(tmp):
    return folder(tmp, "[quest.yaml]", "included twice \\(or is the quest file itself\\)")


def includes_its_folder(tmp):
    return folder(tmp, "[., ./]", "is not a file")


def includes_etc_passwd(tmp):
    return folder(tmp, "[../../etc/passwd, /etc/passwd]", "lies outside the quest's folder")


def includes_symlink_out(tmp):
    case = folder(tmp, "[secret.yaml]", "lies outside the quest's folder")
    os.symlink(write(tmp / "elsewhere" / "secret.yaml", "items: {k: K}\n"), case.load / "secret.yaml")
    return case


def quest_yaml_symlink_out(tmp):
    secret = write(tmp / "elsewhere" / "secret.yaml", MINI)
    (tmp / "quest").mkdir(parents=True)
    os.symlink(secret, tmp / "quest" / "quest.yaml")
    return Case(tmp / "quest", tmp / "quest" / "quest.yaml", "links to a file outside", 1)


def quest_yaml_symlink_loop(tmp):
    (tmp / "quest").mkdir(parents=True)
    os.symlink("quest.yaml", tmp / "quest" / "quest.yaml")
    return Case(tmp / "quest", tmp / "quest" / "quest.yaml", "outside the quest's folder \\(or in a loop\\)", 1)


def pipe(path: Path) -> None:
    """A named pipe; should a reader ever block on it, a watchdog frees it after 5 s (so a
    regression fails, it does not hang the test run)."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("named pipes are POSIX")
    os.mkfifo(path)

    def watchdog():
        time.sleep(5)
        for _ in range(600):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # the reader now sees an empty file
            except OSError:  # no reader waiting (ENXIO), or the pipe is gone
                time.sleep(0.1)

    threading.Thread(target=watchdog, daemon=True).start()


def includes_a_pipe(tmp):
    case = folder(tmp, "[pipe.yaml]", "is not a file")
    pipe(case.load / "pipe.yaml")
    return case


def quest_file_is_a_pipe(tmp):
    (tmp / "quest").mkdir(parents=True)
    pipe(tmp / "quest" / "quest.yaml")
    return Case(tmp / "quest" / "quest.yaml", tmp / "quest" / "quest.yaml", "not a regular file", 1)


def scenes(n: int, prefix: str = "s") -> str:
    return "".join(f"  {prefix}{i}: {{title: S, description: D, ending: e}}\n" for i in range(n))


def too_many_scenes(tmp):
    return single(tmp, MINI.replace("scenes:\n", "scenes:\n" + scenes(MAX_SCENES + 1)),
                  "too many scenes", 5)


def too_many_scenes_across_files(tmp):
    parts = [f"part{i}.yaml" for i in range(3)]
    case = folder(tmp, "[" + ", ".join(parts) + "]", "too many scenes \\(2,701, 1,801 of them in earlier",
                  bad="part2.yaml", line=2)
    for i, name in enumerate(parts):
        write(case.load / name, "scenes:\n" + scenes(900, prefix=f"p{i}_"))
    return case


def too_many_choices(tmp):
    choices = "".join("      - {label: L}\n" for _ in range(MAX_CHOICES + 1))
    return single(tmp, MINI.replace("  a: {title: A, description: D, ending: e}\n",
                                    "  a:\n    title: A\n    description: D\n    choices:\n" + choices),
                  f"has {MAX_CHOICES + 1} choices; at most {MAX_CHOICES}", 9)


def too_many_includes(tmp):
    names = [f"p{i}.yaml" for i in range(MAX_INCLUDES + 1)]
    case = folder(tmp, "[" + ", ".join(names) + "]", "too many included files")
    for name in names:
        write(case.load / name, "items: {}\n")
    return case


def dense_included_files(tmp):
    """Each file within its own limits; together far past what a quest may hold."""
    names = [f"p{i}.yaml" for i in range(4)]  # about 45,000 values each: p3 is one too many
    case = folder(tmp, "[" + ", ".join(names) + "]", "the files before 'p3.yaml' already hold more "
                  "than 100,000 values, the limit for a whole quest")
    block = "".join(f"  d{{f}}_{i}:\n    title: T\n    description: D\n    choices:\n"
                    + "      - {label: L}\n" * 150 for i in range(100))
    for f, name in enumerate(names):
        write(case.load / name, "scenes:\n" + block.replace("{f}", str(f)))
    case.limit_s = 10.0  # it reads as much as the biggest legitimate quest: about 1.5 s measured
    return case


CASES: dict[str, Callable[[Path], Case]] = {
    "alias-bomb": alias_bomb,
    "nested-5000-deep-flow": nested_flow,
    "nested-3000-deep-block": nested_block,
    "50-megabytes": fifty_megabytes,
    "binary-garbage": binary_garbage,
    "invalid-utf8": invalid_utf8,
    "python-object-apply": python_tag("!!python/object/apply:os.system ['touch {marker}']", 3),
    "python-object-new": python_tag("!!python/object/new:subprocess.Popen [[touch, '{marker}']]", 3),
    "python-name": python_tag("!!python/name:os.system", 3),
    "python-module": python_tag("!!python/module:os", 3),
    "top-level-list": top_level("- id: x\n- title: y\n"),
    "top-level-scalar": top_level("just some words\n"),
    "top-level-number": top_level("42\n"),
    "includes-itself": includes_itself,
    "includes-its-folder": includes_its_folder,
    "includes-etc-passwd": includes_etc_passwd,
    "includes-symlink-out": includes_symlink_out,
    "quest-yaml-symlink-out": quest_yaml_symlink_out,
    "quest-yaml-symlink-loop": quest_yaml_symlink_loop,
    "includes-a-pipe": includes_a_pipe,
    "quest-file-is-a-pipe": quest_file_is_a_pipe,
    "2001-scenes": too_many_scenes,
    "2700-scenes-in-3-files": too_many_scenes_across_files,
    "201-choices": too_many_choices,
    "101-includes": too_many_includes,
    "dense-included-files": dense_included_files,
}


def make(name: str, tmp_path: Path) -> Case:
    return CASES[name](tmp_path)


def the_error(problems, case: Case):
    """The error that names the bad file and matches the case's words."""
    errors = [p for p in problems if p.severity == "error"]
    assert errors, "a hostile file was accepted"
    found = [p for p in errors if p.path == display_path(case.bad) and re.search(case.words, p.message)]
    assert found, "\n".join(p.format() for p in errors)
    problem = found[0]
    assert FORMAT.match(problem.format()) and "\n" not in problem.format()
    if case.line is not None:
        assert problem.line == case.line, problem.format()
    return problem


# -- what the loader does: an audit hook sees every file opened and process started ------
_SEEN: list | None = None
_THREAD: int | None = None  # only the thread that loads is watched (not, say, a pipe's watchdog)
_WATCHED = {"open", "os.listdir", "os.scandir", "os.system", "os.exec", "os.posix_spawn",
            "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "ctypes.dlopen"}


def _audit(event: str, args) -> None:
    if _SEEN is not None and event in _WATCHED and threading.get_ident() == _THREAD:
        _SEEN.append((event, args[0] if args else None))


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only inside `watched()`


def watched(call):
    """Run call(); return (its result, the events seen, seconds taken)."""
    global _SEEN, _THREAD
    _SEEN, _THREAD = [], threading.get_ident()
    began = time.perf_counter()
    try:
        result = call()
    finally:
        took = time.perf_counter() - began
        seen, _SEEN = _SEEN, None
    return result, seen, took


def outside(seen, allowed: Path) -> list:
    """Events that started a process or touched a path outside `allowed` (Python's own files aside)."""
    python = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
    bad = []
    for event, target in seen:
        if event not in ("open", "os.listdir", "os.scandir"):
            bad.append((event, target))
            continue
        if isinstance(target, int) or target is None:
            continue  # an open file descriptor: its path was seen when it was opened
        path = Path(os.path.abspath(os.fsdecode(target)))
        if not (path.is_relative_to(allowed) or str(path).startswith(python)):
            bad.append((event, str(path)))
    return bad


@pytest.fixture(scope="module", autouse=True)
def warm_up(tmp_path_factory):
    """Load a good and a bad quest once, so lazy imports are not counted as reads."""
    tmp = tmp_path_factory.mktemp("warm")
    load_quest(write(tmp / "good.yaml", MINI))
    check_quest(write(tmp / "bad.yaml", MINI + "summary: !!python/name:os.system\n"))


# -- the loader ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_loader_refuses_with_file_line_and_reason_quickly_running_and_reading_nothing_else(tmp_path, name):
    case = make(name, tmp_path)
    (quest, problems), seen, took = watched(lambda: check_quest(case.load))
    assert quest is None
    the_error(problems, case)
    assert took < case.limit_s, f"{name} took {took:.2f} s"
    assert outside(seen, tmp_path / "quest") == []
    if case.marker is not None:
        assert not case.marker.exists()
    with pytest.raises(GameFileError) as info:
        load_quest(case.load)
    the_error(info.value.problems, case)


# -- the validator and plain mode ------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_validator_and_plain_mode_report_it_and_exit_1(tmp_path, name, monkeypatch, capsys):
    case = make(name, tmp_path)
    problem = the_error(check_quest(case.load)[1], case)
    assert main(["validate", str(case.load)]) == 1
    out = capsys.readouterr().out
    assert problem.format() in out.splitlines() and "Traceback" not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("look\n"))
    assert main(["play", str(case.load), "--plain", "--no-spirit"]) == 1
    captured = capsys.readouterr()
    assert problem.format() in captured.err.splitlines()
    assert "cannot be played" in captured.err and captured.out == ""
    if case.marker is not None:
        assert not case.marker.exists()


def test_one_validator_process_takes_every_hostile_file_without_a_traceback(tmp_path):
    cases = {name: make(name, tmp_path / name) for name in CASES}
    paths = [str(case.load) for case in cases.values()]
    env = {**os.environ, "STORYTELLER_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, "-m", "game", "validate", *paths], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    for name, case in cases.items():
        assert any(line.startswith(display_path(case.bad) + ":") and FORMAT.match(line)
                   for line in proc.stdout.splitlines()), name
    assert not any(case.marker.exists() for case in cases.values() if case.marker)


# -- the Textual app -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alias-bomb", "python-object-apply", "includes-etc-passwd",
                                  "top-level-list", "quest-file-is-a-pipe", "dense-included-files"])
async def test_the_app_shows_a_notification_and_keeps_running(tmp_path, name):
    from game.tui.app import make_app
    from game.tui.screens.title import TitleScreen

    case = make(name, tmp_path)
    problem = the_error(check_quest(case.load)[1], case)
    app = make_app(narrator=None, quest_path=case.load)
    notes = []
    original = app.notify

    def notify(message, **kwargs):
        notes.append((str(message), kwargs.get("title", ""), kwargs.get("severity", "information")))
        return original(message, **kwargs)

    app.notify = notify
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        deadline = time.monotonic() + 30
        while not notes and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert isinstance(app.screen, TitleScreen)  # still at the quest list, nothing half-started
        message, title, severity = notes[0]
        assert severity == "error" and title == "This quest cannot be played"
        assert message.startswith(problem.format())
        await pilot.press("down", "up")  # the app still answers keys
        assert app.is_running
    if case.marker is not None:
        assert not case.marker.exists()


# == every output path, with files full of escape codes (issue 11) ==============================
# OSC 52 writes the clipboard, OSC 0 the window title, CSI moves the cursor, U+202E turns the text
# round, U+200B hides in names. None of them may reach any output.
HOSTILE_QUEST = r"""
id: hostile
title: "Clip\e]52;c;cHduZWQ=\a board \e]0;pwned\a title \u202Eevil\u202C \u200Bzero"
author: "Sly \e[2J Author \u202E"
summary: "Summary \e]8;;http://x\alink\e]8;;\a \u2066iso\u2069"
start: hall
flags:
  lit: false
items:
  lamp: "a lamp \e]52;c;aXRlbQ==\a \u200B"
scenes:
  hall:
    title: "Hall \e[7m \u202Eyawllah"
    description: "A hall \e[31m red \x9b6n \u200Bhidden."
    choices:
      - label: "Take \e]0;label\a the lamp \u202E"
        words: [lamp]
        effects: [{give: lamp}]
    exits:
      - {label: "Out \u200B\e[5m", words: [out], to: out}
  out: {title: "Out \e]0;x\a", description: Outside., ending: e}
endings:
  e: {title: "End \u202E", text: "Done \e]52;c;ZW5k\a."}
"""
BAD_CHARS = "\x1b\x07\x9b\u202e\u202c\u2066\u2069\u200b"


def _hostile_save(quest_path: Path, folder: Path) -> Path:
    """A save of the hostile quest whose item and flag names the quest does not have (load notes)."""
    import json

    from game.engine import Engine
    from game.saves import save_game

    engine = Engine(load_quest(quest_path), seed=1)
    engine.act("lamp")
    engine.state.inventory.append("gem\x1b]52;c;c2F2ZQ==\x07\u202e\u200b")
    engine.state.flags["door\x1b]0;save-title\x07\u202e"] = True
    path = save_game(folder / "hostile-save.json", engine)
    json.loads(path.read_text(encoding="utf-8"))
    return path


async def test_every_output_path_shows_escape_laden_quests_and_saves_inert(tmp_path, monkeypatch, capsys):
    from game import locations
    from game.tui.app import make_app
    from game.tui.screens.game import GameScreen

    quest = write(locations.user_quests_dir() / "hostile.yaml", HOSTILE_QUEST)
    assert "\x1b" in load_quest(quest).title  # the file really holds them
    save = _hostile_save(quest, tmp_path)
    outputs: dict[str, str] = {}

    def run(name: str, argv: list[str], stdin: str = "") -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        main(argv)
        captured = capsys.readouterr()
        outputs[name] = captured.out + captured.err

    run("validate", ["validate", str(quest)])
    run("quests", ["quests"])
    for fmt in ("text", "mermaid", "dot"):
        run(f"map {fmt}", ["map", str(quest), "--format", fmt])
    run("play", ["play", str(quest), "--plain", "--no-spirit"], "lamp\nlook\ni\nout\n")
    run("play --load (notes on stderr)", ["play", "--plain", "--no-spirit", "--load", str(save)], "look\ni\n")
    assert "no longer exists" in outputs["play --load (notes on stderr)"]

    app = make_app(narrator=None, session=None, quest_path=None)
    async with app.run_test(size=(80, 24)) as pilot:
        outputs["title screen"] = "\n".join(s.text for s in app.screen._compositor.render_strips())
        app.load_save(save)
        deadline = time.monotonic() + 30
        while not isinstance(app.screen, GameScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        outputs["game screen"] = "\n".join(s.text for s in app.screen._compositor.render_strips())
        await pilot.press("ctrl+t")  # export the transcript
        await pilot.pause(0.3)
        outputs["notifications"] = "\n".join(f"{n.title}: {n.message}" for n in app._notifications)
        outputs["app title"] = f"{app.title} {app.sub_title} {app.screen.title} {app.screen.sub_title}"
    assert "no longer exists" in outputs["notifications"]
    [transcript] = (locations.data_dir() / "transcripts").glob("*.md")
    outputs["exported transcript"] = transcript.read_text(encoding="utf-8")
    for name, text in outputs.items():
        assert text, name
        leaked = sorted({f"U+{ord(c):04X}" for c in text if c in BAD_CHARS})
        assert not leaked, f"{name} shows {leaked}:\n{text[:3000]}"
