"""The context manager: builds each narrator prompt and keeps it inside the model's window.

`ContextBuilder(tokenizer, window)` turns a `ContextRequest` (persona, state card,
memory notes, author's note, lore, scene, hints, recaps, recent turns and the new
action) into a `BuiltPrompt`: the exact text for the text-generation pipeline, its
exact token count and a per-segment report. Counting uses the model's real tokenizer
(anything with `encode(text) -> list[int]`); the window comes from the caller (read
from the model config), never from here. The guarantee, for any input:

    len(tokenizer.encode(prompt.text)) + max_new_tokens <= window

The prompt reads like a story transcript, so a plain language model continues it
with narration. It is laid out so that one turn's prompt is the start of the next
one's: the narrator keeps the key/value cache of the part that did not change and
computes only what is new (see docs/performance.md). Segments, in prompt order:

    persona                  pinned        the narrator's voice
    memory notes             pinned        "[Remember: ...]"
    recaps, oldest first     trimmable 2   "[Earlier: ...]"
    scene text               pinned        the current scene description
    hints                    trimmable 4   "[Narrator knows: ...; ...]"
    lore named by the scene  trimmable 3   "[Lore: ...]"
    author's note            trimmable 5   "[Author's note: ...]"
    turns, oldest first      trimmable 1   each as it was told: its state card, the lore it
                                           named, "> action", authored outcome, narration
      newest turn            kept          clipped only when nothing else is left to trim;
                                           a past turn's action is told at most
                                           TOLD_ACTION_CHARS long (then "…")
    state card               pinned        "[Scene: ... | Carrying: ... | ...]"
    lore named by the action trimmable 3   "[Lore: ...]"
    new action               pinned        "> action", clipped but never dropped
    outcome                  pinned        the engine's authored outcome of the action

The part from the state card to the outcome (the "bottom") is written exactly as the
newest turn will be in the next prompt, which adds the narration after it; the
prompt ends with a newline after the outcome, so the model narrates next.
`STOP_STRINGS` tell the narrator where to stop (before it writes a new "> " action).
Everything above the bottom is `BuiltPrompt.prefix`: the next turn's prompt starts
with it unless the scene changes or older turns are dropped, so the narrator can
compute it while the player reads and types.

When the prompt is too long, whole segments are trimmed in the numbered order:
older turns first, in chunks of `TRIM_CHUNK` turn numbers from the oldest (so the
kept turns start at the same place for a few turns, not a new one every turn; pass
the whole history, with turn numbers, for that to hold; when choosing how many to
drop, the new turn counts as at least `BOTTOM_ALLOWANCE` tokens, so the choice rarely
depends on the length of the new action and outcome), then recaps oldest first, then
lore (entries the new action and outcome do not name go first), hints and the
author's note. If that is not enough the newest turn is clipped to the room the
pinned segments leave (dropped only when they leave none). If the pinned segments
alone overflow, the biggest are clipped to a common size, keeping their start and
ending with "…". Only when even clipped ones cannot fit are pinned segments dropped
(memory, scene, persona, state, outcome), so that the action keeps `ACTION_KEEP`
tokens; the action itself is never dropped. Clipping is reported as "clipped".

A lore entry is included when one of its keywords appears, case-insensitively and
as a whole word, in the scene text, in the action or authored outcome of a kept
turn, or in the new action and outcome (never because of the model's own words),
and only once: with the scene when the scene names it, else in the first kept turn
that names it, else just after the new state card.

Per-segment counts are exact for each segment on its own; since BPE counts are not
quite additive across boundaries, the final text is encoded once more and, in the
rare case it is over, trimmed further.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

ACTION_MARKER = ">"
STOP_STRINGS: tuple[str, ...] = ("\n" + ACTION_MARKER, "\n[")
"""Strings the narrator stops on: the start of the player's next action or of a note."""

CLIP_MARKER = "…"
TRIM_CHUNK = 2  # older turns are dropped in chunks of this many turn numbers
BOTTOM_ALLOWANCE = 128  # deciding which older turns to drop, the new turn counts as at least this
ACTION_KEEP = 8  # a clipped action keeps at least this many of its tokens while others can go
TOLD_ACTION_CHARS = 300  # a past turn's action is told at most this long (a huge paste must not
                         # push the author's note, hints and lore out of the next prompts)

_CACHE_LIMIT = 8192


class _NoRoom(Exception):
    """The budget cannot hold even a clipped action (turned into a ValueError by `build`)."""


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


class LoreLike(Protocol):
    """A lore entry, e.g. `game.world.model.LoreEntry`."""

    id: str
    keywords: Sequence[str]
    text: str


@dataclass(frozen=True)
class Turn:
    """One past turn: the player's action, the engine's authored outcome, the narration.

    `card` is the state card the narrator saw with the turn ("" when unknown, e.g. a
    turn played with the Spirit silent); `number` is the turn's number in the story
    (0: unknown, its place in the list is used), which keeps trimming steady.
    """

    action: str
    authored: str = ""
    narration: str = ""
    card: str = ""
    number: int = 0


@dataclass(frozen=True)
class StateCard:
    """The quest's truth in compact form, rendered "[Scene: X | Carrying: a, b | flag]"."""

    scene: str
    carrying: Sequence[str] = ()
    flags: Sequence[str] = ()  # facts already in words, e.g. "Torch lit"
    score: str = ""  # "1 of 2" in a quest that keeps a score

    def render(self) -> str:
        parts = [f"Scene: {self.scene}", "Carrying: " + (", ".join(self.carrying) or "nothing")]
        if self.score:
            parts.append(f"Score: {self.score}")
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
    prefix: str = ""  # the text before the new turn: what the next turn's prompt starts with
    # The same prompt as chat messages, for a server's chat API: persona, notes, scene, lore, the
    # author's note and the state card as the system message, each kept turn as the player's
    # message and the narration as the narrator's, the new action and outcome last.
    messages: list[dict] = field(default_factory=list, repr=False)

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
    turn: Turn | None = None  # turns only: the turn, and the lore it names (not the scene's)
    names: list = field(default_factory=list)
    shown: list = field(default_factory=list)  # turns only: the lore it is told with

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


@lru_cache(maxsize=4096)
def _keywords(keywords: tuple[str, ...]) -> re.Pattern | None:
    """One pattern for an entry's keywords: any of them, as a whole word, whatever the capitals."""
    words = [re.escape(k.strip()) for k in keywords if k.strip()]
    return re.compile(rf"(?<!\w)(?:{'|'.join(words)})(?!\w)", re.IGNORECASE) if words else None


def _named(lore: Sequence[LoreLike], text: str, besides: set[str]) -> list[LoreLike]:
    """The lore entries `text` names, in quest order, leaving out the ids in `besides`."""
    found = []
    for entry in lore:
        pattern = _keywords(tuple(entry.keywords))
        if entry.id not in besides and pattern is not None and pattern.search(text):
            found.append(entry)
    return found


def _lore_line(entry: LoreLike) -> str:
    return f"[Lore: {_one_line(entry.text)}]"


def _told_action(action: str) -> str:
    """A past turn's action as the next prompts tell it: capped at TOLD_ACTION_CHARS."""
    action = _one_line(action)
    if len(action) <= TOLD_ACTION_CHARS:
        return action
    return action[:TOLD_ACTION_CHARS].rstrip() + CLIP_MARKER


def _told(turn: Turn, lore: Sequence[LoreLike]) -> str:
    """A past turn as it was told: the body of its segment (the bottom, then the narration);
    its action capped (`_told_action`)."""
    parts = [turn.card.strip()] + [_lore_line(e) for e in lore] + \
        [f"{ACTION_MARKER} {_told_action(turn.action)}", turn.authored.strip(), turn.narration.strip()]
    return "\n".join(p for p in parts if p)


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

    def _tell(self, seg: _Seg, lore: Sequence[LoreLike]) -> int:
        """Write a turn segment with the lore it shows; its full token count."""
        seg.body, seg.shown = _told(seg.turn, lore), list(lore)
        seg.full = self.count(seg.source)
        return seg.full

    # -- segments -------------------------------------------------------------------

    def _segments(self, req: ContextRequest):
        """The request as segments: (top, turns, lore for the bottom, bottom), each in prompt order."""

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

        lore = [e for e in req.lore if e.text.strip()]
        with_scene = _named(lore, req.scene_text, set())
        for entry in with_scene:
            top.append(seg("lore", entry.id, "[Lore: ", _one_line(entry.text), "]\n"))
        if req.author_note and req.author_note.strip():
            top.append(seg("author_note", "author's note", "\n[Author's note: ", _one_line(req.author_note), "]\n"))

        scene_ids = {e.id for e in with_scene}
        turns = []
        for i, t in enumerate(req.turns):
            s = seg("turn", f"turn {t.number or i + 1}: {_short(t.action)}", "\n", "")
            s.turn, s.names = t, _named(lore, t.action + "\n" + t.authored, scene_ids)
            turns.append(s)

        news = []  # lore the new action and outcome name, shown here unless a kept turn shows it
        for entry in _named(lore, req.action + "\n" + req.authored, scene_ids):
            news.append(seg("lore", entry.id, "[Lore: ", _one_line(entry.text), "]\n"))
            news[-1].rank = 1

        state = req.state.render() if isinstance(req.state, StateCard) else req.state.strip()
        bottom = []
        if state:
            bottom.append(seg("state", "state card", "\n", state))
        action = _one_line(req.action)
        head = f"{ACTION_MARKER} " if state else f"\n{ACTION_MARKER} "
        bottom.append(seg("action", _short(action) or "(no action)", head, action))
        if req.authored.strip():
            bottom.append(seg("outcome", "authored outcome", "", req.authored.strip()))
        return top, turns, news, bottom

    # -- planning -------------------------------------------------------------------

    def _keep_from(self, top, turns, news, bottom, budget: int) -> int:
        """Where the kept turns start: the earliest chunk start from which they fit.

        Walks from the newest turn back, moving each lore entry to the earliest turn
        that names it, and stops at the first older turn that does not fit; the
        new turn counts as at least `BOTTOM_ALLOWANCE` tokens.
        """
        fixed = sum(s.full for s in bottom)
        room = budget - sum(s.full for s in top) - max(fixed, min(BOTTOM_ALLOWANCE, budget // 4))
        sizes = {len(turns): sum(s.full for s in news)}
        shown = {len(turns): list(news)}
        owner = {s.label: len(turns) for s in news}
        used, fail = sizes[len(turns)], -1
        for i in range(len(turns) - 1, -1, -1):
            mine = turns[i].names
            for entry in mine:
                j = owner.get(entry.id)
                if j is not None:
                    shown[j] = [e for e in shown[j] if (e.id if j < len(turns) else e.label) != entry.id]
                    new = (self._tell(turns[j], shown[j]) if j < len(turns)
                           else sum(s.full for s in shown[j]))
                    used += new - sizes[j]
                    sizes[j] = new
                owner[entry.id] = i
            shown[i] = list(mine)
            sizes[i] = self._tell(turns[i], mine)
            used += sizes[i]
            if used > room and i < len(turns) - 1:
                fail = i
                break
        if fail < 0:
            return 0
        chunk = [((t.turn.number or i + 1) - 1) // TRIM_CHUNK for i, t in enumerate(turns)]  # numbers from 1
        for i in range(fail + 1, len(turns) - 1):
            if chunk[i] != chunk[i - 1]:
                return i
        return max(0, len(turns) - 1)

    def _plan(self, top, turns, news, bottom, budget: int) -> list[_Seg]:
        """Set each segment's status so that the counts add up to at most `budget`.

        Returns the bottom as it will be: the new lore no kept turn shows, then `bottom`.
        """
        start = self._keep_from(top, turns, news, bottom, budget) if turns else 0
        seen: set[str] = set()
        for i, s in enumerate(turns):
            if i < start:  # left out: its size is still reported
                self._tell(s, s.names)
                continue
            lore = [e for e in s.names if e.id not in seen]
            seen.update(e.id for e in lore)
            self._tell(s, lore)
        lore = [s for s in news if s.label not in seen]
        if bottom[0].kind == "action":  # no state card: the line break goes on whatever comes first
            for s in news:
                s.head = "[Lore: "
            bottom[0].head = f"{ACTION_MARKER} " if lore else f"\n{ACTION_MARKER} "
            if lore:
                lore[0].head = "\n[Lore: "
            for s in news + bottom[:1]:
                s.full = self.count(s.source)
        bottom = bottom[:1] + lore + bottom[1:] if bottom[0].kind == "state" else lore + bottom
        everything = top + turns + bottom
        for s in everything:
            s.status, s.clipped_body, s.tokens = "included", None, s.full
        for s in turns[:start]:
            s.status, s.tokens = "trimmed", 0
        total = sum(s.tokens for s in everything)

        def drop(s: _Seg) -> None:
            nonlocal total
            total -= s.tokens
            s.status, s.tokens = "trimmed", 0

        older = [s for s in turns[:-1] if s.status == "included"]
        for s in older:  # the new turn is bigger than the allowance: drop more, oldest first
            if total <= budget:
                break
            drop(s)
        lore = sorted((s for s in top + bottom if s.kind == "lore"), key=lambda s: s.rank)  # stable order
        trimmable = [s for s in top if s.kind == "recap"] + lore + [s for s in top if s.kind == "hints"]
        for s in trimmable + [s for s in top if s.kind == "author_note"]:
            if total <= budget:
                return bottom
            drop(s)
        if total <= budget:
            return bottom
        if turns:  # the newest turn: clipped to what is left, dropped only if even that is too little
            newest = turns[-1]
            target = newest.full - (total - budget)
            if target >= self._floor(newest):
                total -= newest.tokens
                self._clip(newest, target)
                total += newest.tokens
                return bottom
            drop(newest)

        pinned = [s for s in top + bottom if s.status == "included" and s.kind != "lore"]
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
        return bottom

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
        top, turns, news, bottom = self._segments(request)
        for s in top + news + bottom:
            s.full = self.count(s.source)

        budget = goal = self.window - max_new_tokens
        while True:
            try:
                shown = self._plan(top, turns, news, bottom, budget)
            except _NoRoom:
                raise ValueError(
                    f"max_new_tokens {max_new_tokens} leaves only {goal} tokens for the prompt in the "
                    f"{self.window}-token window, too few for even the player's action; lower max_new_tokens"
                ) from None
            prefix = "".join(s.text for s in top + turns)
            text = prefix + "".join(s.text for s in shown)
            n = len(self.tokenizer.encode(text))
            if n <= goal:
                break
            budget -= n - goal  # BPE merged differently across a boundary: trim a little more

        segments = [SegmentReport(s.kind, s.label, s.tokens, s.full, s.status) for s in top + turns + shown]
        return BuiltPrompt(text, n, max_new_tokens, self.window, segments, prefix, _chat(top, turns, shown))


def _chat(top: list[_Seg], turns: list[_Seg], bottom: list[_Seg]) -> list[dict]:
    """The prompt's kept segments as chat messages (see `BuiltPrompt.messages`)."""
    system = [s.text.strip() for s in top + [b for b in bottom if b.kind in ("state", "lore")]]
    messages = [("system", "\n".join(p for p in system if p))]
    for s in turns:
        if s.status == "trimmed":
            continue
        if s.status == "clipped":
            messages.append(("user", s.text.strip()))
            continue
        messages.append(("user", _told(Turn(s.turn.action, s.turn.authored), s.shown)))
        messages.append(("assistant", s.turn.narration.strip()))
    messages.append(("user", "\n".join(s.text.strip() for s in bottom if s.kind in ("action", "outcome"))))
    merged: list[dict] = []
    for role, content in messages:
        if not content:
            continue
        if merged and merged[-1]["role"] == role:  # chat templates want the roles to take turns
            merged[-1]["content"] += "\n" + content
        else:
            merged.append({"role": role, "content": content})
    return merged


__all__ = [
    "ACTION_MARKER",
    "ACTION_KEEP",
    "BOTTOM_ALLOWANCE",
    "CLIP_MARKER",
    "STOP_STRINGS",
    "TRIM_CHUNK",
    "BuiltPrompt",
    "ContextBuilder",
    "ContextRequest",
    "SegmentReport",
    "StateCard",
    "Turn",
]
