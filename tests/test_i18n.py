"""The game's own words in the player's language (issue 13): a gettext catalogue per
language, looked up when a string is shown; the whole interface follows the quest's
language unless the `language` setting names one; a quest's form of address; and every
visible string of the game has a Russian translation."""

from __future__ import annotations

import ast
import os
import re
import string
import subprocess
import sys

import pytest

from game.i18n import (LANGUAGES, N_, _, catalogue_path, current_language, language_for, ngettext,
                       set_language, translations)
from game.phrases import phrase
from game.settings import Settings, load_settings, save_settings
from tests.conftest import QUESTS, ROOT
from tests.helpers import load_quest_text
from tests.test_tui import personalities  # noqa: F401 (fixture)
from tests.test_tui import (act, build, game, opens, playing, running, screen_text, showing, status)

SKAZITEL = QUESTS / "skazitel.yaml"
MARKERS = {"_": 1, "N_": 1, "ngettext": 2}  # function name -> how many literal arguments it marks


def marked_strings() -> dict[tuple[str, ...], str]:
    """Every literal marked for translation in game/: (msgid[, plural]) -> where it is."""
    found = {}
    for path in sorted((ROOT / "game").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS:
                args = node.args[:MARKERS[node.func.id]]
                if all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
                    found[tuple(a.value for a in args)] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_catalogue_check_finds_the_games_strings():
    found = marked_strings()
    assert len(found) > 150
    assert ("What do you do? (a number, or your own words; /help)",) in found  # _()
    assert ("Quit",) in found  # N_() in a key binding
    assert ("{n} turn", "{n} turns") in found  # ngettext()


@pytest.mark.parametrize("lang", [x for x in LANGUAGES if x != "en"])
def test_every_visible_string_has_a_translation(lang):
    from babel.messages.pofile import read_po

    with catalogue_path(lang).open("rb") as f:
        catalog = read_po(f, locale=lang)
    missing, wrong = [], []
    for key, where in marked_strings().items():
        message = catalog.get(key[0])
        strings = [] if message is None else (
            list(message.string) if isinstance(message.string, (tuple, list)) else [message.string])
        if message is None or message.fuzzy or not all(strings):
            missing.append(f"{where}: {key[0]!r}")
            continue
        if any(placeholders(s) != placeholders(key[-1]) for s in strings):
            wrong.append(f"{where}: {key[0]!r} -> {strings!r}")
    assert not missing, f"no {lang} translation for:\n" + "\n".join(missing) + \
        "\n(add them to " + str(catalogue_path(lang).relative_to(ROOT)) + "; see docs/architecture.md)"
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


def test_strings_are_looked_up_when_shown_and_plurals_follow_the_language():
    label = N_("Quit")  # fixed at import time: stays English until shown
    set_language("ru")
    assert _(label) == "Выход" and current_language() == "ru"
    assert [ngettext("{n} turn", "{n} turns", n).format(n=n) for n in (1, 3, 5, 21)] == \
        ["1 ход", "3 хода", "5 ходов", "21 ход"]
    set_language("en")
    assert _(label) == "Quit" and ngettext("{n} turn", "{n} turns", 1).format(n=1) == "1 turn"
    set_language("de")  # no catalogue: English
    assert current_language() == "en" and _("Help") == "Help"
    assert isinstance(translations("ru").gettext("Help"), str)



RUSSIAN_WORDS = """\
import sys
from game.i18n import _, ngettext, set_language
set_language("ru")
print(_("Quit"), ngettext("{n} turn", "{n} turns", 5).format(n=5), "babel" in sys.modules)
"""


def test_a_compiled_catalogue_is_kept_so_later_launches_need_no_babel(tmp_path):
    env = dict(os.environ, STORYTELLER_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))

    def launch() -> list[str]:
        return subprocess.run([sys.executable, "-c", RUSSIAN_WORDS], env=env, cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.split()

    assert launch() == ["Выход", "5", "ходов", "True"]  # a fresh checkout: compiled with Babel
    cached = list((tmp_path / "cache").glob("storyteller-ru-*.mo"))
    assert len(cached) == 1
    assert launch() == ["Выход", "5", "ходов", "False"]  # then read as it is
    cached[0].write_bytes(b"\x00" * 10)  # damaged: compiled again, and the cache mended
    assert launch() == ["Выход", "5", "ходов", "True"]
    assert launch() == ["Выход", "5", "ходов", "False"]


@pytest.fixture
def own_catalogue(tmp_path, monkeypatch):
    """A copy of the game's catalogues that a test may edit; compiled afresh, before and after."""
    import shutil

    import game.i18n

    shutil.copytree(catalogue_path("ru").parents[2], tmp_path / "locale")
    monkeypatch.setattr(game.i18n, "LOCALE_DIR", tmp_path / "locale")
    translations.cache_clear()
    yield tmp_path / "locale" / "ru" / "LC_MESSAGES" / "storyteller.po"
    translations.cache_clear()


def test_an_edited_catalogue_is_compiled_again(own_catalogue, tmp_path, monkeypatch):
    monkeypatch.setenv("STORYTELLER_DATA_DIR", str(tmp_path / "data"))
    assert translations("ru").gettext("Quit") == "Выход"
    first = list((tmp_path / "data" / "cache").iterdir())
    text = own_catalogue.read_text(encoding="utf-8")
    own_catalogue.write_text(text.replace('msgstr "Выход"', 'msgstr "Выйти"'), encoding="utf-8")
    translations.cache_clear()  # as a new launch would
    assert translations("ru").gettext("Quit") == "Выйти"
    now = list((tmp_path / "data" / "cache").iterdir())
    assert len(first) == len(now) == 1 and first != now  # the old one is gone


def test_without_a_writable_data_folder_the_catalogue_is_compiled_in_memory(own_catalogue, tmp_path,
                                                                               monkeypatch):
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the data folder should be")
    monkeypatch.setenv("STORYTELLER_DATA_DIR", str(not_a_folder))
    assert translations("ru").gettext("Quit") == "Выход"
    assert translations("ru").ngettext("{n} turn", "{n} turns", 21) == "{n} ход"

def test_the_language_follows_the_quest_unless_the_setting_names_one():
    assert language_for("ru") == "ru" and language_for("ru-RU") == "ru"
    assert language_for("fr") == "en" and language_for(None) == "en"
    assert language_for("ru", "en") == "en" and language_for("en", "ru") == "ru"
    assert language_for("ru", "auto") == "ru"
    assert Settings().language == "auto"
    with pytest.raises(ValueError, match="language is 'de'"):
        Settings(language="de")
    save_settings(Settings(language="ru"))
    assert load_settings()[0].language == "ru"


def test_a_quests_form_of_address(tmp_path):
    from game.engine import Engine

    base = """\
        id: q
        title: Q
        language: ru
        {address}
        start: a
        scenes:
          a: {{title: A, description: D, exits: [{{label: Out, to: b}}]}}
          b: {{title: B, description: D, ending: e}}
        endings:
          e: {{title: E, text: T}}
        """
    informal = Engine(load_quest_text(tmp_path, "i.yaml", base.format(address="address: informal")))
    formal = Engine(load_quest_text(tmp_path, "f.yaml", base.format(address="")))
    assert informal.act("и").paragraphs[0].text == "У тебя ничего нет."
    assert formal.act("и").paragraphs[0].text == "У вас ничего нет."
    assert phrase("ru", "gained", address="informal", item="ковш") == "Теперь у тебя есть: ковш."
    assert phrase("en", "gained", address="informal", item="a ladle") == "You now have a ladle."
    from game.diagnostics import GameFileError

    with pytest.raises(GameFileError, match="'address' is 'casual'; write formal or informal"):
        load_quest_text(tmp_path, "bad.yaml", base.format(address="address: casual"))


# -- the whole interface follows a Russian quest --------------------------------------------
async def test_a_russian_quest_gets_a_russian_game(personalities):  # noqa: F811
    app = build(personalities, quest=SKAZITEL)  # no Spirit: the quest's own words
    async with running(app) as pilot:
        shown = screen_text(app)
        assert "Что делать?" in shown  # the input's placeholder
        assert "ход 0" in shown and "Дух: молчит" in shown  # the status bar
        bar = shown.splitlines()[-1]
        assert "Помощь" in bar and "Выход" in bar and "Help" not in bar  # the key bar
        await opens(pilot, "f1", _help())
        help_text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        assert "Пиши, что делаешь" in help_text  # the quest's «ты»
        assert "Esc закрывает любое окно" in help_text and "Commands" not in help_text
        await pilot.press("escape")
        await playing(pilot)
        await act(pilot, "и")
        assert "У тебя ничего нет." in screen_text(app)
        for action in ["направо", "пойти за огоньком"]:  # into the bog: the kikimora's ending
            await act(pilot, action)
        from game.tui.screens.ending import EndingScreen

        await showing(pilot, EndingScreen)
        summary = str(app.screen.query_one("#ending-summary").render())
        assert summary == "Ты проиграл. 2 хода, 2 из 7 мест.", summary
        shown = screen_text(app)
        assert "Играть снова" in shown and "Читать дальше" in shown and "Play again" not in shown
        await pilot.press("escape")
        await playing(pilot)
        assert "Квест окончен. /restart" in screen_text(app)


def _help():
    from game.tui.screens.help import HelpScreen

    return HelpScreen


async def test_the_language_setting_overrides_the_quests(personalities):  # noqa: F811
    app = build(personalities, quest=SKAZITEL, settings=Settings(language="en"))
    async with running(app) as pilot:
        shown = screen_text(app)
        assert "What do you do?" in shown and "turn 0" in shown
        # Switched in the settings, the game goes Russian at once.
        from textual.widgets import Select

        from game.tui.screens.settings import SettingsScreen

        screen = await opens(pilot, "f3", SettingsScreen)
        screen.query_one("#language", Select).value = "ru"
        await pilot.press("ctrl+s")
        await playing(pilot)
        assert load_settings()[0].language == "ru"
        await pilot.pause()
        assert "Дух: молчит" in screen_text(app) and "ход 0" in str(status(app).render())
        assert "Что делать?" in screen_text(app)
        assert "Выход" in screen_text(app).splitlines()[-1]
    # And an English quest in a Russian game.
    app = build(personalities, settings=Settings(language="ru"))
    async with running(app) as pilot:
        assert "Что делать?" in screen_text(app)
        assert game(app).session.quest.language == "en"
