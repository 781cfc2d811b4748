"""Text that depends on the state: picking a text's variant, and the names written inside text.

A quest text is either plain or a `Text` with variants, each with an optional
condition; the first whose condition holds is shown. Inside any text,
`{score}`, `{max_score}`, `{turns}`, a flag's id (its value) or an item's id
(its name) is replaced by what it stands for now; `{{` and `}}` write braces.
`names_in` finds the names a text uses, so the loader can report an unknown
one at its line.
"""

from __future__ import annotations

import re

from game.world.model import Quest, Text
from game.world.rules import holds
from game.state import GameState

BUILTIN_NAMES = ("score", "max_score", "turns")
NAME_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\}")


def pick(text: str, state: GameState) -> str:
    """The variant in force (a plain text is its own only variant); "" when none holds."""
    if not isinstance(text, Text):
        return text
    return next((t for c, t in text.variants if holds(c, state)), "")


def fill(text: str, state: GameState, quest: Quest) -> str:
    """The names inside a text replaced by their values now."""
    if "{" not in text and "}" not in text:
        return text

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name is None:
            return m.group(0)[0]
        if name == "score":
            return str(state.score)
        if name == "max_score":
            return str(quest.max_score or 0)
        if name == "turns":
            return str(state.turn)
        if name in quest.flags:
            return _shown(state.flags.get(name, quest.flags[name]))
        if name in quest.items:
            return quest.items[name].name
        return m.group(0)  # unknown names are caught by the loader; keep the text as written

    return NAME_RE.sub(value, text)


def render(text: str, state: GameState, quest: Quest) -> str:
    return fill(pick(text, state), state, quest)


def names_in(text: str) -> list[tuple[str, int]]:
    """The `{names}` in one text, with their offsets."""
    return [(m.group(1), m.start()) for m in NAME_RE.finditer(text) if m.group(1) is not None]


def _shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
