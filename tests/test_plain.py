"""Plain-terminal play: a transcript from lines of input, clean exits, inert quest text."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

from game.cli import main
from game.engine import Engine
from game.plain import PlainGame
from game.world.loader import load_quest
from tests.conftest import ROOT
from tests.helpers import write

QUEST = """\
id: plain-test
title: Plain Test
author: Tester
start: cellar
items:
  lantern: {name: a brass lantern, description: Dented.}
scenes:
  cellar:
    title: The Cellar
    description: A damp cellar with a very long description that goes on and on, far past the width of any ordinary terminal window, so that it has to be wrapped onto several lines.
    choices:
      - label: Take the lantern
        words: [lantern]
        if: {lacks: lantern}
        effects: [{give: lantern}]
        text: You lift the lantern off its hook.
    exits:
      - label: Climb the ladder
        words: [up, ladder]
        to: loft
      - label: Walk into the sunlight
        words: [sunlight]
        to: outside
  loft:
    title: The Loft
    description: Hay everywhere.
    exits:
      - {label: Climb down, words: [down], to: cellar}
  outside:
    title: Outside
    description: Fresh air.
    ending: free
endings:
  free: {title: Out of the Dark, text: You climb out into the light.}
"""


@pytest.fixture
def quest_path(tmp_path):
    return write(tmp_path / "quest.yaml", QUEST)


def play(path, lines: str, seed: int = 1, **kwargs):
    """Play a quest with these input lines; returns (exit code, output, engine, unread input)."""
    engine = Engine(load_quest(path), seed=seed)
    inp, out = io.StringIO(lines), io.StringIO()
    code = PlainGame(engine, out=out, inp=inp, **kwargs).run()
    return code, out.getvalue(), engine, inp.read()


def test_end_of_input_ends_cleanly(quest_path):
    code, out, engine, _ = play(quest_path, "lantern\ni\n")
    assert code == 0
    assert out.startswith("Plain Test\nby Tester\n")
    assert "\n== The Cellar ==\n" in out
    assert "  1. Take the lantern\n  2. Climb the ladder\n  3. Walk into the sunlight\n" in out
    assert "\n> lantern\nYou lift the lantern off its hook.\n  * You now have a brass lantern.\n" in out
    assert "\n> i\nYou carry:\n- a brass lantern: Dented.\n" in out
    assert engine.state.inventory == ["lantern"] and engine.state.turn == 1


def test_empty_input(quest_path):
    code, out, engine, _ = play(quest_path, "")
    assert code == 0 and "== The Cellar ==" in out and engine.state.turn == 0


def test_long_text_is_wrapped(quest_path):
    _, out, _, _ = play(quest_path, "")
    assert all(len(line) <= 78 for line in out.splitlines())
    assert "several lines." in out


def test_ending_prints_the_end_and_stops_reading(quest_path):
    code, out, engine, unread = play(quest_path, "sunlight\nlook\nlantern\n")
    assert code == 0 and engine.ended
    assert "\n*** Out of the Dark ***\n" in out and "You won." in out
    assert out.rstrip().endswith("THE END")
    assert unread == "look\nlantern\n"


def test_quest_that_starts_at_its_ending_exits_at_once(tmp_path):
    path = write(tmp_path / "quest.yaml", QUEST.replace("start: cellar", "start: outside"))
    code, out, _, unread = play(path, "look\n")
    assert code == 0 and "You climb out into the light." in out and unread == "look\n"


@pytest.mark.parametrize("word", ["quit", "exit", "q", "QUIT"])
def test_quit_stops_at_once(quest_path, word):
    code, out, engine, unread = play(quest_path, f"lantern\n{word}\nup\n")
    assert code == 0 and unread == "up\n" and engine.state.scene == "cellar"
    assert "THE END" not in out


def test_undo_steps_back_and_shows_where_the_player_is(quest_path):
    code, out, engine, _ = play(quest_path, "undo\nlantern\nup\nundo\n")
    assert code == 0
    assert "(Nothing to undo: this is the start.)" in out
    assert out.count("(You step back one turn.)") == 1
    after_undo = out.split("(You step back one turn.)")[1]
    assert "== The Cellar ==" in after_undo and "  1. Climb the ladder" in after_undo
    assert engine.state.scene == "cellar" and engine.state.inventory == ["lantern"]
    assert [t.action for t in engine.history] == ["lantern"]


def test_u_means_up_not_undo(quest_path):
    _, out, engine, _ = play(quest_path, "lantern\nu\n")
    assert engine.state.scene == "loft" and "(You step back" not in out


def test_help_and_free_actions(quest_path):
    _, out, engine, _ = play(quest_path, "help\ndance a jig\n\n")
    assert "Commands: look" in out and "inventory (i), help (?)" in out
    assert engine.state.turn == 1 and engine.history[0].kind == "free"


def test_narrate_hook_runs_for_turns_only(quest_path):
    calls = []

    def hook(engine, result, write):
        calls.append(result.kind)
        write(f"~ spirit on turn {result.turn}\n")

    _, out, _, _ = play(quest_path, "help\ni\nlantern\ndance\n\nsunlight\n", narrate=hook)
    assert calls == ["choice", "free", "exit"]
    assert "~ spirit on turn 3\n" in out


def test_same_seed_same_transcript(tmp_path):
    path = write(tmp_path / "quest.yaml", QUEST.replace(
        "description: Hay everywhere.", "description: [Hay one., Hay two., Hay three., Hay four.]"))
    moves = "up\ndown\n" * 5
    assert play(path, moves, seed=9)[1] == play(path, moves, seed=9)[1]
    assert len({play(path, moves, seed=s)[1] for s in range(10)}) > 1


HOSTILE = """\
id: hostile
title: "Evil \\e[2J\\e]0;pwned\\a Title"
author: "Mallory \\e[31m"
start: room
items:
  gem: {name: "a \\e[5mblinking\\e[0m gem", description: "\\x9b31m shiny"}
scenes:
  room:
    title: "Room \\e[1m"
    description: "Look \\e]8;;http://evil\\e\\\\here\\e]8;;\\e\\\\ now \\x07"
    choices:
      - label: "Take \\e[31mthe gem"
        words: [gem]
        effects: [{give: gem}, {say: "\\e[?1049h gone"}]
        text: "\\e[1A\\e[2K"
    exits:
      - {label: "Leave \\r\\e[K", words: [leave], to: out}
  out:
    title: Out
    description: Out.
    ending: bye
endings:
  bye: {title: "Bye \\e[0m", text: "\\e[3J cleared"}
"""


def test_escape_sequences_in_quest_text_are_shown_inert(tmp_path):
    path = write(tmp_path / "quest.yaml", HOSTILE)
    assert "\x1b" in load_quest(path).title  # the quest really holds escapes
    code, out, _, _ = play(path, "gem\ni\nleave\n")
    assert code == 0 and "THE END" in out
    assert not any(c in out for c in "\x1b\x07\x9b\r")
    assert out.count("\ufffd") >= 10
    assert "Title" in out and "blinking" in out and "cleared" in out


# -- through the command line ------------------------------------------------------------

def run_cli(monkeypatch, capsys, argv, lines: str):
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = main(argv)
    return code, capsys.readouterr()


def test_cli_plain_no_spirit(monkeypatch, capsys, quest_path):
    argv = ["play", str(quest_path), "--plain", "--no-spirit", "--seed", "3"]
    code, captured = run_cli(monkeypatch, capsys, argv, "lantern\nup\n")
    assert code == 0 and captured.err == ""
    assert "> up" in captured.out and "== The Loft ==" in captured.out
    again = run_cli(monkeypatch, capsys, argv, "lantern\nup\n")
    assert again == (0, captured)


def test_cli_plain_ending(monkeypatch, capsys, quest_path):
    code, captured = run_cli(monkeypatch, capsys,
                             ["play", str(quest_path), "--plain", "--no-spirit"], "sunlight\n")
    assert code == 0 and captured.out.rstrip().endswith("THE END")


def test_cli_broken_quest_is_reported_without_a_traceback(monkeypatch, capsys, tmp_path):
    path = write(tmp_path / "broken.yaml", QUEST.replace("to: loft", "to: attic"))
    code, captured = run_cli(monkeypatch, capsys, ["play", str(path), "--plain", "--no-spirit"], "")
    assert code == 1 and "Traceback" not in captured.err
    line = QUEST.splitlines().index("        to: loft") + 1
    assert f"broken.yaml:{line}:" in captured.err and "attic" in captured.err


def test_no_spirit_process_never_loads_the_model_libraries(quest_path):
    script = textwrap.dedent(f"""
        import sys
        from game.cli import main
        code = main(["play", {str(quest_path)!r}, "--plain", "--no-spirit", "--seed", "1"])
        heavy = sorted(m for m in ("torch", "transformers", "textual") if m in sys.modules)
        print("HEAVY:", heavy)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], input="lantern\nsunlight\n", cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "THE END" in proc.stdout and "HEAVY: []" in proc.stdout
    assert proc.stderr == ""
