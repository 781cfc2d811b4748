"""Messages the narrator's threads post to the app (post_message is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class SpiritEvent(Message):
    """A narrator service event: Loading, Ready or Silent (from game.narrator.service)."""

    event: object


@dataclass
class NarrationChunk(Message):
    """Raw text streamed by generation number `generation` (stale ones are ignored)."""

    generation: int
    text: str


@dataclass
class NarrationRestart(Message):
    """The first reply was rejected (repetition...); the streamed text should be cleared."""

    generation: int
    reason: str


@dataclass
class NarrationPrompt(Message):
    """The prompt of narration `generation`, built on the worker (for the inspector and gauge)."""

    generation: int
    prompt: object  # game.context.BuiltPrompt


@dataclass
class NarrationDone(Message):
    generation: int
    narration: object  # game.narrator.service.Narration
    refused: str | None = None  # why no prompt could be built for this turn (a window too small)
