"""Players of a served game (`storyteller serve`): their names, their folders, and the
rules for a game that is a guest on the host's machine.

Each browser tab runs its own game process in guest mode. The player types a
name; `check_name` accepts letters, digits, spaces, '-' and '_' only (at most
`NAME_MAX` characters), so a name can never be a path. `open_player` turns the
name into the folder ``<host data folder>/players/<name>/`` (checked again,
after symlinks, to lie inside the players folder), takes that folder's lock (a
second tab with the same name is told the player is already playing) and points
`game.locations` at it: from then on the player's saves, autosaves, settings
file and transcripts are there and nowhere else.

`Guest` holds the rest of the rules: quests only from the bundled folder and the
host's quest folder, saves only from the player's own folder, and settings only
of the narrator's taste (`TASTE_KEYS`); the model, device and key bindings stay
the host's. Plain Python, testable without a browser.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from game import locations
from game.i18n import _

NAME_MAX = 24
# Names Windows keeps for devices: never a folder name, whatever the host runs on.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
TASTE_KEYS = ("personality", "persona", "sampling", "seed", "autosave", "language")
ACTION_MAX = 500  # characters a served player may type as one action
LOCK_FILE = ".playing"


class PlayerBusy(Exception):
    """The player is already playing in another tab."""


def check_name(raw: str) -> str:
    """The player's name, tidied (NFKC, spaces collapsed); ValueError says what is wrong."""
    name = " ".join(unicodedata.normalize("NFKC", str(raw)).split())
    if not name:
        raise ValueError(_("Type a name to play under (letters and digits)."))
    if len(name) > NAME_MAX:
        raise ValueError(_("That name is too long: at most {n} characters.").format(n=NAME_MAX))
    bad = sorted({c for c in name if not (c.isalnum() or c in " -_")})
    if bad:
        shown = " ".join(repr(c)[1:-1] if c.isprintable() else f"U+{ord(c):04X}" for c in bad[:5])
        raise ValueError(_("A name may hold letters, digits, spaces, '-' and '_', not {chars}.")
                         .format(chars=shown))
    if not name[0].isalnum():
        raise ValueError(_("A name must start with a letter or a digit."))
    if folder_name(name) in _RESERVED:
        raise ValueError(_("'{name}' is a name the computer keeps for itself; choose another.")
                         .format(name=name))
    return name


def folder_name(name: str) -> str:
    """The folder of a checked name: lower case, spaces as '-' ('Ann Lee' and 'ann-lee' are one
    player, as they would be on a case-insensitive disk)."""
    return name.casefold().replace(" ", "-")


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` lies in `folder` (or is it), after '..' and symlinks are resolved."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def player_folder(name: str, root: Path | None = None) -> Path:
    """The folder of a player; ValueError for a bad name or a folder that leads elsewhere."""
    root = Path(root) if root is not None else locations.players_dir()
    folder = root / folder_name(check_name(name))
    if not inside(folder, root) or folder.resolve() == root.resolve():
        raise ValueError(_("That player's folder leads outside the players folder; "
                           "the host must remove {path}.").format(path=folder))
    return folder


@dataclass
class Player:
    """A player who has claimed their folder; `release` (or process exit) lets it go."""

    name: str
    folder: Path
    _lock: object = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def open_player(name: str, root: Path | None = None) -> Player:
    """Check the name, create and lock the player's folder, and play from it.

    Raises ValueError (a bad name), PlayerBusy (the name is playing in another
    tab) or OSError (the folder cannot be made).
    """
    folder = player_folder(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    if not inside(folder, root if root is not None else locations.players_dir()):
        raise ValueError(_("That player's folder leads outside the players folder."))
    lock = _lock(folder / LOCK_FILE)
    if lock is None:
        raise PlayerBusy(_("{name} is already playing in another tab or window; close that one "
                           "first, or choose another name.").format(name=check_name(name)))
    locations.use_player_folder(folder)
    return Player(check_name(name), folder, lock)


def _lock(path: Path):
    """An open file holding an exclusive lock on `path`, or None if another process holds it."""
    fh = open(path, "a+b")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one tab per name is not enforced
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


@dataclass(frozen=True)
class Guest:
    """What a served game may touch: quests from `quest_roots`, saves from the player's folder."""

    quest_roots: tuple[Path, ...]

    @classmethod
    def for_host(cls) -> "Guest":
        return cls((locations.bundled_quests_dir(), locations.user_quests_dir()))

    def allows_quest(self, path: str | Path) -> bool:
        return bool(str(path)) and any(inside(path, root) for root in self.quest_roots)

    def allows_save(self, path: str | Path) -> bool:
        folder = locations.player_folder()
        return folder is not None and inside(path, locations.saves_dir()) and inside(path, folder)


def guest_settings(host, player):
    """The host's settings with the player's narrator taste (`TASTE_KEYS`) over them."""
    return host.with_changes(**{key: getattr(player, key) for key in TASTE_KEYS})
