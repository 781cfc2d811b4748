"""The quest model: what a loaded quest *is*, as plain immutable values.

`game.world.loader` builds these from YAML (and reports every mistake);
`game.world.rules` evaluates conditions and effects; `game.world.text` picks a
text's variant and fills in the names in it; `game.engine` plays them.
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
    """One effect, e.g. ("give", ("lantern",)), ("set", (("door_open", True),)).

    A conditional effect is ("if", (Condition, then-effects, else-effects)).
    """

    kind: str
    args: tuple = ()
    where: Where = NOWHERE


class Text(str):
    """A text that may depend on the state: the first variant whose condition holds is shown.

    It *is* its first unconditional text (or its first variant's) as a plain string,
    so code that only needs some text (the map, the budget) can use it as one;
    `game.world.text.render` picks the variant in force and fills in `{names}`.
    `variants` holds (Condition or None, text) pairs, in the author's order.
    """

    variants: tuple
    where: Where

    def __new__(cls, variants, where: Where = NOWHERE):
        variants = tuple(variants)
        fallback = next((t for c, t in variants if c is None), variants[0][1] if variants else "")
        self = super().__new__(cls, fallback)
        self.variants, self.where = variants, where
        return self

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.variants)

    def __reduce__(self):  # copies and pickles keep the variants
        return (Text, (self.variants, self.where))


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
    hidden: bool = False  # not listed, but answers when typed
    key: str = ""  # unique within the quest: "scene/choices: Label" ("... #2" for a repeated label)
    where: Where = NOWHERE


@dataclass(frozen=True)
class Response:
    """An answer to what the player types: by words or verbs, or (`anything`) to whatever else.

    Used for a scene's and the quest's `responses` and for a thing's `verbs`
    (where `on` names the thing the player puts it on, for "put X on Y").
    """

    words: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    anything: bool = False  # a catch-all
    also: tuple[str, ...] = ()  # built-in commands a catch-all answers too (look, inventory, wait)
    condition: Condition | None = None
    text: str = ""
    effects: tuple[Effect, ...] = ()
    on: str | None = None
    where: Where = NOWHERE


@dataclass(frozen=True)
class Item:
    """Something the player can carry (quest `items`) or see in a scene (a scene's `things`)."""

    id: str
    name: str
    description: str = ""
    where: Where = NOWHERE
    words: tuple[str, ...] = ()  # more names the player may call it by (its name's words always work)
    verbs: dict = field(default_factory=dict)  # verb -> tuple[Response, ...], first that holds answers
    gained: str | None = None  # "You now have ..." reworded ("" says nothing); None: the game's line
    lost: str | None = None


@dataclass(frozen=True)
class Scene:
    id: str
    title: str
    descriptions: tuple[str, ...]  # several plain texts: one is picked per visit; a Text: by state
    hints: tuple[str, ...] = ()
    recap: str = ""
    choices: tuple[Choice, ...] = ()  # choices first, then exits, in file order
    on_enter: tuple[Effect, ...] = ()
    ending: str | None = None
    first_visit: str = ""  # shown instead of the description on the first arrival
    responses: tuple[Response, ...] = ()
    things: dict[str, Item] = field(default_factory=dict)
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
    carrying: tuple[str, ...] = ()  # what the player starts with
    responses: tuple[Response, ...] = ()  # quest-wide
    max_score: int | None = None  # a quest with a score shows it in the status bar and at the end
    source: Path | None = None  # the quest file (quest.yaml for folder quests)
    files: tuple[Path, ...] = ()  # every file read, for live reload

    def scene(self, scene_id: str) -> Scene:
        return self.scenes[scene_id]

    @property
    def scored(self) -> bool:
        return self.max_score is not None
