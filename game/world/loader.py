"""Loads a quest from YAML into `game.world.model.Quest`, reporting every mistake.

The quest format is documented for authors in docs/quests.md; this module is its
one implementation. Checks, each reported as a `Problem` with file:line:col:

* the YAML itself (via `game.safe_yaml`: syntax, tabs, duplicate keys, bad
  bytes, empty files, hostile files);
* the shape: unknown keys (with a did-you-mean), wrong types, missing
  required keys, ids that are not simple words, absurd sizes;
* references: start scene, exit targets, items, flags, scenes and endings
  named in conditions and effects, duplicate ids across included files.

`check_quest(path)` returns what it could build plus all problems (for the
validator); `load_quest(path)` returns a playable quest or raises
`GameFileError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from game.diagnostics import GameFileError, Problem, Report, did_you_mean, display_path
from game.safe_yaml import MAX_VALUES, YList, YMap, load_yaml_file
from game.world.model import (Choice, Condition, Effect, Ending, Item, LoreEntry, Quest, Response,
                              Scene, Text, Where)
from game.world.parser import canonical_verb
from game.world.schema import (ADDRESSES, ALSO_COMMANDS, CHOICE_KEYS, CONDITION_KEYS, CONDITIONAL_EFFECT_KEYS,
                               EFFECT_KEYS, ENDING_KEYS, ID_RE, INCLUDED_KEYS, ITEM_KEYS, LORE_KEYS,
                               MAX_CHOICES, MAX_CONDITION_DEPTH, MAX_ENTRIES, MAX_INCLUDES,
                               MAX_QUEST_BYTES, MAX_RESPONSES, MAX_SCENES, MAX_SCORE, MAX_TEXT,
                               QUEST_FILE, RESPONSE_KEYS, SCENE_KEYS, THING_KEYS, TOP_KEYS,
                               VARIANT_KEYS, VERB_KEYS)
from game.world.text import BUILTIN_NAMES, names_in


def resolve_quest_path(path: str | Path) -> Path:
    """A quest file, or the quest.yaml inside a quest folder."""
    p = Path(path)
    return p / QUEST_FILE if p.is_dir() else p


def load_quest(path: str | Path) -> Quest:
    """Load a playable quest, or raise GameFileError listing every error."""
    quest, problems = check_quest(path)
    errors = [p for p in problems if p.severity == "error"]
    if errors or quest is None:
        raise GameFileError(errors or [Problem(str(path), 1, 1, "quest could not be loaded")])
    return quest


def check_quest(path: str | Path) -> tuple[Quest | None, list[Problem]]:
    """Build the quest and return it (None if it could not be built) with all problems."""
    builder = _Builder(resolve_quest_path(path))
    if Path(path).is_dir():  # a quest folder uses only what lies inside it, quest.yaml included
        try:
            inside = builder.path.resolve().is_relative_to(Path(path).resolve())
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            return None, [Problem(builder.display, 1, 1, f"{QUEST_FILE} links to a file outside the "
                                  "quest's folder (or in a loop); a quest folder may only use files "
                                  "inside it")]
    quest = builder.build()
    problems = sorted(set(builder.report.problems), key=lambda p: (p.path, p.line, p.col, p.message))
    return quest, problems


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _count_values(value) -> int:
    """Keys, values and items in a loaded YAML document."""
    if isinstance(value, dict):
        return 1 + sum(1 + _count_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_values(v) for v in value)
    return 1


def _type_name(value) -> str:
    if isinstance(value, (dict, YMap)):
        return "a mapping"
    if isinstance(value, (list, YList)):
        return "a list"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return "text"


@dataclass
class _Ref:
    kind: str  # "item", "flag", "scene", "ending", "thing", "name" (a {name} inside a text)
    id: str
    where: Where
    number: bool = False  # the flag must hold a number


@dataclass
class _Parts:
    """Definitions collected from the quest file and its included files."""

    scenes: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    flag_where: dict = field(default_factory=dict)
    endings: dict = field(default_factory=dict)
    lore: dict = field(default_factory=dict)


class _Builder:
    def __init__(self, path: Path):
        self.path = path
        self.display = display_path(path)
        self.report = Report(self.display)
        self.refs: list[_Ref] = []
        self.parts = _Parts()
        self.files: list[Path] = []
        self.file = self.display  # display path of the file being read
        self.bytes = self.values = 0  # size and number of values of the files read so far
        self.overflow = False  # a quest-wide limit was passed: read no more included files
        self.scored = False  # some effect gives points
        self.thing_ids: set[str] = set()  # every scene's things

    # -- small helpers -------------------------------------------------------------
    def where(self, mark) -> Where:
        return Where(self.file, mark.line, mark.col)

    def error(self, mark, message: str) -> None:
        self.report.error(mark.line, mark.col, message, path=self.file)

    def check_keys(self, m: YMap, allowed: set, required: tuple, what: str) -> None:
        for key in m:
            if key not in allowed:
                self.error(m.key_mark(key), f"unknown key '{key}' in {what}{did_you_mean(key, allowed)}; "
                                            f"allowed keys: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in m:
                self.error(m.mark, f"{what} is missing the required key '{key}'")

    def mapping(self, parent: YMap, key: str, what: str) -> YMap | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, YMap):
            self.error(parent.value_mark(key), f"'{key}' in {what} must be a mapping of "
                                                f"'id: ...' entries, not {_type_name(value)}")
            return None
        return value

    def text(self, m: YMap, key: str, what: str, required: bool = False) -> str | None:
        if key not in m:
            return None
        value = m[key]
        mark = m.value_mark(key)
        if isinstance(value, bool) or value is None or isinstance(value, (YMap, YList)):
            hint = " (put it in quotes)" if isinstance(value, bool) else ""
            self.error(mark, f"'{key}' in {what} must be text, not {_type_name(value)}{hint}")
            return None
        value = str(value)
        if len(value) > MAX_TEXT:
            self.error(mark, f"'{key}' in {what} is {len(value):,} characters long; "
                             f"the limit is {MAX_TEXT:,}")
            return None
        if required and not value.strip():
            self.error(mark, f"'{key}' in {what} is empty")
        return value.strip()

    def texts(self, m: YMap, key: str, what: str, named: bool = False) -> tuple[str, ...]:
        """A text or a list of texts (`named`: texts the player reads, where {names} are filled in)."""
        if key not in m:
            return ()
        value = m[key]
        if isinstance(value, YList):
            out = []
            for i, item in enumerate(value):
                if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                    out.append(str(item).strip())
                    if named:
                        self.named(out[-1], value.item_mark(i))
                else:
                    self.error(value.item_mark(i), f"each entry of '{key}' in {what} must be text, "
                                                   f"not {_type_name(item)}")
            return tuple(out)
        single = self.text(m, key, what)
        if single is not None and named:
            self.named(single, m.value_mark(key))
        return (single,) if single is not None else ()

    def check_id(self, mark, ident, what: str) -> bool:
        if not isinstance(ident, str) or not ID_RE.match(ident):
            self.error(mark, f"{what} id '{ident}' must be a short word of letters, digits, "
                             "'-', '_' or '.' (no spaces), starting with a letter or digit")
            return False
        return True

    def entries(self, m: YMap | None, what: str):
        """Yield (id, value, key mark) for an id-keyed mapping, checking ids and size.

        The limits hold for the whole quest: entries from earlier files count too.
        """
        if m is None:
            return
        limit = MAX_SCENES if what == "scene" else MAX_ENTRIES
        p = self.parts
        earlier = len({"scene": p.scenes, "item": p.items, "flag": p.flags,
                       "ending": p.endings, "lore": p.lore}.get(what, ()))
        if earlier + len(m) > limit:
            where = f", {earlier:,} of them in earlier files" if earlier else ""
            self.error(m.mark, f"too many {what}s ({earlier + len(m):,}{where}); a quest may have "
                               f"at most {limit:,}")
            self.overflow = True
            return
        for ident, value in m.items():
            if self.check_id(m.key_mark(ident), ident, what):
                yield ident, value, m.key_mark(ident), m.value_mark(ident)

    def defined_twice(self, table: dict, ident: str, mark, what: str) -> bool:
        if ident in table:
            first = table[ident].where
            self.error(mark, f"{what} '{ident}' is already defined at {first.path}:{first.line}; "
                             "ids must be unique")
            return True
        return False

    # -- the quest -----------------------------------------------------------------
    def build(self) -> Quest | None:
        try:
            doc = load_yaml_file(self.path, self.display)
        except GameFileError as exc:
            self.report.problems.extend(exc.problems)
            return None
        self.files.append(self.path)
        self.bytes += _size(self.path)
        self.values += _count_values(doc)
        if not isinstance(doc, YMap):
            mark = getattr(doc, "mark", None)  # a list knows where it starts; a lone value does not
            self.report.error(mark.line if mark else 1, mark.col if mark else 1,
                              f"a quest file must be a mapping of keys (id:, title:, scenes: ...), "
                              f"not {_type_name(doc)}")
            return None
        # scenes: and endings: may come from included files; their absence is checked at the end
        self.check_keys(doc, TOP_KEYS, ("id", "title", "start"), "the quest")
        self.collect(doc)
        self.includes(doc)
        meta = {k: self.text(doc, k, "the quest", required=k in ("id", "title", "start"))
                for k in ("id", "title", "author", "summary", "language", "address", "version", "start",
                          "persona", "personality", "author_note", "model")}
        if meta["address"] is not None and meta["address"] not in ADDRESSES:
            self.error(doc.value_mark("address"),
                       f"'address' is '{meta['address']}'; write formal or informal (how the game's own "
                       f"sentences speak to the player: in Russian, «вы» or «ты»)")
        if meta["id"] is not None:
            self.check_id(doc.value_mark("id"), meta["id"], "quest")
        if meta["start"] is not None:
            self.refs.append(_Ref("scene", meta["start"], self.where(doc.value_mark("start"))))
        carrying = self.ids(doc["carrying"], doc.value_mark("carrying"), "item",
                            "'carrying' in the quest") if "carrying" in doc else ()
        responses = self.responses(doc, "the quest")
        max_score = doc.get("max_score")
        if "max_score" in doc and (isinstance(max_score, bool) or not isinstance(max_score, int)
                                   or not 0 < max_score <= MAX_SCORE):
            self.error(doc.value_mark("max_score"), f"'max_score' must be a whole number of points "
                                                    f"from 1 to {MAX_SCORE:,}, not {_type_name(max_score)}")
            max_score = None
        if self.scored and "max_score" not in doc:
            self.report.error(1, 1, "effects give points ('score:') but the quest has no 'max_score'; "
                                    "add 'max_score: N' at the top level (the most points a player can get)",
                              path=self.display)
        self.check_refs("max_score" in doc)
        if self.report.errors or meta["id"] is None or meta["title"] is None or meta["start"] is None:
            return None
        p = self.parts
        return Quest(
            carrying=tuple(dict.fromkeys(carrying)), responses=responses, max_score=max_score,
            id=meta["id"], title=meta["title"], start=meta["start"],
            scenes=p.scenes, endings=p.endings, items=p.items, flags=p.flags,
            flag_where=p.flag_where, lore=p.lore,
            author=meta["author"] or "Anonymous", summary=meta["summary"] or "",
            language=meta["language"] or "en", address=meta["address"] or "formal",
            version=meta["version"] or "",
            persona=meta["persona"], personality=meta["personality"],
            author_note=meta["author_note"], model=meta["model"],
            source=self.path, files=tuple(self.files),
        )

    def includes(self, doc: YMap) -> None:
        if "include" not in doc:
            return
        value = doc["include"]
        main_file = self.file
        if not isinstance(value, YList):
            value_list = YList([value])
            value_list.mark = doc.value_mark("include")
            value_list.item_marks = [value_list.mark]
            value = value_list
        if len(value) > MAX_INCLUDES:
            self.error(value.mark, f"too many included files ({len(value)}); at most {MAX_INCLUDES}")
            return
        folder = self.path.parent.resolve()
        seen = {self.path.resolve()}
        for i, name in enumerate(value):
            mark = value.item_mark(i)
            self.file = main_file
            if not isinstance(name, str) or not name.strip():
                self.error(mark, f"each entry of 'include' must be a file name, not {_type_name(name)}")
                continue
            target = (self.path.parent / name)
            try:
                resolved = target.resolve()
            except (OSError, RuntimeError):
                self.error(mark, f"included file '{name}' cannot be resolved (a symlink loop?)")
                continue
            if not resolved.is_relative_to(folder):
                self.error(mark, f"included file '{name}' lies outside the quest's folder; "
                                 "a quest may only include files inside its own folder")
                continue
            if not resolved.is_file():
                self.error(mark, f"included file '{name}' "
                                 f"{'is not a file' if resolved.exists() else 'not found'}; "
                                 "include names are relative to the quest's folder")
                continue
            if resolved in seen:
                self.error(mark, f"'{name}' is included twice (or is the quest file itself)")
                continue
            seen.add(resolved)
            if self.overflow:
                break  # the quest is already too big: reading more would only take time
            self.bytes += _size(resolved)
            # each file is bounded by safe_yaml; these bound the whole quest
            too_big = (f"with '{name}' the quest's files add up to more than "
                       f"{MAX_QUEST_BYTES // 1_000_000} MB" if self.bytes > MAX_QUEST_BYTES else
                       f"the files before '{name}' already hold more than {MAX_VALUES:,} values"
                       if self.values > MAX_VALUES else None)
            if too_big:
                self.error(mark, f"{too_big}, the limit for a whole quest; '{name}' and the "
                                 "files after it were not read")
                break
            display = display_path(target)
            try:
                part = load_yaml_file(resolved, display)
            except GameFileError as exc:
                self.report.problems.extend(exc.problems)
                continue
            self.files.append(resolved)
            self.values += _count_values(part)
            self.file = display
            if not isinstance(part, YMap):
                pmark = getattr(part, "mark", None)
                self.report.error(pmark.line if pmark else 1, pmark.col if pmark else 1,
                                  f"an included file must be a mapping with scenes:, items:, "
                                  f"flags:, endings: or lore:, not {_type_name(part)}", path=display)
                continue
            self.check_keys(part, INCLUDED_KEYS, (), "an included file")
            self.collect(part)
        self.file = main_file

    def collect(self, doc: YMap) -> None:
        p = self.parts
        for ident, value, kmark, vmark in self.entries(self.mapping(doc, "flags", "the quest"), "flag"):
            if isinstance(value, (YMap, YList)) or value is None:
                self.error(vmark, f"flag '{ident}' must start as true/false, a number or text, "
                                  f"not {_type_name(value)}")
                continue
            if ident in p.flags:
                first = p.flag_where[ident]
                self.error(kmark, f"flag '{ident}' is already defined at {first.path}:{first.line}")
                continue
            p.flags[ident] = value
            p.flag_where[ident] = self.where(kmark)
        for ident, value, kmark, vmark in self.entries(self.mapping(doc, "items", "the quest"), "item"):
            if isinstance(value, str):  # shorthand: lantern: a brass lantern
                value = self._named_only(value, vmark)
            if not isinstance(value, YMap):
                self.error(vmark, f"item '{ident}' must be a mapping with name: and description:")
                continue
            item = self.thing(ident, value, kmark, ITEM_KEYS, f"item '{ident}'")
            if not self.defined_twice(p.items, ident, kmark, "item"):
                p.items[ident] = item
        for ident, value, kmark, vmark in self.entries(self.mapping(doc, "endings", "the quest"), "ending"):
            if not isinstance(value, YMap):
                self.error(vmark, f"ending '{ident}' must be a mapping with title:, text: and outcome:")
                continue
            what = f"ending '{ident}'"
            self.check_keys(value, ENDING_KEYS, ("title", "text"), what)
            outcome = value.get("outcome", "win")
            if outcome not in ("win", "lose"):
                self.error(value.value_mark("outcome"), f"outcome of {what} must be 'win' or 'lose', "
                                                        f"not '{outcome}'")
                outcome = "win"
            if self.defined_twice(p.endings, ident, kmark, "ending"):
                continue
            p.endings[ident] = Ending(ident, self.text(value, "title", what, True) or ident,
                                      self.variant_text(value, "text", what, True) or "", outcome,
                                      self.where(kmark))
        for ident, value, kmark, vmark in self.entries(self.mapping(doc, "lore", "the quest"), "lore"):
            if not isinstance(value, YMap):
                self.error(vmark, f"lore entry '{ident}' must be a mapping with keywords: and text:")
                continue
            what = f"lore entry '{ident}'"
            self.check_keys(value, LORE_KEYS, ("keywords", "text"), what)
            keywords = tuple(k for k in self.texts(value, "keywords", what) if k)
            if "keywords" in value and not keywords:
                self.error(value.value_mark("keywords"), f"{what} needs at least one keyword")
            if self.defined_twice(p.lore, ident, kmark, "lore entry"):
                continue
            p.lore[ident] = LoreEntry(ident, keywords, self.text(value, "text", what, True) or "",
                                      self.where(kmark))
        scenes = self.mapping(doc, "scenes", "the quest")
        for ident, value, kmark, vmark in self.entries(scenes, "scene"):
            scene = self.scene(ident, value, kmark, vmark)
            if scene is not None and not self.defined_twice(p.scenes, ident, kmark, "scene"):
                p.scenes[ident] = scene

    def scene(self, ident: str, m, kmark, vmark) -> Scene | None:
        what = f"scene '{ident}'"
        if not isinstance(m, YMap):
            self.error(vmark, f"{what} must be a mapping with title:, description: and choices:")
            return None
        self.check_keys(m, SCENE_KEYS, ("title", "description"), what)
        described = m.get("description")
        if isinstance(described, YList) and any(isinstance(v, YMap) for v in described):
            chosen = self.variants(described, m.value_mark("description"), f"the description of {what}")
            descriptions = (chosen,) if chosen is not None else ()
        else:
            descriptions = tuple(d for d in self.texts(m, "description", what, named=True) if d)
        if "description" in m and not descriptions:
            self.error(m.value_mark("description"), f"the description of {what} is empty")
        choices: list[Choice] = []
        for key in ("choices", "exits"):
            if key not in m:
                continue
            items = m[key]
            if not isinstance(items, YList):
                self.error(m.value_mark(key), f"'{key}' in {what} must be a list of entries "
                                              f"starting with '- label:', not {_type_name(items)}")
                continue
            if len(items) > MAX_CHOICES:
                self.error(items.mark, f"{what} has {len(items)} {key}; at most {MAX_CHOICES}")
                continue
            named: dict[str, int] = {}
            for i, c in enumerate(items):
                choice = self.choice(c, items.item_mark(i), f"{key[:-1]} {i + 1} of {what}",
                                     is_exit=key == "exits", key="")
                if choice is not None:
                    # by label, so reordering the options keeps a save's used-up `once` ones right
                    base = f"{ident}/{key}: {' '.join(choice.label.split())}"
                    named[base] = named.get(base, 0) + 1
                    choices.append(replace(choice, key=base if named[base] == 1 else f"{base} #{named[base]}"))
        ending = self.text(m, "ending", what)
        if ending is not None:
            self.refs.append(_Ref("ending", ending, self.where(m.value_mark("ending"))))
        things = {}
        for tid, value, tkmark, tvmark in self.entries(self.mapping(m, "things", what), "thing"):
            if isinstance(value, str):  # shorthand: hook: a brass hook
                value = self._named_only(value, tvmark)
            if not isinstance(value, YMap):
                self.error(tvmark, f"thing '{tid}' in {what} must be a mapping with name: and description:")
                continue
            if tid in things:
                continue
            things[tid] = self.thing(tid, value, tkmark, THING_KEYS, f"thing '{tid}' in {what}")
            self.thing_ids.add(tid)
        return Scene(
            first_visit=self.variant_text(m, "first_visit", what) or "",
            responses=self.responses(m, what), things=things,
            id=ident, title=self.text(m, "title", what, True) or ident, descriptions=descriptions,
            hints=tuple(h for h in self.texts(m, "hints", what) if h),
            recap=self.text(m, "recap", what) or "", choices=tuple(choices),
            on_enter=self.effects(m, "on_enter", what), ending=ending, where=self.where(kmark))

    def choice(self, m, mark, what: str, is_exit: bool, key: str) -> Choice | None:
        if not isinstance(m, YMap):
            self.error(mark, f"{what} must be a mapping starting with 'label:', not {_type_name(m)}")
            return None
        self.check_keys(m, CHOICE_KEYS, ("label", "to") if is_exit else ("label",), what)
        to = self.text(m, "to", what)
        if to is not None:
            self.refs.append(_Ref("scene", to, self.where(m.value_mark("to"))))
        condition = self.condition(m["if"], m.value_mark("if"), what, 0) if "if" in m else None
        once = m.get("once", False)
        if not isinstance(once, bool):
            self.error(m.value_mark("once"), f"'once' in {what} must be true or false")
            once = False
        hidden = m.get("hidden", False)
        if not isinstance(hidden, bool):
            self.error(m.value_mark("hidden"), f"'hidden' in {what} must be true or false")
            hidden = False
        words = tuple(w.lower() for w in self.texts(m, "words", what) if w)
        if hidden and not words:
            self.error(m.mark, f"{what} is hidden but has no 'words': the player could never type it; "
                               "add words: [...]")
        return Choice(label=self.text(m, "label", what, True) or "?", words=words, to=to,
                      condition=condition, effects=self.effects(m, "effects", what),
                      text=self.variant_text(m, "text", what) or "",
                      locked=self.variant_text(m, "locked", what) or "",
                      once=once, is_exit=is_exit, hidden=hidden, key=key, where=self.where(mark))

    # -- things, responses and texts that depend on the state -------------------
    def _named_only(self, name: str, mark) -> YMap:
        value = YMap(name=name)
        value.mark, value.key_marks, value.value_marks = mark, {}, {"name": mark}
        return value

    def thing(self, ident: str, value: YMap, kmark, keys: set, what: str) -> Item:
        """An item or a scene's thing: name, words, description, verbs (and for items gained/lost)."""
        self.check_keys(value, keys, ("name",), what)
        name = self.text(value, "name", what, True) or ident
        words = tuple(w.lower() for w in self.texts(value, "words", what) if w)
        verbs = {}
        table = self.mapping(value, "verbs", what)
        for verb, answers in (table or {}).items():
            vmark = table.value_mark(verb)
            if not isinstance(verb, str) or not verb.strip() or len(verb.split()) != 1:
                self.error(table.key_mark(verb), f"each verb of {what} must be one word, like drop: or wear:")
                continue
            parsed = self.answers(answers, vmark, f"verb '{verb}' of {what}")
            key = canonical_verb(verb.lower())
            verbs[key] = verbs.get(key, ()) + parsed
        said = {k: self.variant_text(value, k, what) for k in ("gained", "lost") if k in value}
        return Item(ident, name, self.variant_text(value, "description", what) or "", self.where(kmark),
                    words=words, verbs=verbs, gained=said.get("gained"), lost=said.get("lost"))

    def answers(self, value, mark, what: str) -> tuple[Response, ...]:
        """A verb's answers: one mapping, or a list of them (the first whose 'if' holds answers)."""
        entries = [(value, mark)] if isinstance(value, YMap) else (
            [(v, value.item_mark(i)) for i, v in enumerate(value)] if isinstance(value, YList) else None)
        if entries is None:
            self.error(mark, f"{what} must be a mapping with text: (and if:, effects:), or a list of them, "
                             f"not {_type_name(value)}")
            return ()
        if len(entries) > MAX_RESPONSES:
            self.error(mark, f"{what} has {len(entries)} answers; at most {MAX_RESPONSES}")
            return ()
        out = []
        for i, (entry, emark) in enumerate(entries):
            label = f"answer {i + 1} of {what}"
            if not isinstance(entry, YMap):
                self.error(emark, f"{label} must be a mapping with text: or effects:, not {_type_name(entry)}")
                continue
            self.check_keys(entry, VERB_KEYS, (), label)
            on = self.text(entry, "on", label)
            if on is not None:
                self.refs.append(_Ref("thing", on, self.where(entry.value_mark("on"))))
            out.append(self.answer(entry, emark, label, on=on))
        return tuple(out)

    def answer(self, entry: YMap, mark, what: str, **extra) -> Response:
        condition = self.condition(entry["if"], entry.value_mark("if"), what, 0) if "if" in entry else None
        text = self.variant_text(entry, "text", what) or ""
        effects = self.effects(entry, "effects", what)
        if not text and not effects:
            self.error(mark, f"{what} has no text: and no effects:, so it would answer with nothing; "
                             "add what the player reads, or what happens")
        return Response(condition=condition, text=text, effects=effects, where=self.where(mark), **extra)

    def responses(self, m: YMap, what: str) -> tuple[Response, ...]:
        if "responses" not in m:
            return ()
        items = m["responses"]
        if not isinstance(items, YList):
            self.error(m.value_mark("responses"), f"'responses' in {what} must be a list of entries starting "
                                                  f"with '- words:', '- verbs:' or '- anything: true', "
                                                  f"not {_type_name(items)}")
            return ()
        if len(items) > MAX_RESPONSES:
            self.error(items.mark, f"{what} has {len(items)} responses; at most {MAX_RESPONSES}")
            return ()
        out = []
        for i, r in enumerate(items):
            rmark, label = items.item_mark(i), f"response {i + 1} of {what}"
            if not isinstance(r, YMap):
                self.error(rmark, f"{label} must be a mapping starting with 'words:', 'verbs:' or "
                                  f"'anything: true', not {_type_name(r)}")
                continue
            self.check_keys(r, RESPONSE_KEYS, (), label)
            words = tuple(w.lower() for w in self.texts(r, "words", label) if w)
            verbs = tuple(canonical_verb(v.lower()) for v in self.texts(r, "verbs", label) if v)
            anything = r.get("anything", False)
            if anything is not True and anything is not False:
                self.error(r.value_mark("anything"), f"'anything' in {label} must be true or false")
                anything = False
            also = tuple(a.lower() for a in self.texts(r, "also", label) if a)
            for a in also:
                if a not in ALSO_COMMANDS:
                    self.error(r.value_mark("also"), f"'also' in {label} names '{a}'{did_you_mean(a, ALSO_COMMANDS)}; "
                                                     f"it may name the built-in commands {', '.join(ALSO_COMMANDS)}")
            if anything and (words or verbs):
                self.error(rmark, f"{label} has 'anything: true' and also words or verbs; a catch-all "
                                  "answers whatever else is typed, so drop its words and verbs")
            elif not anything and not (words or verbs):
                self.error(rmark, f"{label} needs 'words:' or 'verbs:' to know what it answers, "
                                  "or 'anything: true' to answer whatever else the player types")
            if also and not anything:
                self.error(r.value_mark("also"), f"'also' in {label} only works with 'anything: true'")
            out.append(self.answer(r, rmark, label, words=words, verbs=verbs, anything=bool(anything),
                                   also=also))
        return tuple(out)

    def named(self, text: str, mark) -> None:
        """Record the {names} inside a text, to check once every flag and item is known."""
        for name, _ in names_in(text):
            self.refs.append(_Ref("name", name, self.where(mark)))

    def variant_text(self, m: YMap, key: str, what: str, required: bool = False):
        """A text, or a list of variants ('- if: ...' / 'text: ...'): the first that holds is shown."""
        if key not in m:
            return None
        value = m[key]
        if isinstance(value, YList):
            return self.variants(value, m.value_mark(key), f"'{key}' in {what}")
        text = self.text(m, key, what, required)
        if text is not None:
            self.named(text, m.value_mark(key))
        return text

    def variants(self, value: YList, mark, what: str) -> Text | None:
        out = []
        for i, v in enumerate(value):
            vmark, label = value.item_mark(i), f"variant {i + 1} of {what}"
            if isinstance(v, YMap):
                self.check_keys(v, VARIANT_KEYS, ("text",), label)
                condition = self.condition(v["if"], v.value_mark("if"), label, 0) if "if" in v else None
                text = self.text(v, "text", label, True)
                tmark = v.value_mark("text") if "text" in v else vmark
            elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
                condition, text, tmark = None, str(v).strip(), vmark
            else:
                self.error(vmark, f"{label} must be a text or a mapping with if: and text:, not {_type_name(v)}")
                continue
            if text is None:
                continue
            if out and out[-1][0] is None:
                self.error(vmark, f"{label} comes after a variant with no 'if:', which always holds, so it "
                                  "is never shown; put the variant with no 'if:' last")
            self.named(text, tmark)
            out.append((condition, text))
        if not out:
            self.error(mark, f"{what} has no variants")
            return None
        return Text(out, self.where(mark))

    # -- conditions and effects ----------------------------------------------------
    def ids(self, value, mark, kind: str, what: str) -> tuple[str, ...]:
        """One id or a list of ids, recorded as references of `kind`."""
        values = list(value) if isinstance(value, YList) else [value]
        out = []
        for i, v in enumerate(values):
            m = value.item_mark(i) if isinstance(value, YList) else mark
            if not isinstance(v, str) or not v:
                self.error(m, f"{what} must name {kind}s by id, not {_type_name(v)}")
                continue
            self.refs.append(_Ref(kind, v, self.where(m)))
            out.append(v)
        return tuple(out)

    def flag_map(self, value, mark, what: str, numbers: bool) -> tuple:
        if not isinstance(value, YMap):
            example = "{offerings: 2}" if numbers else "{mood: calm}"
            self.error(mark, f"{what} must be a mapping of flag: value, like {example}")
            return ()
        out = []
        for flag, v in value.items():
            vm = value.value_mark(flag)
            if numbers and (isinstance(v, bool) or not isinstance(v, (int, float))):
                self.error(vm, f"{what}: the value for flag '{flag}' must be a number, not {_type_name(v)}")
                continue
            if isinstance(v, (YMap, YList)) or v is None:
                self.error(vm, f"{what}: the value for flag '{flag}' must be true/false, a number or text")
                continue
            self.refs.append(_Ref("flag", flag, self.where(value.key_mark(flag)), number=numbers))
            out.append((flag, v))
        return tuple(out)

    def condition(self, value, mark, what: str, depth: int) -> Condition | None:
        where = self.where(mark)
        if depth > MAX_CONDITION_DEPTH:
            self.error(mark, f"conditions in {what} are nested too deeply")
            return None
        if isinstance(value, YList):
            parts = [self.condition(v, value.item_mark(i), what, depth + 1) for i, v in enumerate(value)]
            return Condition("all", tuple(p for p in parts if p), where)
        if not isinstance(value, YMap):
            self.error(mark, f"the condition ('if') of {what} must be a mapping like "
                             f"{{has: lantern}}, not {_type_name(value)}")
            return None
        if not value:
            self.error(mark, f"the condition ('if') of {what} is empty")
        parts = []
        for key, v in value.items():
            kmark, vmark = value.key_mark(key), value.value_mark(key)
            shape = CONDITION_KEYS.get(key)
            label = f"'{key}' in the condition of {what}"
            if shape is None:
                self.error(kmark, f"unknown condition '{key}' in {what}{did_you_mean(key, CONDITION_KEYS)}; "
                                  f"known: {', '.join(CONDITION_KEYS)}")
                continue
            if shape in ("items", "flags", "scenes"):
                args = self.ids(v, vmark, shape[:-1], label)
            elif shape in ("flag_values", "flag_numbers"):
                args = self.flag_map(v, vmark, label, numbers=shape == "flag_numbers")
            elif shape == "count":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    self.error(vmark, f"{label} must be a whole number of turns (0 or more)")
                    continue
                args = (v,)
            elif shape == "conditions":
                if not isinstance(v, YList):
                    self.error(vmark, f"{label} must be a list of conditions, like [{{has: key}}, {{flag: lit}}]")
                    continue
                args = tuple(c for c in (self.condition(x, v.item_mark(i), what, depth + 1)
                                         for i, x in enumerate(v)) if c)
            else:  # "condition"
                sub = self.condition(v, vmark, what, depth + 1)
                args = (sub,) if sub else ()
            parts.append(Condition(key, args, self.where(kmark)))
        return parts[0] if len(parts) == 1 else Condition("all", tuple(parts), where)

    def effects(self, m: YMap, key: str, what: str) -> tuple[Effect, ...]:
        if key not in m:
            return ()
        value = m[key]
        if isinstance(value, YMap):  # a single mapping is accepted as a one-entry list
            wrapped = YList([value])
            wrapped.mark, wrapped.item_marks = value.mark, [value.mark]
            value = wrapped
        if not isinstance(value, YList):
            self.error(m.value_mark(key), f"'{key}' in {what} must be a list of effects like "
                                          f"'- give: lantern', not {_type_name(value)}")
            return ()
        out = []
        for i, entry in enumerate(value):
            emark = value.item_mark(i)
            if not isinstance(entry, YMap):
                self.error(emark, f"each entry of '{key}' in {what} must be a mapping like "
                                  f"'give: lantern', not {_type_name(entry)}")
                continue
            if "if" in entry:  # a conditional effect: if / then / else
                self.check_keys(entry, CONDITIONAL_EFFECT_KEYS, ("if", "then"), f"the conditional effect in {what}")
                condition = self.condition(entry["if"], entry.value_mark("if"), what, 0)
                then, otherwise = self.effects(entry, "then", what), self.effects(entry, "else", what)
                if condition is not None:
                    out.append(Effect("if", (condition, then, otherwise), self.where(entry.key_mark("if"))))
                continue
            for ekey, v in entry.items():
                kmark, vmark = entry.key_mark(ekey), entry.value_mark(ekey)
                shape = EFFECT_KEYS.get(ekey)
                label = f"'{ekey}' in {what}"
                if shape is None:
                    self.error(kmark, f"unknown effect '{ekey}' in {what}{did_you_mean(ekey, EFFECT_KEYS)}; "
                                      f"known: {', '.join(EFFECT_KEYS)}")
                    continue
                if shape in ("items", "flags"):
                    args = self.ids(v, vmark, shape[:-1], label)
                elif shape == "flag_set":
                    if isinstance(v, YMap):
                        args = self.flag_map(v, vmark, label, numbers=False)
                    else:
                        args = tuple((f, True) for f in self.ids(v, vmark, "flag", label))
                elif shape == "flag_numbers":
                    args = self.flag_map(v, vmark, label, numbers=True)
                elif shape in ("scene", "ending"):
                    args = self.ids(v, vmark, shape, label)
                    if len(args) != 1:
                        if args:
                            self.error(vmark, f"{label} takes exactly one {shape} id")
                        continue
                elif shape == "points":
                    if isinstance(v, bool) or not isinstance(v, int) or abs(v) > MAX_SCORE:
                        self.error(vmark, f"{label} must be a whole number of points, like 'score: 1'")
                        continue
                    self.scored = True
                    args = (v,)
                elif shape == "branch":
                    continue  # handled above
                else:  # text
                    text = self.variant_text(entry, ekey, what, True)
                    if text is None:
                        continue
                    args = (text,)
                out.append(Effect(ekey, args, self.where(kmark)))
        return tuple(out)

    # -- references ----------------------------------------------------------------
    def check_refs(self, scored: bool = False) -> None:
        p = self.parts
        tables = {"item": p.items, "flag": p.flags, "scene": p.scenes, "ending": p.endings,
                  "thing": {t: True for t in self.thing_ids}}
        for ref in self.refs:
            w = ref.where
            if ref.kind == "name":
                self.check_name(ref, scored)
                continue
            table = tables[ref.kind]
            if ref.id not in table:
                defined = ", ".join(sorted(table)[:12]) or "none"
                self.report.error(w.line, w.col,
                                  f"unknown {ref.kind} '{ref.id}'{did_you_mean(ref.id, table)}; "
                                  f"{'declare it under ' + ref.kind + 's:' if ref.kind in ('item', 'flag', 'thing') else 'defined ' + ref.kind + 's'}"
                                  f"{'' if ref.kind in ('item', 'flag') else ': ' + defined}",
                                  path=w.path)
            elif ref.number and (isinstance(table[ref.id], bool) or not isinstance(table[ref.id], (int, float))):
                self.report.error(w.line, w.col,
                                  f"flag '{ref.id}' is used as a number here but starts as "
                                  f"{_type_name(table[ref.id])}; give it a number under flags: (e.g. {ref.id}: 0)",
                                  path=w.path)
        if not p.scenes:
            self.report.error(1, 1, "the quest has no scenes; add at least one under scenes:", path=self.display)
        if not p.endings:
            self.report.error(1, 1, "the quest has no endings; add at least one under endings:", path=self.display)

    def check_name(self, ref: _Ref, scored: bool) -> None:
        """A {name} inside a text: score, max_score, turns, a flag or an item."""
        p, w, name = self.parts, ref.where, ref.id
        if name in ("score", "max_score") and not scored:
            self.report.error(w.line, w.col, f"the text shows {{{name}}}, but the quest keeps no score; add "
                                             "'max_score: N' at the top level and 'score:' effects", path=w.path)
        elif name in p.flags and name in p.items:
            self.report.error(w.line, w.col, f"'{{{name}}}' in the text is both a flag and an item; "
                                             "rename one of them", path=w.path)
        elif name not in BUILTIN_NAMES and name not in p.flags and name not in p.items:
            known = set(BUILTIN_NAMES) | set(p.flags) | set(p.items)
            self.report.error(w.line, w.col,
                              f"unknown name '{{{name}}}' in the text{did_you_mean(name, known)}; a text may "
                              "show {score}, {max_score}, {turns}, a flag's value or an item's name by its id "
                              "(write {{ and }} for braces)", path=w.path)
