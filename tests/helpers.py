"""Plain helpers the test files share (the fixtures live in conftest.py): the smallest
valid quest, writing test files (and loading quests from them), finding where a piece
of text sits in a file, looking at an engine, and playing a quest in plain mode the way
a player does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from game.world.loader import load_quest
from tests.conftest import ROOT

# The smallest valid quest; tests add or break one thing at a time. Line 3 is `start: a`.
MINI = """\
id: mini
title: Mini
start: a
scenes:
  a: {title: A, description: D, ending: e}
endings:
  e: {title: E, text: T}
"""


def write(path: Path, data: str | bytes) -> Path:
    """Put `data` in the file at `path` exactly as given (text as UTF-8), making its folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def write_quest(folder: Path, name: str, text: str) -> Path:
    """Quest (or other YAML) text in `folder/name`, dedented so that a test may indent it."""
    return write(Path(folder) / name, textwrap.dedent(text))


def load_quest_text(folder: Path, name: str, text: str):
    """The `Quest` that `text`, written to `folder/name` by `write_quest`, loads as."""
    return load_quest(write_quest(folder, name, text))


def at(path: Path, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of `needle` in the file."""
    text = Path(path).read_text(encoding="utf-8")
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    return text.count("\n", 0, idx) + 1, idx - (text.rfind("\n", 0, idx) + 1) + 1


def labels(engine) -> list[str]:
    """The labels of the options the engine offers now, in order."""
    return [o.label for o in engine.options()]


def snapshot(engine) -> tuple[dict, list[dict]]:
    """The engine's state and history as plain data, to compare two moments of play."""
    return engine.state.to_dict(), [t.to_dict() for t in engine.history]


def play_plain(path: Path, actions: list[str], home: Path | None = None) -> subprocess.CompletedProcess:
    """`storyteller play PATH --plain --no-spirit` in a real subprocess, typing `actions` one per
    line. With `home`, the player's config and data folders are `home/config` and `home/data`;
    without, they are the ones this test's environment names (conftest keeps them private)."""
    env = dict(os.environ)
    if home is not None:
        env.update(STORYTELLER_CONFIG_DIR=str(home / "config"), STORYTELLER_DATA_DIR=str(home / "data"))
    return subprocess.run([sys.executable, "-m", "game", "play", str(path), "--plain", "--no-spirit"],
                          input="".join(a + "\n" for a in actions), capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, env=env, timeout=120)
