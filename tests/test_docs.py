"""docs/quests.md, the quest authors' guide: every example in it is checked against the code.

How the guide marks its examples (for whoever edits it). Every ```yaml block is exactly one of:

* a complete quest: a mapping with a top-level `id:` and no marker comment. It must load with
  no problems (`check_quest`) and pass `storyteller validate --strict` (no warnings, the token
  budget included), so an author who copies it sees a clean validate.
* `# fragment: KIND` as its first line: part of a quest, wrapped into `SKELETON` below and
  loaded; it must give no errors. KIND is one of
      quest        top-level keys; the sections flags, items, scenes, endings and lore are
                   added to the skeleton's, other keys replace the skeleton's
      scene        scene id -> scene, added to the skeleton's scenes
      choice       a list of choices: the choices of the skeleton's start scene
      condition    one condition: the `if:` of a choice
      conditions   a list of separate example conditions, each the `if:` of its own choice
      effects      a list of effects: the `effects:` of a choice
      personality  a personality file, loaded with `load_personality_file`
  Fragments may name the skeleton's things: items lantern, key, rope; flags door_open, lit,
  mood, offerings; scenes cellar (the start), hall, crypt; endings found-the-way, drowned;
  the skeleton keeps a score (max_score), so `score:` effects work.
* `# mistake: KIND`: a fragment (as above) that must be rejected; an optional second line
  `# validate says: TEXT` gives text that must appear in one of the messages.
* `# file: FOLDER/NAME.yaml`: one file of a folder quest. All such blocks are written into
  one place, and each FOLDER (with its quest.yaml) must pass `validate --strict` too.

Other checked parts are introduced by an HTML comment on the line before them:

* `<!-- transcript -->` before a ```text block: exactly what `python -m game play QUEST
  --plain --no-spirit` prints for the last complete quest above it, given the transcript's
  "> " lines as input. It must end the quest.
* `<!-- matching -->` before a table of "| `typed` | picks | why |": what typed text picks in
  the start scene of the last complete quest above it ("nothing" for a free action, "the
  built-in command X" for a command); the engine must agree, and a "why" that says "locked"
  must be a locked turn.
* `<!-- measured: texts -->` and `<!-- measured: parts -->` before tables of word and token
  counts, recounted with the real GPT-2 tokenizer.

Every ```text block must be a transcript, and every fenced block has a language, so no
example escapes. Finally, each reference table lists exactly the keys the loader knows, every
key is used in a tested block, and the numbers the guide quotes come from the code.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from game.context import TRIM_CHUNK
from game.diagnostics import GameFileError
from game.engine import Engine
from game.world.parser import best_match, parse, score
from game.personality import DEFAULT_PERSONALITY, KEYS as PERSONALITY_KEYS
from game.personality import MAX_PERSONA_CHARS, load_personalities, load_personality_file
from game.world.loader import check_quest, load_quest
from game.world.schema import (CHOICE_KEYS, CONDITION_KEYS, CONDITIONAL_EFFECT_KEYS, EFFECT_KEYS,
                               ENDING_KEYS, ITEM_KEYS, LORE_KEYS, MAX_CHOICES, MAX_CONDITION_DEPTH,
                               MAX_ENTRIES, MAX_INCLUDES, MAX_QUEST_BYTES, MAX_SCENES, MAX_TEXT,
                               RESPONSE_KEYS, SCENE_KEYS, THING_KEYS, TOP_KEYS, VARIANT_KEYS, VERB_KEYS)
from game.safe_yaml import MAX_BYTES, MAX_VALUES, YList, YMap, load_yaml_text
from game.sampling import SAMPLING_KEYS, Sampling
from tests.conftest import ROOT
from tests.helpers import play_plain, write

GUIDE = ROOT / "docs" / "quests.md"
BUNDLED = ROOT / "quests" / "call-of-the-storyteller.yaml"
FRAGMENT_KINDS = {"quest", "scene", "choice", "condition", "conditions", "effects", "personality"}
SECTIONS = ("flags", "items", "scenes", "endings", "lore")

SKELETON = {
    "id": "example", "title": "Example", "start": "cellar", "max_score": 10,
    "flags": {"door_open": False, "lit": False, "mood": "calm", "offerings": 0},
    "items": {"lantern": {"name": "a brass lantern"}, "key": {"name": "an iron key"},
              "rope": {"name": "a coil of rope"}},
    "scenes": {
        "cellar": {"title": "The Cellar", "description": "A damp cellar.",
                   "exits": [{"label": "North", "to": "hall"}, {"label": "Down", "to": "crypt"}]},
        "hall": {"title": "The Hall", "description": "A hall.", "ending": "found-the-way"},
        "crypt": {"title": "The Crypt", "description": "A crypt.",
                  "exits": [{"label": "Up", "to": "cellar"}]},
    },
    "endings": {"found-the-way": {"title": "Out", "text": "You made it."},
                "drowned": {"title": "Drowned", "text": "The water keeps you.", "outcome": "lose"}},
}


# -- reading the guide -----------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # the opening fence's line, 1-based
    marker: str  # the HTML comment on the line before the fence, or ""

    @property
    def header(self) -> tuple[str, str]:
        """("fragment"|"mistake"|"file", argument), or ("quest", "") for an unmarked block."""
        first = self.text.split("\n", 1)[0].strip()
        m = re.fullmatch(r"#\s*(fragment|mistake|file):\s*(\S+)", first)
        return (m.group(1), m.group(2)) if m else ("quest", "")

    def __str__(self) -> str:
        what = " ".join(self.header).strip() if self.lang == "yaml" else self.marker or self.lang
        return f"docs/quests.md:{self.line} ({what})"


TEXT = GUIDE.read_text(encoding="utf-8")
LINES = TEXT.splitlines()
FLAT = " ".join(TEXT.split())  # the guide with line breaks folded, for quoted phrases


def _marker(index: int) -> str:
    m = re.fullmatch(r"<!--\s*(.*?)\s*-->", LINES[index - 1].strip()) if index else None
    return m.group(1) if m else ""


def read_blocks() -> list[Block]:
    out, i = [], 0
    while i < len(LINES):
        m = re.fullmatch(r"```(\S*)\s*", LINES[i])
        if not m:
            i += 1
            continue
        end = LINES.index("```", i + 1)
        out.append(Block(m.group(1), "\n".join(LINES[i + 1:end]) + "\n", i + 1, _marker(i)))
        i = end + 1
    return out


BLOCKS = read_blocks()
YAML = [b for b in BLOCKS if b.lang == "yaml"]
QUESTS = [b for b in YAML if b.header[0] == "quest"]
FRAGMENTS = [b for b in YAML if b.header[0] == "fragment"]
MISTAKES = [b for b in YAML if b.header[0] == "mistake"]
FILES = [b for b in YAML if b.header[0] == "file"]
TRANSCRIPTS = [b for b in BLOCKS if b.marker == "transcript"]


def table(marker: str) -> tuple[int, list[list[str]]]:
    """The rows (cells stripped, header and rule left out) of the table after a marker."""
    start = next(i for i, line in enumerate(LINES) if line.strip() == f"<!-- {marker} -->")
    rows = []
    for line in LINES[start + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"the table after <!-- {marker} --> is empty"
    return start + 1, rows[2:]


def section(title: str) -> list[str]:
    """The lines of the '### N.N title' section."""
    start = next(i for i, line in enumerate(LINES) if re.fullmatch(rf"### [\d.]+ {re.escape(title)}", line))
    end = next((i for i in range(start + 1, len(LINES)) if LINES[i].startswith("#")), len(LINES))
    return LINES[start + 1:end]


def unquote(cell: str) -> str:
    return cell[1:-1] if cell.startswith("`") and cell.endswith("`") else cell


def quest_before(line: int) -> Block:
    """The last complete quest block above a line of the guide."""
    found = [b for b in QUESTS if b.line < line]
    assert found, f"no complete quest above docs/quests.md:{line}"
    return found[-1]


# -- checking examples -----------------------------------------------------------------

def plain(value):
    """YAML values as plain dicts and lists."""
    if isinstance(value, (YMap, dict)):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (YList, list)):
        return [plain(v) for v in value]
    return value


def wrap(kind: str, data) -> dict:
    """A fragment's data placed into a copy of the skeleton quest."""
    quest = copy.deepcopy(SKELETON)
    start = quest["scenes"]["cellar"]
    if kind == "quest":
        assert isinstance(data, dict), "a quest fragment must be a mapping of top-level keys"
        for key, value in data.items():
            merge = key in SECTIONS and isinstance(value, dict)
            quest[key] = {**quest[key], **value} if merge and key in quest else value
    elif kind == "scene":
        quest["scenes"].update(data)
    elif kind == "choice":
        start["choices"] = data
    elif kind == "condition":
        start["choices"] = [{"label": "Try it", "if": data}]
    elif kind == "conditions":
        assert isinstance(data, list), "a conditions fragment must be a list of conditions"
        start["choices"] = [{"label": f"Example {i + 1}", "if": c} for i, c in enumerate(data)]
    elif kind == "effects":
        start["choices"] = [{"label": "Do it", "effects": data}]
    else:
        raise AssertionError(f"unknown fragment kind '{kind}'; known: {', '.join(sorted(FRAGMENT_KINDS))}")
    return quest


def fragment_problems(kind: str, text: str, folder: Path) -> list:
    """Every problem the game finds in a fragment of the given kind."""
    try:
        data = plain(load_yaml_text(text, "fragment"))
    except GameFileError as exc:
        return exc.problems
    if kind == "personality":
        try:
            load_personality_file(write(folder / "example.yaml", text))
        except GameFileError as exc:
            return exc.problems
        return []
    quest = json.dumps(wrap(kind, data), ensure_ascii=False, indent=1)  # JSON is YAML, too
    return [p for p in check_quest(write(folder / "quest.yaml", quest))[1] if p.severity == "error"]


def formatted(problems) -> str:
    return "\n".join(p.format() for p in problems)


def voice(quest) -> dict:
    """The persona and reply length the validator's budget check uses for a quest."""
    personalities = load_personalities()[0]
    chosen = personalities.get(quest.personality) or personalities[DEFAULT_PERSONALITY]
    return {"persona": chosen.persona, "max_new_tokens": chosen.sampling.max_new_tokens}


def validate_strict(paths: list[Path], capsys) -> None:
    """`storyteller validate --strict` passes: one ok line per quest, nothing else."""
    from game.cli import main

    code = main(["validate", "--strict", *map(str, paths)])
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert captured.err == ""  # not even "the token-budget check is skipped"
    assert code == 0 and len(out) == len(paths) and all(": ok: " in line for line in out), "\n".join(out)


def trimmed(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


# -- every block is tested -------------------------------------------------------------

def test_the_guide_has_examples_of_each_kind():
    assert len(QUESTS) >= 5 and FRAGMENTS and MISTAKES and FILES and TRANSCRIPTS
    assert {b.header[1] for b in FRAGMENTS} == FRAGMENT_KINDS  # each kind is used, so each is tested


def test_every_block_is_one_of_the_tested_kinds():
    for b in BLOCKS:
        assert b.lang in ("yaml", "text", "sh"), f"{b}: give the block a language (yaml, text or sh)"
        if b.lang == "text":
            assert b.marker == "transcript", f"{b}: a text block must be a <!-- transcript -->"
    for b in YAML:
        kind, arg = b.header
        if kind == "quest":
            data = load_yaml_text(b.text, str(b))
            assert isinstance(data, dict) and "id" in data, (
                f"{b}: an unmarked yaml block must be a complete quest (with id:); mark a part "
                f"with '# fragment: KIND' (KIND: {', '.join(sorted(FRAGMENT_KINDS))})")
        elif kind in ("fragment", "mistake"):
            assert arg in FRAGMENT_KINDS, f"{b}: unknown kind '{arg}'"
        else:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+\.yaml", arg), f"{b}: '# file:' needs FOLDER/NAME.yaml"


@pytest.mark.parametrize("block", QUESTS, ids=str)
def test_complete_quest_loads_with_no_problems(block, tmp_path):
    quest, problems = check_quest(write(tmp_path / "quest.yaml", block.text))
    assert quest is not None and problems == [], f"{block}:\n{formatted(problems)}"


def test_complete_and_folder_quests_pass_strict_validate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths print short; each file is named after its line in the guide
    paths = [write(tmp_path / f"guide-line-{b.line}.yaml", b.text) for b in QUESTS]
    for b in FILES:
        write(tmp_path / b.header[1], b.text)
    paths += sorted({tmp_path / b.header[1].split("/")[0] for b in FILES})
    validate_strict(paths, capsys)


@pytest.mark.parametrize("block", FRAGMENTS, ids=str)
def test_fragment_validates(block, tmp_path):
    problems = fragment_problems(block.header[1], block.text, tmp_path)
    assert problems == [], f"{block}:\n{formatted(problems)}"


@pytest.mark.parametrize("block", MISTAKES, ids=str)
def test_mistake_is_reported(block, tmp_path):
    problems = fragment_problems(block.header[1], block.text, tmp_path)
    assert problems, f"{block} shows a mistake, but the game accepts it"
    says = re.match(r"#\s*validate says:\s*(.+)", block.text.split("\n")[1].strip())
    if says:
        assert any(says.group(1) in p.message for p in problems), (
            f"{block}: the guide quotes '{says.group(1)}', the game says:\n{formatted(problems)}")


def test_folder_quests_load_with_every_file(tmp_path):
    for b in FILES:
        write(tmp_path / b.header[1], b.text)
    for folder in sorted({b.header[1].split("/")[0] for b in FILES}):
        quest, problems = check_quest(tmp_path / folder)
        assert quest is not None and problems == [], f"folder quest '{folder}':\n{formatted(problems)}"
        written = {b.header[1] for b in FILES if b.header[1].startswith(folder + "/")}
        assert {f"{folder}/{f.name}" for f in quest.files} == written  # include: reads them all


# -- play ------------------------------------------------------------------------------

@pytest.mark.parametrize("block", TRANSCRIPTS, ids=str)
def test_transcript_is_what_plain_mode_prints(block, tmp_path):
    path = write(tmp_path / "quest.yaml", quest_before(block.line).text)
    actions = [line[2:] for line in block.text.splitlines() if line.startswith("> ")]
    result = play_plain(path, actions)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    got, want = trimmed(result.stdout), trimmed(block.text)
    assert got == want, f"{block} differs from the game's output:\n" + "\n".join(
        difflib.unified_diff(want, got, "guide", "game", lineterm=""))
    assert got[-1] == "THE END"


def test_the_tutorials_final_quest_is_the_one_played_to_its_ending():
    reference = next(i for i, line in enumerate(LINES, 1) if line.startswith("## 4."))
    final = [b for b in QUESTS if b.line < reference][-1]
    assert any(quest_before(t.line) == final for t in TRANSCRIPTS)
    assert "You won." in TRANSCRIPTS[0].text


def test_matching_table_is_what_the_parser_picks(tmp_path):
    line, rows = table("matching")
    quest = load_quest(write(tmp_path / "quest.yaml", quest_before(line).text))
    for typed, picks, why in rows:
        typed = unquote(typed)
        engine = Engine(quest, seed=1)
        command = parse(typed)
        if picks.startswith("the built-in command "):
            got = f"the built-in command {command.kind}"
        elif command.kind == "number":
            got = engine.available()[command.number - 1].label
        else:
            assert command.kind == "text", f"'{typed}' is the built-in command {command.kind}"
            offered = [c for c in engine.scene.choices if c.key not in engine.state.used]  # hidden ones too
            match = best_match(command.text, offered, quest)
            open_now = best_match(command.text, engine.available(), quest)  # an open one wins a tie
            if open_now is not None and score(command.text, open_now, quest) >= score(command.text, match, quest):
                match = open_now
            got = match.label if match else "nothing"
        assert got == picks, f"docs/quests.md: typing '{typed}' picks '{got}', the guide says '{picks}'"
        result = engine.act(typed)
        assert (result.kind == "locked") == ("locked" in why), f"typing '{typed}' gives a {result.kind} turn"
        if result.kind == "locked":
            assert result.paragraphs[0].text == match.locked
        if picks == "nothing":
            assert result.kind == "free"


@pytest.fixture
def tutorial(tmp_path) -> Path:
    """The tutorial's final quest (the one its first transcript plays), in a file."""
    return write(tmp_path / "quest.yaml", quest_before(TRANSCRIPTS[0].line).text)


def test_state_card_example_is_the_narrators(tutorial):
    from game.narration import state_card

    engine = Engine(load_quest(tutorial), seed=1)
    for action, kind in [("stone", "choice"), ("2", "exit"), ("wind", "choice"), ("wind", "choice"),
                         ("open the shutters", "choice")]:
        assert engine.act(action).kind == kind, action
    shown = re.search(r"(\[Scene: [^`]+\])`", TEXT).group(1)
    assert state_card(engine).render() == shown


# -- the reference is complete ---------------------------------------------------------

REFERENCE_TABLES = {
    "The quest (top level)": TOP_KEYS, "Items": ITEM_KEYS, "Scenes": SCENE_KEYS,
    "Choices and exits": CHOICE_KEYS, "Conditions": set(CONDITION_KEYS), "Effects": set(EFFECT_KEYS),
    "Endings": ENDING_KEYS, "Lore": LORE_KEYS, "Responses and catch-alls": RESPONSE_KEYS,
    "Things and their verbs": THING_KEYS,
}


@pytest.mark.parametrize("title", REFERENCE_TABLES)
def test_reference_table_lists_exactly_the_loaders_keys(title):
    rows = [line for line in section(title) if re.match(r"\| `", line)]
    listed = {unquote(row.strip("|").split("|")[0].strip()) for row in rows}
    known = REFERENCE_TABLES[title]
    assert listed == set(known), (f"section '{title}': missing {sorted(set(known) - listed)}, "
                                  f"not known to the loader {sorted(listed - set(known))}")


def test_every_key_is_named_and_used_in_a_tested_example():
    tested = "\n".join(b.text for b in YAML if b.header[0] != "mistake")
    keys = (set(TOP_KEYS) | SCENE_KEYS | CHOICE_KEYS | set(CONDITION_KEYS) | set(EFFECT_KEYS)
            | ITEM_KEYS | ENDING_KEYS | LORE_KEYS | set(PERSONALITY_KEYS) | set(SAMPLING_KEYS)
            | RESPONSE_KEYS | THING_KEYS | VERB_KEYS | VARIANT_KEYS | CONDITIONAL_EFFECT_KEYS)
    for key in sorted(keys):
        assert f"`{key}`" in TEXT, f"the guide never names `{key}`"
        used = re.search(rf"(^|[\s{{\[,-]){re.escape(key)}:", tested, re.M)
        assert used, f"no tested example uses '{key}:'"


def test_bundled_personalities_are_described():
    personalities, problems = load_personalities()
    assert problems == []
    for pid, p in personalities.items():
        row = next((line for line in LINES if line.startswith(f"| `{pid}` |")), None)
        assert row is not None, f"the personalities table has no row for `{pid}`"
        assert p.name in row and f"up to {p.sampling.max_new_tokens} tokens" in row, row


def test_parser_words_are_the_parsers():
    from game.world.parser import COMMANDS, DIRECTIONS, GO_VERBS, STOPWORDS, VERBS

    listed = re.search(r"and that never need to be typed, are: \*([^*]+)\*", FLAT)
    assert listed and set(listed.group(1).split(", ")) == STOPWORDS
    verbs = re.search(r"common verbs \(([^)]+), \.\.\.\)", FLAT).group(1).split(", ")
    go_verbs = re.search(r"a verb such as ([^.]+?) or (\w+), plus", FLAT)
    assert set(verbs) <= VERBS and set(go_verbs.group(1).split(", ") + [go_verbs.group(2)]) <= GO_VERBS
    for command, words in {"look": ["look", "l", "look around"], "inventory": ["inventory", "i", "inv"],
                           "help": ["help", "h", "?"], "wait": ["wait", "z"], "again": ["again", "g"]}.items():
        assert all(COMMANDS[w] == command and f"`{w}`" in TEXT for w in words), command
    assert all(f"`{d}`" in TEXT for d in DIRECTIONS)
    from game.world.parser import VERB_ALIASES

    for typed in ("x", "get", "hang", "wear", "read", "use", "drop"):  # the Inform verbs section 5 names
        assert typed in VERB_ALIASES and re.search(rf"`{typed}[ `]", TEXT), typed


# -- numbers ---------------------------------------------------------------------------

def test_quoted_numbers_come_from_the_code():
    from game.cli import build_parser
    from game.narrator.model_builder import DISTILGPT2_SHAPE
    from game.world.lint import lint

    window, reply = DISTILGPT2_SHAPE["n_positions"], Sampling().max_new_tokens
    min_room = build_parser().parse_args(["validate", "x"]).min_room
    assert min_room == inspect.signature(lint).parameters["min_room"].default
    phrases = [
        f"look at **{window} tokens** at once",
        f"up to **{reply} tokens** long, which leaves {window - reply} for the prompt",
        f"the oldest turns of the story, {TRIM_CHUNK} turns at a time",
        f"warns when fewer than {min_room} tokens are left for the story",
        f"A persona may be at most {MAX_PERSONA_CHARS:,} characters",
        f"at most {MAX_SCENES:,} scenes, {MAX_CHOICES} choices (and {MAX_CHOICES} exits) per scene, "
        f"{MAX_ENTRIES:,} items, flags, endings or lore entries each, {MAX_INCLUDES} included files, "
        f"conditions nested {MAX_CONDITION_DEPTH} deep, {MAX_TEXT:,} characters in one text, "
        f"{MAX_BYTES // 1_000_000} MB per file, and {MAX_QUEST_BYTES // 1_000_000} MB or "
        f"{MAX_VALUES:,} values for the whole quest",
    ]
    for phrase in phrases:
        assert phrase in FLAT, f"docs/quests.md should say: {phrase}"


def test_measured_texts_are_real_token_counts(gpt2_tokenizer):
    _, rows = table("measured: texts")
    for text, words, tokens in rows:
        text = unquote(text)
        real = (len(text.split()), len(gpt2_tokenizer.encode(text)))
        assert (int(words), int(tokens)) == real, f"'{text[:40]}...': words and tokens are {real}"


def test_measured_parts_are_real_token_counts(gpt2_tokenizer):
    count = lambda text: len(gpt2_tokenizer.encode(text))  # noqa: E731
    personalities = load_personalities()[0]
    quest = load_quest(BUNDLED)
    description = max(((sid, d) for sid, s in quest.scenes.items() for d in s.descriptions),
                      key=lambda x: count(x[1]))
    hints = max(((sid, "; ".join(s.hints)) for sid, s in quest.scenes.items()), key=lambda x: count(x[1]))
    parts = {
        "the Storyteller Spirit's persona": personalities["storyteller-spirit"].persona,
        "the Grim Chronicler's persona": personalities["grim-chronicler"].persona,
        "the Merry Bard's persona": personalities["merry-bard"].persona,
        f"the bundled quest's longest description (scene `{description[0]}`)": description[1],
        f"the bundled quest's longest hints (scene `{hints[0]}`)": hints[1],
        "the bundled quest's author's note": quest.author_note,
    }
    russian = load_quest(ROOT / "quests" / "skazitel.yaml")
    sid, text = max(((sid, d) for sid, s in russian.scenes.items() for d in s.descriptions),
                    key=lambda x: count(x[1]))
    parts[f"the Russian quest's longest description (scene `{sid}`)"] = text
    words = {w for s in russian.scenes.values() for c in s.choices for w in c.words}
    assert {"хворост", "хвороста", "берёзы", "березы"} <= words  # the forms section 5 quotes
    _, rows = table("measured: parts")
    want = {label: [str(len(text.split())), str(count(text))] for label, text in parts.items()}
    assert {row[0]: row[1:] for row in rows} == want


def _fixed_tokens(path: Path, tokenizer) -> tuple[int, int]:
    """The validator's worst case over a quest's scenes: (fixed tokens, tokens left)."""
    from game.world.lint import budget_warnings

    quest = load_quest(path)
    found = [re.search(r"take (\d+) tokens, leaving (-?\d+)", w.message)
             for w in budget_warnings(quest, tokenizer, min_room=1 << 20, **voice(quest))]
    return max((int(m.group(1)), int(m.group(2))) for m in found)


def test_budget_numbers_are_the_validators(tutorial, gpt2_tokenizer):
    fixed, left = _fixed_tokens(BUNDLED, gpt2_tokenizer)
    assert f"come to at most **{fixed} tokens**" in FLAT and f"that leaves **{left}**" in FLAT, (fixed, left)
    fixed, left = _fixed_tokens(tutorial, gpt2_tokenizer)
    assert f"fullest scene comes to {fixed} tokens, which leaves {left}" in FLAT, (fixed, left)
