"""Deep quest checks: warnings about quests that load fine but cannot play as meant.

`game.world.loader` reports what is *wrong* in a quest file (errors); this module
looks at a loaded `Quest` as a whole and reports what is *suspicious* (warnings,
each at the author's file:line:col with a way to fix it):

* scenes no path reaches from the start, and endings no path reaches;
* scenes with no way out that are not endings;
* flags set but never read, read but never changed, or never used at all;
* items given but never used, or required (`has:`) but never given;
* choices whose condition can never hold;
* scenes whose fixed prompt parts (persona, state card, scene text, hints, all
  lore, author's note) leave too little of the narrator's window for history.

The analysis is conservative, so a warning is always worth reading: a choice
counts as takeable unless its condition can never hold, and what can hold is
worked out from what the reachable part of the quest can ever give or set
(a fixed point: more reachable choices, more items and flag values, more
reachable choices). `once` choices are counted once when bounding numbers.

The token budget lives in `game.world.budget`; nothing here imports torch,
transformers or textual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from game.diagnostics import Problem
from game.world.budget import budget_warnings
from game.world.explore import MAX_STATES, explore, mentions_turns, parts
from game.world.facts import (FLAG_READS, FLAG_WRITES, Facts, all_conditions, all_effects, answers, flat,
                              show, top_conditions)
from game.world.model import Choice, Condition, Quest, Scene, Where


@dataclass(frozen=True)
class _Way:
    """A response or a thing's verb, seen as a choice the player can always type."""

    condition: Condition | None
    effects: tuple
    key: str
    to: str | None = None
    once: bool = False


def _ways(quest: Quest, scene: Scene | None) -> list[_Way]:
    return [_Way(a.condition, a.effects, f"{scene.id if scene else ''}/answer {i}")
            for i, a in enumerate(answers(quest, scene))]

def lint(quest: Quest, *, tokenizer=None, window: int = 1024, max_new_tokens: int = 150,
         persona: str = "", min_room: int = 300) -> list[Problem]:
    """Warnings for a loaded quest, sorted by file and line. The budget check runs with a tokenizer."""
    found = _Analysis(quest)
    warnings = (found.scene_warnings() + found.ending_warnings() + found.flag_warnings()
                + found.item_warnings() + found.choice_warnings() + found.constant_flag_warnings())
    warnings += explored_warnings(quest, found)
    if tokenizer is not None:
        warnings += budget_warnings(quest, tokenizer, window=window, max_new_tokens=max_new_tokens,
                                    persona=persona, min_room=min_room)
    return sorted(set(warnings), key=lambda p: (p.path, p.line, p.col, p.message))


def _warn(where: Where, message: str) -> Problem:
    return Problem(where.path, where.line, where.col, message, "warning")


def _at(where: Where, near: Where) -> str:
    """A reference to `where` from a message about `near`: "line 12", or "file:12" in another file."""
    return f"line {where.line}" if where.path == near.path else f"{where.path}:{where.line}"


def _never(cond: Condition, facts: Facts, here: str, start: str, negated: bool = False):
    """Why `cond` (or its negation) can never hold in scene `here`: (where, reason), or None."""
    kind, args, w = cond.kind, cond.args, cond.where
    if kind == "not":
        return _never(Condition("all", args, w), facts, here, start, not negated)
    if kind in ("all", "any"):
        if (kind == "all") != negated:  # every part must hold
            for sub in args:
                if (why := _never(sub, facts, here, start, negated)) is not None:
                    return why
            return None if negated else _contradiction(cond)
        reasons = [_never(sub, facts, here, start, negated) for sub in args]
        if all(reasons):
            return (w, "none of its alternatives can ever hold") if len(args) != 1 else reasons[0]
        return None
    first = None
    for name, value in (a if isinstance(a, tuple) else (a, None) for a in args):
        why = _never_one(kind, name, value, facts, here, start, negated)
        if why is None and negated:  # negated, one name that can fail is enough
            return None
        if why is not None and not negated:  # every name must hold: one that never does is enough
            return w, why
        first = first or why
    return (w, first) if negated and first else None


def _never_one(kind, name, value, facts: Facts, here: str, start: str, negated: bool) -> str | None:
    """Why one name of a condition key can never hold (or, negated, never fail); None if it can."""
    if kind in ("turn_at_least", "turn_at_most"):
        return None if not negated or kind == "turn_at_most" or name > 0 else "it needs fewer than 0 turns passed"
    if kind in ("has", "lacks"):
        if (kind == "has") == negated:
            return None  # the inventory starts empty, so lacking anything is always possible
        return None if name in facts.given else f"it needs item '{name}', which nothing reachable ever gives"
    if kind == "in":
        if negated or not here or name == here:
            return None
        return f"it needs the player in scene '{name}', but it is only tried in scene '{here}'"
    if kind in ("visited", "not_visited"):
        if (kind == "visited") != negated:
            reached = name in facts.reached
            return None if reached else f"it needs scene '{name}' visited, which no path reaches"
        if name not in (here, start):
            return None
        why = "the start scene" if name == start else "the choice is in it"
        return f"it needs scene '{name}' not visited, but it always is by then ({why})"
    r = facts.flag(name)
    if kind in ("flag", "not_flag"):
        wants_true = (kind == "flag") != negated
        if (r.can_truthy() if wants_true else r.can_falsy()):
            return None
        return f"it needs flag '{name}' {'set' if wants_true else 'unset'}, but it {r.describe()}"
    if kind == "flags":
        if (r.can_differ(value) if negated else r.can_equal(value)):
            return None
        return f"it needs flag '{name}' {'not ' * negated}equal to {show(value)}, but it {r.describe()}"
    at_least = (kind == "at_least") != negated  # negated: at_most v is "above v", at_least v is "below v"
    strict = negated
    if at_least and (r.hi > value or (r.hi == value and not strict)):
        return None
    if not at_least and (r.lo < value or (r.lo == value and not strict)):
        return None
    want = ("above " if strict else "at least ") if at_least else ("below " if strict else "at most ")
    return f"it needs flag '{name}' {want}{show(value)}, but it {r.describe()}"


def _literals(cond: Condition):
    """The plain keys an `all` requires, looking through nested `all`s."""
    for sub in cond.args if cond.kind == "all" else (cond,):
        if sub.kind == "all":
            yield from _literals(sub)
        elif sub.kind not in ("any", "not"):
            yield sub


def _contradiction(cond: Condition):
    """Two keys of an `all` that cannot hold together: (where, reason), or None."""
    opposite = {"has": "lacks", "lacks": "has", "flag": "not_flag", "not_flag": "flag",
                "visited": "not_visited", "not_visited": "visited"}
    seen: dict[tuple, tuple[Where, object]] = {}  # (kind, name) -> (where, value)
    for lit in _literals(cond):
        for arg in lit.args:
            name, value = arg if isinstance(arg, tuple) else (arg, None)
            here = lit.where
            if lit.kind in opposite and (other := seen.get((opposite[lit.kind], name))):
                return here, (f"it needs both '{opposite[lit.kind]}: {name}' ({_at(other[0], here)}) "
                              f"and '{lit.kind}: {name}'")
            if lit.kind == "flags" and (other := seen.get(("flags", name))) and other[1] != value:
                return here, (f"it needs flag '{name}' equal to both {show(other[1])} "
                              f"({_at(other[0], here)}) and {show(value)}")
            if lit.kind in ("at_least", "at_most"):
                other = seen.get(("at_most" if lit.kind == "at_least" else "at_least", name))
                lo, hi = (value, other[1] if other else math.inf)
                if lit.kind == "at_most":
                    lo, hi = (other[1] if other else -math.inf), value
                if lo > hi:
                    return here, (f"it needs flag '{name}' at least {show(lo)} and at most {show(hi)} "
                                  f"at once ({_at(other[0], here)})")
            seen.setdefault((lit.kind, name), (here, value))
    return None


# -- the quest graph ----------------------------------------------------------------

def _last(effects, kind: str) -> str | None:
    found = [e.args[0] for e in flat(effects) if e.kind == kind and e.args]
    return found[-1] if found else None


class _Analysis:
    """Reachable scenes, takeable choices and reachable endings, worked out to a fixed point.

    Scenes are walked from the start; a choice is taken once its condition can hold
    given what is known so far, and what it gives or sets is known from then on.
    Skipped choices are tried again until nothing new can be taken.
    """

    def __init__(self, quest: Quest):
        self.quest = quest
        self.facts = facts = Facts(quest)
        self.reached, self.taken, self.endings = facts.reached, set(), set()
        todo, waiting = [quest.start], [("", w) for w in _ways(quest, None)]
        while todo or waiting:
            while todo:
                waiting += self._enter(todo.pop(), todo)
            still = []
            for sid, choice in waiting:
                if choice.condition is not None and _never(choice.condition, facts, sid, quest.start):
                    still.append((sid, choice))
                    continue
                self.taken.add(choice.key)
                facts.add(choice.effects, repeatable=not choice.once)
                if (end := _last(choice.effects, "end")) is not None:
                    self.endings.add(end)
                elif (target := _last(choice.effects, "move") or choice.to) is not None:
                    todo.append(target)
            if len(still) == len(waiting) and not todo:
                break
            waiting = still

    def _enter(self, sid: str, todo: list[str]) -> list[tuple[str, Choice]]:
        """Arrive in a scene (the first time only); returns its choices to try."""
        scene = self.quest.scenes.get(sid)
        if scene is None or sid in self.reached:
            return []
        self.reached.add(sid)
        self.facts.add(scene.on_enter, repeatable=True)
        end = _last(scene.on_enter, "end") or scene.ending
        if end is not None:
            self.endings.add(end)
            return []
        if (move := _last(scene.on_enter, "move")) is not None:
            todo.append(move)  # its choices still count: conservative about chained moves
        return [(sid, c) for c in scene.choices] + [(sid, w) for w in _ways(self.quest, scene)]

    # -- warnings ------------------------------------------------------------------
    def scene_warnings(self) -> list[Problem]:
        quest, out = self.quest, []
        for sid, scene in quest.scenes.items():
            if sid not in self.reached:
                ways_in = [f"scene '{s.id}' ({_label(c)})" for s in quest.scenes.values() if s.id != sid
                           for c in s.choices if sid in (c.to, _last(c.effects, "move"))]
                ways_in += [f"scene '{s.id}' (on_enter)" for s in quest.scenes.values()
                            if s.id != sid and _last(s.on_enter, "move") == sid]
                why = (f"its only ways in ({', '.join(ways_in[:3])}{', ...' if len(ways_in) > 3 else ''}) "
                       "lie in unreachable scenes or need conditions that can never hold"
                       if ways_in else "no exit, 'to:' or 'move:' leads to it")
                out.append(_warn(scene.where, f"scene '{sid}' can never be reached from the start scene "
                                              f"'{quest.start}': {why}; add a way in, or remove the scene"))
            if not _has_way_out(scene, quest):
                out.append(_warn(scene.where, f"scene '{sid}' has no way out and is not an ending: no "
                                              "exit or choice leads elsewhere and nothing moves or ends the "
                                              "quest, so the player is stuck there; add an exit, or "
                                              "'ending:' to make it end the quest"))
        return out

    def ending_warnings(self) -> list[Problem]:
        return [_warn(e.where, f"ending '{eid}' can never be reached: no reachable scene has "
                               f"'ending: {eid}' and no takeable choice has 'end: {eid}'; "
                               "lead to it from the story, or remove it")
                for eid, e in self.quest.endings.items() if eid not in self.endings]

    def flag_warnings(self) -> list[Problem]:
        quest = self.quest
        reads, writes = {}, {}
        for cond in all_conditions(quest):
            if cond.kind in FLAG_READS:
                for arg in cond.args:
                    reads.setdefault(arg[0] if isinstance(arg, tuple) else arg, cond.where)
        for effect in all_effects(quest):
            if effect.kind in FLAG_WRITES:
                for arg in effect.args:
                    writes.setdefault(arg if effect.kind == "clear" else arg[0], effect.where)
        declared = _flag_positions(quest)
        out = []
        for flag in quest.flags:
            where = (declared.get(flag) or writes.get(flag) or reads.get(flag)
                     or Where(str(quest.source or "<quest>"), 1, 1))
            if flag in writes and flag not in reads:
                out.append(_warn(where, f"flag '{flag}' is changed ({_at(writes[flag], where)}) but no "
                                        "condition ever reads it, so it changes nothing in the quest (the "
                                        "narrator only sees it on the state card); test it in an 'if:' such "
                                        f"as {{flag: {flag}}}, or remove it"))
            elif flag in reads and flag not in writes:
                out.append(_warn(where, f"flag '{flag}' is read by a condition ({_at(reads[flag], where)}) "
                                        "but nothing ever changes it (no set:, clear: or add:), so it is "
                                        f"always {show(quest.flags[flag])} and every condition on it "
                                        "always gives the same answer; change it in an effect, or drop the "
                                        "condition"))
            elif flag not in reads and flag not in writes:
                out.append(_warn(where, f"flag '{flag}' is declared but no condition reads it and no "
                                        "effect changes it; use it, or remove it"))
        return out

    def item_warnings(self) -> list[Problem]:
        quest = self.quest
        given, used, needed = {}, set(), {}
        for effect in all_effects(quest):
            if effect.kind == "give":
                for item in effect.args:
                    given.setdefault(item, effect.where)
            elif effect.kind == "take":
                used.update(effect.args)
        for cond in all_conditions(quest):
            if cond.kind in ("has", "lacks"):
                used.update(cond.args)
            if cond.kind == "has":
                for item in cond.args:
                    needed.setdefault(item, cond.where)
        out = []
        for iid, item in quest.items.items():
            if iid in given and iid not in used:
                out.append(_warn(item.where, f"item '{iid}' is given ({_at(given[iid], item.where)}) but "
                                             "never used: no 'has:', 'lacks:' or 'take:' names it; use it in "
                                             f"a condition (if: {{has: {iid}}}), or remove it"))
            if iid in needed and iid not in given and iid not in quest.carrying:
                out.append(_warn(item.where, f"item '{iid}' is required (has: at "
                                             f"{_at(needed[iid], item.where)}) but nothing ever gives it, "
                                             "so that condition never holds; "
                                             f"add 'give: {iid}' to an effect"))
        return out

    def constant_flag_warnings(self) -> list[Problem]:
        """A flag that is read and written, but every write sets the value it starts with."""
        quest, out = self.quest, []
        reads = {}
        for cond in all_conditions(quest):
            if cond.kind in FLAG_READS:
                for arg in cond.args:
                    reads.setdefault(arg[0] if isinstance(arg, tuple) else arg, cond.where)
        writes: dict[str, list] = {}
        for effect in all_effects(quest):
            if effect.kind in FLAG_WRITES:
                for arg in effect.args:
                    flag, value = (arg, False) if effect.kind == "clear" else arg
                    writes.setdefault(flag, []).append((effect, value))
        for flag, start in quest.flags.items():
            if flag not in reads or flag not in writes:
                continue
            same = all((e.kind == "add" and v == 0) or (e.kind != "add" and v == start and type(v) is type(start))
                       for e, v in writes[flag])
            if same:
                where = quest.flag_where.get(flag) or writes[flag][0][0].where
                first = writes[flag][0][0].where
                out.append(_warn(where, f"flag '{flag}' starts as {show(start)} and is only ever set to "
                                        f"{show(start)} ({_at(first, where)}), so it never changes and every "
                                        f"condition on it ({_at(reads[flag], where)}) always gives the same "
                                        f"answer; start it as {show(not start) if isinstance(start, bool) else 'something else'}, "
                                        "or change it to another value somewhere"))
        return out

    def choice_warnings(self) -> list[Problem]:
        out = []
        for sid, scene in self.quest.scenes.items():
            for choice in scene.choices:
                if choice.condition is None:
                    continue
                why = _never(choice.condition, self.facts, sid, self.quest.start)
                if why is not None:
                    where, reason = why
                    out.append(_warn(where, f"{_label(choice)} in scene '{sid}' can never be offered: "
                                            f"{reason}; fix its 'if:' or remove it"))
        return out


def _label(choice: Choice) -> str:
    return f"{'exit' if choice.is_exit else 'choice'} '{choice.label}'"


def _has_way_out(scene: Scene, quest: Quest) -> bool:
    if scene.ending or any(e.kind == "end" for e in flat(scene.on_enter)):
        return True
    effects = list(flat(scene.on_enter)) + [e for c in scene.choices for e in flat(c.effects)]
    effects += [e for a in list(answers(quest, scene)) + list(answers(quest)) for e in flat(a.effects)]
    if any(e.kind == "end" or (e.kind == "move" and e.args[0] != scene.id) for e in effects):
        return True
    return any(c.to not in (None, scene.id) for c in scene.choices)


def _flag_positions(quest: Quest) -> dict[str, Where]:
    """Where each flag is declared."""
    return dict(quest.flag_where)


# -- what exploring the reachable states shows ----------------------------------------

def explored_warnings(quest: Quest, analysis: "_Analysis") -> list[Problem]:
    """Traps, and conditions that never hold in any reachable state (a counter its own guard
    keeps low, `visited:` of a scene that ends the quest, an item always gone before the flag
    that needs it is set). Nothing is said past the bound but a note that it was hit."""
    found = explore(quest)
    if found.bound_hit:
        where = Where(str(quest.source or "<quest>"), 1, 1)
        return [Problem(where.path, 1, 1, f"the deeper checks explored the first {MAX_STATES:,} states of "
                                          "the quest and stopped there (the bound was hit); traps and "
                                          "conditions that never hold were not looked for", "note")]
    out = []
    already = {(p.line, p.col, p.path) for p in analysis.choice_warnings()}
    for cond in top_conditions(quest):
        w = cond.where
        if id(cond) not in found.tried or id(cond) in found.held or mentions_turns(cond):
            continue
        if (w.line, w.col, w.path) in already or any((p.where.line, p.where.col, p.where.path) in already
                                                     for p in parts(cond)):
            continue
        out.append(_warn(w, f"this condition never holds in any reachable state "
                            f"({found.states:,} explored): {_why_never(quest, cond, found)}; "
                            "fix the condition, or the effects that should make it hold"))
    out += _trap_warnings(quest, found, analysis)
    return out


def _literal(p: Condition) -> str:
    args = ", ".join(f"{a[0]}: {show(a[1])}" if isinstance(a, tuple) else str(a) for a in p.args)
    return f"'{p.kind}: {args}'"


def _why_never(quest: Quest, cond: Condition, found) -> str:
    plain = [p for p in parts(cond) if not mentions_turns(p)]
    for p in plain:
        if id(p) in found.held:
            continue
        if p.kind in ("at_least", "at_most"):
            flag, value = p.args[0]
            hi, lo = found.highs.get(flag), found.lows.get(flag)
            reached = f"it goes from {show(lo)} to {show(hi)}" if hi is not None else "it never holds a number"
            guard = _guard(quest, flag) if p.kind == "at_least" else ""
            return f"it needs flag '{flag}' {'at least' if p.kind == 'at_least' else 'at most'} {show(value)}, " \
                   f"but {reached}{guard}"
        if p.kind == "visited":
            ends = [s for s in p.args if s in quest.scenes and quest.scenes[s].ending]
            if ends:
                return (f"it needs scene '{ends[0]}' visited, but arriving there ends the quest, so it is never "
                        "visited while the quest goes on")
        if p.kind == "has":
            return f"it needs {_literal(p)}, which the player never has there"
        return f"it needs {_literal(p)}, which never holds there"
    if cond.kind == "all" or len(plain) > 1:
        sets = found.together.get(id(cond), set())
        for a in plain:
            for b in plain:
                if a is not b and not any(id(a) in held and id(b) in held for held in sets):
                    if a.kind == "has" and b.kind in ("flag", "flags", "at_least", "at_most"):
                        return (f"item '{a.args[0]}' is always gone before {_literal(b)} holds "
                                f"(each holds on its own, never both at once)")
                    return f"{_literal(a)} and {_literal(b)} each hold on their own, but never at the same time"
    return "no reachable state satisfies it"


def _guard(quest: Quest, flag: str) -> str:
    """ ", because the option that adds to it (line N) only runs while it is at most M", or ""."""
    for scene in quest.scenes.values():
        for choice in scene.choices:
            adds = any(e.kind == "add" and any(f == flag and v > 0 for f, v in e.args) for e in flat(choice.effects))
            if adds and choice.condition is not None:
                for p in parts(choice.condition):
                    if p.kind == "at_most" and any(f == flag for f, _ in p.args):
                        limit = next(v for f, v in p.args if f == flag)
                        return (f", because the option that adds to it ({_label(choice)}, line {choice.where.line}) "
                                f"only runs while it is at most {show(limit)}")
    return ""


def _trap_warnings(quest: Quest, found, analysis: "_Analysis") -> list[Problem]:
    """Scenes where the player can end up with no ending reachable any more."""
    out = []
    stuck = {sid for sid, scene in quest.scenes.items() if not _has_way_out(scene, quest)}
    trapped = sorted(sid for sid in found.doomed if sid not in stuck)
    if not trapped:
        return out
    names = ", ".join(f"'{s}'" for s in trapped[:4]) + (", ..." if len(trapped) > 4 else "")
    for sid in trapped:
        scene = quest.scenes[sid]
        out.append(_warn(scene.where, f"scene '{sid}' can become a trap: from some reachable states there "
                                      f"no ending can be reached any more (the way on leads only among "
                                      f"{names}); give it a way on to an ending, or an ending of its own"))
    return out
