"""`storyteller new NAME`: writes a commented starter quest for a new author.

`scaffold(name, folder)` writes ``<id>.yaml`` into `folder` (default: the
current working folder, so ``storyteller new my-quest`` creates
``./my-quest.yaml``). The id is the name in lower case with spaces turned into
'-' (other characters that ids may not hold are dropped); the title is the name
as typed, or "My Quest" for a name typed as ``my-quest``. An existing file is
never overwritten.

The starter quest is meant to be read, played and then changed: every key has a
short comment, and it uses each kind of thing a quest can hold (items, a flag,
a locked exit, a win and a lose ending, hints, recaps, lore). It validates with
no problems and can be played to both endings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

from game.diagnostics import GameFileError
from game.safe_yaml import load_yaml_text

_NOT_ID = re.compile(r"[^a-z0-9_.-]+")

TEMPLATE = Template("""\
# $title: a starter quest. Change anything you like, then check it with
#
#     storyteller validate $file
#
# and play it with
#
#     storyteller play $file --plain
#
# Lines starting with '#' are comments: the game ignores them. Indentation
# (spaces, never tabs) shows what belongs to what. Long text goes after '|' on
# the lines below it, indented. The full reference is docs/quests.md.

$id_line# the quest's unique name: letters, digits, '-' and '_'
$title_line# shown in the quest list
author: Anonymous                  # your name
summary: Find a light, open the gate, and climb the old tower.  # one or two sentences for the quest list
language: en                       # the language of the quest's text (en, ru, ...)
version: "1"                       # your own version label
start: cottage                     # the scene the player starts in (an id from scenes: below)
author_note: Keep the tone cosy and a little mysterious.  # one steering line for the narrator

# Flags remember what happened. Each starts with a value: true/false, a number or text.
flags:
  gate_open: false                 # becomes true when the player pulls the lever in the well

# Items are things the player can carry.
items:
  lantern:                         # the item's id, used in conditions and effects
    name: a tin lantern            # how the game names it ("You now have a tin lantern.")
    description: Small, dented, and still burning.  # shown in the inventory

# Scenes are the places of the story. Each one has an id (cottage, garden...).
scenes:
  cottage:                         # the scene's id: start: and to: name scenes by it
    title: The Cottage             # shown above the scene
    description: |                 # what the player sees on arrival
      A small cottage with one window. A tin lantern hangs by the door,
      still burning. Outside, a garden waits.
    hints:                         # facts for the narrator only, never shown to the player
      - The cottage is warm and smells of woodsmoke.
      - Nobody has lived here for years, yet the lantern burns.
    recap: You found a burning lantern in an empty cottage.  # how the narrator remembers this scene later
    choices:                       # things the player can do here
      - label: Take the lantern    # shown in the numbered list of options
        words: [take lantern, lantern, take the lantern]  # words that pick this option
        once: true                 # after it is picked once, it is gone
        effects:                   # what happens when it is picked
          - give: lantern          # the player now carries the lantern
        text: You lift the lantern from its hook. It is warm in your hand.  # shown when picked
    exits:                         # ways out; like choices, but 'to' is required
      - label: Go out into the garden
        words: [outside, out, garden, door]
        to: garden                 # the scene the player moves to

  garden:
    title: The Overgrown Garden
    description: |
      Weeds have swallowed the paths. An old well gapes in the middle of the
      garden, and beyond it an iron gate bars the way to a crooked tower.
    hints:
      - The well is deep and dark; a rusty ladder leads down.
      - The gate has no lock, only a chain that runs down into the well.
    recap: You crossed the overgrown garden between the well and the gate.
    exits:
      - label: Climb down into the well
        words: [well, climb down, down, ladder]
        to: well
        if: {has: lantern}         # offered only while this holds: the player carries the lantern
        locked: It is far too dark to climb down without a light.  # said when the player tries it anyway
      - label: Go through the iron gate
        words: [gate, iron gate, tower, through the gate]
        to: tower
        if: {flag: gate_open}      # offered only once the flag gate_open is set
        locked: The iron gate will not move. A chain runs from it down into the well.
      - label: Go back into the cottage
        words: [cottage, inside, back]
        to: cottage

  well:
    title: The Bottom of the Well
    description: |
      Your lantern shows wet stones, a rusty lever on the wall, and black
      water that does not move.
    hints:
      - The water is very deep and very cold.
      - The lever is joined to the chain of the iron gate.
    recap: You climbed down the well by lantern light.
    on_enter:                      # effects applied every time the player arrives
      - say: Somewhere above you, a bird stops singing.  # shows extra text
    choices:
      - label: Pull the rusty lever
        words: [pull lever, pull the lever, lever, rusty lever]
        if: {not_flag: gate_open}  # only while the gate is still shut
        effects:
          - set: gate_open         # sets the flag to true
          - say: Far above, a chain rattles and a gate creaks open.
        text: The lever groans, then gives.
      - label: Jump into the black water
        words: [jump, swim, water, dive]
        effects:
          - end: drowned           # ends the quest with the ending 'drowned'
        text: The water closes over you, colder than anything.
    exits:
      - label: Climb back up to the garden
        words: [climb up, up, garden, ladder]
        to: garden

  tower:
    title: The Crooked Tower
    description: |
      Stairs wind up the crooked tower to a room full of books, where a
      voice you almost remember says your name.
    recap: You reached the top of the crooked tower.
    ending: found-the-tower        # arriving here ends the quest with this ending

# Endings: how the quest can finish. outcome is win or lose.
endings:
  found-the-tower:                 # the ending's id, named by 'ending:' or 'end:' above
    title: The Tower Remembers
    text: The books rustle open as you enter. The story is yours to tell now.
    outcome: win                   # win or lose: whether this ending is a victory
  drowned:
    title: Lost in the Well
    text: The black water keeps you, and the story ends in silence.
    outcome: lose

# Lore: facts the narrator is reminded of when one of the keywords comes up.
lore:
  tower:                           # the lore entry's id
    keywords: [tower, crooked tower, books]  # words that remind the narrator of this fact
    text: The crooked tower was built by a storyteller who wanted to be remembered.
""")


def quest_id(name: str) -> str:
    """The quest id for a name: lower case, spaces to '-', only id characters kept."""
    ident = _NOT_ID.sub("", "-".join(name.strip().lower().split()))
    ident = re.sub(r"-{2,}", "-", ident).strip("-_.")
    return ident[:64].rstrip("-_.")


def quest_title(name: str) -> str:
    """The title for a name: as typed, or 'My Quest' for 'my-quest'."""
    name = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if name == name.lower():
        name = " ".join(w.capitalize() for w in re.split(r"[\s_-]+", name) if w)
    return name


def render(name: str, file_name: str | None = None) -> str:
    """The text of the starter quest for `name`."""
    ident = quest_id(name)
    if not ident:
        raise ValueError(f"'{name}' gives no quest id: ids hold only Latin letters, digits, "
                         "'-', '_' and '.'. Try e.g. `storyteller new my-quest`; "
                         "you can change the title in the file afterwards")
    title = quest_title(name)
    return TEMPLATE.substitute(
        title=title, file=file_name or f"{ident}.yaml",
        id_line=f"id: {_scalar(ident)}".ljust(34) + " ",
        title_line=f"title: {_scalar(title)}".ljust(34) + " ")


def _scalar(text: str) -> str:
    """Text as a YAML value: plain when YAML reads it back unchanged, else in quotes."""
    try:
        if load_yaml_text(f"v: {text}  # c", "<name>") == {"v": text}:
            return text
    except GameFileError:
        pass
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted string


def scaffold(name: str, folder: Path | None = None) -> Path:
    """Write the starter quest ``<id>.yaml`` into `folder` (default: the current folder).

    Raises ValueError for a name with no letters or digits, FileExistsError if
    the file is already there (it is never overwritten), OSError if it cannot
    be written.
    """
    stem = name.strip()
    for suffix in (".yaml", ".yml"):  # `storyteller new my-quest.yaml` means my-quest
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    folder = Path.cwd() if folder is None else Path(folder)
    path = folder / f"{quest_id(stem)}.yaml"
    text = render(stem, path.name)
    taken = FileExistsError(f"{path} already exists; it was left untouched. "
                            "Choose another name, or move the old file away first.")
    if path.exists():
        raise taken
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as fh:  # "x": fails rather than overwrite
            fh.write(text)
    except FileExistsError:  # created between the check and the write
        raise taken from None
    return path
