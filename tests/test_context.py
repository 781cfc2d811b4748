"""The context manager keeps every prompt inside the window, trimming the least important first."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.context import (
    ACTION_MARKER,
    BOTTOM_ALLOWANCE,
    STOP_STRINGS,
    TRIM_CHUNK,
    ContextBuilder,
    ContextRequest,
    StateCard,
    Turn,
)

PERSONA = "The Storyteller Spirit narrates in second person, vivid and brief."
STATE = StateCard("The Broken Gate", ["brass lantern"], ["Torch lit"])


@dataclass(frozen=True)
class Lore:
    id: str
    keywords: tuple[str, ...]
    text: str


def history(n: int, word: str = "north") -> list[Turn]:
    return [
        Turn(f"go {word} step{i}x", "You walk on.", f"Wind howls in the pines at mile{i}x, torch swinging.")
        for i in range(n)
    ]


def request(**changes) -> ContextRequest:
    base = ContextRequest(
        action="open the gate",
        authored="The gate creaks open.",
        persona=PERSONA,
        state=STATE,
        memory=["The lantern was a gift from your mother."],
        author_note="Keep the mood tense and quiet.",
        lore=[Lore("gate-lore", ("gate",), "Dwarves forged the gate.")],
        scene_text="Rain hammers the broken gate of the old keep.",
        hints=["The key lies under the third stone."],
        recaps=["You escaped the flooded crypt.", "You crossed the black river."],
        turns=history(6),
    )
    return replace(base, **changes)


def seg(prompt, kind, label=None):
    found = [s for s in prompt.segments if s.kind == kind and (label is None or s.label == label)]
    assert len(found) == 1, found
    return found[0]


def check_guarantee(prompt, tokenizer):
    assert prompt.prompt_tokens == len(tokenizer.encode(prompt.text))
    assert prompt.prompt_tokens + prompt.max_new_tokens <= prompt.window


@pytest.fixture
def builder(gpt2_tokenizer):
    return lambda window=1024: ContextBuilder(gpt2_tokenizer, window)


# -- format -------------------------------------------------------------------------


def test_prompt_reads_like_a_transcript_in_stable_order(builder, gpt2_tokenizer):
    prompt = builder().build(request(), 150)
    text = prompt.text
    check_guarantee(prompt, gpt2_tokenizer)
    order = [
        PERSONA,
        "[Remember: The lantern was a gift",
        "[Earlier: You escaped the flooded crypt.]",
        "[Earlier: You crossed the black river.]",
        "Rain hammers the broken gate",
        "[Narrator knows: The key lies",
        "[Lore: Dwarves forged the gate.]",
        "[Author's note: Keep the mood tense and quiet.]",
        "> go north step0x\nYou walk on.\nWind howls in the pines at mile0x",
        "> go north step2x",
        "> go north step3x",
        "> go north step5x",
        "[Scene: The Broken Gate | Carrying: brass lantern | Torch lit]",
        "> open the gate\nThe gate creaks open.\n",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)
    assert text.startswith(PERSONA)
    assert text.endswith("\n> open the gate\nThe gate creaks open.\n")
    assert ACTION_MARKER == ">" and "\n>" in STOP_STRINGS
    assert [s.status for s in prompt.segments] == ["included"] * len(prompt.segments)
    kinds = [s.kind for s in prompt.segments]
    assert kinds[:8] == ["persona", "memory", "recap", "recap", "scene", "hints", "lore", "author_note"]
    assert kinds[-3:] == ["state", "action", "outcome"]
    assert text == prompt.prefix + "\n[Scene: The Broken Gate | Carrying: brass lantern | Torch lit]\n" \
                                   "> open the gate\nThe gate creaks open.\n"


def test_state_card_renders_compactly_and_accepts_plain_text(builder):
    assert StateCard("Cellar").render() == "[Scene: Cellar | Carrying: nothing]"
    prompt = builder().build(request(state="[Scene: Hall]"), 100)
    assert "[Scene: Hall]\n> open the gate\n" in prompt.text


def test_segment_counts_are_exact(builder, gpt2_tokenizer):
    prompt = builder().build(request(), 150)
    enc = lambda s: len(gpt2_tokenizer.encode(s))  # noqa: E731
    assert seg(prompt, "persona").tokens == enc(PERSONA + "\n")
    assert seg(prompt, "scene").tokens == enc("Rain hammers the broken gate of the old keep.\n")
    t = history(6)[0]
    first = seg(prompt, "turn", "turn 1: go north step0x")
    assert first.tokens == enc(f"\n> {t.action}\n{t.authored}\n{t.narration}\n")
    assert sum(s.tokens for s in prompt.segments) == prompt.prompt_tokens


# -- long histories -----------------------------------------------------------------


@pytest.mark.parametrize("window", [1024, 256])
def test_200_turns_keep_the_newest_and_trim_the_oldest_in_chunks(builder, gpt2_tokenizer, window):
    prompt = builder(window).build(request(turns=history(200)), 150 if window == 1024 else 100)
    check_guarantee(prompt, gpt2_tokenizer)
    turns = [s for s in prompt.segments if s.kind == "turn"]
    statuses = [s.status for s in turns]
    kept = statuses.count("included")
    assert statuses == ["trimmed"] * (200 - kept) + ["included"] * kept  # oldest go first
    assert statuses[-1] == "included" and "at mile199x" in prompt.text  # the newest turn
    trimmed = 200 - kept
    assert TRIM_CHUNK == 2 and (trimmed % 2 == 0 or trimmed == 199)
    for i, s in enumerate(turns):
        assert (f"step{i}x" in prompt.text) == (s.status == "included")
        assert s.full_tokens > 0 and s.tokens == (s.full_tokens if s.status == "included" else 0)
    if window == 1024:
        assert kept > 10
        assert all(s.status == "included" for s in prompt.segments if s.kind != "turn")


def told_history(n: int) -> list[Turn]:
    """Turns as the game records them: each with the state card it was told with and its number."""
    return [Turn(t.action, t.authored, t.narration, STATE.render(), i + 1) for i, t in enumerate(history(n))]


def test_each_prompt_starts_with_the_one_before_until_older_turns_are_dropped(builder):
    b = builder(512)
    turns = told_history(80)
    previous, changes = None, 0
    for n in range(40, 79):
        now = turns[n]
        prompt = b.build(request(turns=turns[:n], action=now.action, authored=now.authored, lore=[]), 100)
        first = next(i for i, s in enumerate(prompt.segments) if s.kind == "turn" and s.status == "included")
        if previous is not None:
            if first == previous[0]:
                assert prompt.text.startswith(previous[1])  # the cacheable prefix only grows
            else:
                assert (first - previous[0]) % TRIM_CHUNK == 0  # whole chunks of turn numbers
                changes += 1
        previous = (first, prompt.text)
    assert 1 <= changes <= 40 // TRIM_CHUNK + 1


def test_the_prefix_known_before_the_player_acts_starts_the_next_prompt(builder):
    b = builder(512)
    turns = told_history(60)
    kept_start = []
    for n in range(20, 59):
        ahead = b.build(request(turns=turns[:n], action="", authored="", lore=[]), 100).prefix
        now = turns[n]
        prompt = b.build(request(turns=turns[:n], action=now.action, authored=now.authored, lore=[]), 100)
        assert prompt.text.startswith(ahead)  # the new turn (under the allowance) trims the same turns
        assert ahead.endswith(f"mile{n - 1}x, torch swinging.\n")
        kept_start.append(ahead[:200])
    long_outcome = "The gate creaks open. " * (BOTTOM_ALLOWANCE // 4)  # far over the allowance
    ahead = b.build(request(turns=turns[:40], action="", authored="", lore=[]), 100).prefix
    prompt = b.build(request(turns=turns[:40], authored=long_outcome, lore=[]), 100)
    assert not prompt.text.startswith(ahead)  # a turn this long makes room by dropping more
    assert prompt.prompt_tokens + 100 <= 512


def test_200_turns_build_fast(builder):
    b = builder()
    req = request(turns=history(200))
    start = time.perf_counter()
    b.build(req, 150)
    assert time.perf_counter() - start < 5  # generous: well under a second in practice


# -- oversized pinned segments ------------------------------------------------------


@pytest.mark.parametrize("window", [1024, 256])
def test_huge_player_input_is_clipped_never_dropped(builder, gpt2_tokenizer, window):
    action = "I shout at the rain " + "very " * 5000 + "THE-END"
    prompt = builder(window).build(request(action=action, turns=history(30)), 100)
    check_guarantee(prompt, gpt2_tokenizer)
    act = seg(prompt, "action")
    assert act.status == "clipped" and act.full_tokens > 5000 and 0 < act.tokens < window
    assert "> I shout at the rain very very" in prompt.text
    assert "THE-END" not in prompt.text
    line = prompt.text[prompt.text.index("> I shout") :].split("\n")[0]
    assert line.endswith("…")
    for kind in ("persona", "state", "outcome", "scene"):
        assert seg(prompt, kind).status == "included"


def test_huge_scene_text_is_clipped_and_the_rest_kept(builder, gpt2_tokenizer):
    scene = "The hall stretches on. " + "Pillars rise into darkness. " * 3000
    prompt = builder(256).build(request(scene_text=scene), 100)
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "scene").status == "clipped"
    assert "The hall stretches on. Pillars rise" in prompt.text
    for kind in ("persona", "memory", "state", "action", "outcome"):
        assert seg(prompt, kind).status == "included"
    assert prompt.text.endswith("> open the gate\nThe gate creaks open.\n")


def test_several_huge_pinned_segments_are_clipped_biggest_first(builder, gpt2_tokenizer):
    req = request(
        persona="Speak softly. " * 2000,
        scene_text="Dust everywhere. " * 3000,
        action="search " * 4000,
        memory=["Short note."],
    )
    prompt = builder(256).build(req, 100)
    check_guarantee(prompt, gpt2_tokenizer)
    for kind in ("persona", "scene", "action"):
        assert seg(prompt, kind).status == "clipped"
    assert seg(prompt, "memory").status == "included"  # small pinned segments stay whole
    assert seg(prompt, "state").status == "included"
    assert "> search search" in prompt.text


def test_pinned_segments_give_way_to_a_clipped_action_in_a_tiny_budget(builder, gpt2_tokenizer):
    prompt = builder(64).build(request(persona="Speak softly. " * 200, action="climb " * 300), 50)
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "action").status == "clipped"
    assert "> climb climb" in prompt.text


# -- Russian ------------------------------------------------------------------------


def test_russian_text_is_counted_exactly_and_fits(builder, gpt2_tokenizer):
    persona = "Дух-Рассказчик говорит от второго лица, ярко и кратко."
    turns = [
        Turn(f"иди на север {i}", "Ты идёшь дальше.", "Ветер воет в соснах, фонарь качается.") for i in range(60)
    ]
    req = request(persona=persona, turns=turns, action="открой ворота", authored="Ворота скрипят.",
                  scene_text="Дождь стучит по разбитым воротам старой крепости.")
    prompt = builder(512).build(req, 100)
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "persona").tokens == len(gpt2_tokenizer.encode(persona + "\n")) > 3 * len(persona.split())
    t = turns[-1]
    newest = seg(prompt, "turn", "turn 60: иди на север 59")
    assert newest.tokens == len(gpt2_tokenizer.encode(f"\n> {t.action}\n{t.authored}\n{t.narration}\n"))
    assert sum(s.tokens for s in prompt.segments) == prompt.prompt_tokens
    # the same history in English fits more turns: Russian costs several times more tokens
    english = builder(512).build(request(turns=history(60)), 100)
    kept = lambda p: sum(s.kind == "turn" and s.status == "included" for s in p.segments)  # noqa: E731
    assert kept(prompt) < kept(english)


def test_huge_russian_action_is_clipped_on_a_character_boundary(builder, gpt2_tokenizer):
    prompt = builder(256).build(request(action="кричу " * 3000), 100)
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "action").status == "clipped"
    assert "> кричу кричу" in prompt.text and "\ufffd" not in prompt.text


# -- lore ---------------------------------------------------------------------------

LANTERN = Lore("lantern", ("Lantern", "lamp"), "The brass lantern never goes out while its owner lives.")
DOOR = Lore("door", ("iron door",), "The iron door answers only to song.")
FOX = Lore("fox", ("лиса",), "Лиса знает тайные тропы.")


def lore_ids(prompt):
    return [s.label for s in prompt.segments if s.kind == "lore" and s.status == "included"]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"action": "light the LANTERN"}, ["lantern"]),
        ({"action": "light the lanterns"}, []),  # whole words only
        ({"action": "relight the lamp", "authored": ""}, ["lantern"]),
        ({"authored": "The iron door groans."}, ["door"]),
        ({"action": "knock on the iron"}, []),  # the whole phrase must appear
        ({"scene_text": "An iron door blocks the way."}, ["door"]),
        ({"action": "следуй за лисой"}, []),  # another word form is another word
        ({"action": "иди за лиса!"}, ["fox"]),
    ],
)
def test_lore_is_included_only_when_a_keyword_appears(builder, changes, expected):
    req = request(lore=[LANTERN, DOOR, FOX], **{"scene_text": "A quiet yard.", **changes})
    assert lore_ids(builder().build(req, 100)) == expected


def test_lore_named_by_a_kept_turn_is_told_once_with_that_turn(builder):
    turns = told_history(6)
    turns[2] = Turn("raise the lantern", "It glows.", "", STATE.render(), 3)
    turns[4] = Turn("swing the lamp", "Shadows jump.", "", STATE.render(), 5)
    prompt = builder().build(request(lore=[LANTERN], turns=turns, action="wave the lamp"), 100)
    line = "[Lore: The brass lantern never goes out while its owner lives.]"
    assert prompt.text.count(line) == 1
    assert f"\n{STATE.render()}\n{line}\n> raise the lantern\n" in prompt.text  # with the first turn naming it
    assert lore_ids(prompt) == []  # not repeated for the new action


def test_lore_is_not_woken_by_the_narrators_own_words(builder):
    turns = [Turn("wait", "Time passes.", "A lantern swings in the dark.", number=1)]
    assert LANTERN.text not in builder().build(request(lore=[LANTERN], turns=turns), 100).text


def test_lore_goes_with_the_turn_that_named_it(builder):
    turns = [Turn("raise the lantern", "It glows.", "", number=1)] + told_history(40)[1:]
    prompt = builder(512).build(request(lore=[LANTERN], turns=turns), 100)
    assert "raise the lantern" not in prompt.text and LANTERN.text not in prompt.text


def test_lore_is_trimmed_before_pinned_segments(builder, gpt2_tokenizer):
    big_lore = Lore("legend", ("gate",), "The legend of the gate is long. " * 30)
    req = request(lore=[big_lore], turns=history(1), recaps=[])
    full = builder().build(req, 100)
    assert seg(full, "lore").status == "included"
    prompt = builder(full.prompt_tokens + 100 - 20).build(req, 100)  # 20 tokens too small
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "lore").status == "trimmed"
    assert "The legend of the gate" not in prompt.text
    assert all(s.status == "included" for s in prompt.segments if s.kind != "lore")  # hints, note, turn too


def test_lore_named_by_the_new_action_outlives_older_lore(builder, gpt2_tokenizer):
    old = Lore("old", ("keep",), "The keep is older than the pines. " * 3)  # the scene names it
    new = Lore("new", ("hatch",), "Dwarves forged the hatch. " * 3)  # the new action names it
    req = request(lore=[new, old], recaps=[], hints=[], author_note=None, turns=history(1),
                  action="open the hatch", authored="The hatch creaks open.")
    full = builder().build(req, 100)
    assert lore_ids(full) == ["old", "new"]  # in prompt order: the scene's, then the action's
    prompt = builder(full.prompt_tokens + 100 - 5).build(req, 100)
    check_guarantee(prompt, gpt2_tokenizer)
    assert lore_ids(prompt) == ["new"]


# -- author's note and recaps --------------------------------------------------------


def test_authors_note_stays_in_place_after_the_scene_and_before_the_turns(builder):
    text = builder().build(request(turns=history(10)), 100).text
    assert text.index("[Lore:") < text.index("[Author's note:") < text.index("step0x")
    none = builder().build(request(turns=[]), 100).text
    assert none.index(PERSONA) < none.index("[Author's note:") < none.index("[Scene: The Broken Gate")


def test_recaps_are_trimmed_oldest_first_after_the_older_turns(builder, gpt2_tokenizer):
    recaps = [f"Recap number {i}: you wandered for a long while in the hills." for i in range(8)]
    req = request(recaps=recaps, turns=history(8))
    full = builder().build(req, 100)
    recap_tokens = sum(s.tokens for s in full.segments if s.kind == "recap")
    turn_tokens = sum(s.tokens for s in full.segments if s.kind == "turn")
    newest = full.segments[[s.kind for s in full.segments].index("state") - 1].tokens
    window = full.prompt_tokens - (turn_tokens - newest) - recap_tokens // 2 + 100
    prompt = builder(window).build(req, 100)
    check_guarantee(prompt, gpt2_tokenizer)
    statuses = [s.status for s in prompt.segments if s.kind == "recap"]
    dropped = statuses.count("trimmed")
    assert 0 < dropped < 8 and statuses == ["trimmed"] * dropped + ["included"] * (8 - dropped)
    assert [s.status for s in prompt.segments if s.kind == "turn"] == ["trimmed"] * 7 + ["included"]
    assert seg(prompt, "lore").status == "included"  # lore goes only after all recaps


def test_newest_turn_is_clipped_when_nothing_else_is_left(builder, gpt2_tokenizer):
    long_turn = Turn("wait", "Time passes.", "The rain keeps falling on the stones. " * 60)
    req = request(turns=history(3) + [long_turn])
    prompt = builder(260).build(req, 100)
    check_guarantee(prompt, gpt2_tokenizer)
    newest = [s for s in prompt.segments if s.kind == "turn"][-1]
    assert newest.status == "clipped"
    assert "> wait\nTime passes.\nThe rain keeps falling" in prompt.text
    for kind in ("author_note", "hints", "lore", "recap"):
        assert all(s.status == "trimmed" for s in prompt.segments if s.kind == kind)


# -- window edge cases --------------------------------------------------------------


@pytest.mark.parametrize("max_new", [1024, 2000])
def test_max_new_tokens_filling_the_window_is_refused(builder, max_new):
    with pytest.raises(ValueError, match=f"max_new_tokens {max_new} leaves no room in the 1024-token window"):
        builder().build(request(), max_new)


@pytest.mark.parametrize("max_new", [0, -5, 1.5, True])
def test_bad_max_new_tokens_is_refused(builder, max_new):
    with pytest.raises(ValueError, match="max_new_tokens"):
        builder().build(request(), max_new)


@pytest.mark.parametrize("window", [0, -1, 10.0, None])
def test_bad_window_is_refused(gpt2_tokenizer, window):
    with pytest.raises(ValueError, match="window"):
        ContextBuilder(gpt2_tokenizer, window)


def test_max_new_tokens_close_to_the_window(builder, gpt2_tokenizer):
    with pytest.raises(ValueError, match="leaves only 1 tokens for the prompt in the 1024-token window"):
        builder().build(request(), 1023)
    for room in (3, 6, 12, 40):
        prompt = builder().build(request(turns=history(50)), 1024 - room)
        check_guarantee(prompt, gpt2_tokenizer)
        assert prompt.text.lstrip("\n").startswith(">") or "\n> " in prompt.text
        assert seg(prompt, "action").status != "trimmed"


def test_empty_request_still_makes_a_prompt(builder, gpt2_tokenizer):
    prompt = builder(64).build(ContextRequest(action=""), 32)
    check_guarantee(prompt, gpt2_tokenizer)
    assert prompt.text.endswith("\n") and [s.kind for s in prompt.segments] == ["action"]


_TEXT = st.text(alphabet="abc xyzАБВгде…>\n.[]'é7", max_size=60) | st.just("word " * 400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    persona=_TEXT, scene=_TEXT, action=_TEXT, authored=_TEXT, note=st.none() | _TEXT,
    memory=st.lists(_TEXT, max_size=3), recaps=st.lists(_TEXT, max_size=4),
    turns=st.lists(st.builds(Turn, _TEXT, _TEXT, _TEXT), max_size=12),
    window=st.integers(8, 1024), share=st.floats(0.01, 0.99),
)
def test_any_input_fits_the_window(gpt2_tokenizer, persona, scene, action, authored, note, memory,
                                   recaps, turns, window, share):
    max_new = max(1, min(window - 1, int(window * share)))
    req = ContextRequest(action=action, authored=authored, persona=persona, state="[Scene: X]", memory=memory,
                         author_note=note, lore=[Lore("a", ("abc",), "Lore abc.")], scene_text=scene,
                         hints=["a hint"], recaps=recaps, turns=turns)
    try:
        prompt = ContextBuilder(gpt2_tokenizer, window).build(req, max_new)
    except ValueError as err:
        assert "max_new_tokens" in str(err) and window - max_new < 4
        return
    check_guarantee(prompt, gpt2_tokenizer)
    assert seg(prompt, "action").status != "trimmed"


# -- log and imports ------------------------------------------------------------------


def test_to_log_is_one_json_line(builder):
    prompt = builder(256).build(request(turns=history(40)), 100)
    record = prompt.to_log(7)
    assert set(record) == {"turn", "prompt", "prompt_tokens", "max_new_tokens", "window", "segments"}
    assert record["turn"] == 7 and record["prompt"] == prompt.text and record["window"] == 256
    assert record["prompt_tokens"] == prompt.prompt_tokens and record["max_new_tokens"] == 100
    assert all(set(s) == {"kind", "label", "tokens", "full_tokens", "status"} for s in record["segments"])
    assert {s["status"] for s in record["segments"]} == {"included", "trimmed"}
    line = json.dumps(record, ensure_ascii=False)
    assert "\n" not in line and json.loads(line) == record


def test_importing_the_module_loads_no_model_libraries():
    code = "import sys, game.context; print(any(m in sys.modules for m in ('torch', 'transformers', 'textual')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class BoundaryTokenizer:
    """One token per character, plus one per blank line: segments joined cost more than apart."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text] + [0] * text.count("\n\n")


def test_final_text_is_verified_when_counts_do_not_add_up():
    tokenizer = BoundaryTokenizer()
    for window in range(120, 1200, 7):
        prompt = ContextBuilder(tokenizer, window).build(request(turns=history(20)), 50)
        assert prompt.prompt_tokens == len(tokenizer.encode(prompt.text))
        assert sum(s.tokens for s in prompt.segments) < prompt.prompt_tokens  # the joins cost extra
        assert prompt.prompt_tokens + 50 <= window
        assert seg(prompt, "action").status != "trimmed"


def test_a_turn_that_names_lore_is_told_the_same_way_in_the_next_prompt(builder):
    b = builder()
    first = request(turns=told_history(2), action="raise the lantern", authored="It glows.", lore=[LANTERN])
    prompt = b.build(first, 100)
    assert lore_ids(prompt) == ["lantern"]  # shown after the state card, before the action
    assert prompt.text.endswith(f"{STATE.render()}\n[Lore: {LANTERN.text}]\n> raise the lantern\nIt glows.\n")
    told = Turn("raise the lantern", "It glows.", "The lantern flares.", STATE.render(), 3)
    following = b.build(request(turns=told_history(2) + [told], lore=[LANTERN]), 100)
    assert following.text.startswith(prompt.text)
    assert lore_ids(following) == []  # told once, with the turn that named it


def test_without_a_state_card_the_new_turn_still_starts_on_a_line_of_its_own(builder, gpt2_tokenizer):
    turns = [Turn("raise the lantern", "It glows.", "Light pools.", number=1)]
    named = request(state="", turns=turns, action="wave the lamp again", authored="", lore=[LANTERN])
    plain = request(state="", turns=turns, action="wave again", authored="", lore=[LANTERN])
    b = builder()
    assert b.build(named, 100).text.endswith("Light pools.\n\n> wave the lamp again\n")  # lore: with turn 1
    fresh = request(state="", turns=[], action="wave the lamp", authored="", lore=[LANTERN])
    assert b.build(fresh, 100).text.endswith(f"\n\n[Lore: {LANTERN.text}]\n> wave the lamp\n")
    assert b.build(plain, 100).text.endswith("Light pools.\n\n> wave again\n")
    for prompt in (b.build(named, 100), b.build(fresh, 100), b.build(plain, 100)):
        check_guarantee(prompt, gpt2_tokenizer)


def test_a_huge_past_action_is_capped_so_the_narrators_guidance_survives(builder, gpt2_tokenizer):
    from game.context import CLIP_MARKER, TOLD_ACTION_CHARS

    paste = "sing " + "la " * 1700  # a 5,000-character paste, one turn ago
    turns = history(3) + [Turn(paste, "Nothing answers.", "The hall echoes.")]
    prompt = builder(1024).build(request(turns=turns), 100)
    check_guarantee(prompt, gpt2_tokenizer)
    for kind in ("author_note", "hints", "lore"):
        assert all(s.status == "included" for s in prompt.segments if s.kind == kind), kind
    told = f"{ACTION_MARKER} {paste.strip()[:TOLD_ACTION_CHARS].rstrip()}{CLIP_MARKER}"
    assert told in prompt.text and "la " * 200 not in prompt.text
    # A short past action is told whole.
    assert f"{ACTION_MARKER} go north step2x" in prompt.text
