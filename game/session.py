"""A game being played: the engine plus what the front end keeps around it.

Owns the narration samples of each turn (retry adds one, and earlier ones can
be cycled back), the player's pinned memory notes, the autosave after every
turn, named save slots, loading a save (with a report of what the edited quest
no longer has) and the Markdown transcript. Plain Python: the TUI and the
plain mode both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from game import locations
from game.atomic import locked, remove_stale_temps, write_atomic
from game.engine import HISTORY_LIMIT, Engine
from game.world.model import Quest
from game.world.loader import load_quest
from game.catalog import quest_by_id
from game.diagnostics import GameFileError, Problem, display_path
from game.safe_text import inert_line
from game.saves import SaveData, read_save, restore, rotate_backups, save_game, slot_path
from game.transcript import to_markdown

AUTOSAVE_FOLDER = "autosave"
AUTOSAVE_COPIES = 3  # earlier autosaves kept beside the current one (.1 is the turn before)


@dataclass
class Samples:
    """Every narration the Spirit gave for one turn, and the one shown."""

    texts: list[str] = field(default_factory=list)
    shown: int = 0

    @property
    def current(self) -> str:
        return self.texts[self.shown] if self.texts else ""


class Session:
    def __init__(self, quest: Quest, engine: Engine | None = None, seed: int | None = None):
        self.quest = quest
        self.engine = engine or Engine(quest, seed=seed)
        self.samples: dict[int, Samples] = {}
        self.memory: list[str] = []
        self.load_notes: list[str] = []
        self._cleaned = False
        self.opening = self.engine.opening().authored if engine is None else ""

    # -- narration samples -----------------------------------------------------------
    def add_sample(self, turn: int, text: str) -> None:
        """Record a narration for a turn and show it."""
        samples = self.samples.setdefault(turn, Samples())
        samples.texts.append(text)
        samples.shown = len(samples.texts) - 1
        self._sync(turn)
        if len(self.samples) > HISTORY_LIMIT:  # bounded like the history: long sessions stay flat
            kept = {record.turn for record in self.engine.history}
            for old in [t for t in self.samples if t not in kept]:
                del self.samples[old]

    def cycle_sample(self, turn: int, step: int = -1) -> str | None:
        """Show an earlier (step -1) or later (+1) sample of a turn; None if it has only one."""
        samples = self.samples.get(turn)
        if samples is None or len(samples.texts) < 2:
            return None
        samples.shown = (samples.shown + step) % len(samples.texts)
        self._sync(turn)
        return samples.current

    def _sync(self, turn: int) -> None:
        for record in reversed(self.engine.history):
            if record.turn == turn:
                record.narration = self.samples[turn].current
                return

    def undo(self) -> bool:
        if not self.engine.undo():
            return False
        last = self.engine.state.turn
        for turn in [t for t in self.samples if t > last]:
            del self.samples[turn]
        return True

    # -- saves -----------------------------------------------------------------------
    def _extra(self) -> dict:
        return {"memory": list(self.memory), "opening": self.opening,
                "samples": {str(t): {"texts": s.texts, "shown": s.shown} for t, s in self.samples.items()}}

    def autosave_path(self) -> Path:
        return autosave_dir() / autosave_name(self.quest.id)

    def autosave(self) -> Path:
        """Save after a turn, keeping the previous autosaves as .1, .2, .3.

        Rotation and writing hold the autosave's lock, so two games of the same quest
        at once never race; under it, temporary files a killed process left for this
        autosave are removed (the first time this session saves).
        """
        path = self.autosave_path()
        with locked(path):
            if not self._cleaned:
                remove_stale_temps(path.parent, older_than=0, name=path.name)
                self._cleaned = True
            rotate_backups(path, AUTOSAVE_COPIES)
            return save_game(path, self.engine, self._extra())

    def keep_abandoned(self) -> Path | None:
        """Before a restart: keep this game loadable as '<quest>~restarted.json' among the
        autosaves (shown in the Load list). None when there is nothing to keep."""
        if not self.engine.history:
            return None
        path = autosave_dir() / f"{self.quest.id}~restarted.json"
        with locked(path):
            return save_game(path, self.engine, self._extra())

    def save(self, slot: str) -> Path:
        return save_game(slot_path(locations.saves_dir(), slot), self.engine, self._extra())

    @classmethod
    def load(cls, path: str | Path, quest: Quest | None = None) -> "Session":
        """Load a save and its quest: the one given, else the known quest with the save's id
        (`find_saved_quest`; the path a save records is never opened).

        Raises GameFileError for an unusable save or quest; the file is left alone.
        """
        save = read_save(path)
        if quest is None:
            quest = load_quest(find_saved_quest(save, path))
        engine, notes = restore(save, quest)
        session = cls(quest, engine)
        session.load_notes = notes
        session.memory = [str(m) for m in save.extra.get("memory", [])]
        session.opening = str(save.extra.get("opening", ""))
        for turn, data in dict(save.extra.get("samples", {})).items():
            try:
                texts = [str(t) for t in data["texts"]]
                shown = min(max(int(data.get("shown", 0)), 0), max(len(texts) - 1, 0))
                session.samples[int(turn)] = Samples(texts, shown)
            except (KeyError, TypeError, ValueError):
                continue
        return session

    def reload(self, path=None):
        """Reload the quest from its files, keeping the game (see game.live_reload).

        Returns the Reload: on success the session plays the new quest; on
        failure nothing changed and `problems` says why.
        """
        from game.live_reload import reload_engine

        result = reload_engine(self.engine, path or self.quest.source)
        if result.engine is not None:
            self.engine = result.engine
            self.quest = result.engine.quest
        return result

    def export_markdown(self, path: str | Path | None = None) -> Path:
        """Write the transcript as Markdown (to the transcripts folder unless a path is given)."""
        if path is None:
            path = locations.transcripts_dir() / f"{self.quest.id}-turn-{self.engine.state.turn}.md"
        path = Path(path)
        write_atomic(path, to_markdown(self.engine, self.opening))
        return path


def find_saved_quest(save: SaveData, path: str | Path) -> Path:
    """The quest file of a save: the known quest (bundled or the player's) with its id.

    Raises GameFileError, naming the save, when no known quest has that id.
    """
    found = quest_by_id(save.quest_id)
    if found is None:
        raise GameFileError(Problem(
            display_path(path), 1, 1,
            f"this save is of quest '{inert_line(save.quest_id)}', which is not among the bundled "
            f"quests or yours ({locations.user_quests_dir()}); put the quest there, or give its "
            "file: storyteller play QUEST --load SAVE"))
    return found


def autosave_dir() -> Path:
    return locations.saves_dir() / AUTOSAVE_FOLDER


def autosave_name(quest_id: str) -> str:
    """The autosave file of a quest: '<id>.json'.

    An id that ends like an earlier copy ('tale.1', '2024') gets a '~', which ids
    never hold, so it never clashes with another quest's copies ('tale' keeps
    'tale.1.json') and is listed as a current autosave.
    """
    return f"{quest_id}{'~' if quest_id.rpartition('.')[2].isdigit() else ''}.json"


def _newest_first(files) -> list[Path]:
    return sorted((p for p in files if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


def autosaves() -> list[Path]:
    """The current autosave of each quest (not the earlier copies), newest first."""
    folder = autosave_dir()
    if not folder.is_dir():
        return []
    return _newest_first(p for p in folder.glob("*.json") if not p.stem.rpartition(".")[2].isdigit())


def saved_games() -> list[Path]:
    """Named saves, then autosaves, each newest first."""
    folder = locations.saves_dir()
    slots = _newest_first(folder.glob("*.json")) if folder.is_dir() else []
    return slots + autosaves()


def latest_autosave() -> Path | None:
    found = autosaves()
    return found[0] if found else None


def remove_stale_files(older_than: float = 60.0) -> int:
    """At start: temporary files of our own naming that killed processes left in the saves,
    autosave, transcripts and config folders."""
    folders = (locations.saves_dir(), autosave_dir(), locations.data_dir() / "transcripts",
               locations.config_dir())
    return sum(remove_stale_temps(folder, older_than) for folder in folders)
