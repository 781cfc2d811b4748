"""Translation of the game's own interface strings (not the quest's text).

Every visible string the game itself writes goes through `_()` here, so that a
Russian quest gets a Russian game. This module is the single entry point; the
catalogues and the language switch are filled in by the i18n work (issue 13).
"""

from __future__ import annotations


def _(message: str) -> str:
    """The message in the current interface language."""
    return message
