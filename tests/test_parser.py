"""The free-text parser: built-in commands, numbers, compass words and choice matching."""

from __future__ import annotations

import pytest

from game.world.parser import best_match, normalize, parse, score
from game.world.model import Choice
from tests.helpers import load_quest_text

# -- parse ----------------------------------------------------------------------


@pytest.mark.parametrize("raw, kind", [
    ("look", "look"), ("L", "look"), ("Look around", "look"), ("  look!  ", "look"),
    ("inventory", "inventory"), ("inv", "inventory"), ("i", "inventory"), ("I", "inventory"),
    ("help", "help"), ("?", "help"), ("h", "help"), ("commands", "help"),
    ("", "empty"), ("   ", "empty"), ("!!!", "empty"),
])
def test_builtin_commands(raw, kind):
    assert parse(raw).kind == kind


@pytest.mark.parametrize("raw, number", [("1", 1), (" 2 ", 2), ("3.", 3), ("#4", 4), ("0", 0), ("1234", 1234)])
def test_numbers(raw, number):
    command = parse(raw)
    assert (command.kind, command.number) == ("number", number)


@pytest.mark.parametrize("raw", ["12345", "-1", "1 2", "1st", "one"])
def test_things_that_are_not_option_numbers_are_text(raw):
    assert parse(raw).kind == "text"


@pytest.mark.parametrize("raw, text", [
    ("n", "north"), ("S", "south"), ("e", "east"), ("w", "west"), ("u", "up"), ("d", "down"),
    ("ne", "northeast"), ("NW", "northwest"), ("se", "southeast"), ("sw", "southwest"),
    ("go n", "go north"), ("Go W.", "go west"),
])
def test_compass_abbreviations(raw, text):
    assert parse(raw) == parse(text)
    assert parse(raw).text == text


def test_abbreviations_only_apply_to_short_commands():
    # "e" inside a longer sentence is not "east"
    assert parse("write the letter e").text == "write the letter e"


def test_normalize_lowercases_and_drops_punctuation_but_keeps_words():
    assert normalize("  Open the DOOR,  please!! ") == "open the door please"
    assert normalize("Talk to the old-man's dog") == "talk to the old-man's dog"
    assert normalize("Открыть ДВЕРЬ!") == "открыть дверь"


# -- matching -------------------------------------------------------------------

DOOR = Choice(label="Push through", words=("open door", "door"), key="a/choices/0")
LEVER = Choice(label="Pull the rusty lever", key="a/choices/1")
TALK = Choice(label="Talk to the old man", words=("talk to man",), key="a/choices/2")


def match(text: str, choices, quest=None):
    return best_match(parse(text).text, choices, quest)


@pytest.mark.parametrize("text", [
    "open door", "I carefully open the door", "open the door slowly", "OPEN THE DOOR!",
    "try the door",
])
def test_aliases_match_anywhere_in_a_sentence(text):
    assert match(text, [LEVER, DOOR]) is DOOR


def test_aliases_match_whole_words_only():
    assert match("I open the doorway", [Choice(label="x", words=("open door",))]) is None
    assert match("outdoors", [DOOR]) is None


def test_alias_words_must_come_in_order_with_only_small_words_between():
    only = [Choice(label="Push through", words=("open door",))]
    assert match("open the door", only) is only[0]
    assert match("door open", only) is None
    assert match("open the red door", only) is None  # "red" is not a small word


def test_label_matches_exactly_and_by_its_content_words():
    assert match("pull the rusty lever", [DOOR, LEVER]) is LEVER
    assert match("I pull the rusty lever hard", [DOOR, LEVER]) is LEVER
    assert match("lever rusty pull", [DOOR, LEVER]) is LEVER  # every content word, any order
    assert match("pull the lever", [DOOR, LEVER]) is None  # "rusty" missing
    assert match("take the rusty lever", [DOOR, LEVER]) is None  # "pull" is not a built-in verb


def test_a_different_kind_of_verb_does_not_pick_a_label():
    door = Choice(label="Open the door", key="a/choices/0")
    glyphs = Choice(label="Read the glyphs on the archway", key="a/choices/1")
    assert match("examine the door", [door]) is None  # looking is not opening
    assert match("open the door", [door]) is door
    assert match("the door", [door]) is door  # no verb typed: the label's words are enough
    assert match("examine the glyphs on the archway", [door, glyphs]) is glyphs  # examine, read: both looks
    assert match("walk to the old man", [TALK]) is None  # moving is not talking
    assert match("speak with the old man", [TALK]) is TALK
    with_words = Choice(label="Open the door", words=("door",), key="a/choices/2")
    assert match("examine the door", [with_words]) is with_words  # the author's words still count


def test_exact_label_beats_an_alias():
    alias = Choice(label="Something else", words=("talk to the old man",))
    assert match("Talk to the old man", [alias, TALK]) is TALK


def test_longer_alias_wins_over_shorter():
    short = Choice(label="A", words=("door",))
    long = Choice(label="B", words=("red door",))
    assert match("open the red door", [short, long]) is long
    assert match("open the blue door", [short, long]) is short


def test_tie_goes_to_the_first_choice():
    first = Choice(label="A", words=("bell",))
    second = Choice(label="B", words=("bell",))
    assert match("ring bell", [first, second]) is first
    assert match("ring bell", [second, first]) is second


def test_no_match_and_scores():
    assert match("dance a jig", [DOOR, LEVER, TALK]) is None
    assert score("dance a jig", DOOR) == 0
    assert score("push through", DOOR) == 1000


def test_talk_forms():
    assert match("talk to the man", [DOOR, TALK]) is TALK
    assert match("talk to the old man", [DOOR, TALK]) is TALK
    assert match("speak with the old man", [DOOR, TALK]) is TALK  # label content words


QUEST = """\
id: parser-test
title: Parser Test
start: yard
items:
  key: a key
scenes:
  yard:
    title: The Yard
    description: A yard.
    exits:
      - label: Through the arch
        to: great-hall
      - label: Climb the ladder
        words: [up, ladder]
        to: loft
  great-hall:
    title: The Great Hall
    description: A hall.
  loft:
    title: Hay Loft
    description: A loft.
endings:
  done: {title: Done, text: Done.}
"""


@pytest.fixture
def quest(tmp_path):
    return load_quest_text(tmp_path, "quest.yaml", QUEST)


def test_go_forms_match_the_title_or_id_of_the_scene_an_exit_leads_to(quest):
    arch, ladder = quest.scenes["yard"].choices
    assert match("go to the great hall", [arch, ladder], quest) is arch
    assert match("I walk into the Great Hall", [arch, ladder], quest) is arch
    assert match("walk into the hall", [arch, ladder], quest) is None  # "great" is missing
    assert match("head to the loft", [arch, ladder], quest) is ladder
    assert match("u", [arch, ladder], quest) is ladder
    # without a go-verb the destination's name does not pick the exit
    assert match("admire the great hall", [arch, ladder], quest) is None
