"""Bounded exploration of a quest's reachable states, for `validate`'s deeper warnings.

From the start, every option (hidden ones too), response, catch-all and thing's
verb that can answer is tried in every state reached, breadth first, and each
different state (scene, inventory, flags, used options, score, put-down items,
scenes visited) is kept once, up to `MAX_STATES`. Turn conditions (`turn_at_least`,
`turn_at_most`) are taken to hold either way, so the exploration only ever sees
more than a real game can, never less: what it never sees cannot happen.

`explore(quest)` returns an `Exploration`: how many states, whether the bound
was hit, which written conditions were tried and which ever held (by `id`), the
lowest and highest value each number flag reached, and the states from which no
ending can be reached any more (traps).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from game.state import GameState
from game.world.model import Condition, Quest
from game.world.rules import apply, holds

MAX_STATES = 5_000
MAX_CHAINED_MOVES = 8


@dataclass
class Exploration:
    states: int = 0
    bound_hit: bool = False
    tried: set = field(default_factory=set)  # id() of conditions evaluated in some reachable state
    held: set = field(default_factory=set)  # id() of conditions (and their parts) that held there
    together: dict = field(default_factory=dict)  # id(condition) -> sets of part ids that held at once
    lows: dict = field(default_factory=dict)  # number flag -> lowest value reached
    highs: dict = field(default_factory=dict)
    doomed: dict = field(default_factory=dict)  # scene -> reachable states there with no ending ahead
    scenes: set = field(default_factory=set)


def mentions_turns(cond: Condition) -> bool:
    return cond.kind.startswith("turn_") or any(
        isinstance(a, Condition) and mentions_turns(a) for a in cond.args)


def _can(cond: Condition | None, state: GameState) -> bool:
    """Whether a condition may hold: like `holds`, but turn conditions may hold either way."""
    if cond is None or mentions_turns(cond):
        return True if cond is None or cond.kind.startswith("turn_") or cond.kind == "not" else (
            all(_can(c, state) for c in cond.args) if cond.kind == "all" else any(_can(c, state) for c in cond.args))
    return holds(cond, state)


def parts(cond: Condition):
    """The plain keys a condition is made of (through all/any/not)."""
    if cond.kind in ("all", "any", "not"):
        for sub in cond.args:
            yield from parts(sub)
    else:
        yield cond


def _bounds(quest: Quest) -> dict[str, tuple[float, float]]:
    """For each number flag, the range outside which no condition can tell two values apart."""
    from game.world.facts import all_conditions

    consts: dict[str, list] = {}
    for cond in all_conditions(quest):
        if cond.kind in ("at_least", "at_most", "flags"):
            for flag, value in cond.args:
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    consts.setdefault(flag, []).append(value)
    out = {}
    for flag, start in quest.flags.items():
        if isinstance(start, (int, float)) and not isinstance(start, bool):
            values = consts.get(flag, []) + [start]
            out[flag] = (min(values) - 1, max(values) + 1)
    return out


def _read(quest: Quest) -> tuple[set, set]:
    """The flags and the scenes (visited:) that some condition reads."""
    from game.world.facts import FLAG_READS, all_conditions

    flags, scenes = set(), set()
    for cond in all_conditions(quest):
        if cond.kind in FLAG_READS:
            flags.update(a[0] if isinstance(a, tuple) else a for a in cond.args)
        elif cond.kind in ("visited", "not_visited"):
            scenes.update(cond.args)
    return flags, scenes


def _missed(quest: Quest) -> set[str]:
    """Items whose absence some condition looks for (`lacks:`, or `has:` under `not:`): only for
    these can putting one down with the game's own `drop` change what happens, so only these are
    dropped while exploring (every item dropped everywhere would be too many states)."""
    from game.world.facts import top_conditions

    out: set[str] = set()

    def walk(cond: Condition, negated: bool) -> None:
        if cond.kind == "lacks" or (cond.kind == "has" and negated):
            out.update(cond.args)
        for sub in cond.args:
            if isinstance(sub, Condition):
                walk(sub, negated != (cond.kind == "not"))

    for cond in top_conditions(quest):
        walk(cond, False)
    return out


def _key(s: GameState, bounds: dict, read: tuple[tuple, set]):
    """What tells states apart for the quest's conditions: flags and visits no condition reads are
    left out, numbers beyond every threshold count as one (and the score and turn count are left
    out), so counters that grow forever stay finite."""
    flags = []
    get = s.flags.get
    for k in read[0]:
        v = get(k)
        if k in bounds and v.__class__ in (int, float):
            lo, hi = bounds[k]
            v = lo if v < lo else hi if v > hi else v
        flags.append((v.__class__ is bool, v))
    return (s.scene, frozenset(s.inventory), tuple(flags), frozenset(s.used),
            frozenset(s.places.items()) if s.places else None,
            frozenset(v for v in s.visits if v in read[1]) if read[1] else None, s.ending)


def _copy(s: GameState) -> GameState:
    return GameState(s.scene, list(s.inventory), dict(s.flags), dict(s.visits), s.turn, s.ending,
                     list(s.used), s.score, dict(s.places))


def _go(quest: Quest, s: GameState, effects, to: str | None) -> GameState:
    """A copy of the state after effects, then the move they (or `to`) make, as the engine plays it."""
    s = _copy(s)
    out = apply(effects, s, quest)
    if out.end is not None:
        s.ending = out.end
        return s
    target = out.move_to or to
    for _ in range(MAX_CHAINED_MOVES + 1):
        if target is None or target not in quest.scenes:
            break
        s.scene = target
        s.visits[target] = s.visits.get(target, 0) + 1
        scene = quest.scenes[target]
        entered = apply(scene.on_enter, s, quest)
        if entered.end or scene.ending:
            s.ending = entered.end or scene.ending
            break
        target = entered.move_to
    return s


class _Explorer:
    def __init__(self, quest: Quest):
        self.quest = quest
        self.found = Exploration()
        self.bounds = _bounds(quest)
        flags, scenes = _read(quest)
        self.read = (tuple(sorted(flags)), scenes)
        self.droppable = _missed(quest)

    def check(self, cond: Condition | None, state: GameState) -> bool:
        """Evaluate a written condition in a reachable state, remembering what held."""
        if cond is None:
            return True
        found = self.found
        found.tried.add(id(cond))
        held_parts = frozenset(id(p) for p in parts(cond) if not mentions_turns(p) and holds(p, state))
        found.held.update(held_parts)
        found.together.setdefault(id(cond), set()).add(held_parts)
        result = _can(cond, state)
        if result:
            found.held.add(id(cond))
        return result

    def moves(self, s: GameState):
        """The states one turn can lead to."""
        quest, scene = self.quest, self.quest.scenes[s.scene]
        for choice in scene.choices:
            if choice.key in s.used or not self.check(choice.condition, s):
                continue
            if choice.to is None and all(e.kind == "say" for e in choice.effects):
                continue  # it only says something: taking it (once or not) changes nothing else
            nxt = _go(quest, s, choice.effects, choice.to)
            if choice.once:
                nxt.used.append(choice.key)
            yield nxt
        for answer in list(scene.responses) + list(quest.responses):
            if self.check(answer.condition, s):
                yield _go(quest, s, answer.effects, None)
        in_reach = ([quest.items[i] for i in s.inventory if i in quest.items]
                    + [quest.items[i] for i, at in s.places.items() if at == s.scene and i in quest.items]
                    + list(scene.things.values()))
        reach_ids = {t.id for t in in_reach}
        for thing in in_reach:
            answered = set()
            for verb, answers in thing.verbs.items():
                for answer in answers:
                    if answer.on is not None and answer.on not in reach_ids:
                        continue
                    if self.check(answer.condition, s):
                        answered.add(verb)
                        yield _go(quest, s, answer.effects, None)
                        if answer.on is None:
                            break
            if thing.id in self.droppable and "drop" not in answered and thing.id in s.inventory:
                nxt = _copy(s)
                nxt.inventory.remove(thing.id)
                nxt.places[thing.id] = s.scene
                yield nxt
            if thing.id in quest.items and "take" not in answered and s.places.get(thing.id) == s.scene:
                nxt = _copy(s)
                del nxt.places[thing.id]
                nxt.inventory.append(thing.id)
                yield nxt

    def texts(self, s: GameState) -> None:
        """Track the variants of the texts this state can show (they lead nowhere)."""
        quest, scene = self.quest, self.quest.scenes[s.scene]
        shown = list(scene.descriptions) + [scene.first_visit] + [t.description for t in scene.things.values()]
        shown += [c.text for c in scene.choices] + [c.locked for c in scene.choices]
        shown += [a.text for a in list(scene.responses) + list(quest.responses)]
        shown += [i.description for i in quest.items.values()]
        for text in shown:
            for cond, _ in getattr(text, "variants", ()):
                if cond is not None:
                    self.check(cond, s)

    def run(self) -> Exploration:
        quest, found = self.quest, self.found
        start = GameState(quest.start, list(quest.carrying), dict(quest.flags), {quest.start: 1})
        entered = apply(quest.scenes[quest.start].on_enter, start, quest)
        if entered.end or quest.scenes[quest.start].ending:
            start.ending = entered.end or quest.scenes[quest.start].ending
        elif entered.move_to:
            start = _go(quest, start, (), entered.move_to)
        index = {_key(start, self.bounds, self.read): 0}
        edges: list[set[int]] = [set()]
        states = [start]
        todo = deque([0])
        while todo:
            n = todo.popleft()
            s = states[n]
            self.note(s)
            if s.ending is not None:
                continue
            self.texts(s)
            for nxt in self.moves(s):
                k = _key(nxt, self.bounds, self.read)
                m = index.get(k)
                if m is None:
                    if len(states) >= MAX_STATES:
                        found.bound_hit = True
                        continue
                    m = index[k] = len(states)
                    states.append(nxt)
                    edges.append(set())
                    todo.append(m)
                edges[n].add(m)
        found.states = len(states)
        if not found.bound_hit:
            self.traps(states, edges)
        return found

    def note(self, s: GameState) -> None:
        found = self.found
        found.scenes.add(s.scene)
        for flag in self.bounds:  # the number flags
            value = s.flags.get(flag)
            if value.__class__ in (int, float):
                found.lows[flag] = min(found.lows.get(flag, value), value)
                found.highs[flag] = max(found.highs.get(flag, value), value)

    def traps(self, states: list[GameState], edges: list[set[int]]) -> None:
        """States from which no ending can be reached, by scene."""
        back: list[list[int]] = [[] for _ in states]
        for n, outs in enumerate(edges):
            for m in outs:
                back[m].append(n)
        alive = {n for n, s in enumerate(states) if s.ending is not None}
        if not alive:
            return  # no ending is reachable at all: "ending can never be reached" says it better
        todo = deque(alive)
        while todo:
            for n in back[todo.popleft()]:
                if n not in alive:
                    alive.add(n)
                    todo.append(n)
        for n, s in enumerate(states):
            if n not in alive:
                self.found.doomed.setdefault(s.scene, []).append(s)


def explore(quest: Quest) -> Exploration:
    return _Explorer(quest).run()
