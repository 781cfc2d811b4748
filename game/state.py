"""The game state: where the player is, what they carry, flags, visits, turns.

Plain data that copies cheaply (for undo) and turns into JSON (for saves).
History of turns lives here too, as `TurnRecord`s, since saves carry it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field


@dataclass
class GameState:
    scene: str
    inventory: list[str] = field(default_factory=list)
    flags: dict[str, object] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)  # insertion order = first visit order
    turn: int = 0
    ending: str | None = None
    used: list[str] = field(default_factory=list)  # keys of `once` choices already taken
    score: int = 0
    places: dict[str, str] = field(default_factory=dict)  # item id -> the scene it was put down in

    def copy(self) -> "GameState":
        return copy.deepcopy(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GameState":
        return cls(
            scene=str(data["scene"]),
            inventory=[str(i) for i in data.get("inventory", [])],
            flags=dict(data.get("flags", {})),
            visits={str(k): int(v) for k, v in dict(data.get("visits", {})).items()},
            turn=int(data.get("turn", 0)),
            ending=data.get("ending"),
            used=[str(u) for u in data.get("used", [])],
            score=int(data.get("score", 0)),
            places={str(k): str(v) for k, v in dict(data.get("places", {})).items()},
        )


@dataclass
class TurnRecord:
    """One played turn: what the player did, what the quest said, what the Spirit said."""

    turn: int
    action: str
    kind: str
    scene: str  # the scene the action was taken in
    authored: str = ""
    narration: str = ""
    card: str = ""  # the state card the narrator saw with this turn (set when it is narrated)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TurnRecord":
        return cls(turn=int(data["turn"]), action=str(data["action"]), kind=str(data["kind"]),
                   scene=str(data["scene"]), authored=str(data.get("authored", "")),
                   narration=str(data.get("narration", "")), card=str(data.get("card", "")))
