"""Translation of the game's own interface strings (not the quest's text).

Every visible string the game itself writes goes through `_()` here, so that a
Russian quest gets a Russian game. The catalogues are standard gettext `.po` files,
`game/locale/<lang>/LC_MESSAGES/storyteller.po`; at first use each is compiled
(Babel's `read_po`/`write_mo`) and read by Python's `gettext`, so a clean checkout
needs no build step and no compiled file is kept in the repository. Compiling takes
Babel's import and parser (tens of milliseconds at every launch in Russian), so the
compiled `.mo` is kept in the data folder's `cache/`, named by the `.po`'s size and
checksum: an edited catalogue gets a new one, and a cache that cannot be read or
written is compiled in memory again, as before.

The interface language is looked up at call time (`set_language`), so the same
string can be English on the title screen and Russian in a Russian quest. Strings
fixed at import time (key-binding descriptions, tables) are marked with `N_()`,
which only marks them for the catalogue check, and translated where they are shown
with `_()`. Plurals: `ngettext("{n} turn", "{n} turns", n)`.

The language follows the quest's `language` (`language_for`), unless the player's
`language` setting says `en` or `ru`. Languages without a catalogue fall back to English.
"""

from __future__ import annotations

import gettext
import io
import zlib
from functools import lru_cache
from pathlib import Path

DOMAIN = "storyteller"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "ru")  # English is the source language: it has no catalogue
SETTINGS = ("auto",) + LANGUAGES

_current = "en"


def base_language(code: str | None) -> str:
    """'ru-RU' -> 'ru'; '' or None -> 'en'."""
    return (code or "en").replace("_", "-").split("-")[0].lower() or "en"


def language_for(quest_language: str | None, setting: str | None = "auto") -> str:
    """The interface language: the setting when it names one, else the quest's, else English."""
    if setting in LANGUAGES:
        return setting
    lang = base_language(quest_language)
    return lang if lang in LANGUAGES else "en"


def set_language(code: str | None) -> str:
    """Use `code` for every `_()` from now on (unknown: English); returns the one in use."""
    global _current
    lang = base_language(code)
    _current = lang if lang in LANGUAGES else "en"
    return _current


def current_language() -> str:
    return _current


def catalogue_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def compiled_path(lang: str, po: bytes) -> Path:
    """Where the compiled catalogue of this `.po` text is cached (named by its size and checksum)."""
    from game import locations

    return locations.data_dir() / "cache" / f"{DOMAIN}-{lang}-{len(po)}-{zlib.crc32(po):08x}.mo"


def compile_po(po: bytes, lang: str) -> bytes:
    """A `.po` catalogue's text compiled to `.mo` bytes (Babel; fuzzy entries left out)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    catalog = read_po(io.BytesIO(po), locale=lang, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue of `lang` (English, or a missing file: no translation)."""
    path = catalogue_path(lang)
    if lang == "en" or not path.is_file():
        return gettext.NullTranslations()
    po = path.read_bytes()
    cached = compiled_path(lang, po)
    try:
        return gettext.GNUTranslations(io.BytesIO(cached.read_bytes()))
    except Exception:  # not there yet, or unreadable or damaged: compile it again
        pass
    mo = compile_po(po, lang)
    try:
        from game.atomic import write_atomic

        write_atomic(cached, mo)
        for old in cached.parent.glob(f"{DOMAIN}-{lang}-*.mo"):  # those of earlier catalogues
            if old != cached:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only data folder: compiled in memory at each launch
        pass
    return gettext.GNUTranslations(io.BytesIO(mo))


def _(message: str) -> str:
    """The message in the current interface language."""
    if _current == "en" or not message:
        return message
    return translations(_current).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form (Russian has three) in the current language."""
    if _current == "en":
        return singular if n == 1 else plural
    return translations(_current).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a string fixed at import time for the catalogue; translate it where it is shown."""
    return message
