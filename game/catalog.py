"""Finds quests: the bundled ones and those in the player's quest folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from game import locations
from game.diagnostics import Problem
from game.world.loader import QUEST_FILE, check_quest


@dataclass(frozen=True)
class QuestEntry:
    path: Path
    origin: str  # "bundled" or "user"
    id: str
    title: str
    author: str
    summary: str
    language: str
    problems: tuple[Problem, ...] = ()

    @property
    def playable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def quest_paths(folder: Path) -> list[Path]:
    """Quest files (*.yaml, *.yml) and quest folders (with quest.yaml) in a folder."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix in (".yaml", ".yml") and not entry.name.startswith("."):
            found.append(entry)
        elif entry.is_dir() and (entry / QUEST_FILE).is_file():
            found.append(entry)
    return found


def describe(path: Path, origin: str) -> QuestEntry:
    quest, problems = check_quest(path)
    if quest is None:
        return QuestEntry(path, origin, path.stem, path.name, "", "(cannot be played: see problems)",
                          "", tuple(problems))
    return QuestEntry(path, origin, quest.id, quest.title, quest.author, quest.summary,
                      quest.language, tuple(problems))


def all_quests() -> list[QuestEntry]:
    """Bundled quests first, then the player's own."""
    entries = [describe(p, "bundled") for p in quest_paths(locations.bundled_quests_dir())]
    entries += [describe(p, "user") for p in quest_paths(locations.user_quests_dir())]
    return entries


def find_quest(name: str) -> Path | None:
    """A quest path from a path, or from the id or file name of a known quest."""
    p = Path(name).expanduser()
    if p.exists():
        return p
    for folder in (locations.bundled_quests_dir(), locations.user_quests_dir()):
        for path in quest_paths(folder):
            if path.stem == name or path.name == name:
                return path
    for entry in all_quests():
        if entry.id == name:
            return entry.path
    return None


def quest_by_id(quest_id: str) -> Path | None:
    """The known quest (bundled, then the player's own) whose id is `quest_id`, or None.

    This is how a save finds its quest: never by the path the save records, so a
    save cannot make the game open any file that is not a known quest.
    """
    folders = (locations.bundled_quests_dir(), locations.user_quests_dir())
    candidates = [path for folder in folders for path in quest_paths(folder)]
    likely = [p for p in candidates if p.stem == quest_id]  # quests are usually named by id
    for path in likely + [p for p in candidates if p not in likely]:
        quest, problems = check_quest(path)
        if quest is not None and quest.id == quest_id and \
                not any(p.severity == "error" for p in problems):
            return path
    return None
