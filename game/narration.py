"""Narrating turns: from the engine's state to the Storyteller Spirit's words.

`TurnNarrator` is the one place that knows both sides: it turns the engine's
state and history into a `ContextRequest` (persona, state card, memory,
author's note, lore, scene, hints, recaps, recent turns, the new action), has
the context manager fit it into the model's window, and asks the narrator
service to continue the story. It imports neither torch nor Textual: the
service does the model work on its compute thread (`game.narrator.compute`);
`run` blocks the thread it is called on until the narration is done.

Seeds: with a story seed S, turn T is narrated with seed S + T (and retries
with further offsets), so the same seed, model and actions give the same story.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from game.context import STOP_STRINGS, BuiltPrompt, ContextBuilder, ContextRequest, StateCard, Turn
from game.engine import Engine, TurnResult
from game.world.rules import truthy
from game.sampling import Sampling

RETRY_SEED_STEP = 7919  # seed offset between samples of the same turn
LOOKAHEAD = 3  # offered options whose whole prompts are computed while the player reads (see prompts_ahead)


@dataclass
class PreparedTurn:
    """A prompt ready to narrate, built on the caller's thread from a consistent state."""

    turn: int
    prompt: BuiltPrompt
    sampling: Sampling
    seed: int | None
    previous: list[str] = field(default_factory=list)


@dataclass
class TurnRequest:
    """What the newest turn's prompt is built from, taken from the game's state on the game's
    thread; `TurnNarrator.build` turns it into a `PreparedTurn` on any thread (with a server
    narrator, counting tokens asks the server, so the app builds it on its narration worker)."""

    turn: int
    request: ContextRequest
    seed: int | None
    previous: list[str] = field(default_factory=list)


def state_card(engine: Engine) -> StateCard:
    """The quest's truth: scene title, what the player carries, flags that are set, the score."""
    quest, state = engine.quest, engine.state
    carrying = [quest.items[i].name for i in state.inventory if i in quest.items]
    facts = []
    for flag, value in state.flags.items():
        if isinstance(value, bool):
            if value:
                facts.append(flag.replace("_", " "))
        elif truthy(value):
            facts.append(f"{flag.replace('_', ' ')}: {value}")
    score = f"{state.score} of {quest.max_score}" if quest.scored else ""
    return StateCard(engine.scene.title, carrying, facts, score)


def context_request(engine: Engine, result: TurnResult, persona: str,
                    memory: list[str] | None = None) -> ContextRequest:
    """Everything the prompt for the newest turn is built from."""
    past = engine.history[:-1] if engine.history and engine.history[-1].turn == result.turn else engine.history
    return _request(engine, result.action, result.authored, past, persona, memory)


def _request(engine: Engine, action: str, authored: str, past, persona: str,
             memory: list[str] | None) -> ContextRequest:
    quest, scene = engine.quest, engine.scene
    return ContextRequest(
        action=action,
        authored=authored,
        persona=quest.persona or persona,
        state=state_card(engine),
        memory=list(memory or []),
        author_note=quest.author_note,
        lore=list(quest.lore.values()),
        scene_text=engine.description(),
        hints=list(scene.hints),
        recaps=engine.recaps(),
        turns=[Turn(t.action, t.authored, t.narration, t.card, t.turn) for t in past],
    )


class TurnNarrator:
    """Builds prompts for turns and has the narrator service narrate them."""

    def __init__(self, service, persona: str, sampling: Sampling, seed: int | None = None,
                 context_log: Path | None = None):
        self.service = service
        self.persona = persona
        self.sampling = sampling
        self.seed = seed
        self.context_log = Path(context_log) if context_log else None
        self.memory: list[str] = []
        self._builder: ContextBuilder | None = None
        self._log_lock = threading.Lock()
        self.log_problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.service.status == "ready"

    def builder(self) -> ContextBuilder:
        """The context manager for the service's tokenizer and window (less what a server's chat
        template needs); made again when the window changes (a server can say it is smaller)."""
        window = self.service.window - getattr(self.service, "prompt_reserve", 0)
        if self._builder is None or self._builder.window != window \
                or self._builder.tokenizer is not self.service.tokenizer:
            self._builder = ContextBuilder(self.service.tokenizer, window)
        return self._builder

    def prepare(self, engine: Engine, result: TurnResult, attempt: int = 0) -> PreparedTurn:
        """Build the prompt for the newest turn. Needs a ready service.

        When max_new_tokens leaves the model's window too little room (a model with a
        small window, settings made for a bigger one), this turn is narrated with half
        the window instead; a window too small even for that raises ValueError.
        """
        return self.build(self.request(engine, result, attempt))

    def request(self, engine: Engine, result: TurnResult, attempt: int = 0) -> TurnRequest:
        """The part of `prepare` that reads the game's state (quick, no tokens counted)."""
        request = context_request(engine, result, self.persona, self.memory)
        if engine.history and engine.history[-1].turn == result.turn:
            # the turn is told with this card; the next prompts tell it the same way (prefix cache)
            engine.history[-1].card = request.state.render()
        seed = None if self.seed is None else self.seed + result.turn + attempt * RETRY_SEED_STEP
        previous = [t.narration for t in engine.history[:-1] if t.narration][-3:]
        return TurnRequest(result.turn, request, seed, previous)

    def build(self, turn: TurnRequest) -> PreparedTurn:
        """The part of `prepare` that counts tokens and fits the window (any thread)."""
        request, sampling = turn.request, self.sampling
        try:
            prompt = self.builder().build(request, sampling.max_new_tokens)
        except ValueError:
            half = self.builder().window // 2
            if not 0 < half < sampling.max_new_tokens:
                raise
            sampling = sampling.with_values(max_new_tokens=half)
            prompt = self.builder().build(request, half)
        prompt = self._fit_chat(request, prompt, sampling.max_new_tokens)
        return PreparedTurn(turn.turn, prompt, sampling, turn.seed, turn.previous)

    def _fit_chat(self, request: ContextRequest, prompt: BuiltPrompt, max_new_tokens: int) -> BuiltPrompt:
        """A server's chat API wraps each message in its template's tokens: build with a smaller
        window until the prompt, that overhead and the reply fit the model's window."""
        overhead = getattr(self.service, "chat_overhead", None)
        for _ in range(8):
            over = 0 if overhead is None else \
                prompt.prompt_tokens + max_new_tokens + overhead(prompt.messages) - self.service.window
            if over <= 0:
                return prompt
            room = prompt.prompt_tokens + max_new_tokens - over  # strictly less than this prompt needs
            prompt = ContextBuilder(self.service.tokenizer, room).build(request, max_new_tokens)
        raise ValueError("the chat messages do not fit the server's window")

    def upcoming(self, engine: Engine) -> str:
        """The start of the next turn's prompt, as far as it is known before the player acts.

        It is the prompt of a turn with no action yet: the next real prompt starts
        the same way unless the action changes the scene or older turns have to go.
        "" when the Spirit is not ready or the story has no turns yet.
        """
        if not self.ready or not engine.history or engine.ended:
            return ""
        request = _request(engine, "", "", engine.history, self.persona, self.memory)
        try:
            return self.builder().build(request, self.sampling.max_new_tokens).prefix
        except ValueError:
            return ""

    def warm(self, engine: Engine, lookahead: bool = True):
        """Build `upcoming(engine)` (here, on the caller's thread: a few milliseconds of counting
        tokens) and have the service compute it in the background, while the player reads and
        types: the next turn then only computes its own new part. With
        `lookahead`, the prompts of the offered options that enter another scene are
        computed next, into spare caches (`prompts_ahead`). Returns the service's
        warm-up job, which can be joined (None when there is nothing to do)."""
        if not getattr(self.service, "computes_ahead", True):  # a server keeps its own cache
            return None
        prefix = self.upcoming(engine)
        if not prefix:
            return None
        return self.service.warm(prefix, self.prompts_ahead(engine, expected=prefix) if lookahead else None)

    def prompts_ahead(self, engine: Engine, limit: int = LOOKAHEAD,
                      expected: str | None = None) -> Callable[[], list[tuple[str, str]]]:
        """A function giving the exact prompts, as (prompt, its known start), of up to `limit`
        offered options whose prompts do not start with `expected` (the known start the
        warm-up computes): those that enter another scene (the scene's text sits near the top)
        and those after which older turns go differently or a lore entry wakes. Each would
        otherwise be computed nearly whole after Enter, so they are worth computing while the
        player reads; exits first. Runs on any thread: the game's state is copied now, and the
        options are played on the copies, never on `engine`. Without `expected`, only the
        scene-entering options count."""
        if not self.ready or engine.ended:
            return list
        state, history = engine.state.copy(), [dataclasses.replace(t) for t in engine.history]
        options = sorted(engine.options(), key=lambda o: not o.is_exit)

        def prompts() -> list[tuple[str, str]]:
            entering, others = [], []
            for option in options:
                if len(entering) >= limit:
                    break
                sandbox = Engine(engine.quest, engine.seed, state=state.copy(),
                                 history=[dataclasses.replace(t) for t in history])
                result = sandbox.act(str(option.number))
                if not result.narrate or not (result.scene_entered or expected is not None):
                    continue
                if not result.scene_entered and len(others) >= limit:
                    continue  # could never be used: build only prompts that may be (<= 2 x limit)
                try:
                    prompt = self.prepare(sandbox, result).prompt
                except ValueError:
                    continue
                if result.scene_entered:
                    entering.append((prompt.text, prompt.prefix))
                elif prompt.prefix != expected:
                    others.append((prompt.text, prompt.prefix))
            return (entering + others)[:limit]
        return prompts

    def run(self, prepared: PreparedTurn, on_chunk: Callable[[str], None] | None = None,
            on_restart: Callable[[str], None] | None = None,
            cancel: threading.Event | None = None):
        """Narrate a prepared turn (blocking: call it on a worker thread). Returns a Narration."""
        self.log(prepared)
        chat = getattr(self.service, "api_style", None) == "chat"
        return self.service.narrate(prepared.prompt.text, prepared.sampling, seed=prepared.seed,
                                    previous=prepared.previous, stop_strings=STOP_STRINGS,
                                    on_chunk=on_chunk, on_restart=on_restart, cancel=cancel,
                                    prefix=prepared.prompt.prefix,
                                    **({"messages": prepared.prompt.messages} if chat else {}))

    def log(self, prepared: PreparedTurn) -> None:
        """Append the exact prompt and its segments to the context log (JSON lines)."""
        if self.context_log is None:
            return
        record = prepared.prompt.to_log(prepared.turn)
        describe = getattr(self.service, "log_record", None)
        if describe is not None:  # a server narrator: which server, API and counts (never the key)
            record["narrator"] = describe()
            if record["narrator"].get("api_style") == "chat":
                record["messages"] = prepared.prompt.messages
        line = json.dumps(record, ensure_ascii=False)
        with self._log_lock:
            if self.context_log is None:
                return
            try:
                self.context_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.context_log, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError as exc:  # said once (take_log_problem); logging stops, play goes on
                self.log_problem = (f"the context log {self.context_log} cannot be written "
                                    f"({exc.strerror or exc}); logging stopped")
                self.context_log = None

    def take_log_problem(self) -> str | None:
        """The context log's write failure, once (then None): the front end says it."""
        with self._log_lock:
            problem, self.log_problem = self.log_problem, None
        return problem


def make_turn_narrator(settings, personalities, *, quest=None, model: str | None = None,
                       device: str | None = None, dtype: str | None = None,
                       seed: int | None = None, personality: str | None = None,
                       precision: str | None = None, context_log: Path | None = None,
                       on_event=None, server: str | None = None,
                       server_model: str | None = None) -> TurnNarrator:
    """A TurnNarrator (and its not-yet-started service) from settings and overrides.

    The personality is, in order: the one asked for, the quest's suggestion when
    the player kept the default, then the settings file's choice. With a server
    (`server` from --server, or the settings' `server:` section) the service is a
    `game.narrator.remote.ServerNarrator`, else the local `NarratorService`.
    Raises ValueError for a bad server URL.
    """
    from game.personality import DEFAULT_PERSONALITY

    chosen = personality
    if chosen is None and quest is not None and quest.personality in personalities \
            and settings.personality == DEFAULT_PERSONALITY:
        chosen = quest.personality
    if chosen is not None:
        settings = settings.with_changes(personality=chosen)
    persona, sampling = settings.effective_sampling(personalities)
    config = settings.server_config(server, server_model)
    if config is not None:
        from game.narrator.remote import ServerNarrator

        service = ServerNarrator(config, on_event=on_event)
    else:
        from game.narrator.service import NarratorService

        service = NarratorService(model or settings.model, device=device or settings.device,
                                  dtype=dtype or settings.dtype, precision=precision or settings.precision,
                                  on_event=on_event)
    return TurnNarrator(service, persona, sampling,
                        seed=seed if seed is not None else settings.seed, context_log=context_log)
