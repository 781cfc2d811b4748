"""Conditions and effects: the quest's rules, evaluated against a `GameState`.

`apply` returns the lines effects say as they were written (a `say:` text may
have variants and `{names}`); the engine renders them with `game.world.text`.
"""

from __future__ import annotations

from dataclasses import dataclass

from game.phrases import phrase
from game.world.model import Condition, Quest
from game.state import GameState


def truthy(value) -> bool:
    return bool(value) and value != 0


def holds(condition: Condition | None, state: GameState) -> bool:
    """Whether a condition holds now. None (no condition) always holds."""
    if condition is None:
        return True
    kind, args = condition.kind, condition.args
    if kind == "all":
        return all(holds(c, state) for c in args)
    if kind == "any":
        return any(holds(c, state) for c in args)
    if kind == "not":
        return not all(holds(c, state) for c in args)
    if kind == "has":
        return all(i in state.inventory for i in args)
    if kind == "lacks":
        return not any(i in state.inventory for i in args)
    if kind == "flag":
        return all(truthy(state.flags.get(f)) for f in args)
    if kind == "not_flag":
        return not any(truthy(state.flags.get(f)) for f in args)
    if kind == "flags":
        return all(state.flags.get(f) == v for f, v in args)
    if kind == "at_least":
        return all(number(state.flags.get(f)) >= v for f, v in args)
    if kind == "at_most":
        return all(number(state.flags.get(f)) <= v for f, v in args)
    if kind == "in":
        return state.scene in args
    if kind == "visited":
        return all(state.visits.get(s, 0) > 0 for s in args)
    if kind == "not_visited":
        return not any(state.visits.get(s, 0) > 0 for s in args)
    if kind == "turn_at_least":
        return state.turn >= args[0]
    if kind == "turn_at_most":
        return state.turn <= args[0]
    raise ValueError(f"unknown condition kind {kind!r}")


def number(value) -> float:
    """A flag's value as a number (0 for anything that is not one)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Outcome:
    """What applying effects did, beyond changing the state."""

    messages: tuple[str, ...] = ()  # "You take a brass lantern." and `say:` texts
    move_to: str | None = None
    end: str | None = None


def apply(effects, state: GameState, quest: Quest) -> Outcome:
    """Apply effects in order to the state; returns messages and any move or ending."""
    messages: list[str] = []
    move_to = end = None
    for effect in effects:
        kind, args = effect.kind, effect.args
        if kind == "if":
            condition, then, otherwise = args
            inner = apply(then if holds(condition, state) else otherwise, state, quest)
            messages += inner.messages
            move_to, end = inner.move_to or move_to, inner.end or end
            continue
        if kind == "give":
            for item in args:
                state.places.pop(item, None)
                if item not in state.inventory:
                    state.inventory.append(item)
                    said = quest.items[item].gained
                    messages.append(phrase(quest.language, "gained", address=quest.address, item=quest.items[item].name)
                                    if said is None else said)
        elif kind == "take":
            for item in args:
                state.places.pop(item, None)
                if item in state.inventory:
                    state.inventory.remove(item)
                    said = quest.items[item].lost
                    messages.append(phrase(quest.language, "lost", address=quest.address, item=quest.items[item].name)
                                    if said is None else said)
        elif kind == "drop":  # put down where the player is: it lies there, to be taken again
            for item in args:
                if item in state.inventory:
                    state.inventory.remove(item)
                    state.places[item] = state.scene
                    said = quest.items[item].lost
                    messages.append(phrase(quest.language, "lost", address=quest.address, item=quest.items[item].name)
                                    if said is None else said)
        elif kind == "score":
            state.score += args[0]
        elif kind == "set":
            for flag, value in args:
                state.flags[flag] = value
        elif kind == "clear":
            for flag in args:
                state.flags[flag] = False
        elif kind == "add":
            for flag, amount in args:
                state.flags[flag] = number(state.flags.get(flag)) + amount
        elif kind == "move":
            move_to = args[0]
        elif kind == "end":
            end = args[0]
        elif kind == "say":
            messages.append(args[0])
        else:
            raise ValueError(f"unknown effect kind {kind!r}")
    return Outcome(tuple(m for m in messages if m), move_to, end)

