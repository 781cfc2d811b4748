"""Turning raw model output into narration, and spotting replies that went wrong.

Pure Python (no torch). `clean` is the whole recipe applied to every reply:

1. drop `<|endoftext|>` and everything after it;
2. drop an echo of the prompt (the prompt itself, or leading lines that repeat
   one of the prompt's last three lines, such as the player's "> action",
   with or without the marker);
3. cut before any stop string and before any line that starts with the action
   marker `>` (the model starting to write the player's next move);
4. collapse runaway whitespace (runs of spaces, blank-line piles);
5. cut after the last complete sentence, keeping closing quotes and brackets;
   with no complete sentence, keep the text, minus the last word when the
   generation was cut off by the token limit (it may be half a word).

`judge` says why a cleaned reply is unusable, or None when it is fine. A reply
is bad when it is empty, speaks for the player (a line starting with `>`,
"You say/ask/reply/type ..." or "You:" / "Player:"), repeats itself (one
sentence three times, or one 4-word run three times) or repeats one of the
last three narrations (half of its 4-word runs appear there, or it is the same
text). The service re-samples once when `judge` objects.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from game.context import ACTION_MARKER  # the prompt format owns the action marker

END_OF_TEXT = "<|endoftext|>"
DEFAULT_STOPS: tuple[str, ...] = ("\n" + ACTION_MARKER,)

# A sentence ends with . ! ? or an ellipsis, then optional closing quotes/brackets,
# then whitespace or the end of the text.
_SENTENCE_END = re.compile(r"(?:[.!?]+|…)[\"'”’)\]]*(?=\s|$)")
_ACTION_LINE = re.compile(rf"^[ \t]*{re.escape(ACTION_MARKER)}", re.M)
_PLAYER_LINE = re.compile(
    rf"^[ \t]*(?:{re.escape(ACTION_MARKER)}|you (?:say|said|ask|asked|reply|replied|type|typed|answer|answered)\b"
    r"|(?:you|player)[ \t]*:)", re.I | re.M)
_WORD = re.compile(r"[\w']+")

NGRAM = 4          # word n-gram size used by the repetition checks
SELF_REPEATS = 3   # a sentence or n-gram this many times in one reply is a loop
OVERLAP = 0.5      # share of a reply's n-grams found in an earlier narration
RECENT = 3         # how many earlier narrations are compared


def cut_at_end_of_text(text: str) -> str:
    """Drop the end-of-text token and anything the model wrote after it."""
    index = text.find(END_OF_TEXT)
    return text if index < 0 else text[:index]


def strip_echo(text: str, prompt: str) -> str:
    """Remove the prompt if the reply starts with it, then leading lines that
    repeat one of the prompt's last three lines (ignoring a leading `>`)."""
    if prompt and text.startswith(prompt):
        text = text[len(prompt):]
    recent = {_bare(line) for line in prompt.strip().splitlines()[-3:]} - {""}
    while recent:
        first, _, rest = text.lstrip().partition("\n")
        if _bare(first) not in recent:
            break
        text = rest
    return text


def _bare(line: str) -> str:
    """A line without surrounding space or a leading action marker, for echo matching."""
    return line.strip().removeprefix(ACTION_MARKER).strip()


def cut_at_stop(text: str, stop_strings: Iterable[str] = DEFAULT_STOPS) -> str:
    """Cut before the first stop string and before any line starting with `>`."""
    cuts = [text.find(stop) for stop in stop_strings if stop]
    action = _ACTION_LINE.search(text)
    cuts.append(action.start() if action else -1)
    cuts = [index for index in cuts if index >= 0]
    return text[:min(cuts)] if cuts else text


def collapse_whitespace(text: str) -> str:
    """Single spaces within lines, no trailing spaces, at most one blank line in a row."""
    text = re.sub(r"[^\S\n]+", " ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def cut_to_sentence(text: str, truncated: bool = True) -> str:
    """Keep text up to the end of its last complete sentence.

    Without any complete sentence the text is kept; if `truncated` (the model
    was stopped mid-flow) its last word is dropped, as it may be cut in half.
    """
    ends = list(_SENTENCE_END.finditer(text))
    if ends:
        return text[:ends[-1].end()].rstrip()
    text = text.rstrip()
    if truncated:
        space = max(text.rfind(" "), text.rfind("\n"))
        if space > 0:
            text = text[:space].rstrip(" \n,;:-–—")
    return text


def clean(raw: str, *, prompt: str = "", stop_strings: Iterable[str] = DEFAULT_STOPS,
          truncated: bool = True) -> str:
    """Raw generated text → narration (see the module docstring for the steps)."""
    text = cut_at_end_of_text(raw).replace("\r\n", "\n").replace("\r", "\n")
    text = strip_echo(text, prompt)
    text = cut_at_stop(text, stop_strings)
    text = collapse_whitespace(text)
    return cut_to_sentence(text, truncated)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int = NGRAM) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n+", text)
    return [" ".join(words(part)) for part in parts if len(words(part)) >= 2]


def repeats_itself(text: str) -> bool:
    """One sentence, or one run of 4 words, occurs 3 or more times."""
    counts = Counter(_sentences(text)) + Counter(_ngrams(words(text)))
    return any(count >= SELF_REPEATS for count in counts.values())


def repeats_previous(text: str, previous: Sequence[str]) -> bool:
    """The reply is one of the last narrations again, or half its 4-word runs are in one."""
    mine = words(text)
    grams = set(_ngrams(mine))
    for earlier in list(previous)[-RECENT:]:
        theirs = words(earlier)
        if mine and mine == theirs:
            return True
        if grams and len(grams & set(_ngrams(theirs))) >= OVERLAP * len(grams):
            return True
    return False


def speaks_for_player(text: str) -> bool:
    """A line starts with `>`, "You say/ask/reply/type/answer" or "You:" / "Player:"."""
    return bool(_PLAYER_LINE.search(text))


def judge(text: str, previous: Sequence[str] = ()) -> str | None:
    """Why the cleaned reply `text` is unusable, or None when it is fine."""
    if not text.strip():
        return "empty"
    if speaks_for_player(text):
        return "speaks for the player"
    if repeats_itself(text):
        return "repeats itself"
    if repeats_previous(text, previous):
        return "repeats an earlier narration"
    return None
