"""The quest format's vocabulary: which keys each part of a quest may have, and its limits.

One table per part of the format. `game.world.loader` checks files against
these; docs/quests.md lists exactly these keys (tests/test_docs.py checks it).
"""

from __future__ import annotations

import re

QUEST_FILE = "quest.yaml"
MAX_SCENES = 2000
MAX_CHOICES = 200
MAX_ENTRIES = 5000  # items, flags, endings, lore entries each
MAX_INCLUDES = 100
MAX_QUEST_BYTES = 2_000_000  # all of a quest's files together (each file: safe_yaml.MAX_BYTES)
MAX_TEXT = 20_000
MAX_CONDITION_DEPTH = 16
MAX_RESPONSES = 200  # responses per scene, for the whole quest, and per verb of a thing
MAX_SCORE = 1_000_000

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

TOP_KEYS = {"id", "title", "author", "summary", "language", "address", "version", "start", "persona",
            "personality", "author_note", "model", "flags", "items", "scenes", "endings",
            "lore", "include", "carrying", "responses", "max_score"}
ADDRESSES = ("formal", "informal")  # how the game's own sentences speak to the player
INCLUDED_KEYS = {"flags", "items", "scenes", "endings", "lore"}
SCENE_KEYS = {"title", "description", "hints", "recap", "choices", "exits", "on_enter", "ending",
              "first_visit", "responses", "things"}
CHOICE_KEYS = {"label", "words", "to", "if", "effects", "text", "locked", "once", "hidden"}
ITEM_KEYS = {"name", "description", "words", "verbs", "gained", "lost"}
THING_KEYS = {"name", "description", "words", "verbs"}  # a scene's things: seen, never carried
RESPONSE_KEYS = {"words", "verbs", "anything", "also", "if", "text", "effects"}
VERB_KEYS = {"if", "text", "effects", "on"}  # one answer of a thing's verb
VARIANT_KEYS = {"if", "text"}  # one variant of a text that depends on the state
CONDITIONAL_EFFECT_KEYS = {"if", "then", "else"}
ALSO_COMMANDS = ("look", "inventory", "wait")  # built-in commands a catch-all may answer too
ENDING_KEYS = {"title", "text", "outcome"}
LORE_KEYS = {"keywords", "text"}

# condition key -> what its value holds
CONDITION_KEYS = {
    "has": "items", "lacks": "items", "flag": "flags", "not_flag": "flags",
    "flags": "flag_values", "at_least": "flag_numbers", "at_most": "flag_numbers",
    "in": "scenes", "visited": "scenes", "not_visited": "scenes", "turn_at_least": "count",
    "turn_at_most": "count", "any": "conditions", "all": "conditions", "not": "condition",
}
EFFECT_KEYS = {
    "give": "items", "take": "items", "drop": "items", "set": "flag_set", "clear": "flags",
    "add": "flag_numbers", "move": "scene", "end": "ending", "say": "text", "score": "points",
    "if": "branch",
}
