"""Where the game's files live: the one module that knows the folders.

User folders come from platformdirs (app name "storyteller"):

* config folder: ``settings.yaml`` and ``personalities/`` (the player's own voices);
* data folder: ``saves/``, ``quests/`` (the player's own quests), ``cache/`` (the
  compiled translations, `game.i18n`) and ``narrator-cache/`` (the narrator's int8
  conversion of its model); both caches are made again whenever missing or stale.

A game served to a browser (`storyteller serve`) plays for one named player:
`use_player_folder` then moves that player's saves, settings file and
transcripts into their own folder (see `game.players`, which owns the names and
the rules); the quests and personalities stay the host's.

The project's bundled ``quests/`` and ``assets/`` lie at the repository root, next
to the ``game`` package. Every folder can be moved with an environment variable
(see `ENV`), so players and tests can point elsewhere; an empty variable counts as
unset. Nothing here creates folders: callers create what they write into.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "storyteller"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# folder name -> environment variable that overrides it
ENV = {
    "config": "STORYTELLER_CONFIG_DIR",
    "data": "STORYTELLER_DATA_DIR",
    "personalities": "STORYTELLER_PERSONALITIES_DIR",
    "saves": "STORYTELLER_SAVES_DIR",
    "quests": "STORYTELLER_QUESTS_DIR",
    "bundled_quests": "STORYTELLER_BUNDLED_QUESTS_DIR",
    "assets": "STORYTELLER_ASSETS_DIR",
}


_player_folder: Path | None = None  # set once a served game knows its player


def use_player_folder(folder: Path | None) -> None:
    """From now on, this process's saves, settings and transcripts live in `folder` (None: the
    usual folders again). Only `game.players` calls this, with a checked folder."""
    global _player_folder
    _player_folder = None if folder is None else Path(folder)


def player_folder() -> Path | None:
    """The folder of the player this process plays for, if it is a served game."""
    return _player_folder


def _override(folder: str) -> Path | None:
    value = os.environ.get(ENV[folder], "").strip()
    return Path(value).expanduser().absolute() if value else None


def config_dir() -> Path:
    """The player's config folder (settings.yaml, personalities/)."""
    if (path := _override("config")) is not None:
        return path
    import platformdirs

    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    """The player's data folder (saves/, quests/)."""
    if (path := _override("data")) is not None:
        return path
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def settings_file() -> Path:
    if _player_folder is not None:
        return _player_folder / "settings.yaml"
    return config_dir() / "settings.yaml"


def user_personalities_dir() -> Path:
    """Where players put their own personality files (one .yaml each)."""
    return _override("personalities") or config_dir() / "personalities"


def saves_dir() -> Path:
    if _player_folder is not None:
        return _player_folder / "saves"
    return _override("saves") or data_dir() / "saves"


def transcripts_dir() -> Path:
    """Where exported Markdown transcripts go."""
    return (_player_folder or data_dir()) / "transcripts"


def narrator_cache_dir() -> Path:
    """Where the narrator keeps its int8 conversion of a model (`game.narrator.int8_cache`)."""
    return data_dir() / "narrator-cache"


def players_dir() -> Path:
    """The folder of every served player's own folder (`storyteller serve`)."""
    return data_dir() / "players"


def user_quests_dir() -> Path:
    """Where players put their own quests."""
    return _override("quests") or data_dir() / "quests"


def bundled_quests_dir() -> Path:
    """The quests that ship with the game."""
    return _override("bundled_quests") or PROJECT_ROOT / "quests"


def assets_dir() -> Path:
    return _override("assets") or PROJECT_ROOT / "assets"


def preset_personalities_dir() -> Path:
    """The personalities that ship with the game (assets/personalities)."""
    return assets_dir() / "personalities"
