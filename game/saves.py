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
import math
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
from game.settings import SEED_MAX
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
    except ValueError as exc:  # a number with thousands of digits
        text = raw.decode("utf-8")
        long = re.search(r"\d{1000,}", text)
        start = long.start() if long else 0
        fail(f"save file is damaged: a number is far too long ({exc}); it was left as it is",
             text.count("\n", 0, start) + 1, start - (text.rfind("\n", 0, start) + 1) + 1)
    if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
        fail("not a Storyteller save file")
    version = data.get("version")
    if not isinstance(version, int):
        fail("save file has no format version; it is damaged")
    if version > SAVE_VERSION:
        fail(f"save file format {version} is newer than this game understands ({SAVE_VERSION}); "
             "update Storyteller to load it")
    text = raw.decode("utf-8")
    where = check_schema(data)
    if where is not None:
        keys, message = where
        line, col = locate(text, keys)
        fail(f"save file is damaged: {'.'.join(str(k) for k in keys) or 'the file'} {message}; "
             "it was left as it is", line, col)
    data = migrate(data, version)
    quest = data["quest"]
    extra = data.get("extra") or {}
    return SaveData(
        quest_id=quest["id"], quest_title=quest.get("title", quest["id"]),
        quest_path=quest.get("path", ""), seed=data["seed"],
        state=GameState.from_dict(data["state"]),
        history=[TurnRecord.from_dict(t) for t in data.get("history", [])],
        undo=[(GameState.from_dict(u["state"]), u["history"]) for u in data.get("undo", [])],
        saved_at=data.get("saved_at", ""), extra=dict(extra),
    )


# -- the schema ----------------------------------------------------------------------------
# Every value of a save is checked before any of it is used: a save is a file anyone can edit.
MAX_COUNT = 10**9        # turns, visits, history positions
MAX_FLAG_NUMBER = 10**15  # numbers a flag may hold
MAX_LIST = 100_000       # items in any list of a save


class _Bad(Exception):
    def __init__(self, keys: list, message: str):
        self.keys, self.message = keys, message


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {int: "a number", float: "a number", str: "text", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__)


def _text(value, keys, optional=False):
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise _Bad(keys, f"has the wrong type: it must be text, not {_kind(value)}")


def _whole(value, keys, lo=0, hi=MAX_COUNT):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(keys, f"has the wrong type: it must be a whole number, not {_kind(value)}")
    if not lo <= value <= hi:
        raise _Bad(keys, f"is out of range: it must be a whole number from {lo} to {hi}")


def _list(value, keys):
    if not isinstance(value, list):
        raise _Bad(keys, f"has the wrong type: it must be a list, not {_kind(value)}")
    if len(value) > MAX_LIST:
        raise _Bad(keys, f"has more than {MAX_LIST} entries")
    return value


def _mapping(value, keys, required=()):
    if not isinstance(value, dict):
        raise _Bad(keys, f"has the wrong type: it must be a mapping, not {_kind(value)}")
    for key in required:
        if key not in value:
            raise _Bad(keys, f"is missing a required field, '{key}'")
    return value


def _state(value, keys):
    _mapping(value, keys, ("scene",))
    _text(value["scene"], keys + ["scene"])
    for i, item in enumerate(_list(value.get("inventory", []), keys + ["inventory"])):
        _text(item, keys + ["inventory", i])
    for name, flag in _mapping(value.get("flags", {}), keys + ["flags"]).items():
        at = keys + ["flags", name]
        if isinstance(flag, float) and not math.isfinite(flag) or \
                isinstance(flag, (int, float)) and not isinstance(flag, bool) and abs(flag) > MAX_FLAG_NUMBER:
            raise _Bad(at, f"is out of range: it must be a number from -{MAX_FLAG_NUMBER} to {MAX_FLAG_NUMBER}")
        if not isinstance(flag, (bool, int, float, str)):
            raise _Bad(at, f"has the wrong type: it must be true/false, a number or text, not {_kind(flag)}")
    for name, visits in _mapping(value.get("visits", {}), keys + ["visits"]).items():
        _whole(visits, keys + ["visits", name])
    _whole(value.get("turn", 0), keys + ["turn"])
    _text(value.get("ending"), keys + ["ending"], optional=True)
    for i, key in enumerate(_list(value.get("used", []), keys + ["used"])):
        _text(key, keys + ["used", i])
    _whole(value.get("score", 0), keys + ["score"], -MAX_COUNT, MAX_COUNT)
    for item, scene in _mapping(value.get("places", {}), keys + ["places"]).items():
        _text(scene, keys + ["places", item])


def _schema(data) -> None:
    _mapping(data, [], ("quest", "seed", "state"))
    _text(data.get("saved_at", ""), ["saved_at"])
    quest = _mapping(data["quest"], ["quest"], ("id",))
    for key in ("id", "title", "path"):
        if key in quest:
            _text(quest[key], ["quest", key])
    _whole(data["seed"], ["seed"], 0, SEED_MAX)
    _state(data["state"], ["state"])
    for i, record in enumerate(_list(data.get("history", []), ["history"])):
        at = ["history", i]
        _mapping(record, at, ("turn", "action", "kind", "scene"))
        _whole(record["turn"], at + ["turn"])
        for key in ("action", "kind", "scene", "authored", "narration", "card"):
            if key in record:
                _text(record[key], at + [key])
    for i, step in enumerate(_list(data.get("undo", []), ["undo"])):
        _mapping(step, ["undo", i], ("state", "history"))
        _state(step["state"], ["undo", i, "state"])
        _whole(step["history"], ["undo", i, "history"])
    extra = data.get("extra") or {}
    _mapping(extra, ["extra"])
    for i, note in enumerate(_list(extra.get("memory", []), ["extra", "memory"])):
        _text(note, ["extra", "memory", i])
    _text(extra.get("opening", ""), ["extra", "opening"])
    for turn, sample in _mapping(extra.get("samples", {}), ["extra", "samples"]).items():
        at = ["extra", "samples", turn]
        if not turn.isdigit() or len(turn) > 10:
            raise _Bad(at, "has the wrong name: samples are named by turn numbers")
        _mapping(sample, at, ("texts",))
        for i, text in enumerate(_list(sample["texts"], at + ["texts"])):
            _text(text, at + ["texts", i])
        _whole(sample.get("shown", 0), at + ["shown"], 0, MAX_LIST)


def check_schema(data) -> tuple[list, str] | None:
    """None for a save whose every value has the type and range the game needs, else
    (the keys leading to the first bad value, what is wrong with it)."""
    try:
        _schema(data)
    except _Bad as bad:
        return bad.keys, bad.message
    return None


def locate(text: str, keys: list) -> tuple[int, int]:
    """1-based line and column of the value at `keys` in JSON text (of the deepest one found)."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    for key in keys:
        found = None
        if text.startswith("{", pos):
            pos = _skip(text, pos + 1)
            while pos < len(text) and text[pos] == '"':
                name, pos = json.decoder.scanstring(text, pos + 1)
                pos = _skip(text, _skip(text, pos) + 1)  # past the ':'
                if name == key:
                    found = pos
                    break
                pos = _skip(text, decoder.raw_decode(text, pos)[1])
                pos = _skip(text, pos + 1) if text.startswith(",", pos) else pos
        elif text.startswith("[", pos) and isinstance(key, int):
            pos = _skip(text, pos + 1)
            for i in range(key + 1):
                if i == key:
                    found = pos
                    break
                pos = _skip(text, decoder.raw_decode(text, pos)[1])
                pos = _skip(text, pos + 1) if text.startswith(",", pos) else pos
        if found is None:
            break
        pos = found
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


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
