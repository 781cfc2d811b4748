"""The player's settings: the immutable `Settings` and the commented settings.yaml.

``settings.yaml`` lives in the config folder (`game.locations.settings_file`). It
is created on first run with every key explained for non-programmers, and
`save_settings` rewrites only the settings that change, in place, keeping every
other line and comment of the player's file.
A bad file never stops the game: each problem is reported with file:line:col and
the default is used for that value (all defaults for a YAML syntax error); the
file itself is left untouched. `Settings.with_changes` validates like the file
does and raises ValueError with a message fit for the settings screen.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from game import locations
from game.atomic import write_atomic
from game.diagnostics import GameFileError, Problem, Report, display_path
from game.personality import (DEFAULT_PERSONALITY, ID_PATTERN, Personality, check_persona,
                              check_sampling_block, did_you_mean, unknown_key_message)
from game.safe_text import inert_line
from game.safe_yaml import load_yaml_file
from game.sampling import RANGES, SAMPLING_KEYS, SEED_MAX, Sampling, check_value
from game.i18n import SETTINGS as LANGUAGE_SETTINGS

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # as game.narrator.precision.PRECISIONS (no torch here)
MAX_FILE_BYTES = 64_000


def _choice(name: str, options: tuple[str, ...]):
    def check(value):
        if value not in options:
            raise ValueError(f"{name} is {value!r}{did_you_mean(value, options)}; "
                             f"choose one of: {', '.join(options)}")
        return value
    return check


def _personality(value):
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"personality is {value!r}; it must be a personality id such as "
                         f"'{DEFAULT_PERSONALITY}' (lower-case letters, digits, '-' and '_')")
    return value


def _persona(value):
    if value is None:
        return None
    if message := check_persona(value):
        raise ValueError(f"{message}; or write null to use the personality's own")
    return value.strip()


def _sampling(value):
    if not isinstance(value, Mapping):
        raise ValueError("sampling must be a mapping of sampling settings, like 'temperature: 0.9'")
    checked = {}
    for key, item in value.items():
        if key not in RANGES:
            raise ValueError(unknown_key_message(key, SAMPLING_KEYS, "sampling"))
        checked[key], message = check_value(key, item)
        if message:
            raise ValueError(message)
    return MappingProxyType(checked)


def _model(value):
    if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
        raise ValueError("model must be a model name such as 'distilgpt2' or the path of a "
                         "model folder, on one line")
    return value.strip()


def _seed(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ValueError(f"seed is {value!r}; it must be null (a new story every time) or a "
                         f"whole number from 0 to {SEED_MAX}")
    return value


def _autosave(value):
    if not isinstance(value, bool):
        raise ValueError(f"autosave is {value!r}; it must be true or false")
    return value


# Actions whose keys never fire while the player types (their screens have no text input).
TYPING_FREE_ACTIONS = frozenset({"rescan"})
MODIFIERS = ("ctrl", "alt", "meta", "super", "hyper")
_KEY_NAME = re.compile(r"^[a-z0-9_+\-]+$|^[^\W_]$|^[!-~]$")


@functools.cache
def _printable_names() -> frozenset[str]:
    """Textual's names of the keys that type ASCII ('slash', 'minus', 'at' ...): asked when a
    binding is checked, so loading settings does not import Textual."""
    from textual.keys import _character_to_key

    return frozenset(_character_to_key(chr(c)) for c in range(0x20, 0x7f))


def printable_key(key: str) -> bool:
    """Whether a key name, without a modifier, types a character ('e', 'E', 'space', 'full_stop')."""
    *mods, last = key.split("+")
    if any(m in MODIFIERS for m in mods):
        return False
    if len(last) == 1:
        return last.isprintable()
    if last in _printable_names():  # Textual's own names: 'slash', 'minus', 'at', 'less_than_sign' ...
        return True
    try:
        char = unicodedata.lookup(last.replace("_", " ").upper())
    except KeyError:
        return False
    return char.isprintable()


def check_key(action: str, key: str) -> str | None:
    """Why `key` (one name or several, comma-separated) cannot be bound to `action`, or None."""
    shown = repr(inert_line(key))
    for name in key.split(","):
        name = name.strip()
        if not name or not name.isprintable() or not _KEY_NAME.match(name.lower()):
            return (f"the key for '{inert_line(action)}' is {shown}, which is not a key name "
                    "(it holds a control character, a space or a symbol); write one such as 'ctrl+q'")
        if action not in TYPING_FREE_ACTIONS and printable_key(name):
            return (f"the key for '{inert_line(action)}' is {shown}, which types a character: it would "
                    "fire while you type an action; add a modifier, such as 'ctrl+" + name + "'")
    return None


def _keys(value):
    if not isinstance(value, Mapping):
        raise ValueError("keys must be a mapping of 'action: key' lines, like 'quit: ctrl+q'")
    for action, key in value.items():
        if not isinstance(action, str) or not isinstance(key, str) or not key.strip():
            raise ValueError(f"keys: the key for {inert_line(repr(action))} is {inert_line(repr(key))}; "
                             "write a key name such as 'ctrl+q' (in quotes if it is a number)")
        if problem := check_key(action, key.strip()):
            raise ValueError(f"keys: {problem}")
    return MappingProxyType({action: key.strip() for action, key in value.items()})


SERVER_KEYS = ("url", "model", "api_style", "window", "timeout", "api_key_env", "tokenizer")


def _server(value):
    """The `server:` section: where an OpenAI-compatible inference server narrates (docs/narrators.md).

    Each key is checked like `game.narrator.remote.ServerConfig` checks it; no url means the
    local model narrates. The API key itself is never a setting, only the name of the
    environment variable that holds it."""
    if value is None or (isinstance(value, Mapping) and not value):  # the usual case: no server,
        return MappingProxyType({})  # so no import of the server narrator (and ssl) at launch
    if not isinstance(value, Mapping):
        raise ValueError("server must be a mapping of server settings, like 'url: http://127.0.0.1:8080/v1', "
                         "or null to narrate on this computer")
    for key in value:
        if key not in SERVER_KEYS:
            if key in ("api_key", "key", "token", "password"):
                raise ValueError(f"server: '{key}' cannot be a setting: the key must not be written in a "
                                 "file; put it in an environment variable and name that variable in "
                                 "api_key_env (default STORYTELLER_API_KEY)")
            raise ValueError(unknown_key_message(key, SERVER_KEYS, "server"))
    from game.narrator.remote import ServerConfig

    checked = {k: value[k] for k in SERVER_KEYS if k in value}
    given = {k: v for k, v in checked.items() if v is not None}
    try:
        ServerConfig(**{"url": "http://127.0.0.1/v1", **given})
    except ValueError as error:
        raise ValueError(f"server: {error}") from None
    return MappingProxyType(checked)


_CHECKS = {
    "personality": _personality,
    "persona": _persona,
    "sampling": _sampling,
    "model": _model,
    "device": _choice("device", DEVICES),
    "dtype": _choice("dtype", DTYPES),
    "precision": _choice("precision", PRECISIONS),
    "seed": _seed,
    "autosave": _autosave,
    "keys": _keys,
    "language": _choice("language", LANGUAGE_SETTINGS),
    "server": _server,
}


@dataclass(frozen=True)
class Settings:
    """Validated, immutable settings; build changed copies with `with_changes`."""

    personality: str = DEFAULT_PERSONALITY
    persona: str | None = None  # replaces the personality's persona text when set
    sampling: Mapping[str, float | int] = field(default_factory=dict)  # over the personality's
    model: str = "distilgpt2"
    device: str = "auto"
    dtype: str = "auto"
    precision: str = "auto"
    seed: int | None = None
    autosave: bool = True
    keys: Mapping[str, str] = field(default_factory=dict)  # action id -> key
    language: str = "auto"  # the game's own words: auto (the quest's language), en or ru
    server: Mapping[str, object] = field(default_factory=dict)  # see _server; no url: the local model

    def __post_init__(self):
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))

    def __hash__(self):
        return hash(tuple(tuple(sorted(v.items())) if isinstance(v, Mapping) else v
                          for v in (getattr(self, f.name) for f in fields(self))))

    def with_changes(self, **changes) -> "Settings":
        """A copy with changes, validated; raises ValueError saying what is allowed.

        Sampling keys may be given directly (``temperature=0.9``) to set one
        override; ``temperature=None`` removes it, back to the personality's value.
        """
        sampling = dict(_sampling(changes.pop("sampling", self.sampling)))
        for key in [k for k in changes if k in RANGES]:
            value = changes.pop(key)
            if value is None:
                sampling.pop(key, None)
            else:
                sampling[key] = value
        for key in changes:
            if key not in _CHECKS:
                raise ValueError(unknown_key_message(key, tuple(_CHECKS) + SAMPLING_KEYS,
                                                     "settings"))
        return replace(self, sampling=sampling, **changes)

    def server_config(self, url: str | None = None, model: str | None = None):
        """The `game.narrator.remote.ServerConfig` of the server that narrates, or None for the
        local model; `url` and `model` (from --server and --server-model) win over the file.
        Raises ValueError for a bad --server URL."""
        values = {k: v for k, v in self.server.items() if v is not None}
        if url is not None:
            values["url"] = url
        if model is not None:
            values["model"] = model
        if not values.get("url"):
            return None
        from game.narrator.remote import ServerConfig

        return ServerConfig(**values)

    def active_personality(self, personalities: Mapping[str, Personality]) -> Personality:
        """The chosen personality, or the default one if it is not installed."""
        return personalities.get(self.personality) or personalities[DEFAULT_PERSONALITY]

    def effective_sampling(self, personalities: Mapping[str, Personality]) -> tuple[str, Sampling]:
        """The final (persona text, Sampling): the personality with this file's overrides."""
        chosen = self.active_personality(personalities)
        return (self.persona or chosen.persona), chosen.sampling.with_values(**self.sampling)


def load_settings(path: Path | None = None,
                  personalities: Mapping[str, Personality] | None = None
                  ) -> tuple[Settings, list[Problem]]:
    """Read settings.yaml (creating it with commented defaults if missing).

    Bad values are reported and replaced by defaults; the file is never rewritten
    here. With `personalities`, an unknown personality id is reported too.
    """
    path = locations.settings_file() if path is None else Path(path)
    shown = display_path(path)
    if not path.exists() and not path.is_symlink():
        try:
            save_settings(Settings(), path)
        except OSError as exc:
            return Settings(), [Problem(shown, 1, 1, f"could not create the settings file "
                                        f"({exc.strerror or exc}); using the defaults", "warning")]
        return Settings(), []
    try:
        data = load_yaml_file(path, shown, max_bytes=MAX_FILE_BYTES, empty_ok=True)
    except GameFileError as exc:
        return Settings(), exc.problems + [Problem(
            shown, exc.first.line, exc.first.col, "the whole file was ignored and the default "
            "settings are used until this is fixed", "warning")]
    if data is None:
        return Settings(), []
    if not isinstance(data, dict):
        line = data.mark.line if hasattr(data, "mark") else 1
        return Settings(), [Problem(shown, line, 1, "the settings file must be 'name: value' "
                                                    "lines; using the defaults")]
    report = Report(shown)
    values = {}
    for key, value in data.items():
        km, vm = data.key_mark(key), data.value_mark(key)
        if key not in _CHECKS:
            report.error(km.line, km.col,
                         unknown_key_message(key, tuple(_CHECKS), "the settings", True))
        elif key == "sampling":
            values[key] = check_sampling_block(value, vm, report,
                                               then="; the personality's value is used")
        elif key == "keys" and isinstance(value, dict):
            values[key] = _file_keys(value, report)
        elif key == "server" and isinstance(value, dict):
            values[key] = _file_server(value, report)
        else:
            try:
                values[key] = _CHECKS[key](value)
            except ValueError as exc:
                default = _entry(key, getattr(Settings(), key)).partition(":")[2].strip()
                report.error(vm.line, vm.col, f"{exc}; using the default: {default}")
    settings = Settings(**values)
    if personalities is not None and settings.personality not in personalities:
        m = data.value_mark("personality")
        report.error(m.line, m.col, f"there is no personality '{settings.personality}'"
                     f"{did_you_mean(settings.personality, personalities)}; installed: "
                     f"{', '.join(personalities)}; using '{DEFAULT_PERSONALITY}'")
        settings = settings.with_changes(personality=DEFAULT_PERSONALITY)
    return settings, report.problems


def _file_keys(block, report: Report) -> dict:
    good = {}
    for action, key in block.items():
        try:
            good.update(_keys({action: key}))
        except ValueError as exc:
            m = block.value_mark(action)
            report.error(m.line, m.col, f"{exc}; this binding is ignored")
    return good


def _file_server(block, report: Report):
    """The server section, each bad key reported at its own line and left out."""
    good = {}
    for key, value in block.items():
        try:
            good.update(_server({key: value}))
        except ValueError as exc:
            m = block.value_mark(key) if key in SERVER_KEYS else block.key_mark(key)
            report.error(m.line, m.col, f"{exc}; this server setting is ignored")
    return _server(good)


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write settings atomically, keeping the file as the player left it.

    Only the settings whose value changes (or was wrong in the file) are rewritten, each
    in place; every other line, comments included, stays as it was. A missing or
    unreadable file is written as the commented template filled with the values.
    """
    path = locations.settings_file() if path is None else Path(path)
    write_atomic(path, merged_settings_text(settings, path))


def merged_settings_text(settings: Settings, path: Path) -> str:
    """The settings file's text with `settings` merged in (see `save_settings`)."""
    from game.safe_yaml import YMap, load_yaml_text, read_text

    shown = display_path(path)
    try:
        text = read_text(path, shown, MAX_FILE_BYTES)
        data = load_yaml_text(text, shown, empty_ok=True)
    except (GameFileError, OSError):
        return render_settings(settings)
    if not isinstance(data, YMap):
        return render_settings(settings)
    before, problems = load_settings(path)
    lines = text.splitlines(keepends=True)
    starts = sorted((data.key_mark(k).line - 1, k) for k in data)
    if len({line for line, _key in starts}) < len(starts) or any(data.key_mark(k).col != 1 for k in data):
        return render_settings(settings)  # not one setting a line ({...} flow style): write it afresh
    blocks = {}
    for i, (start, key) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1  # notes above the next setting belong to it
        blocks[key] = (start, end)
    wrong = {p.line - 1 for p in problems if p.severity == "error"}
    replace_at, append = {}, []
    for f in fields(Settings):
        new, old = getattr(settings, f.name), getattr(before, f.name)
        same = (dict(new) == dict(old)) if isinstance(new, Mapping) else new == old
        if f.name in blocks:
            start, end = blocks[f.name]
            if not same or any(start <= line < end for line in wrong):
                replace_at[start] = (end, _entry(f.name, new))
        elif not same:
            append.append(_entry(f.name, new))
    out, i = [], 0
    while i < len(lines):
        if i in replace_at:
            end, entry = replace_at[i]
            out.append(entry)
            i = max(end, i + 1)
        else:
            out.append(lines[i])
            i += 1
    if append and out and not out[-1].endswith("\n"):
        out.append("\n")
    return "".join(out + append)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text as a '|' block, so a persona stays readable.

    Text with line breaks other than '\\n' is double-quoted: PyYAML's other styles
    would turn them into spaces or newlines on the way back.
    """


def _represent_text(dumper: yaml.SafeDumper, text: str):
    style = ('"' if any(c in text for c in "\r\x85\u2028\u2029")
             else "|" if "\n" in text else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def _entry(key: str, value) -> str:
    if isinstance(value, Mapping):
        value = dict(value)
    return yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)


def render_settings(settings: Settings) -> str:
    """The settings file text: every key with its explanation and current value."""
    presets = sorted(p.stem for p in locations.preset_personalities_dir().glob("*.yaml"))
    others = [p for p in presets if p != DEFAULT_PERSONALITY]
    ranges = "\n".join(f"#     {name}: {lo:g} to {hi:g} - {help}"
                       for name, (_, lo, hi, help) in RANGES.items())
    return f"""\
# Storyteller settings
#
# This is a plain text file. Each setting is one line "name: value"; lines
# starting with "#" are notes for you, and the game ignores them. Most settings
# can also be changed on the settings screen in the game, which rewrites only
# the settings you change there (your notes are kept). If something here is wrong, the
# game tells you the line and uses the default for that setting. Delete this
# file to get all the defaults back.

# The narrator's voice: a short description of the narrator ("persona") plus
# how it picks its words. The built-in voices:
#   {", ".join([DEFAULT_PERSONALITY + " (the default)"] + others)}
# To make your own voice, copy one of the built-in files from
#   {locations.preset_personalities_dir()}
# into
#   {locations.user_personalities_dir()}
# give the copy a new file name (the name without .yaml is what goes here)
# and edit it.
{_entry("personality", settings.personality)}
# Your own description of the narrator, used instead of the personality's.
# null means: use the personality's own. To write one, replace null with ">"
# and put a few sentences on indented lines below it, for example:
#   persona: >
#     An old lighthouse keeper tells you what happens next, slowly and kindly.
{_entry("persona", settings.persona)}
# Fine-tune how the narrator picks its words. A value set here replaces the
# personality's own; {{}} means: use the personality's values. To change one,
# write the setting on an indented line under "sampling:", for example:
#   sampling:
#     temperature: 0.9
# The settings, with their allowed range and what they do:
{ranges}
{_entry("sampling", settings.sampling)}
# The language model that narrates. "distilgpt2" is downloaded from Hugging
# Face the first time you play; you can also give the path of a model folder.
{_entry("model", settings.model)}
# Where the model runs: auto (the graphics card if there is one, otherwise the
# processor), cpu (the processor), or cuda (an NVIDIA graphics card).
{_entry("device", settings.device)}
# How precisely the model stores its numbers: auto, float32, bfloat16 or
# float16. The smaller ones use less memory on a graphics card; on the
# processor keep auto.
{_entry("dtype", settings.dtype)}
# How the narrator does its sums on the processor, trading a little accuracy
# for speed: auto (the fastest safe choice for this computer), fp32 (exact,
# slowest), bf16 (fast on processors with bfloat16 support), or int8 (the
# fastest: 8-bit weights, about 4 times less to read per word). With auto,
# a processor with fast 8-bit arithmetic gets int8, one with bfloat16 gets
# bf16, any other fp32; a graphics card gets bf16 or fp32. See
# docs/performance.md for the measurements.
{_entry("precision", settings.precision)}
# A whole number from 0 to {SEED_MAX} makes the narration come out the
# same each time you replay the same moves; null gives a new story every time.
{_entry("seed", settings.seed)}
# true: the game saves your progress after every turn. false: only when you
# save yourself.
{_entry("autosave", settings.autosave)}
# Change the keyboard keys: one "action: key" per indented line, for example
#   keys:
#     quit: ctrl+q
# {{}} keeps the game's usual keys.
{_entry("keys", settings.keys)}
# The language of the game's own words (menus, help, messages): auto follows
# the quest's language; en (English) or ru (Russian) always uses that one.
{_entry("language", settings.language)}
# Narrate with a model on an inference server instead of on this computer:
# llama.cpp's server, Ollama, vLLM, SGLang, LM Studio, KoboldCpp - anything that
# speaks the OpenAI API (docs/narrators.md has the lines for each). {{}} means:
# narrate here, with the model above. The settings, on indented lines:
#   server:
#     url: http://127.0.0.1:8080/v1   # the server's address, usually ending in /v1
#     model: null           # null: the server's only (or first) model
#     api_style: auto       # completion (base models), chat (instruction-tuned
#                           # models) or auto (chat when the server has a chat template)
#     window: null          # tokens the model can read; null: ask the server
#     timeout: 60           # seconds to wait for the server
#     api_key_env: STORYTELLER_API_KEY   # the NAME of the environment variable
#                           # that holds the API key (never the key itself)
#     tokenizer: null       # for exact counts when the server cannot count:
#                           # a Hugging Face tokenizer name or folder
{_entry("server", settings.server)}"""
