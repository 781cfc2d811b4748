"""What a quest can ever make true: flag ranges and given items, and walks over every effect and condition.

Shared by the linter (`game.world.lint`) and the token-budget check
(`game.world.budget`); conservative, from the quest's text alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from game.world.model import Condition, Quest
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
        self.given: set[str] = set()
        self.flags = {f: FlagRange([v]) for f, v in quest.flags.items()}

    def add(self, effects, repeatable: bool) -> None:
        """Count effects that can run: once, or (`repeatable`) any number of times."""
        for effect in effects:
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


def all_effects(quest: Quest):
    for scene in quest.scenes.values():
        yield from scene.on_enter
        for choice in scene.choices:
            yield from choice.effects


def all_conditions(quest: Quest):
    def walk(cond: Condition):
        yield cond
        for sub in cond.args:
            if isinstance(sub, Condition):
                yield from walk(sub)

    for scene in quest.scenes.values():
        for choice in scene.choices:
            if choice.condition is not None:
                yield from walk(choice.condition)
