"""What a quest can ever make true: flag ranges and given items, and walks over every effect and condition.

Shared by the linter (`game.world.lint`) and the token-budget check
(`game.world.budget`); conservative, from the quest's text alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from game.world.model import Condition, Quest, Scene
from game.world.rules import number, truthy

FLAG_READS = ("flag", "not_flag", "flags", "at_least", "at_most")
FLAG_WRITES = ("set", "clear", "add")


@dataclass
class FlagRange:
    """Every value a flag can ever hold: its values, and bounds when `add:` changes it."""

    values: list = field(default_factory=list)
    up: float = 0  # the most all `add:` effects together can add
    down: float = 0  # the most they can subtract
    adds: bool = False

    @property
    def hi(self) -> float:
        return max(number(v) for v in self.values) + self.up

    @property
    def lo(self) -> float:
        return min(number(v) for v in self.values) - self.down

    def can_truthy(self) -> bool:
        return any(truthy(v) for v in self.values) or (self.adds and (self.lo < 0 or self.hi > 0))

    def can_falsy(self) -> bool:
        return any(not truthy(v) for v in self.values) or (self.adds and self.lo <= 0 <= self.hi)

    def can_equal(self, value) -> bool:
        return any(v == value for v in self.values) or (
            self.adds and isinstance(value, (int, float)) and self.lo <= value <= self.hi)

    def can_differ(self, value) -> bool:
        return any(v != value for v in self.values) or (self.adds and self.lo < self.hi)

    def describe(self) -> str:
        if self.adds:
            lo, hi = self.lo, self.hi
            if math.isinf(hi):
                return "can be any number" if math.isinf(lo) else f"never goes below {show(lo)}"
            if math.isinf(lo):
                return f"never goes above {show(hi)}"
            return f"stays between {show(lo)} and {show(hi)}"
        shown = sorted({show(v) for v in self.values})
        return f"is always {shown[0]}" if len(shown) == 1 else f"is only ever {' or '.join(shown)}"


def show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if isinstance(value, int) else f"'{value}'"


class Facts:
    """What the effects that can run (reachable scenes, takeable choices) can ever make true."""

    def __init__(self, quest: Quest):
        self.reached: set[str] = set()
        self.given: set[str] = set(quest.carrying)
        self.flags = {f: FlagRange([v]) for f, v in quest.flags.items()}

    def add(self, effects, repeatable: bool) -> None:
        """Count effects that can run: once, or (`repeatable`) any number of times."""
        for effect in flat(effects):
            if effect.kind == "give":
                self.given.update(effect.args)
            for arg in effect.args if effect.kind in FLAG_WRITES else ():
                flag, value = (arg, False) if effect.kind == "clear" else arg
                r = self.flags.setdefault(flag, FlagRange([None]))
                if effect.kind != "add":
                    r.values.append(value)
                    continue
                r.adds = True
                gain = math.inf if repeatable else abs(value)
                if value > 0:
                    r.up += gain
                elif value < 0:
                    r.down += gain

    def flag(self, name: str) -> FlagRange:
        return self.flags.get(name) or FlagRange([None])


def flat(effects):
    """Effects with the branches of conditional effects spread out (both branches can run)."""
    for effect in effects:
        if effect.kind == "if":
            yield from flat(effect.args[1])
            yield from flat(effect.args[2])
        else:
            yield effect


def answers(quest: Quest, scene: Scene | None = None):
    """Every response and verb answer: the quest's, or (with `scene`) that scene's and its things'."""
    if scene is None:
        yield from quest.responses
        for item in quest.items.values():
            for found in item.verbs.values():
                yield from found
        return
    yield from scene.responses
    for thing in scene.things.values():
        for found in thing.verbs.values():
            yield from found


def all_effects(quest: Quest):
    for scene in quest.scenes.values():
        yield from flat(scene.on_enter)
        for choice in scene.choices:
            yield from flat(choice.effects)
        for answer in answers(quest, scene):
            yield from flat(answer.effects)
    for answer in answers(quest):
        yield from flat(answer.effects)


def texts(quest: Quest):
    """Every text the player may read that can have variants."""
    for scene in quest.scenes.values():
        yield from scene.descriptions
        yield scene.first_visit
        for choice in scene.choices:
            yield choice.text
            yield choice.locked
        for answer in answers(quest, scene):
            yield answer.text
        for thing in scene.things.values():
            yield thing.description
    for answer in answers(quest):
        yield answer.text
    for item in quest.items.values():
        yield from (item.description, item.gained or "", item.lost or "")
    for ending in quest.endings.values():
        yield ending.text


def top_conditions(quest: Quest):
    """Every condition as written (not their parts): options, responses, effects, text variants."""
    def of_effects(effects):
        for effect in effects:
            if effect.kind == "if":
                yield effect.args[0]
                yield from of_effects(effect.args[1])
                yield from of_effects(effect.args[2])

    for scene in quest.scenes.values():
        yield from of_effects(scene.on_enter)
        for choice in scene.choices:
            if choice.condition is not None:
                yield choice.condition
            yield from of_effects(choice.effects)
        for answer in answers(quest, scene):
            if answer.condition is not None:
                yield answer.condition
            yield from of_effects(answer.effects)
    for answer in answers(quest):
        if answer.condition is not None:
            yield answer.condition
        yield from of_effects(answer.effects)
    for text in texts(quest):
        for condition, _ in getattr(text, "variants", ()):
            if condition is not None:
                yield condition


def all_conditions(quest: Quest):
    def walk(cond: Condition):
        yield cond
        for sub in cond.args:
            if isinstance(sub, Condition):
                yield from walk(sub)

    for condition in top_conditions(quest):
        yield from walk(condition)
