"""Exports a played story as Markdown: the quest's words, the player's actions, the Spirit's narration."""

from __future__ import annotations

from datetime import datetime

from game.engine import Engine
from game.safe_text import inert, inert_line


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.strip().splitlines())


def to_markdown(engine: Engine, opening: str = "") -> str:
    quest = engine.quest
    lines = [f"# {inert_line(quest.title)}", "",
             f"*by {inert_line(quest.author)}, played {datetime.now():%Y-%m-%d %H:%M}*", ""]
    if opening:
        lines += [opening.strip(), ""]
    for turn in engine.history:
        lines += [f"**> {inert_line(turn.action)}**", ""]
        if turn.authored.strip():
            lines += [turn.authored.strip(), ""]
        if turn.narration.strip():
            lines += [_quote(turn.narration), ""]
    ending = engine.ending
    if ending is not None:
        verdict = "won" if ending.outcome == "win" else "lost"
        lines += [f"## The end: {inert_line(ending.title)} (you {verdict})", ""]
    return inert("\n".join(lines).rstrip() + "\n")  # an export is output too: never escape codes
