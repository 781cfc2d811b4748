"""The context manager: builds each narrator prompt and keeps it inside the model's window.

`ContextBuilder(tokenizer, window)` turns a `ContextRequest` (persona, state card,
memory notes, author's note, lore, scene, hints, recaps, recent turns and the new
action) into a `BuiltPrompt`: the exact text for the text-generation pipeline, its
exact token count and a per-segment report. Counting uses the model's real tokenizer
(anything with `encode(text) -> list[int]`); the window comes from the caller (read
from the model config), never from here. The guarantee, for any input:

    len(tokenizer.encode(prompt.text)) + max_new_tokens <= window

The prompt reads like a story transcript, so a plain language model continues it
with narration. Segments, in prompt order (what changes least comes first, so the
prompt prefix stays the same between turns and its key/value cache can be reused):

    persona                  pinned        the narrator's voice
    memory notes             pinned        "[Remember: ...]"
    recaps, oldest first     trimmable 2   "[Earlier: ...]"
    scene text               pinned        the current scene description
    hints                    trimmable 4   "[Narrator knows: ...; ...]"
    lore (triggered only)    trimmable 3   "[Lore: ...]"
    turns, oldest first      trimmable 1   "> action" / authored / narration
      author's note          trimmable 5   placed before the last `AUTHOR_NOTE_DEPTH` turns
    newest turn              kept          clipped only when nothing else is left to trim
    state card               pinned        "[Scene: ... | Carrying: ... | ...]"
    new action               pinned        "> action", clipped but never dropped
    outcome                  pinned        the engine's authored outcome of the action

The prompt ends with a newline after the outcome, so the model narrates next;
`STOP_STRINGS` tell the narrator where to stop (before it writes a new "> " action).

When the prompt is too long, whole segments are trimmed in the numbered order:
older turns `TRIM_CHUNK` at a time from the oldest (so the prefix shifts once every
few turns, not every turn; pass the whole history for that to hold), then recaps
oldest first, then lore (entries the new action and outcome do not name go first), hints and
the author's note. If that is not enough the newest turn is clipped to the room the
pinned segments leave (dropped only when they leave none). If the pinned segments
alone overflow, the biggest are clipped to a common size, keeping their start and
ending with "…". Only when even clipped ones cannot fit are pinned segments dropped
(memory, scene, persona, state, outcome), so that the action keeps `ACTION_KEEP`
tokens; the action itself is never dropped. Clipping is reported as "clipped".

A lore entry is included only when one of its keywords appears, case-insensitively
and as a whole word, in the new action and outcome, the last `LORE_SCAN_TURNS`
turns or the scene text.

Per-segment counts are exact for each segment on its own; since BPE counts are not
quite additive across boundaries, the final text is encoded once more and, in the
rare case it is over, trimmed further.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

ACTION_MARKER = ">"
STOP_STRINGS: tuple[str, ...] = ("\n" + ACTION_MARKER, "\n[")
"""Strings the narrator stops on: the start of the player's next action or of a note."""

CLIP_MARKER = "…"
TRIM_CHUNK = 4  # older turns are dropped this many at a time
AUTHOR_NOTE_DEPTH = 3  # the author's note goes before this many newest turns
LORE_SCAN_TURNS = 3  # lore keywords are looked for in this many newest turns
ACTION_KEEP = 8  # a clipped action keeps at least this many of its tokens while others can go

_CACHE_LIMIT = 8192


class _NoRoom(Exception):
    """The budget cannot hold even a clipped action (turned into a ValueError by `build`)."""


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


class LoreLike(Protocol):
    """A lore entry, e.g. `game.quest.LoreEntry`."""

    id: str
    keywords: Sequence[str]
    text: str


@dataclass(frozen=True)
class Turn:
    """One past turn: the player's action, the engine's authored outcome, the narration."""

    action: str
    authored: str = ""
    narration: str = ""


@dataclass(frozen=True)
class StateCard:
    """The quest's truth in compact form, rendered "[Scene: X | Carrying: a, b | flag]"."""

    scene: str
    carrying: Sequence[str] = ()
    flags: Sequence[str] = ()  # facts already in words, e.g. "Torch lit"

    def render(self) -> str:
        parts = [f"Scene: {self.scene}", "Carrying: " + (", ".join(self.carrying) or "nothing")]
        return "[" + " | ".join(parts + list(self.flags)) + "]"


@dataclass(frozen=True)
class ContextRequest:
    """Everything the prompt for one turn is built from."""

    action: str
    authored: str = ""
    persona: str = ""
    state: StateCard | str = ""
    memory: Sequence[str] = ()
    author_note: str | None = None
    lore: Sequence[LoreLike] = ()
    scene_text: str = ""
    hints: Sequence[str] = ()
    recaps: Sequence[str] = ()  # oldest first
    turns: Sequence[Turn] = ()  # oldest first


@dataclass(frozen=True)
class SegmentReport:
    kind: str  # persona state memory author_note lore scene hints recap turn action outcome
    label: str
    tokens: int  # tokens it has in the prompt (0 when trimmed)
    full_tokens: int  # tokens it would have had in full
    status: str  # "included" | "trimmed" | "clipped"


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    prompt_tokens: int  # len(tokenizer.encode(text))
    max_new_tokens: int
    window: int
    segments: list[SegmentReport] = field(default_factory=list)

    def with_status(self, status: str) -> list[SegmentReport]:
        return [s for s in self.segments if s.status == status]

    def to_log(self, turn: int) -> dict:
        """One JSON-lines record of the context log."""
        return {
            "turn": turn,
            "prompt": self.text,
            "prompt_tokens": self.prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "window": self.window,
            "segments": [asdict(s) for s in self.segments],
        }


@dataclass
class _Seg:
    kind: str
    label: str
    head: str
    body: str
    tail: str
    full: int = 0
    tokens: int = 0
    status: str = "included"
    clipped_body: str | None = None
    rank: int = 0  # lore only: 1 when the new action names it

    @property
    def source(self) -> str:
        return self.head + self.body + self.tail

    @property
    def text(self) -> str:
        if self.status == "trimmed":
            return ""
        return self.head + (self.body if self.clipped_body is None else self.clipped_body) + self.tail


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str, width: int = 40) -> str:
    text = _one_line(text)
    return text if len(text) <= width else text[: width - 1] + CLIP_MARKER


def _mentions(keyword: str, text: str) -> bool:
    keyword = keyword.strip()
    return bool(keyword) and re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE) is not None


class ContextBuilder:
    """Builds prompts for one model: its tokenizer and its window (in tokens)."""

    def __init__(self, tokenizer: Tokenizer, window: int):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive whole number of tokens, not {window!r}")
        self.tokenizer = tokenizer
        self.window = window
        self._counts: dict[str, int] = {}

    # -- counting -------------------------------------------------------------------

    def count(self, text: str) -> int:
        """Exact token count of `text`, remembered (segments repeat from turn to turn)."""
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= _CACHE_LIMIT:
                self._counts.clear()
            n = self._counts[text] = len(self.tokenizer.encode(text))
        return n

    def _floor(self, seg: _Seg) -> int:
        return self.count(seg.head + CLIP_MARKER + seg.tail)

    def _clip(self, seg: _Seg, target: int) -> None:
        """Keep the longest start of the body that fits `target` tokens with the marker."""
        body = seg.body

        def fits(n: int) -> bool:
            return len(self.tokenizer.encode(seg.head + body[:n].rstrip() + CLIP_MARKER + seg.tail)) <= target

        lo, hi = 0, min(len(body), 8 * target + 8)  # gallop: a huge body is never encoded whole
        while hi < len(body) and fits(hi):
            lo, hi = hi, min(len(body), hi * 2)
        while lo < hi:  # invariant: fits(lo); the answer is in [lo, hi]
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        space = body.rfind(" ", max(0, lo - 30), lo)  # end on a whole word when one is near
        if space > 0 and fits(space):
            lo = space
        seg.clipped_body = body[:lo].rstrip() + CLIP_MARKER
        seg.tokens = len(self.tokenizer.encode(seg.text))
        seg.status = "clipped"

    # -- segments -------------------------------------------------------------------

    def _segments(self, req: ContextRequest):
        """The request as segments: (top, turns, note, bottom), each in prompt order."""

        def seg(kind, label, head, body, tail="\n"):
            return _Seg(kind, label, head, body, tail)

        top = []
        if req.persona.strip():
            top.append(seg("persona", "persona", "", req.persona.strip()))
        for i, note in enumerate(n for n in req.memory if n.strip()):
            top.append(seg("memory", f"note {i + 1}: {_short(note)}", "[Remember: ", _one_line(note), "]\n"))
        for i, recap in enumerate(r for r in req.recaps if r.strip()):
            top.append(seg("recap", f"recap {i + 1}: {_short(recap)}", "[Earlier: ", _one_line(recap), "]\n"))
        if req.scene_text.strip():
            top.append(seg("scene", "scene", "", req.scene_text.strip()))
        hints = [_one_line(h) for h in req.hints if h.strip()]
        if hints:
            top.append(seg("hints", f"{len(hints)} hint(s)", "[Narrator knows: ", "; ".join(hints), "]\n"))

        recent = [req.action, req.authored, req.scene_text]
        for t in list(req.turns)[-LORE_SCAN_TURNS:]:
            recent += [t.action, t.authored, t.narration]
        recent_text, now_text = "\n".join(recent), req.action + "\n" + req.authored
        for entry in req.lore:
            if entry.text.strip() and any(_mentions(k, recent_text) for k in entry.keywords):
                top.append(seg("lore", entry.id, "[Lore: ", _one_line(entry.text), "]\n"))
                # entries named by the new action outlive those named only by older text
                top[-1].rank = int(any(_mentions(k, now_text) for k in entry.keywords))

        turns = [
            seg(
                "turn",
                f"turn {i + 1}: {_short(t.action)}",
                f"\n{ACTION_MARKER} ",
                "\n".join(p for p in (_one_line(t.action), t.authored.strip(), t.narration.strip()) if p),
            )
            for i, t in enumerate(req.turns)
        ]

        note = None
        if req.author_note and req.author_note.strip():
            note = seg("author_note", "author's note", "\n[Author's note: ", _one_line(req.author_note), "]\n")

        state = req.state.render() if isinstance(req.state, StateCard) else req.state.strip()
        bottom = []
        if state:
            bottom.append(seg("state", "state card", "\n", state))
        action = _one_line(req.action)
        head = ("" if state else "\n") + f"{ACTION_MARKER} "
        bottom.append(seg("action", _short(action) or "(no action)", head, action))
        if req.authored.strip():
            bottom.append(seg("outcome", "authored outcome", "", req.authored.strip()))
        return top, turns, note, bottom

    # -- planning -------------------------------------------------------------------

    def _plan(self, top, turns, note, bottom, budget: int) -> None:
        """Set each segment's status so that the counts add up to at most `budget`."""
        everything = top + turns + ([note] if note else []) + bottom
        for s in everything:
            s.status, s.clipped_body, s.tokens = "included", None, s.full
        total = sum(s.full for s in everything)

        def drop(s: _Seg) -> None:
            nonlocal total
            total -= s.tokens
            s.status, s.tokens = "trimmed", 0

        older = turns[:-1]
        for start in range(0, len(older), TRIM_CHUNK):
            if total <= budget:
                return
            for s in older[start : start + TRIM_CHUNK]:
                drop(s)
        lore = sorted((s for s in top if s.kind == "lore"), key=lambda s: s.rank)  # stable: list order kept
        trimmable = [s for s in top if s.kind == "recap"] + lore + [s for s in top if s.kind == "hints"]
        for s in trimmable + ([note] if note else []):
            if total <= budget:
                return
            drop(s)
        if total <= budget:
            return
        if turns:  # the newest turn: clipped to what is left, dropped only if even that is too little
            newest = turns[-1]
            target = newest.full - (total - budget)
            if target >= self._floor(newest):
                total -= newest.tokens
                self._clip(newest, target)
                total += newest.tokens
                return
            drop(newest)

        pinned = [s for s in top if s.status == "included"] + bottom
        action = next(s for s in bottom if s.kind == "action")
        floors = {id(s): min(s.full, self._floor(s)) for s in pinned}
        least = floors[id(action)]
        if least > budget:
            raise _NoRoom
        floors[id(action)] = min(action.full, least + ACTION_KEEP)  # keep the start of the action
        for kind in ("memory", "scene", "persona", "state", "outcome"):  # last resort, never the action
            for s in reversed([s for s in pinned if s.kind == kind]):
                if sum(floors[id(p)] for p in pinned) <= budget:
                    break
                drop(s)
                pinned.remove(s)
        floors[id(action)] = min(floors[id(action)], max(least, budget))

        def size(cap: int) -> int:
            return sum(max(floors[id(s)], min(s.full, cap)) for s in pinned)

        lo, hi = 0, max(s.full for s in pinned)  # the largest common cap that fits: size(lo) <= budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid - 1)
        for s in pinned:
            if s.full > lo:
                self._clip(s, max(floors[id(s)], lo))

    # -- building -------------------------------------------------------------------

    def build(self, request: ContextRequest, max_new_tokens: int) -> BuiltPrompt:
        """The prompt for `request`, leaving room for `max_new_tokens` new tokens.

        Raises ValueError when max_new_tokens leaves no room in the window (it is never
        silently reduced: the caller chose it, the caller should change it).
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive whole number, not {max_new_tokens!r}")
        if max_new_tokens >= self.window:
            raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room in the {self.window}-token window")
        top, turns, note, bottom = self._segments(request)
        for s in top + turns + ([note] if note else []) + bottom:
            s.full = self.count(s.source)

        budget = goal = self.window - max_new_tokens
        while True:
            try:
                self._plan(top, turns, note, bottom, budget)
            except _NoRoom:
                raise ValueError(
                    f"max_new_tokens {max_new_tokens} leaves only {goal} tokens for the prompt in the "
                    f"{self.window}-token window, too few for even the player's action; lower max_new_tokens"
                ) from None
            text = self._assemble(top, turns, note, bottom)
            n = len(self.tokenizer.encode(text))
            if n <= goal:
                break
            budget -= n - goal  # BPE merged differently across a boundary: trim a little more

        ordered = self._report_order(top, turns, note, bottom)
        segments = [SegmentReport(s.kind, s.label, s.tokens, s.full, s.status) for s in ordered]
        return BuiltPrompt(text, n, max_new_tokens, self.window, segments)

    @staticmethod
    def _report_order(top, turns, note, bottom) -> list[_Seg]:
        kept = [s for s in turns if s.status != "trimmed"]
        at = turns.index(kept[-AUTHOR_NOTE_DEPTH:][0]) if kept else len(turns)
        return top + turns[:at] + ([note] if note else []) + turns[at:] + bottom

    def _assemble(self, top, turns, note, bottom) -> str:
        return "".join(s.text for s in self._report_order(top, turns, note, bottom))


__all__ = [
    "ACTION_MARKER",
    "ACTION_KEEP",
    "AUTHOR_NOTE_DEPTH",
    "CLIP_MARKER",
    "LORE_SCAN_TURNS",
    "STOP_STRINGS",
    "TRIM_CHUNK",
    "BuiltPrompt",
    "ContextBuilder",
    "ContextRequest",
    "SegmentReport",
    "StateCard",
    "Turn",
]
