"""Safe, bounded YAML loading that remembers where every value came from.

Quests and settings are files people share, so this module is the one place that
turns their bytes into Python values. It:

* refuses files over a size limit before reading them whole;
* decodes strict UTF-8 and points at the first bad byte;
* composes with PyYAML's *safe* loader and never constructs arbitrary objects:
  only plain tags (str, int, float, bool, null, map, seq) are accepted;
* bounds nesting depth and the total number of values produced, so alias
  "billion laughs" bombs and absurd nesting end in a clear error, quickly;
* reports duplicate keys, tabs in indentation, empty files;
* keeps the line and column of every key and value (`YMap.key_marks`,
  `YMap.value_marks`, `YList.item_marks`) for messages like `file:line:col`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

import yaml

from game.diagnostics import GameFileError, Problem

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 100_000

_PLAIN_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class Mark(NamedTuple):
    """1-based line and column in a file (a named tuple: a quest file holds thousands of
    them, and one is made in about two thirds of a frozen dataclass's time)."""

    line: int
    col: int

    @classmethod
    def of(cls, node: yaml.Node) -> "Mark":
        start = node.start_mark
        return cls(start.line + 1, start.column + 1)


class YMap(dict):
    """A mapping from a YAML file, with the position of each key and value."""

    mark: Mark
    key_marks: dict
    value_marks: dict

    def key_mark(self, key) -> Mark:
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key) -> Mark:
        return self.value_marks.get(key, self.mark)


class YList(list):
    """A sequence from a YAML file, with the position of each item."""

    mark: Mark
    item_marks: list

    def item_mark(self, index: int) -> Mark:
        return self.item_marks[index] if 0 <= index < len(self.item_marks) else self.mark


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1  # stop a dense file early instead of composing all of it first
        try:
            if self._depth > MAX_DEPTH or self._nodes > MAX_VALUES:
                mark = self.peek_event().start_mark
                message = (f"values are nested more than {MAX_DEPTH} levels deep; flatten the structure"
                           if self._depth > MAX_DEPTH else
                           f"file holds more than {MAX_VALUES:,} values, far more than any game "
                           "file needs; split it into smaller files")
                raise yaml.YAMLError(_LimitError(mark.line + 1, mark.column + 1, message))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# libyaml's parser (C) when PyYAML was built with it: the same YAML, ten times faster.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)
_OPEN_EVENTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent) + _OPEN_EVENTS


def _check_limits(text: str) -> None:
    """Walk the parser's events (no tree is built) and stop at the first limit passed."""
    depth = count = 0  # depth counts nodes on the path, as the composer does
    for event in yaml.parse(text, Loader=_FAST_LOADER):
        if isinstance(event, _CLOSE_EVENTS):
            depth -= 1
            continue
        if not isinstance(event, _NODE_EVENTS):
            continue
        count += 1
        node_depth = depth + 1
        if isinstance(event, _OPEN_EVENTS):
            depth += 1
        if node_depth > MAX_DEPTH or count > MAX_VALUES:
            mark = event.start_mark
            message = (f"values are nested more than {MAX_DEPTH} levels deep; flatten the structure"
                       if node_depth > MAX_DEPTH else
                       f"file holds more than {MAX_VALUES:,} values, far more than any game "
                       "file needs; split it into smaller files")
            raise yaml.YAMLError(_LimitError(mark.line + 1, mark.column + 1, message))


# Below this size a syntax error found by libyaml is parsed again in Python, whose
# messages are the ones authors are told about (they are worded a little better).
_REPARSE_BYTES = 200_000


def _compose_with(loader_class, text: str):
    loader = loader_class(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _compose(text: str):
    """The node tree of a single-document YAML text, within the limits."""
    if _FAST_LOADER is None:
        return _compose_with(_DepthLimitedLoader, text)
    try:
        _check_limits(text)  # bounded depth first: the C composer recurses
        return _compose_with(_FAST_LOADER, text)
    except yaml.MarkedYAMLError as exc:
        # libyaml's own nesting limit fires while scanning ahead; Python's parser stops
        # at our limit, at the first value too deep, which is the place to point at.
        if len(text) > _REPARSE_BYTES and "maximum nesting depth" not in str(exc.problem):
            raise
    return _compose_with(_DepthLimitedLoader, text)  # raises the same error, in Python's words


class _LimitError:
    def __init__(self, line: int, col: int, message: str):
        self.line, self.col, self.message = line, col, message


def read_text(path: Path, display: str, max_bytes: int = MAX_BYTES) -> str:
    """Read a UTF-8 text file with a size limit; errors name the file and position."""
    try:
        # O_NONBLOCK: a named pipe opens at once (and is refused below) instead of hanging
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise GameFileError(Problem(display, 1, 1, "is not a regular file (a pipe or a "
                                                           "device?); give the path of a text file"))
            data = fh.read(max_bytes + 1)
    except IsADirectoryError:
        raise GameFileError(Problem(display, 1, 1, "is a folder, not a file")) from None
    except FileNotFoundError:
        raise GameFileError(Problem(display, 1, 1, "file not found")) from None
    except OSError as exc:
        raise GameFileError(Problem(display, 1, 1, f"cannot read the file: {exc.strerror or exc}")) from None
    if len(data) > max_bytes:
        raise GameFileError(Problem(
            display, 1, 1,
            f"file is larger than {max_bytes // 1000} kB; a quest file this big is almost "
            "certainly not a quest (split it into included files if it really is)"))
    return decode_utf8(data, display)


def decode_utf8(data: bytes, display: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        # the bytes before the first bad one are valid UTF-8: count characters, like YAML marks
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8")) + 1
        raise GameFileError(Problem(
            display, line, col,
            f"byte 0x{data[exc.start]:02x} is not valid UTF-8; save the file as UTF-8 text")) from None
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        raise GameFileError(Problem(display, line, col,
                                    "file contains a NUL byte: this is binary data, not a YAML text file"))
    return text.removeprefix("\ufeff")


def load_yaml_text(text: str, display: str, *, empty_ok: bool = False):
    """Parse YAML text into plain values (YMap/YList/scalars) or raise GameFileError."""
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        raise GameFileError(_problem_from_yaml_error(exc, display)) from None
    except RecursionError:
        raise GameFileError(Problem(display, 1, 1, "values are nested too deeply; flatten the structure")) from None
    if node is None:
        if empty_ok:
            return None
        raise GameFileError(Problem(display, 1, 1, "file is empty: it has no YAML content"))
    converter = _Converter(display)
    value = converter.convert(node, 0)
    if converter.problems:
        raise GameFileError(converter.problems)
    return value


def load_yaml_file(path: Path, display: str | None = None, *, max_bytes: int = MAX_BYTES,
                   empty_ok: bool = False):
    display = display or str(path)
    return load_yaml_text(read_text(path, display, max_bytes), display, empty_ok=empty_ok)


def _problem_from_yaml_error(exc: yaml.YAMLError, display: str) -> Problem:
    if exc.args and isinstance(exc.args[0], _LimitError):
        lim = exc.args[0]
        return Problem(display, lim.line, lim.col, lim.message)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if "could not find expected ':'" in str(getattr(exc, "problem", "")) and getattr(exc, "context_mark", None):
        mark = exc.context_mark  # the key missing its ':', not the line after it
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if "'\\t'" in problem or "\t" in problem:
        message = "tab character here: YAML indentation must use spaces, not tabs; replace the tab with spaces"
    else:
        message = f"YAML syntax error: {problem}"
        if context:
            message += f" ({context})"
        if "mapping values are not allowed" in problem:
            message += "; if a text contains ': ' put it in quotes"
        elif "could not find expected ':'" in problem:
            message += "; check the indentation and that each key ends with ':'"
    return Problem(display, line, col, message)


class _Converter:
    """Turns a composed node tree into YMap/YList/scalars with marks, within budgets."""

    def __init__(self, display: str):
        self.display = display
        self.count = 0
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def convert(self, node: yaml.Node, depth: int):
        self.count += 1
        if self.count > MAX_VALUES:
            raise GameFileError(Problem(
                self.display, *_line_col(node),
                f"file expands to more than {MAX_VALUES:,} values (YAML aliases '*name' "
                "repeated inside each other?); write the content out plainly"))
        if depth > MAX_DEPTH:
            raise GameFileError(Problem(self.display, *_line_col(node),
                                        f"values are nested more than {MAX_DEPTH} levels deep"))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self._bad_tag(node)
            out = YList()
            out.mark = Mark.of(node)
            out.item_marks = []
            for item in node.value:
                out.append(self.convert(item, depth + 1))
                out.item_marks.append(Mark.of(item))
            return out
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, depth: int):
        if node.tag != _MAP:
            self._bad_tag(node)
        out = YMap()
        out.mark = Mark.of(node)
        out.key_marks = {}
        out.value_marks = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.display, *_line_col(key_node),
                                             "a key must be a plain word, not a list or mapping"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(self.display, *_line_col(key_node),
                                             "merge keys ('<<') are not supported; write the keys out"))
                continue
            if key_node.tag not in _PLAIN_SCALAR_TAGS and key_node.tag != _TIMESTAMP:
                self._bad_tag(key_node)
            key = key_node.value  # keys are always text: 'yes:' and '1:' stay words
            if key in out:
                first = out.key_marks[key]
                self.problems.append(Problem(
                    self.display, *_line_col(key_node),
                    f"duplicate key '{key}' (first defined at line {first.line}); "
                    "remove or rename one of them"))
                continue
            out[key] = self.convert(value_node, depth + 1)
            out.key_marks[key] = Mark.of(key_node)
            out.value_marks[key] = Mark.of(value_node)
        return out

    def _scalar(self, node: yaml.ScalarNode):
        if node.tag == _STR:  # most values: PyYAML's own str constructor returns just this
            return node.value
        if node.tag in _PLAIN_SCALAR_TAGS:
            return self._constructor.construct_object(node, deep=False)
        if node.tag == _TIMESTAMP:
            return node.value  # dates stay text
        self._bad_tag(node)
        return node.value

    def _bad_tag(self, node: yaml.Node) -> None:
        self.problems.append(Problem(
            self.display, *_line_col(node),
            f"tag '{node.tag}' is not allowed: quest files hold plain text, numbers, "
            "lists and mappings only"))


def _line_col(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
