"""The quest model: what a loaded quest *is*, as plain immutable values.

`game.quest_loader` builds these from YAML (and reports every mistake);
`game.rules` evaluates conditions and effects; `game.engine` plays them.
Positions (`where`) are kept so later checks can point at the author's line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Where:
    """Where something was written: file and 1-based line/column."""

    path: str
    line: int
    col: int


NOWHERE = Where("<quest>", 1, 1)


@dataclass(frozen=True)
class Condition:
    """One condition key, e.g. ("has", ("lantern",)) or ("any", (Condition, ...)).

    A choice's `if:` mapping becomes an `all` of its keys.
    """

    kind: str
    args: tuple = ()
    where: Where = NOWHERE


@dataclass(frozen=True)
class Effect:
    """One effect, e.g. ("give", ("lantern",)), ("set", (("door_open", True),))."""

    kind: str
    args: tuple = ()
    where: Where = NOWHERE


@dataclass(frozen=True)
class Choice:
    label: str
    words: tuple[str, ...] = ()
    to: str | None = None
    condition: Condition | None = None
    effects: tuple[Effect, ...] = ()
    text: str = ""
    locked: str = ""
    once: bool = False
    is_exit: bool = False
    key: str = ""  # unique within the quest: "scene/choices: Label" ("... #2" for a repeated label)
    where: Where = NOWHERE


@dataclass(frozen=True)
class Scene:
    id: str
    title: str
    descriptions: tuple[str, ...]
    hints: tuple[str, ...] = ()
    recap: str = ""
    choices: tuple[Choice, ...] = ()  # choices first, then exits, in file order
    on_enter: tuple[Effect, ...] = ()
    ending: str | None = None
    where: Where = NOWHERE


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    description: str = ""
    where: Where = NOWHERE


@dataclass(frozen=True)
class Ending:
    id: str
    title: str
    text: str
    outcome: str = "win"  # "win" or "lose"
    where: Where = NOWHERE


@dataclass(frozen=True)
class LoreEntry:
    id: str
    keywords: tuple[str, ...]
    text: str
    where: Where = NOWHERE


@dataclass(frozen=True)
class Quest:
    id: str
    title: str
    start: str
    scenes: dict[str, Scene]
    endings: dict[str, Ending]
    author: str = "Anonymous"
    summary: str = ""
    language: str = "en"
    address: str = "formal"  # the game's own sentences: formal or informal ("вы" or "ты" in Russian)
    version: str = ""
    persona: str | None = None
    personality: str | None = None
    author_note: str | None = None
    model: str | None = None
    items: dict[str, Item] = field(default_factory=dict)
    flags: dict[str, object] = field(default_factory=dict)
    flag_where: dict[str, Where] = field(default_factory=dict)  # where each flag is declared
    lore: dict[str, LoreEntry] = field(default_factory=dict)
    source: Path | None = None  # the quest file (quest.yaml for folder quests)
    files: tuple[Path, ...] = ()  # every file read, for live reload

    def scene(self, scene_id: str) -> Scene:
        return self.scenes[scene_id]
