"""Makes untrusted text (quest files, model output) inert before it is shown.

Terminal escape sequences (ANSI colours, OSC titles/hyperlinks, cursor moves)
and other control characters are replaced with a visible placeholder, so a
quest or a narration can never drive the terminal. Newlines and tabs stay.
Rich/Textual markup is a separate matter: the UI renders text with
`rich.text.Text` (never parsed as markup); this module handles raw control bytes.
"""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, and C1 controls (U+0080..U+009F, which include CSI/OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inert(text: str) -> str:
    """Replace control characters (ESC included) with '�' so they show but do nothing."""
    return _CONTROL.sub("\ufffd", text.replace("\r\n", "\n"))


# Whole escape sequences: CSI (ESC [ or U+009B ... final byte), OSC/DCS/APC/PM/SOS strings
# (up to BEL or ESC \), and two-character ESC sequences.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P_^X]|[\x90\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?")


def strip_controls(text: str) -> str:
    """Text the player typed or pasted, with escape sequences and control characters removed
    (not replaced: "first \\x1b[1mbold\\x1b[0m" is "first bold"). Newlines and tabs stay."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
