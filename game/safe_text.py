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
