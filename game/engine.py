"""The turn engine: resolves what the player does against the quest's rules.

`Engine.act(text)` resolves one turn and returns a `TurnResult`, a plain value
any front end renders (plain terminal, TUI, tests). What the player typed is
answered, in this order, by: a built-in command (unless a catch-all answers it
too); a choice or exit, hidden ones included; the scene's responses, then its
catch-all; a thing's verb ("x hook", "drop cloak", "put cloak on hook"); the
quest's responses, then its catch-all; else it is a free action for the Spirit.
The action recorded and shown is the option's label or the resolved command
("examine hook"), never a bare number. The engine keeps the state,
the history of turns and a snapshot before every turn, so `undo()` restores the
exact earlier state, all the way back to the start. Random picks (description
variants) are derived from the seed, the scene and the visit count, so the same
seed gives the same story and undo/redo never shifts them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from game.phrases import phrase
from game.state import GameState, TurnRecord
from game.world.model import Choice, Ending, Item, Quest, Response, Scene
from game.world.parser import (DIRECTIONS, Command, Deed, _has_phrase, best_match, deed, normalize,
                               parse, resolved, score, things_named)
from game.world.rules import apply, holds
from game.world.text import render

MAX_CHAINED_MOVES = 8
# Turns kept for undo and history: long sessions stay flat in memory and on disk.
HISTORY_LIMIT = 500  # on_enter moves that lead on to further on_enter moves



@dataclass(frozen=True)
class Para:
    """A paragraph of authored output. kind: scene-title, scene, text, change, info, ending-title, ending."""

    kind: str
    text: str


@dataclass(frozen=True)
class Option:
    number: int
    label: str
    is_exit: bool


@dataclass
class TurnResult:
    turn: int
    action: str
    kind: str  # opening, choice, exit, look, free, locked, response, examine, wait, inventory, help,
    #            invalid, empty, ended
    paragraphs: list[Para] = field(default_factory=list)
    scene_id: str = ""
    scene_entered: bool = False
    ending: Ending | None = None
    options: list[Option] = field(default_factory=list)
    counts: bool = False  # took a turn (and can be undone)
    narrate: bool = False  # the Spirit should narrate it

    @property
    def authored(self) -> str:
        return "\n\n".join(p.text for p in self.paragraphs if p.kind not in ("info",))


class Engine:
    def __init__(self, quest: Quest, seed: int | None = None, state: GameState | None = None,
                 history: list[TurnRecord] | None = None,
                 undo: list[tuple[GameState, int]] | None = None):
        self.quest = quest
        self.seed = seed if seed is not None else random.randrange(2**31)
        self.history: list[TurnRecord] = list(history or [])
        self._undo: list[tuple[GameState, int]] = list(undo or [])
        self._last = ""  # the last command that took a turn, for "again"
        self._asked: list[Item] = []  # things of a "Which do you mean ...?" question, with its deed
        self._asked_deed: Deed | None = None
        if state is None:
            state = GameState(scene=quest.start, flags=dict(quest.flags), inventory=list(quest.carrying))
            self.state = state
            self._opening_paras = self._enter(quest.start)
        else:
            self.state = state
            self._opening_paras = None

    # -- queries -------------------------------------------------------------------
    def say(self, key: str, **values) -> str:
        """One of the game's own sentences, in the quest's language."""
        return phrase(self.quest.language, key, address=self.quest.address, **values)

    @property
    def scene(self) -> Scene:
        return self.quest.scenes[self.state.scene]

    @property
    def ended(self) -> bool:
        return self.state.ending is not None

    @property
    def ending(self) -> Ending | None:
        return self.quest.endings.get(self.state.ending) if self.state.ending else None

    def available(self) -> list[Choice]:
        """The choices and exits offered now, in the order they are numbered."""
        if self.ended:
            return []
        return [c for c in self.scene.choices
                if not c.hidden and c.key not in self.state.used and holds(c.condition, self.state)]

    def options(self) -> list[Option]:
        return [Option(i + 1, c.label, c.is_exit) for i, c in enumerate(self.available())]

    def text(self, text: str) -> str:
        """A quest text as it reads now: its variant in force, with {names} filled in."""
        return render(text, self.state, self.quest)

    def description(self) -> str:
        """The scene's description in force for this visit (random variants picked reproducibly)."""
        variants = self.scene.descriptions
        if len(variants) <= 1:
            return self.text(variants[0]) if variants else ""
        visit = self.state.visits.get(self.state.scene, 1)
        return self.text(random.Random(f"{self.seed}|{self.state.scene}|{visit}").choice(variants))

    def lying_here(self) -> list[str]:
        """Items the player put down in this scene."""
        return [i for i, s in self.state.places.items() if s == self.state.scene and i in self.quest.items]

    def _scene_paras(self, first_visit: bool = False) -> list[Para]:
        scene = self.scene
        text = self.text(scene.first_visit) if first_visit and scene.first_visit else ""
        paras = [Para("scene-title", scene.title), Para("scene", text or self.description())]
        here = self.lying_here()
        if here:
            names = [self.quest.items[i].name for i in here]
            paras.append(Para("text", self.say("here", things=_listed(names, self.say("and")))))
        return paras

    def recaps(self) -> list[str]:
        """Recaps of earlier scenes the player visited, in first-visit order."""
        return [self.quest.scenes[s].recap for s in self.state.visits
                if s != self.state.scene and s in self.quest.scenes and self.quest.scenes[s].recap]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def undo_stack(self) -> list[tuple[GameState, int]]:
        """Snapshots before each turn: (state, history length then). Saves carry them."""
        return list(self._undo)

    # -- turns ---------------------------------------------------------------------
    def opening(self) -> TurnResult:
        """What the player sees first (or, after a load, where they are now)."""
        paras = self._opening_paras
        if paras is None or self._undo:  # the stored opening is only true at the start
            paras = self._scene_paras(first_visit=self.state.visits.get(self.state.scene) == 1)
        result = TurnResult(self.state.turn, "", "opening", list(paras), self.state.scene,
                            True, self.ending, self.options(), narrate=False)
        if self.ended:
            result.paragraphs += self._ending_paras(self.ending)
        return result

    def act(self, raw: str) -> TurnResult:
        command = parse(raw)
        if self.ended:
            return self._info(raw, "ended", self.say("ended"))
        if command.kind == "again":
            if not self._last:
                return self._info(raw, "invalid", self.say("again_nothing"))
            raw, command = self._last, parse(self._last)
        asked, self._asked = self._asked, []
        result = self._act(raw, command, asked)
        if result.counts:
            self._last = raw
        return result

    def _act(self, raw: str, command: Command, asked: list[Item]) -> TurnResult:
        if command.kind == "empty":
            return self._info(raw, "empty", "")
        if command.kind == "help":
            return self._info(raw, "help", self.say("help"))
        if command.kind in ("look", "inventory", "wait") and (caught := self._catch_all(command.kind)):
            return self._respond(self.say("cmd_" + command.kind), caught, self._builtin_paras(command.kind))
        if command.kind == "inventory":
            return self._info(self.say("cmd_inventory"), "inventory", self.inventory_text())
        if command.kind == "number":
            available = self.available()
            if not 1 <= command.number <= len(available):
                count = len(available)
                hint = self.say("pick_range", count=count) if count else self.say("no_options")
                return self._info(raw, "invalid", self.say("no_option", number=command.number, hint=hint))
            choice = available[command.number - 1]
            return self._take(choice.label, choice)
        if command.kind in ("look", "wait"):
            return self._turn(self.say("cmd_" + command.kind), command.kind, self._builtin_paras(command.kind))
        if asked and self._asked_deed is not None:  # the answer to "Which do you mean ...?"
            picked = things_named(command.text, asked)
            if len(picked) == 1:
                return self._deed(raw, self._asked_deed, picked[0])
        return self._free_text(raw, command)

    def _builtin_paras(self, kind: str) -> list[Para]:
        if kind == "look":
            return self._scene_paras()
        if kind == "inventory":
            return [Para("text", self.inventory_text())]
        return [Para("text", self.say("wait"))]

    def inventory_text(self) -> str:
        if not self.state.inventory:
            return self.say("carry_nothing")
        lines = [self.say("carry")]
        for item_id in self.state.inventory:
            item = self.quest.items[item_id]
            about = self.text(item.description)
            lines.append(f"- {item.name}" + (f": {about}" if about else ""))
        return "\n".join(lines)

    def _free_text(self, raw: str, command: Command) -> TurnResult:
        # The player's own words, unless they used an abbreviation ("n", "x hook"): then what it means.
        abbreviated = command.text != normalize(raw) or command.text.split()[0] == "x"
        action = resolved(command.text) if abbreviated else raw.strip()
        result = self._choose(action, command.text)
        if result is not None:
            return result
        scene = self.scene
        answer = self._response(scene.responses, command.text)
        if answer is None:
            answer = self._catch_all(None, quest_wide=False)
        if answer is not None:
            return self._respond(action, answer, [])
        found = deed(command.text)
        if found is not None:
            things = things_named(found.thing, self._in_reach())
            if len(things) > 1:
                self._asked, self._asked_deed = things, found
                names = [f"the {_bare(t.name)}" if self.quest.language.startswith("en") else t.name
                         for t in things]
                return self._info(action, "invalid", self.say("which", things=_listed(names, self.say("or"))))
            if len(things) == 1:
                result = self._deed(action, found, things[0])
                if result is not None:
                    return result
        answer = self._response(self.quest.responses, command.text) or self._catch_all(None)
        if answer is not None:
            return self._respond(action, answer, [])
        words = command.text.split()
        if words and words[-1] in DIRECTIONS.values() and (len(words) == 1 or words[0] == "go"):
            return self._info(action, "invalid", self.say("no_exit"))
        return self._turn(action, "free", [])

    def _choose(self, action: str, text: str) -> TurnResult | None:
        """A choice or exit the words pick (hidden ones too), or a locked one's answer; None if none fits."""
        offered = [c for c in self.scene.choices if c.key not in self.state.used]
        open_now = [c for c in offered if holds(c.condition, self.state)]
        choice = best_match(text, offered, self.quest)
        if choice is None:
            return None
        available = best_match(text, open_now, self.quest)
        # A locked choice answers only when the words fit it better than any open one.
        if available is not None and score(text, available, self.quest) >= score(text, choice, self.quest):
            return self._take(action, available)
        message = self.text(choice.locked) or self.say("locked")
        return self._turn(action, "locked", [Para("text", message)])

    # -- responses and things --------------------------------------------------------
    def _response(self, responses, text: str) -> Response | None:
        """The first response (not a catch-all) whose words or verbs fit and whose condition holds."""
        words = text.split()
        verb = deed(text).verb if deed(text) else (words[0] if words else "")
        for r in responses:
            if r.anything:
                continue
            if r.verbs and verb not in r.verbs and (not words or words[0] not in r.verbs):
                continue
            if r.words and not any(_has_phrase(text, normalize(w)) for w in r.words):
                continue
            if holds(r.condition, self.state):
                return r
        return None

    def _catch_all(self, builtin: str | None, quest_wide: bool = True) -> Response | None:
        """The scene's catch-all that holds now (then, with `quest_wide`, the quest's).

        For a built-in command (`builtin`), only a catch-all that names it in `also`.
        """
        sources = [self.scene.responses] + ([self.quest.responses] if quest_wide or builtin else [])
        for responses in sources:
            for r in responses:
                if r.anything and (builtin is None or builtin in r.also) and holds(r.condition, self.state):
                    return r
        return None

    def _respond(self, action: str, answer: Response, paras: list[Para]) -> TurnResult:
        """A turn answered by a response, a catch-all or a thing's verb: its text, then its effects."""
        self._push_undo()
        self.state.turn += 1
        text = self.text(answer.text)
        paras = paras + ([Para("text", text)] if text else [])
        return self._effects(action, "response", answer.effects, paras, self.state.scene, None)

    def _in_reach(self) -> list[Item]:
        """The things the player can name now: what they carry, what lies here, the scene's things."""
        items = self.quest.items
        return ([items[i] for i in self.state.inventory if i in items]
                + [items[i] for i in self.lying_here()] + list(self.scene.things.values()))

    def _deed(self, action: str, found: Deed, thing: Item) -> TurnResult | None:
        """A verb done to a thing: its own answer first, else the game's (examine, take, drop)."""
        target = None
        if found.target:
            targets = things_named(found.target, [t for t in self._in_reach() if t is not thing])
            target = targets[0] if len(targets) == 1 else None
        for answer in thing.verbs.get(found.verb, ()):
            if answer.on is not None and (target is None or target.id != answer.on):
                continue
            if holds(answer.condition, self.state):
                return self._respond(action, answer, [])
        carried = thing.id in self.state.inventory
        if found.verb == "examine":
            about = self.text(thing.description) or self.say("nothing_special", thing=thing.name)
            return self._turn(action, "examine", [Para("text", about)])
        if found.verb == "take" and thing.id in self.quest.items and not carried and \
                self.state.places.get(thing.id) == self.state.scene:
            self._push_undo()
            self.state.turn += 1
            self.state.places.pop(thing.id)
            self.state.inventory.append(thing.id)
            said = self.text(thing.gained) if thing.gained is not None else self.say("taken")
            return self._finish(action, "response", [Para("text", said)] if said else [], self.state.scene, False)
        if found.verb == "take" and carried:
            return self._turn(action, "response", [Para("text", self.say("already_have"))])
        if found.verb == "drop" and carried and not found.target:
            self._push_undo()
            self.state.turn += 1
            self.state.inventory.remove(thing.id)
            self.state.places[thing.id] = self.state.scene
            return self._finish(action, "response", [Para("text", self.say("dropped"))], self.state.scene, False)
        return None

    def _take(self, raw: str, choice: Choice) -> TurnResult:
        self._push_undo()
        state = self.state
        state.turn += 1
        if choice.once:
            state.used.append(choice.key)
        text = self.text(choice.text)
        paras = [Para("text", text)] if text else []
        return self._effects(raw, "exit" if choice.is_exit else "choice", choice.effects, paras,
                             state.scene, choice.to)

    def _effects(self, action: str, kind: str, effects, paras: list[Para], from_scene: str,
                 to: str | None) -> TurnResult:
        """Apply a turn's effects, then go where they (or `to`) lead, or end the quest."""
        state = self.state
        outcome = apply(effects, state, self.quest)
        paras = paras + [Para("change", self.text(m)) for m in outcome.messages]
        target = outcome.move_to or to
        ending_id = outcome.end
        entered = False
        if ending_id is None and target is not None:
            paras += self._enter(target)
            entered = True
            ending_id = state.ending
        if ending_id is not None:
            state.ending = ending_id
        return self._finish(action, kind, paras, from_scene, entered)

    def _enter(self, scene_id: str, depth: int = 0) -> list[Para]:
        state = self.state
        state.scene = scene_id
        state.visits[scene_id] = state.visits.get(scene_id, 0) + 1
        scene = self.scene
        paras = self._scene_paras(first_visit=state.visits[scene_id] == 1)
        outcome = apply(scene.on_enter, state, self.quest)
        paras += [Para("change", self.text(m)) for m in outcome.messages]
        if outcome.end or scene.ending:
            state.ending = outcome.end or scene.ending
        elif outcome.move_to and depth < MAX_CHAINED_MOVES:
            paras += self._enter(outcome.move_to, depth + 1)
        return paras

    def _turn(self, raw: str, kind: str, paras: list[Para]) -> TurnResult:
        self._push_undo()
        self.state.turn += 1
        return self._finish(raw, kind, paras, self.state.scene, False)

    def _finish(self, raw: str, kind: str, paras: list[Para], from_scene: str, entered: bool) -> TurnResult:
        ending = self.ending
        if ending is not None:
            paras = paras + self._ending_paras(ending)
        result = TurnResult(self.state.turn, raw.strip(), kind, paras, self.state.scene, entered,
                            ending, self.options(), counts=True, narrate=True)
        self.history.append(TurnRecord(self.state.turn, raw.strip(), kind, from_scene, result.authored))
        if len(self.history) > HISTORY_LIMIT:
            del self.history[: len(self.history) - HISTORY_LIMIT]
        return result

    def _ending_paras(self, ending: Ending) -> list[Para]:
        verdict = self.say("won" if ending.outcome == "win" else "lost_game")
        if self.quest.scored:
            verdict += " " + self.say("scored", score=self.state.score, max_score=self.quest.max_score)
        return [Para("ending-title", ending.title), Para("ending", self.text(ending.text)), Para("info", verdict)]

    def _info(self, raw: str, kind: str, text: str) -> TurnResult:
        paras = [Para("info", text)] if text else []
        return TurnResult(self.state.turn, raw.strip(), kind, paras, self.state.scene, False,
                          self.ending, self.options())

    # -- undo ----------------------------------------------------------------------
    def _push_undo(self) -> None:
        self._undo.append((self.state.copy(), len(self.history)))
        if len(self._undo) > HISTORY_LIMIT:
            del self._undo[: len(self._undo) - HISTORY_LIMIT]

    def undo(self) -> bool:
        """Go back one turn (up to HISTORY_LIMIT turns). False when there is nothing to undo."""
        if not self._undo:
            return False
        state, _ = self._undo.pop()
        self.state = state
        self.history = [record for record in self.history if record.turn <= state.turn]
        return True

    def set_narration(self, text: str) -> None:
        """Record the Spirit's narration for the latest turn."""
        if self.history:
            self.history[-1].narration = text


def _bare(name: str) -> str:
    """A thing's name without its article: "a brass hook" -> "brass hook"."""
    words = name.split()
    return " ".join(words[1:]) if len(words) > 1 and words[0].lower() in ("a", "an", "the", "some") else name


def _listed(names: list[str], last_joiner: str) -> str:
    """"the hook or the cloak"; "the hook, the cloak or the coat"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + f" {last_joiner} {names[-1]}"
