"""Cleaning raw model output into narration, and judging bad replies."""

from __future__ import annotations

from hypothesis import given, strategies as st

from game.narrator import cleaning
from game.narrator.cleaning import clean, judge


def test_end_of_text_and_everything_after_it_is_dropped():
    assert clean("The door opens.<|endoftext|>Unrelated web text.") == "The door opens."


def test_prompt_echo_is_removed():
    prompt = "You stand in a cave.\n> look around\n"
    assert clean(prompt + "Water drips from the ceiling.", prompt=prompt) == "Water drips from the ceiling."


def test_echo_of_the_players_action_line_is_removed():
    prompt = "You stand in a cave.\n> look around\n"
    assert clean("look around\nWater drips.", prompt=prompt) == "Water drips."
    assert clean("> look around\nWater drips.", prompt=prompt) == "Water drips."


def test_cut_before_stop_string_and_player_action_line():
    raw = " A wolf howls. It is near.\n> run away\nYou run."
    assert clean(raw) == "A wolf howls. It is near."
    assert clean("A wolf howls.\n   > flee", stop_strings=()) == "A wolf howls."
    assert clean("A wolf howls. THE END of it all", stop_strings=("THE END",)) == "A wolf howls."


def test_reply_that_starts_with_an_action_is_empty():
    assert clean("> go north\nYou go north.") == ""


def test_cut_at_last_complete_sentence_keeps_closing_quotes():
    assert clean('The old man says, "Go back." Then he turns and') == 'The old man says, "Go back."'
    assert clean("Is anyone there? Silence answers") == "Is anyone there?"
    assert clean("The lamp flickers... and dies") == "The lamp flickers..."
    assert clean("(The rope holds.) You climb") == "(The rope holds.)"


def test_without_a_complete_sentence_the_text_ends_on_a_word_boundary():
    assert clean("The wind carries a smell of smo", truncated=True) == "The wind carries a smell of"
    assert clean("The wind carries a smell of smoke", truncated=False) == "The wind carries a smell of smoke"
    assert clean("The wind carries a smell of, smo") == "The wind carries a smell of"


def test_runaway_whitespace_is_collapsed():
    raw = "  The hall   is\t\tdark.  \n\n\n\n\nA bell   rings.   "
    assert clean(raw) == "The hall is dark.\n\nA bell rings."


def test_sentence_end_needs_space_after_it():
    assert cleaning.cut_to_sentence("It costs 3.5 coins", truncated=False) == "It costs 3.5 coins"


@given(st.text(max_size=200))
def test_clean_never_fails_and_never_grows_or_keeps_markers(raw):
    text = clean(raw, prompt="Hello\n")
    assert "<|endoftext|>" not in text
    assert "\n>" not in text and not text.startswith(">")
    assert text == text.strip()
    assert "\n\n\n" not in text


def test_repeats_itself():
    assert cleaning.repeats_itself("The door is shut. The door is shut. The door is shut.")
    assert cleaning.repeats_itself("and the door and the door and the door and the door")
    assert cleaning.repeats_itself("the the the the the the")
    assert not cleaning.repeats_itself("The door is shut. A cold wind blows. The door is shut.")
    assert not cleaning.repeats_itself("You walk into the hall. Torches burn along the walls. A knight waits.")


def test_repeats_previous():
    earlier = ["The knight raises his sword and blocks the narrow bridge ahead of you."]
    assert cleaning.repeats_previous("The knight raises his sword and blocks the narrow bridge.", earlier)
    assert cleaning.repeats_previous("Nothing happens.", ["Nothing happens."])
    assert not cleaning.repeats_previous("A crow lands on the knight's helmet and caws twice.", earlier)
    assert not cleaning.repeats_previous("Anything at all.", [])
    # only the last three narrations count
    old = ["The knight raises his sword and blocks the narrow bridge."] + ["Rain."] * 3
    assert not cleaning.repeats_previous("The knight raises his sword and blocks the narrow bridge.", old)


def test_speaks_for_player():
    assert cleaning.speaks_for_player("The guard waits.\n> open door")
    assert cleaning.speaks_for_player('The guard waits.\nYou say "hello" to him.')
    assert cleaning.speaks_for_player("Player: I open the door")
    assert not cleaning.speaks_for_player("The guard says you may pass.")


def test_judge_names_the_problem():
    assert judge("") == "empty"
    assert judge("   ") == "empty"
    assert judge("You ask the guard for the key.") == "speaks for the player"
    assert judge("Run away. Run away. Run away.") == "repeats itself"
    assert judge("No. No. No!") is None  # short cries are not a loop
    assert judge("The bridge creaks under you.", ["The bridge creaks under you."]) == "repeats an earlier narration"
    assert judge("The bridge creaks under you.", ["A bird sings."]) is None
