"""Problems found in files people write (quests, settings, saves), and how they print.

Every mistake an author or player can make is reported as a `Problem`: the file,
the 1-based line and column of the offending YAML node, a severity and a message
that says what is wrong and how to fix it. `GameFileError` carries one or more
problems; it is the only exception the loaders raise for bad input.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from game.safe_text import inert


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" or "warning"

    def format(self) -> str:
        """'file:line:col: severity: message', inert: quest text in it never drives a terminal."""
        return inert(f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}")

    def __str__(self) -> str:
        return self.format()


class GameFileError(Exception):
    """A file could not be used. Carries the problems, each with file and line."""

    def __init__(self, problems: list[Problem] | Problem):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


@dataclass
class Report:
    """Collects problems while a file is checked."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    def error(self, line: int, col: int, message: str, path: str | None = None) -> None:
        self.problems.append(Problem(path or self.path, line, col, message, "error"))

    def warning(self, line: int, col: int, message: str, path: str | None = None) -> None:
        self.problems.append(Problem(path or self.path, line, col, message, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return str(p)


def did_you_mean(word, choices) -> str:
    """' (did you mean 'x'?)' for a close match among choices, else ''."""
    close = difflib.get_close_matches(str(word), sorted(str(c) for c in choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
