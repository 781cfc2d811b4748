"""Understands what the player typed: built-in commands, numbers, and free text.

`parse(text)` returns a `Command`; `best_match(text, choices)` finds the choice or
exit that free text refers to, by its words (aliases), its label, or the title
of the scene an exit leads to. `deed(text)` reads Inform-style commands
("x hook", "hang the cloak on the hook") as a verb, a thing and a target, and
`things_named(phrase, things)` finds the things a phrase can mean (more than one:
the engine asks which). Abbreviations players bring from Inform: l = look,
i = inventory, x = examine, z = wait, g = again, ? = help,
n/s/e/w/ne/nw/se/sw/u/d = the directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from game.phrases import COMMAND_WORDS as COMMANDS
from game.world.model import Choice, Quest

DIRECTIONS = {"n": "north", "s": "south", "e": "east", "w": "west", "u": "up", "d": "down",
              "ne": "northeast", "nw": "northwest", "se": "southeast", "sw": "southwest"}
GO_VERBS = {"go", "walk", "run", "head", "move", "enter", "climb", "travel", "return", "cross", "follow"}
# The verbs the game knows, by the kind of deed; a label's verb and a player's verb of different
# kinds ("Open the door" / "examine the door") keep the label's other words from picking it.
VERB_KINDS = {**{v: "move" for v in GO_VERBS}, **{v: "take" for v in ("take", "get", "grab", "pick")},
              **{v: "look" for v in ("examine", "x", "read")}, **{v: "talk" for v in ("talk", "speak", "ask")},
              "use": "use", "open": "open", "touch": "touch", "leave": "leave"}
VERBS = frozenset(VERB_KINDS)  # never needed to match a label
# Verbs that mean the same deed, as the player may type them; the quest's `verbs:` use the same names.
VERB_ALIASES = {"x": "examine", "examine": "examine", "inspect": "examine", "check": "examine",
                "get": "take", "grab": "take", "pick": "take", "take": "take",
                "drop": "drop", "discard": "drop", "wear": "wear", "don": "wear",
                "hang": "put", "place": "put", "put": "put", "read": "read", "use": "use"}
ARTICLES = {"a", "an", "the", "some"}
TARGET_WORDS = ("on", "onto", "in", "into", "upon")
STOPWORDS = {"the", "a", "an", "to", "at", "on", "in", "into", "onto", "with", "of", "my", "your",
             "i", "me", "up", "and", "then", "back", "through", "toward", "towards", "from", "it",
             "this", "that", "some", "over", "out", "for", "by", "around", "carefully", "slowly"}

_PUNCT = re.compile(r"[^\w\s'-]+", re.UNICODE)


@dataclass(frozen=True)
class Command:
    kind: str  # "empty", "number", "look", "inventory", "help", "text"
    text: str  # normalized text
    number: int = 0


def normalize(text: str) -> str:
    text = _PUNCT.sub(" ", text.lower())
    return " ".join(text.split())


def parse(raw: str) -> Command:
    bare = raw.strip().lower()
    if bare in COMMANDS:  # before normalizing, which drops "?"
        return Command(COMMANDS[bare], bare)
    text = normalize(raw)
    if not text:
        return Command("empty", "")
    stripped = text.rstrip(".")
    if stripped.isdecimal() and len(stripped) <= 4:  # isdigit() admits '²', which int() refuses
        return Command("number", stripped, int(stripped))
    if text in COMMANDS:
        return Command(COMMANDS[text], text)
    words = text.split()
    if words[-1] in DIRECTIONS and len(words) <= 2:
        words[-1] = DIRECTIONS[words[-1]]
        text = " ".join(words)
    return Command("text", text)


def canonical_verb(word: str) -> str:
    """The verb a typed verb stands for: "x" is "examine", "hang" is "put", "get" is "take"."""
    return VERB_ALIASES.get(word, word)


def resolved(text: str) -> str:
    """A command with its abbreviations written out, as the story records it ("x hook": "examine hook")."""
    words = text.split()
    if words and words[0] == "x":
        words[0] = "examine"
    if words and len(words) == 1 and words[0] in DIRECTIONS.values():
        words.insert(0, "go")
    return " ".join(words)


@dataclass(frozen=True)
class Deed:
    verb: str  # canonical: examine, take, drop, put, wear, read, use, or any other first word
    thing: str  # the words naming the thing
    target: str = ""  # "put X on Y": the words naming Y


def deed(text: str) -> Deed | None:
    """A normalized command read as verb + thing (+ target), or None when it has no thing."""
    words = text.split()
    if len(words) < 2:
        return None
    if words[:2] == ["look", "at"] or words[:2] == ["l", "at"]:
        words = ["examine"] + words[2:]
    elif words[:2] in (["pick", "up"], ["put", "on"], ["put", "down"]):
        words = [{"pick": "take", "on": "wear", "down": "drop"}[words[1]]] + words[2:]
    elif len(words) > 2 and words[0] == "pick" and words[-1] == "up":
        words = ["take"] + words[1:-1]
    verb, rest = canonical_verb(words[0]), words[1:]
    target = []
    for i, w in enumerate(rest):
        if w in TARGET_WORDS and i > 0:
            rest, target = rest[:i], rest[i + 1:]
            break
    thing = " ".join(w for w in rest if w not in ARTICLES)
    return Deed(verb, thing, " ".join(w for w in target if w not in ARTICLES)) if thing else None


def thing_words(name: str) -> tuple[str, ...]:
    """What a player may call a thing by default: the words of its name, articles left out."""
    return tuple(w for w in normalize(name).split() if w not in STOPWORDS)


def things_named(phrase: str, things) -> list:
    """The things a phrase names: every word typed is one of the thing's words. Several: ask which."""
    typed = [w for w in phrase.split() if w not in STOPWORDS]
    if not typed:
        return []
    found = []
    for thing in things:
        vocabulary = {w for word in thing.words for w in normalize(word).split()} | set(thing_words(thing.name))
        if all(w in vocabulary for w in typed):
            found.append(thing)
    exact = [t for t in found if " ".join(typed) in {normalize(w) for w in t.words}]
    return exact if len(exact) == 1 else found


def _content_words(text: str) -> list[str]:
    return [w for w in text.split() if w not in STOPWORDS and w not in VERBS]


_GAP = "(?: (?:" + "|".join(map(re.escape, sorted(STOPWORDS))) + "))* "


def _has_phrase(haystack: str, phrase: str) -> bool:
    """The phrase's words in order as whole words; stopwords may sit between them ("open the door")."""
    words = phrase.split()
    return bool(words) and re.search(
        r"(?<!\S)" + _GAP.join(map(re.escape, words)) + r"(?!\S)", haystack) is not None


def score(text: str, choice: Choice, quest: Quest | None = None) -> int:
    """How strongly free text refers to a choice; 0 means not at all."""
    label = normalize(choice.label)
    if text == label:
        return 1000
    best = 0
    for word in choice.words:
        alias = normalize(word)
        if _has_phrase(text, alias):
            best = max(best, 100 + 10 * len(alias.split()) + len(alias))
    words = set(text.split())
    label_words = _content_words(label)
    if label_words and all(w in words for w in label_words) and not _other_deed(words, set(label.split())):
        best = max(best, 50 + len(label_words))
    if choice.to and quest is not None and choice.to in quest.scenes and words & GO_VERBS:
        title_words = _content_words(normalize(quest.scenes[choice.to].title))
        target = _content_words(normalize(choice.to.replace("-", " ").replace("_", " ")))
        for candidate in (title_words, target):
            if candidate and all(w in words for w in candidate):
                best = max(best, 40 + len(candidate))
    return best


def _other_deed(typed: set[str], label: set[str]) -> bool:
    """The player's verbs and the label's are of different kinds ("examine" against "open")."""
    said = {VERB_KINDS[w] for w in typed if w in VERB_KINDS}
    offered = {VERB_KINDS[w] for w in label if w in VERB_KINDS}
    return bool(said) and bool(offered) and said.isdisjoint(offered)


def best_match(text: str, choices, quest: Quest | None = None) -> Choice | None:
    """The choice that text refers to most strongly (first in order on a tie), or None."""
    found, found_score = None, 0
    for choice in choices:
        s = score(text, choice, quest)
        if s > found_score:
            found, found_score = choice, s
    return found
