"""Live reload: notice when a quest's files are saved, and carry the game over.

`QuestWatcher` polls the modification times of every file a quest was read
from (no extra dependency, works on every OS). `reload_engine` re-checks the
quest and, if it still validates, rebuilds the engine on the new quest with
the same state (matched by scene, item and flag ids, as a save would be),
plus a few lines telling the player what changed. If the quest no longer
validates, nothing changes and the problems are returned: the old version
stays playable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from game.diagnostics import GameFileError, Problem
from game.engine import Engine
from game.world.model import Quest
from game.world.loader import check_quest
from game.saves import SaveData, restore


class QuestWatcher:
    def __init__(self, files):
        self.files = [Path(f) for f in files]
        self.stamps = self._stamps()

    def _stamps(self) -> dict:
        stamps = {}
        for f in self.files:
            try:
                st = f.stat()
                stamps[f] = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamps[f] = None
        return stamps

    def poll(self) -> bool:
        """True once after any of the files changed (or appeared, or vanished)."""
        now = self._stamps()
        if now != self.stamps:
            self.stamps = now
            return True
        return False

    def watch(self, files) -> None:
        """Follow a new set of files (a reloaded quest may include others)."""
        self.files = [Path(f) for f in files]
        self.stamps = self._stamps()


@dataclass
class Reload:
    engine: Engine | None  # None: the quest did not load; keep playing the old one
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def describe_changes(old: Quest, new: Quest) -> list[str]:
    """Short lines on what an edit changed, for the player."""
    notes = []
    for what, a, b in (("scene", old.scenes, new.scenes), ("item", old.items, new.items),
                       ("ending", old.endings, new.endings), ("lore entry", old.lore, new.lore)):
        added = [k for k in b if k not in a]
        removed = [k for k in a if k not in b]
        changed = [k for k in b if k in a and _strip_where(a[k]) != _strip_where(b[k])]
        if added:
            notes.append(f"new {what}s: {', '.join(added)}")
        if removed:
            notes.append(f"removed {what}s: {', '.join(removed)}")
        if changed:
            notes.append(f"changed {what}s: {', '.join(changed)}")
    if old.flags != new.flags:
        notes.append("flags changed")
    return notes or ["no change to scenes, items, endings or lore"]


def _strip_where(obj):
    """A comparable copy without source positions (moving text around is not a change)."""
    from dataclasses import fields, is_dataclass, replace

    if is_dataclass(obj):
        changes = {f.name: _strip_where(getattr(obj, f.name)) for f in fields(obj) if f.name != "where"}
        return replace(obj, **changes)
    if isinstance(obj, tuple):
        return tuple(_strip_where(x) for x in obj)
    return obj


def reload_engine(engine: Engine, path) -> Reload:
    quest, problems = check_quest(path)
    if quest is None or any(p.severity == "error" for p in problems):
        return Reload(None, problems)
    if quest.id != engine.quest.id:
        return Reload(None, [Problem(str(path), 1, 1, f"the quest's id changed from '{engine.quest.id}' "
                                                      f"to '{quest.id}'; restart to play it")])
    save = SaveData(quest_id=quest.id, quest_title=quest.title, quest_path=str(path), seed=engine.seed,
                    state=engine.state.copy(), history=copy.deepcopy(engine.history),
                    undo=[(s.copy(), n) for s, n in engine.undo_stack])
    try:
        new_engine, notes = restore(save, quest)
    except GameFileError as exc:
        return Reload(None, exc.problems)
    return Reload(new_engine, problems, describe_changes(engine.quest, quest) + notes)
