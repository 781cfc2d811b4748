"""Plain-terminal play: reads actions line by line, prints each turn as text.

Works in pipes, scripts and screen readers: no colours, no cursor tricks. When
standard input is not a terminal, each action is echoed as "> action" so the
output reads as a transcript. Ends cleanly (exit 0) at end of input or when the
quest ends. Extra commands: `undo`, `quit`.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Callable, TextIO

from game.engine import Engine, Para, TurnResult
from game.safe_text import inert

QUIT_WORDS = {"quit", "exit", "q"}
UNDO_WORDS = {"undo", "u"}

# Called after each turn's authored text: (engine, result, write) -> None.
NarrateHook = Callable[[Engine, TurnResult, Callable[[str], None]], None]


class PlainGame:
    def __init__(self, engine: Engine, out: TextIO | None = None, inp: TextIO | None = None,
                 narrate: NarrateHook | None = None, width: int = 78):
        self.engine = engine
        self.out = out or sys.stdout
        self.inp = inp or sys.stdin
        self.narrate = narrate
        self.width = width
        self.echo = not _isatty(self.inp)

    def write(self, text: str = "") -> None:
        self.out.write(inert(text))
        self.out.flush()

    def para(self, text: str, indent: str = "") -> None:
        for block in text.strip("\n").split("\n"):
            wrapped = textwrap.fill(block, self.width, initial_indent=indent,
                                    subsequent_indent=indent) if block.strip() else ""
            self.write(wrapped + "\n")

    def show(self, result: TurnResult) -> None:
        for p in result.paragraphs:
            self.render(p)
        if self.narrate is not None and result.narrate:
            self.narrate(self.engine, result, self.write)
        if not result.ending and result.kind not in ("empty",):
            self.show_options(result)

    def render(self, p: Para) -> None:
        if p.kind == "scene-title":
            self.write(f"\n== {p.text} ==\n")
        elif p.kind == "ending-title":
            self.write(f"\n*** {p.text} ***\n")
        elif p.kind == "change":
            self.para(p.text, "  * ")
        else:
            self.para(p.text)

    def show_options(self, result: TurnResult) -> None:
        if result.options:
            self.write("\n")
            for o in result.options:
                self.write(f"  {o.number}. {inert(o.label)}\n")

    def run(self) -> int:
        quest = self.engine.quest
        self.write(f"{quest.title}\n")
        if quest.author:
            self.write(f"by {quest.author}\n")
        self.show(self.engine.opening())
        if self.engine.ended:
            return 0
        while True:
            if not self.echo:
                self.write("\n> ")
            line = self.inp.readline()
            if not line:
                self.write("\n")
                return 0
            action = line.rstrip("\n")
            if self.echo:
                self.write(f"\n> {action}\n")
            word = action.strip().lower()
            if word in QUIT_WORDS:
                return 0
            if word in UNDO_WORDS:
                if self.engine.undo():
                    self.write("(You step back one turn.)\n")
                    self.show(self.engine.opening())
                else:
                    self.write("(Nothing to undo: this is the start.)\n")
                continue
            result = self.engine.act(action)
            self.show(result)
            if result.ending is not None:
                self.write("\nTHE END\n")
                return 0


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
