"""Three more bundled quests, each showing a different strength of the format:

* "The Clockwork Alibi", a mystery of clue flags, a clue count and lore;
* "The Last Lantern", horror against the clock (oil burnt per walk, turn limits);
* "Сказитель", a Russian folk tale (language: ru) that free text in Russian plays.

Each validates with no problems and no lint warnings, and a player reaches every
ending by playing it in plain mode (a real subprocess, the command a player types).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from game.engine import Engine
from game.personality import DEFAULT_PERSONALITY, load_personalities
from game.world.loader import check_quest, load_quest
from tests.conftest import QUESTS, ROOT
from tests.helpers import labels, play_plain as play
from tests.test_bundled_quest import NEVER_READ, assert_ended_with, clean_output

ALIBI = QUESTS / "the-clockwork-alibi.yaml"
LANTERN = QUESTS / "the-last-lantern.yaml"
SKAZITEL = QUESTS / "skazitel.yaml"
PATHS = [ALIBI, LANTERN, SKAZITEL]
IDS = ["alibi", "lantern", "skazitel"]


@pytest.fixture(scope="module")
def quests():
    return {path: load_quest(path) for path in PATHS}


def engine_after(quest, actions: list[str]) -> Engine:
    """An engine that has played `actions`, each of which must do something in the quest."""
    engine = Engine(quest, seed=7)
    for action in actions:
        result = engine.act(action)
        assert result.kind in ("choice", "exit", "locked", "look"), (action, result.kind)
    return engine


# -- every quest ---------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_validates_without_problems(path):
    found, problems = check_quest(path)
    assert found is not None
    assert [p.format() for p in problems] == []
    run = subprocess.run([sys.executable, "-m", "game", "validate", "--strict", str(path)],
                         capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr  # --strict: a warning would fail it
    assert "ok:" in run.stdout and "error" not in run.stdout and "warning" not in run.stdout


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_strict_lint_finds_nothing(path, quests, gpt2_tokenizer):
    """No warnings, the token budget included, counted with the persona the quest plays with."""
    quest_lint = pytest.importorskip("game.world.lint")
    quest = quests[path]
    personalities, _ = load_personalities()
    persona = personalities[quest.personality or DEFAULT_PERSONALITY].persona
    warnings = quest_lint.lint(quest, tokenizer=gpt2_tokenizer, persona=persona)
    assert [w.format() for w in warnings] == []


@pytest.mark.parametrize("path, min_scenes", [(ALIBI, 8), (LANTERN, 6), (SKAZITEL, 6)], ids=IDS)
def test_shape_of_the_quest(path, min_scenes, quests):
    quest = quests[path]
    assert len(quest.scenes) >= min_scenes
    assert quest.items and quest.flags and quest.summary and quest.model
    assert {e.outcome for e in quest.endings.values()} == {"win", "lose"}
    assert len({e.title for e in quest.endings.values()}) == len(quest.endings)
    for scene in quest.scenes.values():
        assert scene.hints and scene.recap, scene.id
        assert "\n" not in scene.recap, scene.id
        for text in scene.descriptions:
            assert len(text.split()) < 100, scene.id
    choices = [c for s in quest.scenes.values() for c in s.choices]
    locked_paths = [c for c in choices if c.is_exit and c.condition is not None and c.locked]
    assert locked_paths, "at least one exit that is locked until something is done"
    for choice in choices:  # free text can reach every option
        assert choice.words, choice.label


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_no_dead_ends_but_endings(path, quests):
    """Every scene either ends the quest or has a way out to another scene."""
    quest = quests[path]
    for scene in quest.scenes.values():
        if scene.ending:
            continue
        ways = [c for c in scene.choices
                if (c.to and c.to != scene.id) or any(e.kind in ("end", "move") for e in c.effects)]
        assert ways, scene.id


# -- The Clockwork Alibi ----------------------------------------------------------------

ALIBI_WIN = [
    "ask the inspector", "go to the workshop", "examine the body", "take the keys",
    "question tobias", "climb the stair", "pull the scrap", "study the gears", "go back down",
    "go back out", "visit madame quill", "borrow the loupe", "ask about the quarrel",
    "go back out", "enter the workshop", "climb the stairs", "examine the gears with the loupe",
    "down", "leave", "climb to the belfry", "ask amos what he saw", "look through the spyglass",
    "go back down", "go to the tavern", "ask about edmund", "show the glove", "out",
    "call at the vell house", "talk to mrs hobb", "unlock the study", "read the will",
    "read the letter", "go back to the hall", "gather the suspects", "accuse edmund",
    "lay out the evidence",
]

# Just enough, by number: the watch, the glove, the forced hands and the witness.
ALIBI_WIN_BY_NUMBER = "3 1 1 2 1 1 3 5 2 2 3 2 1 1 3 6 1 2 7 3 3 1".split()

# Three clues (watch, glove, witness) but not the forced hands: the alibi holds.
ALIBI_PREMATURE = [
    "enter the workshop", "examine the body", "take the keys", "climb the stair",
    "pull the scrap", "go back down", "go back out", "climb to the belfry", "ask amos",
    "go back down", "call at the vell house", "gather the suspects", "accuse edmund",
    "lay out the evidence", "press him without proof",
]


@pytest.mark.parametrize("actions, ending_id", [
    (ALIBI_WIN, "the-clock-strikes-true"),
    (ALIBI_WIN_BY_NUMBER, "the-clock-strikes-true"),
    (ALIBI_PREMATURE, "the-alibi-holds"),
    (["7", "2", "1"], "the-wrong-hand"),
    (["call at the vell house", "gather the suspects", "accuse madame quill"], "the-wrong-hand"),
], ids=["win", "win-by-number", "premature", "accuse-tobias", "accuse-quill"])
def test_alibi_endings(actions, ending_id, quests, tmp_path):
    run = play(ALIBI, actions + [NEVER_READ], tmp_path)
    assert_ended_with(run, quests[ALIBI], ending_id)


def test_alibi_clues_are_flags_and_counted(quests):
    engine = engine_after(quests[ALIBI], ALIBI_WIN[:-2])
    flags = engine.state.flags
    clue_flags = [f for f in flags if f.startswith("clue_")]
    assert len(clue_flags) == 5 and all(flags[f] is True for f in clue_flags)
    assert flags["clues"] == 6  # five clue flags and the glove
    assert "glove" in engine.state.inventory


def test_alibi_evidence_is_checked_at_the_accusation(quests, tmp_path):
    out = clean_output(play(ALIBI, ALIBI_PREMATURE, tmp_path))
    assert "> lay out the evidence You open your notebook and find too many blank pages." in out
    assert "that the clock was made to lie" in out
    # Once accused, there is no walking away: only the bluff is offered.
    engine = engine_after(quests[ALIBI], ALIBI_PREMATURE[:-2])
    assert labels(engine) == ["Press him without proof"]


def test_alibi_locks_explain_themselves(tmp_path):
    run = play(ALIBI, ["call at the vell house", "unlock the study", "go back to the square",
                       "enter the workshop", "climb the stair", "take the keys", "climb the stair",
                       "study the gears through the loupe"], tmp_path)
    out = clean_output(run)
    assert "> unlock the study The study is locked" in out
    assert "> climb the stair The stair door is locked." in out
    assert "A watchmaker's loupe would show them." in out
    assert "Master Vell's Study" not in out
    assert out.index("You now have Master Vell's ring of keys.") < out.index("== The Gear Room ==")


def test_alibi_lore_can_come_up_in_play(quests):
    """Each lore entry is named by a keyword somewhere in the quest's own text."""
    quest = quests[ALIBI]
    texts = [d for s in quest.scenes.values() for d in s.descriptions]
    texts += [c.text for s in quest.scenes.values() for c in s.choices]
    story = "\n".join(texts)
    for entry in quest.lore.values():
        assert any(re.search(rf"(?<!\w){re.escape(k)}(?!\w)", story, re.IGNORECASE)
                   for k in entry.keywords), entry.id


# -- The Last Lantern --------------------------------------------------------------------

LANTERN_WIN = [
    "drain the can", "go out", "go to the pump house", "take the keys", "take the flask",
    "go back", "pour the flask", "go down the flooded drift", "wade across", "take the crank",
    "wade back", "go back up to the gallery", "go to the shaft", "wind the cage",
]

# The shorter way round: across the drift, up the ladderway, out through the pump house.
LANTERN_WIN_BY_NUMBER = "1 1 2 1 1 2 1 1 1 1 4 1".split()

LOOKS = ["look"] * 12


@pytest.mark.parametrize("actions, ending_id", [
    (LANTERN_WIN, "first-light"),
    (LANTERN_WIN_BY_NUMBER, "first-light"),
    (["go out", "go back to the lamp room", "go out", "go back to the lamp room",
      "feel your way"], "the-dark-takes-you"),
    (["drain the can", "go out", *LOOKS, "go down the drift", "wade across", "swim"],
     "under-the-black-water"),
    (["drain the can", "go out", *LOOKS[:8], "answer the voice"], "the-voice-in-the-dark"),
], ids=["win", "win-by-number", "oil-runs-out", "drowned", "the-voice"])
def test_lantern_endings(actions, ending_id, quests, tmp_path):
    run = play(LANTERN, actions + [NEVER_READ], tmp_path)
    assert_ended_with(run, quests[LANTERN], ending_id)


def test_lantern_every_walk_burns_oil(quests):
    quest = quests[LANTERN]
    engine = engine_after(quest, ["drain the can"])
    assert engine.state.flags["oil"] == 7
    engine.act("go out")
    assert engine.state.flags["oil"] == 6
    engine.act("look")
    assert engine.state.flags["oil"] == 6  # standing still costs turns, not oil
    engine.act("go down the drift")
    assert engine.state.flags["oil"] == 5


def test_lantern_when_the_oil_is_gone_only_the_dark_is_left(quests, tmp_path):
    quest = quests[LANTERN]
    engine = engine_after(quest, ["go out", "go back to the lamp room", "go out"])
    assert engine.state.flags["oil"] == 1
    assert "Cup your hands round the dying flame" in labels(engine)
    engine.act("go back to the lamp room")
    assert engine.state.flags["oil"] == 0
    assert labels(engine) == ["The flame is dying; feel your way on in the dark"]
    out = clean_output(play(LANTERN, ["go out", "go back to the lamp room", "go out",
                                      "go back to the lamp room", "go out"], tmp_path))
    assert "> go out Without light you cannot even find the wall." in out


def test_lantern_lingering_costs_you(quests):
    """The water rises past wading after turn 14; the voice calls from turn 10."""
    quest = quests[LANTERN]
    early = engine_after(quest, ["drain the can", "go out"])
    assert not any("voice" in label for label in labels(early))
    early.act("go down the drift")
    assert labels(early)[0] == "Wade across to the old workings"
    assert not any(label.startswith("Swim") for label in labels(early))

    late = engine_after(quest, ["drain the can", "go out", *LOOKS])
    assert "Follow the voice calling your name" in labels(late)
    late.act("go down the drift")
    assert "Swim across the risen water" in labels(late)
    assert "Wade across to the old workings" not in labels(late)
    result = late.act("wade across")
    assert result.kind == "locked" and late.state.scene == "drift"


def test_lantern_ladderway_escapes_the_risen_water(quests):
    engine = engine_after(quests[LANTERN], ["drain the can", "go out", "go down the drift",
                                            "wade across", "take the crank", *LOOKS[:10]])
    assert engine.act("wade back").kind == "locked"
    assert engine.act("climb the ladder").scene_id == "pump_house"


# -- Сказитель ---------------------------------------------------------------------------

SKAZITEL_WIN = [
    "войти в избушку",  # locked: the izba stands with its back to you
    "Избушка, избушка, встань к лесу задом, ко мне передом!",
    "захожу в избушку", "возьми ковш", "положи хворост", "выйти", "иду в рощу",
    "собираю хворост", "пойти к дубу", "ответ: луна", "морковка!", "вернись в рощу",
    "назад на опушку", "к колодцу", "зачерпни воды", "вернуться", "войти",
    "положить хворост в печь", "зажги огонь", "сесть к печи", "напои сказителя живой водой",
]

SKAZITEL_WIN_BY_NUMBER = "1 1 1 1 2 1 1 1 1 2 3 1 1 1 1 1 1 1".split()

SKAZITEL_STAY = [
    "стань ко мне передом", "войти", "выйти", "налево", "беру хворост", "к дубу", "морковь",
    "назад", "назад", "войди в избу", "кладу хворост", "разожги печь", "сажусь к печи",
    "останусь навсегда",
]


@pytest.mark.parametrize("actions, ending_id", [
    (SKAZITEL_WIN, "skazka-prodolzhaetsya"),
    (SKAZITEL_WIN_BY_NUMBER, "skazka-prodolzhaetsya"),
    (["направо", "пойти за огоньком"], "u-kikimory"),
    (SKAZITEL_STAY, "vechnaya-skazka"),
], ids=["win", "win-by-number", "kikimora", "stay-for-ever"])
def test_skazitel_endings(actions, ending_id, quests, tmp_path):
    run = play(SKAZITEL, actions + [NEVER_READ], tmp_path)
    assert_ended_with(run, quests[SKAZITEL], ending_id)


def test_skazitel_free_text_in_russian_drives_the_story(quests, tmp_path):
    engine_after(quests[SKAZITEL], SKAZITEL_WIN)  # every line was understood, none a free action
    out = clean_output(play(SKAZITEL, SKAZITEL_WIN, tmp_path))
    beats = [
        "> войти в избушку Избушка стоит к тебе задом",
        "ко мне передом! Избушка скрипнула",
        "> захожу в избушку == В избушке ==",
        "> положи хворост Печь пуста.",
        "> ответ: луна Кот фыркает",
        "> морковка! «Угадал!»",
        "> зажги огонь Искра, другая",
        "> напои сказителя живой водой Сказитель пьёт",
    ]
    for beat in beats:
        assert beat in out


CYRILLIC = re.compile(r"[А-Яа-яЁё]")
LATIN = re.compile(r"[A-Za-z]")


def test_skazitel_is_russian_throughout(quests):
    quest = quests[SKAZITEL]
    assert quest.language == "ru"
    shown = [quest.title, quest.author, quest.summary]
    shown += [t for i in quest.items.values() for t in (i.name, i.description)]
    shown += [t for e in quest.endings.values() for t in (e.title, e.text)]
    for scene in quest.scenes.values():
        shown += [scene.title, *scene.descriptions, *scene.hints, scene.recap]
        for c in scene.choices:
            shown += [c.label, c.text, c.locked, *c.words]
            shown += [e.args[0] for e in c.effects if e.kind == "say"]
    shown += [t for entry in quest.lore.values() for t in (entry.text, *entry.keywords)]
    shown += [quest.persona]
    for text in filter(None, shown):
        assert CYRILLIC.search(text) and not LATIN.search(text), text


def test_skazitel_names_a_better_narrator(quests):
    model = quests[SKAZITEL].model
    assert "ai-forever/rugpt3small_based_on_gpt2" in model
    assert "storyteller play skazitel --model ai-forever/rugpt3small_based_on_gpt2" in model


def test_skazitel_stays_short_for_the_cyrillic_tax(quests, gpt2_tokenizer):
    """Russian costs GPT-2 about a token a letter: each scene's own text stays small."""
    for scene in quests[SKAZITEL].scenes.values():
        for text in scene.descriptions:
            parts = "\n".join([text, *scene.hints, scene.recap])
            assert len(gpt2_tokenizer(parts)["input_ids"]) < 250, scene.id


@pytest.mark.parametrize("before, phrase, check", [
    ([], "ИЗБУШКА, ИЗБУШКА, повернись!", lambda e: e.state.flags["izba_turned"]),
    (["стань передом"], "вхожу в избушку", lambda e: e.state.scene == "izba"),
    (["стань передом"], "зайди в избу", lambda e: e.state.scene == "izba"),
    ([], "иду в березовую рощу", lambda e: e.state.scene == "roshcha"),
    ([], "пойду в берёзовую рощу", lambda e: e.state.scene == "roshcha"),
    ([], "иду к колодцу", lambda e: e.state.scene == "kolodets"),
    (["налево"], "возьми ветки", lambda e: "khvorost" in e.state.inventory),
    (["налево"], "собери хворост", lambda e: "khvorost" in e.state.inventory),
    (["налево", "к дубу"], "это морковка", lambda e: "ognivo" in e.state.inventory),
    (["налево", "к дубу"], "наверное, морковь?", lambda e: "ognivo" in e.state.inventory),
    (["стань передом", "войти"], "беру ковшик", lambda e: "kovsh" in e.state.inventory),
    (["стань передом", "войти", "возьми ковш", "выйти", "к колодцу"], "набери воды",
     lambda e: "voda" in e.state.inventory),
], ids=["turn-izba-caps", "enter-izba", "enter-izbu", "grove-e", "grove-yo", "well",
        "twigs", "firewood", "riddle", "riddle-question", "ladle", "water"])
def test_skazitel_understands_russian_phrasings(before, phrase, check, quests):
    engine = engine_after(quests[SKAZITEL], before)
    result = engine.act(phrase)
    assert result.kind in ("choice", "exit"), result.kind
    assert check(engine)


def test_skazitel_speaks_russian_in_the_games_own_words(tmp_path):
    out = clean_output(play(SKAZITEL, ["и", "2", "помощь"], tmp_path))
    assert "автор: Артель сказителей" in out
    # The quest says `address: informal`: the game's own sentences say «ты», as the tale does.
    assert "У тебя ничего нет." in out  # "и" is the inventory
    assert "Варианта 2 нет" in out or "Теперь у тебя есть" in out or "==" in out
    assert "Пиши, что делаешь" in out and "У вас" not in out
    assert "You " not in out
