"""Makes untrusted text (quest files, saves, settings, model output) inert before it is shown.

The one inert path: everything read from a file or written by the model passes
through `inert` (running text) or `inert_line` (titles, labels, names, anything
shown on one line) before any output: stdout, stderr, notifications, footers,
titles, exports.

* Terminal escape sequences (ANSI colours, OSC titles/hyperlinks/clipboard,
  cursor moves) and every other control character are replaced with a visible
  placeholder '�', so a file can never drive the terminal. Newlines and tabs
  stay in running text.
* Bidirectional overrides, embeddings and isolates (U+202A..U+202E,
  U+2066..U+2069), which make text read in a different order than it is
  stored, become '�' too.
* `inert_line` also turns line and paragraph breaks and tabs into spaces and
  drops invisible characters (zero-width space, word joiner, byte order mark,
  left-to-right / right-to-left marks, zero-width (non-)joiners), so a name or
  a label is what it looks like, on one line.

`decoded` turns input that was not valid UTF-8 (lone surrogates from Python's
surrogateescape) into text with '�' in place of the bad bytes.

Rich/Textual markup is a separate matter: the UI renders text with
`rich.text.Text` (never parsed as markup); this module handles raw characters.
"""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, C1 controls (U+0080..U+009F, which include CSI/OSC),
# bidi embeddings/overrides (U+202A..U+202E) and isolates (U+2066..U+2069), and lone
# surrogates (which no terminal or file encoding takes).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Invisible in running text: zero-width space, word joiner, BOM, LRM/RLM, ALM, ZWNJ/ZWJ.
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff\u061c]")
_LINE_BREAKS = re.compile("[\t\n\u2028\u2029\x85]+|\r\n?")
_TEXT_SEPARATORS = re.compile("[\u2028\u2029]")


def inert(text: str) -> str:
    """Replace control characters (ESC included) and bidi overrides with '�' so they show
    but do nothing; zero-width spaces and joiners become '�' too (they hide text)."""
    text = _TEXT_SEPARATORS.sub("\n", str(text).replace("\r\n", "\n"))
    text = re.sub("[\u200b\u2060\ufeff]", "\ufffd", text)
    return _CONTROL.sub("\ufffd", text)


def inert_line(text: str) -> str:
    """`inert` for one line (titles, labels, names, key names): breaks become spaces and
    invisible characters are dropped."""
    text = _LINE_BREAKS.sub(" ", _INVISIBLE.sub("", str(text)))
    return _CONTROL.sub("\ufffd", text)


def decoded(text: str) -> str:
    """Text read from a stream that may hold invalid UTF-8 (surrogate escapes): the bad
    bytes become '�', so the text can be saved and shown."""
    if not re.search("[\ud800-\udfff]", text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return re.sub("[\ud800-\udfff]", "\ufffd", text)
    return raw.decode("utf-8", "replace")


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
