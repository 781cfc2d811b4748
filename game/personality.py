"""Personalities: the narrator's voice, a persona text bundled with its sampling.

Presets ship in ``assets/personalities/<id>.yaml``; players add their own in the
config folder's ``personalities/`` (see `game.locations`), and a player's file
with a preset's id replaces that preset. A file holds::

    name: The Grim Chronicler            # shown on the settings screen
    description: Terse and dark.         # one line, shown under the name
    persona: >                           # short prose the model continues
      The Grim Chronicler ...
    sampling:                            # optional; left-out keys keep defaults
      temperature: 0.6

Every key is checked (unknown keys get a did-you-mean, values outside
`game.sampling.RANGES` name the allowed range). A bad file is reported with
file:line:col and skipped; it never stops the game. This module also owns the
checks of a ``sampling:`` block and of persona text, which settings files reuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from game import locations
from game.diagnostics import GameFileError, Problem, Report, did_you_mean, display_path
from game.safe_yaml import Mark, load_yaml_file
from game.sampling import RANGES, SAMPLING_KEYS, Sampling, check_value

DEFAULT_PERSONALITY = "storyteller-spirit"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_PERSONA_CHARS = 2000  # about 450 tokens: under half of distilgpt2's 1024-token window
MAX_FILE_BYTES = 64_000
KEYS = ("name", "description", "persona", "sampling")
REQUIRED = ("name", "persona")


@dataclass(frozen=True)
class Personality:
    id: str
    name: str
    description: str
    persona: str
    sampling: Sampling
    source: str = ""  # the file it came from, as shown to the player ("" = built in)


# Used only when the preset files are missing (a broken install), so the game still talks.
FALLBACK = Personality(
    DEFAULT_PERSONALITY, "The Storyteller Spirit", "An ancient voice of the digital realm.",
    "The Storyteller Spirit is an ancient voice from the ruins of the digital realm. "
    "It tells you what you see and feel, in a few vivid sentences.", Sampling())


def unknown_key_message(key: str, known, where: str, sampling_inside: bool = False) -> str:
    """Says a key is unknown, with a did-you-mean and the allowed keys.

    With `sampling_inside` (the file has a ``sampling:`` block), a sampling
    setting written at the top level is pointed to that block.
    """
    hint = did_you_mean(key, known)
    if sampling_inside and not hint and (key in RANGES or did_you_mean(key, SAMPLING_KEYS)):
        hint = "" if key in RANGES else did_you_mean(key, SAMPLING_KEYS)
        return (f"'{key}'{hint} is a sampling setting: put it on an indented line "
                f"under 'sampling:'")
    return f"unknown key '{key}' in {where}{hint}; allowed keys: {', '.join(known)}"


def check_persona(text) -> str | None:
    """None if `text` is usable persona text, else what is wrong with it."""
    if not isinstance(text, str):
        return "persona must be text; write it on the indented lines after 'persona: >'"
    if not text.strip():
        return "persona is empty; write a few sentences describing the narrator"
    if len(text) > MAX_PERSONA_CHARS:
        return (f"persona is {len(text)} characters long; keep it under {MAX_PERSONA_CHARS} "
                "(a few sentences), or the model has no room left for the story")
    return None


def check_sampling_block(block, mark: Mark, report: Report, where: str = "sampling",
                         then: str = "") -> dict:
    """The valid values of a ``sampling:`` mapping from a file; each bad entry is reported.

    `then` is added to each message to say what the game does instead.
    """
    if block is None:
        return {}
    if not isinstance(block, dict):
        report.error(mark.line, mark.col,
                     f"'{where}' must be a mapping, one setting per indented line, "
                     f"like '  temperature: 0.8'{then}")
        return {}
    values = {}
    for key, value in block.items():
        if key not in RANGES:
            m = block.key_mark(key)
            message = unknown_key_message(key, SAMPLING_KEYS, f"'{where}'")
            report.error(m.line, m.col, message + then)
            continue
        checked, message = check_value(key, value)
        if message:
            m = block.value_mark(key)
            report.error(m.line, m.col, f"{message} ({RANGES[key][3]}){then}")
        else:
            values[key] = checked
    return values


def load_personality_file(path: Path) -> Personality:
    """Read and check one personality file; raise GameFileError listing every problem."""
    shown = display_path(path)
    pid = path.stem
    report = Report(shown)
    if not ID_PATTERN.fullmatch(pid):
        suggestion = re.sub(r"[^a-z0-9_-]+", "-", pid.lower()).strip("-_") or "my-voice"
        report.error(1, 1, f"the file name '{path.name}' is the personality's id and may use only "
                           f"lower-case letters, digits, '-' and '_'; rename it, e.g. to "
                           f"'{suggestion}{path.suffix}'")
    try:
        data = load_yaml_file(path, shown, max_bytes=MAX_FILE_BYTES)
    except GameFileError as exc:
        raise GameFileError(report.problems + exc.problems) from None
    if not isinstance(data, dict):
        raise GameFileError(report.problems + [Problem(
            shown, 1, 1, "a personality file must be a mapping with the keys "
                         f"{', '.join(KEYS)} (one 'key: value' per line)")])
    for key in data:
        if key not in KEYS:
            m = data.key_mark(key)
            report.error(m.line, m.col, unknown_key_message(key, KEYS, "a personality file", True))
    for key in REQUIRED:
        if key not in data:
            report.error(data.mark.line, data.mark.col, f"missing '{key}:'; add it")
    for key in ("name", "description"):
        value = data.get(key, "")
        m = data.value_mark(key)
        if not isinstance(value, str):
            report.error(m.line, m.col, f"'{key}' must be text; put it in quotes")
        elif "\n" in value.strip():
            report.error(m.line, m.col, f"'{key}' must fit on one line")
        elif key == "name" and "name" in data and not value.strip():
            report.error(m.line, m.col, "'name' is empty; give the personality a name")
    if "persona" in data and (message := check_persona(data["persona"])):
        m = data.value_mark("persona")
        report.error(m.line, m.col, message)
    sampling = check_sampling_block(data.get("sampling"), data.value_mark("sampling"), report)
    if report.errors:
        raise GameFileError(report.problems)
    return Personality(pid, data["name"].strip(), str(data.get("description", "")).strip(),
                       data["persona"].strip(), Sampling(**sampling), shown)


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    except OSError:
        return []


def load_personalities(preset_dir: Path | None = None, user_dir: Path | None = None
                       ) -> tuple[dict[str, Personality], list[Problem]]:
    """All personalities, default first, then by id; bad files become problems, never errors.

    Player files (``user_dir``, default: the config folder's personalities/) replace
    presets (``preset_dir``, default: assets/personalities) with the same id.
    """
    preset_dir = locations.preset_personalities_dir() if preset_dir is None else Path(preset_dir)
    user_dir = locations.user_personalities_dir() if user_dir is None else Path(user_dir)
    found: dict[str, Personality] = {}
    problems: list[Problem] = []
    for folder in (preset_dir, user_dir):
        seen: dict[str, Path] = {}
        for path in _files(folder):
            if path.stem in seen:
                problems.append(Problem(display_path(path), 1, 1,
                                        f"'{seen[path.stem].name}' already defines the personality "
                                        f"'{path.stem}'; this file is ignored, remove one of them",
                                        "warning"))
                continue
            seen[path.stem] = path
            try:
                personality = load_personality_file(path)
            except GameFileError as exc:
                problems.extend(exc.problems)
                continue
            found[personality.id] = personality
    if DEFAULT_PERSONALITY not in found:
        problems.append(Problem(display_path(preset_dir / f"{DEFAULT_PERSONALITY}.yaml"), 1, 1,
                                "the default personality is missing or broken; using a built-in "
                                "stand-in (reinstall the game to restore it)", "warning"))
        found[DEFAULT_PERSONALITY] = FALLBACK
    ordered = {DEFAULT_PERSONALITY: found.pop(DEFAULT_PERSONALITY)}
    ordered.update(sorted(found.items()))
    return ordered, problems
