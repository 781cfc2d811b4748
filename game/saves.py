"""Saved games: a versioned JSON file, written atomically, read defensively.

A save holds the quest's id and path, the seed, the state, the history of
turns and the undo snapshots, so a loaded game plays on exactly as it was.
Writing serializes everything in memory first and then replaces the file
atomically (`game.atomic`), so a crash or a full disk never leaves a broken
save in place of a good one. Reading never modifies the file; a truncated,
edited or foreign file gives a clear `GameFileError` that names it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from game.atomic import write_atomic
from game.diagnostics import GameFileError, Problem, display_path
from game.engine import Engine
from game.world.model import Quest
from game.state import GameState, TurnRecord

SAVE_FORMAT = "storyteller-save"
SAVE_VERSION = 2  # 2: the state has a score and the places of put-down items
MAX_SAVE_BYTES = 20_000_000


@dataclass
class SaveData:
    quest_id: str
    quest_title: str
    quest_path: str
    seed: int
    state: GameState
    history: list[TurnRecord]
    undo: list[tuple[GameState, int]]
    saved_at: str = ""
    extra: dict = field(default_factory=dict)  # front-end data (narrator samples, notes)


def slot_path(folder: Path, name: str) -> Path:
    """The file for a named save slot: letters, digits, '-' and '_' only."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-")[:64] or "save"
    return Path(folder) / f"{safe}.json"


def to_json(engine: Engine, extra: dict | None = None) -> str:
    quest = engine.quest
    data = {
        "format": SAVE_FORMAT,
        "version": SAVE_VERSION,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quest": {"id": quest.id, "title": quest.title,
                  "path": str(quest.source.resolve()) if quest.source else ""},
        "seed": engine.seed,
        "state": engine.state.to_dict(),
        "history": [t.to_dict() for t in engine.history],
        "undo": [{"state": s.to_dict(), "history": n} for s, n in engine.undo_stack],
        "extra": extra or {},
    }
    return json.dumps(data, ensure_ascii=False, indent=1)


def backup_path(path: Path, n: int) -> Path:
    """The n-th earlier copy of a save: autosave.json -> autosave.1.json."""
    return path.with_name(f"{path.stem}.{n}{path.suffix}")


def rotate_backups(path: str | Path, keep: int = 3) -> None:
    """Shift earlier copies (.1 -> .2 ...) and link the current file as .1.

    The current file stays in place throughout (a hard link, or a copy where
    links are not allowed), so a crash at any point leaves a loadable save.
    """
    path = Path(path)
    if not path.is_file() or keep < 1:
        return
    for n in range(keep - 1, 0, -1):
        older = backup_path(path, n)
        if older.exists():
            os.replace(older, backup_path(path, n + 1))
    tmp = path.with_name(f".{path.name}.link")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, backup_path(path, 1))
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def save_game(path: str | Path, engine: Engine, extra: dict | None = None) -> Path:
    """Write a save atomically; the previous file at `path` survives any failure."""
    path = Path(path)
    write_atomic(path, to_json(engine, extra))
    return path


def read_save(path: str | Path) -> SaveData:
    """Read and check a save file; raise GameFileError (file untouched) if it is unusable."""
    path = Path(path)
    shown = display_path(path)

    def fail(message: str, line: int = 1, col: int = 1):
        raise GameFileError(Problem(shown, line, col, message))

    try:
        # O_NONBLOCK: a named pipe opens at once (and is refused below) instead of hanging
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                fail("is not a save file (a folder, a pipe or a device)")
            raw = fh.read(MAX_SAVE_BYTES + 1)
    except FileNotFoundError:
        fail("save file not found")
    except IsADirectoryError:
        fail("is not a save file (a folder, a pipe or a device)")
    except OSError as exc:
        fail(f"cannot read the save file: {exc.strerror or exc}")
    if len(raw) > MAX_SAVE_BYTES:
        fail(f"save file is larger than {MAX_SAVE_BYTES // 1_000_000} MB; it is not a Storyteller save")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fail("save file is not UTF-8 text; it is damaged or not a Storyteller save")
    except json.JSONDecodeError as exc:
        fail(f"save file is damaged (truncated or edited): {exc.msg}; it was left as it is",
             exc.lineno, exc.colno)
    except RecursionError:
        fail("save file is damaged: values are nested too deeply; it is not a Storyteller save")
    if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
        fail("not a Storyteller save file")
    version = data.get("version")
    if not isinstance(version, int):
        fail("save file has no format version; it is damaged")
    if version > SAVE_VERSION:
        fail(f"save file format {version} is newer than this game understands ({SAVE_VERSION}); "
             "update Storyteller to load it")
    try:
        data = migrate(data, version)
        quest = data["quest"]
        return SaveData(
            quest_id=str(quest["id"]), quest_title=str(quest.get("title", quest["id"])),
            quest_path=str(quest.get("path", "")), seed=int(data["seed"]),
            state=GameState.from_dict(data["state"]),
            history=[TurnRecord.from_dict(t) for t in data.get("history", [])],
            undo=[(GameState.from_dict(u["state"]), int(u["history"])) for u in data.get("undo", [])],
            saved_at=str(data.get("saved_at", "")), extra=dict(data.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        fail(f"save file is damaged: a required field is missing or has the wrong type ({exc})")
    raise AssertionError("unreachable")


def migrate(data: dict, version: int) -> dict:
    """A save of an older format, brought up to SAVE_VERSION (a copy; the file is not touched)."""
    data = dict(data)
    if version < 2:  # version 1 had no score and no put-down items: both start empty
        def v2(state: dict) -> dict:
            return {**state, "score": 0, "places": {}}

        data["state"] = v2(data["state"])
        data["undo"] = [{**u, "state": v2(u["state"])} for u in data.get("undo", [])]
    return data


_POSITIONAL_KEY = re.compile(r"^(?P<scene>.+)/(?P<kind>choices|exits)/(?P<index>\d+)$")


def _used_key(quest: Quest, key: str) -> str:
    """A used-up `once` option's key as this version names it.

    Saves made before options were keyed by label name them by position
    ("scene/choices/2"): that is read as the option now at that position.
    """
    old = _POSITIONAL_KEY.match(key)
    scene = quest.scenes.get(old["scene"]) if old else None
    if scene is None:
        return key
    same_kind = [c for c in scene.choices if c.is_exit == (old["kind"] == "exits")]
    index = int(old["index"])
    return same_kind[index].key if index < len(same_kind) else key


def restore(save: SaveData, quest: Quest) -> tuple[Engine, list[str]]:
    """Rebuild an engine from a save for this quest; returns it and notes on what changed.

    Matches by ids: items and flags the quest no longer has are dropped, flags
    it gained get their initial values. A save whose scene no longer exists
    cannot be restored (GameFileError).
    """
    if save.quest_id != quest.id:
        raise GameFileError(Problem(save.quest_path or "save", 1, 1,
                                    f"this save belongs to quest '{save.quest_id}', not '{quest.id}'"))
    notes: list[str] = []
    states = [save.state] + [s for s, _ in save.undo]
    for state in states:
        state.used = [_used_key(quest, key) for key in state.used]
    for i, state in enumerate(states):
        if state.scene not in quest.scenes:
            if i == 0:
                raise GameFileError(Problem(
                    save.quest_path or quest.id, 1, 1,
                    f"the saved scene '{state.scene}' no longer exists in quest '{quest.id}'"))
            continue
        gone = [item for item in state.inventory if item not in quest.items]
        state.inventory = [item for item in state.inventory if item in quest.items]
        state.places = {i: s for i, s in state.places.items() if i in quest.items and s in quest.scenes}
        lost_flags = [f for f in state.flags if f not in quest.flags]
        state.flags = {**quest.flags, **{k: v for k, v in state.flags.items() if k in quest.flags}}
        if state.ending is not None and state.ending not in quest.endings:
            state.ending = None
        if i == 0:
            notes += [f"item '{g}' no longer exists in the quest and was dropped" for g in gone]
            notes += [f"flag '{f}' no longer exists in the quest" for f in lost_flags]
    undo = [(s, n) for s, n in save.undo if s.scene in quest.scenes]
    engine = Engine(quest, seed=save.seed, state=save.state, history=save.history, undo=undo)
    return engine, notes
