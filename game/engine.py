"""The turn engine: resolves what the player does against the quest's rules.

`Engine.act(text)` resolves one turn and returns a `TurnResult`, a plain value
any front end renders (plain terminal, TUI, tests). The engine keeps the state,
the history of turns and a snapshot before every turn, so `undo()` restores the
exact earlier state, all the way back to the start. Random picks (description
variants) are derived from the seed, the scene and the visit count, so the same
seed gives the same story and undo/redo never shifts them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from game.parser import Command, best_match, parse, score
from game.phrases import phrase
from game.quest import Choice, Ending, Quest, Scene
from game.rules import apply, holds
from game.state import GameState, TurnRecord

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
    kind: str  # opening, choice, exit, look, free, locked, inventory, help, invalid, empty, ended
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
        if state is None:
            state = GameState(scene=quest.start, flags=dict(quest.flags))
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
                if c.key not in self.state.used and holds(c.condition, self.state)]

    def options(self) -> list[Option]:
        return [Option(i + 1, c.label, c.is_exit) for i, c in enumerate(self.available())]

    def description(self) -> str:
        """The scene's description for this visit (variants picked reproducibly)."""
        variants = self.scene.descriptions
        if len(variants) <= 1:
            return variants[0] if variants else ""
        visit = self.state.visits.get(self.state.scene, 1)
        return random.Random(f"{self.seed}|{self.state.scene}|{visit}").choice(variants)

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
            paras = [Para("scene-title", self.scene.title), Para("scene", self.description())]
        result = TurnResult(self.state.turn, "", "opening", list(paras), self.state.scene,
                            True, self.ending, self.options(), narrate=False)
        if self.ended:
            result.paragraphs += self._ending_paras(self.ending)
        return result

    def act(self, raw: str) -> TurnResult:
        command = parse(raw)
        if self.ended:
            return self._info(raw, "ended", self.say("ended"))
        if command.kind == "empty":
            return self._info(raw, "empty", "")
        if command.kind == "help":
            return self._info(raw, "help", self.say("help"))
        if command.kind == "inventory":
            return self._info(raw, "inventory", self.inventory_text())
        if command.kind == "number":
            available = self.available()
            if not 1 <= command.number <= len(available):
                count = len(available)
                hint = self.say("pick_range", count=count) if count else self.say("no_options")
                return self._info(raw, "invalid", self.say("no_option", number=command.number, hint=hint))
            return self._take(raw, available[command.number - 1])
        if command.kind == "look":
            return self._turn(raw, "look", [Para("scene-title", self.scene.title),
                                            Para("scene", self.description())])
        return self._free_text(raw, command)

    def inventory_text(self) -> str:
        if not self.state.inventory:
            return self.say("carry_nothing")
        lines = [self.say("carry")]
        for item_id in self.state.inventory:
            item = self.quest.items[item_id]
            lines.append(f"- {item.name}" + (f": {item.description}" if item.description else ""))
        return "\n".join(lines)

    def _free_text(self, raw: str, command: Command) -> TurnResult:
        offered = [c for c in self.scene.choices if c.key not in self.state.used]
        open_now = [c for c in offered if holds(c.condition, self.state)]
        choice = best_match(command.text, offered, self.quest)
        if choice is None:
            return self._turn(raw, "free", [])
        available = best_match(command.text, open_now, self.quest)
        # A locked choice answers only when the words fit it better than any open one.
        if available is not None and score(command.text, available, self.quest) >= \
                score(command.text, choice, self.quest):
            return self._take(raw, available)
        message = choice.locked or self.say("locked")
        return self._turn(raw, "locked", [Para("text", message)])

    def _take(self, raw: str, choice: Choice) -> TurnResult:
        self._push_undo()
        state = self.state
        state.turn += 1
        if choice.once:
            state.used.append(choice.key)
        paras: list[Para] = []
        if choice.text:
            paras.append(Para("text", choice.text))
        outcome = apply(choice.effects, state, self.quest)
        paras += [Para("change", m) for m in outcome.messages]
        target = outcome.move_to or choice.to
        ending_id = outcome.end
        entered = False
        from_scene = state.scene
        if ending_id is None and target is not None:
            paras += self._enter(target)
            entered = True
            ending_id = state.ending
        if ending_id is not None:
            state.ending = ending_id
        return self._finish(raw, "exit" if choice.is_exit else "choice", paras, from_scene, entered)

    def _enter(self, scene_id: str, depth: int = 0) -> list[Para]:
        state = self.state
        state.scene = scene_id
        state.visits[scene_id] = state.visits.get(scene_id, 0) + 1
        scene = self.scene
        paras = [Para("scene-title", scene.title), Para("scene", self.description())]
        outcome = apply(scene.on_enter, state, self.quest)
        paras += [Para("change", m) for m in outcome.messages]
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
        return [Para("ending-title", ending.title), Para("ending", ending.text), Para("info", verdict)]

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
