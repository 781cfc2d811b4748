"""Narrated play end to end: the real tiny GPT-2, the context manager, seeds, the context log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from game.engine import Engine
from game.narration import TurnNarrator, context_request, state_card
from game.world.loader import load_quest
from game.sampling import Sampling

ROOT = Path(__file__).resolve().parent.parent
QUEST = ROOT / "quests" / "call-of-the-storyteller.yaml"
ACTIONS = "look\n1\ndance in the rain\n"


def play(tmp_path: Path, model: Path, seed: int, log: Path) -> subprocess.CompletedProcess:
    env = {"STORYTELLER_CONFIG_DIR": str(tmp_path / "cfg"), "STORYTELLER_DATA_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    (tmp_path / "cfg").mkdir(exist_ok=True)
    (tmp_path / "cfg" / "settings.yaml").write_text("sampling:\n  max_new_tokens: 16\n")
    return subprocess.run(
        [sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--model", str(model),
         "--seed", str(seed), "--context-log", str(log)],
        input=ACTIONS, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)


def test_plain_play_narrates_each_turn_reproducibly_and_logs_the_exact_prompts(tmp_path, tiny_model_dir):
    first = play(tmp_path, tiny_model_dir, 7, tmp_path / "a.jsonl")
    second = play(tmp_path, tiny_model_dir, 7, tmp_path / "b.jsonl")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert first.stdout == second.stdout  # same seed, model and actions: same story
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [entry["turn"] for entry in lines] == [1, 2, 3]
    for entry in lines:
        assert set(entry) >= {"turn", "prompt", "prompt_tokens", "max_new_tokens", "window", "segments"}
        assert entry["window"] == 1024 and entry["max_new_tokens"] == 16
        assert entry["prompt_tokens"] + entry["max_new_tokens"] <= entry["window"]
        assert entry["prompt"].rstrip().splitlines()[-1]  # ends with the turn's outcome or action
    assert "> dance in the rain" in lines[2]["prompt"]
    narrated = [line for line in first.stdout.splitlines() if line.startswith("~ ")]
    assert narrated, first.stdout


def test_a_model_that_cannot_load_leaves_the_quest_playable(tmp_path):
    env = {"STORYTELLER_CONFIG_DIR": str(tmp_path / "cfg"), "STORYTELLER_DATA_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "game", "play", str(QUEST), "--plain", "--model", str(tmp_path / "missing")],
        input="look\n1\n", capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert result.returncode == 0
    assert result.stdout.count("The Storyteller Spirit is silent") == 1  # said once
    assert "Traceback" not in result.stderr
    assert "Read the glyphs" in result.stdout or "1." in result.stdout


def test_narrate_prints_a_seeded_story(tiny_model_dir):
    cmd = [sys.executable, "-m", "game", "narrate", "Once upon a time", "--model", str(tiny_model_dir),
           "--seed", "3", "--max-new-tokens", "12"]
    a = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    b = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert a.returncode == 0, a.stderr
    assert a.stdout.startswith("Once upon a time") and len(a.stdout) > len("Once upon a time\n")
    assert a.stdout == b.stdout


def test_context_request_carries_the_quests_truth():
    quest = load_quest(QUEST)
    engine = Engine(quest, seed=1)
    engine.act("1")
    result = engine.act("take the lantern")
    engine.set_narration("The lantern hums.")
    result = engine.act("look")
    request = context_request(engine, result, persona="P", memory=["The player is a bard."])
    card = state_card(engine)
    assert card.scene == engine.scene.title
    assert request.memory == ["The player is a bard."]
    assert request.action == "look"
    assert request.turns and request.turns[-1].narration == "The lantern hums."
    assert all(t.action != "look" for t in request.turns)  # the new action is not also history
    assert request.scene_text == engine.description()


class CountingService:
    """Just enough of a narrator service for prompt building: real tokenizer, 256-token window."""

    status = "ready"
    window = 256

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def test_prompts_fit_a_small_window_over_a_long_game(gpt2_tokenizer):
    quest = load_quest(QUEST)
    engine = Engine(quest, seed=2)
    narrator = TurnNarrator(CountingService(gpt2_tokenizer), "The Spirit speaks.", Sampling(max_new_tokens=64))
    for i in range(120):
        result = engine.act("look" if i % 3 else f"I sing song number {i} to the ruins")
        engine.set_narration(f"Narration {i}. " * 5)
        prepared = narrator.prepare(engine, result)
        assert prepared.prompt.prompt_tokens + 64 <= 256
        assert len(gpt2_tokenizer.encode(prepared.prompt.text)) == prepared.prompt.prompt_tokens
        assert result.action in prepared.prompt.text


def test_the_next_prompt_starts_with_what_was_known_before_the_player_acted(gpt2_tokenizer):
    """Within a scene, `upcoming` (warmed up while the player types) starts the next real prompt."""
    quest = load_quest(QUEST)
    engine = Engine(quest, seed=2)
    service = CountingService(gpt2_tokenizer)
    service.window = 1024
    narrator = TurnNarrator(service, "The Spirit speaks.", Sampling(max_new_tokens=150))
    assert narrator.upcoming(engine) == ""  # no turns yet: nothing to compute ahead
    ahead, matched, stayed = "", 0, 0
    for i, action in enumerate(["look", "listen to the wind", "look around", "sing", "wait", "look",
                                "touch the archway", "whistle", "hum", "look", "kneel", "wait"]):
        result = engine.act(action)
        prepared = narrator.prepare(engine, result)
        assert engine.history[-1].card == state_card(engine).render()  # the turn keeps the card it was told with
        if ahead and not result.scene_entered:
            stayed += 1
            matched += prepared.prompt.text.startswith(ahead)
        engine.set_narration(f"The wind answers your call, number {i}. " * 4)
        ahead = narrator.upcoming(engine)
        assert ahead.endswith(f"number {i}.\n")  # it ends with the newest narration
    assert stayed >= 10 and matched >= stayed - 3  # all but the turns where older turns had to go


def test_the_prompts_of_scene_entering_options_are_known_exactly_before_the_player_picks(gpt2_tokenizer):
    """`prompts_ahead` (computed ahead while the player reads) gives the very prompt of each offered
    option that enters another scene, played on copies: the real game is not touched; given the
    expected start, also the options whose prompts do not start with it."""
    quest = load_quest(QUEST)
    engine = Engine(quest, seed=2)
    service = CountingService(gpt2_tokenizer)
    service.window = 1024
    narrator = TurnNarrator(service, "The Spirit speaks.", Sampling(max_new_tokens=150))
    checked = 0
    for i in range(12):
        state, turns = engine.state.copy(), len(engine.history)
        ahead = narrator.prompts_ahead(engine, limit=10)()
        expected = narrator.upcoming(engine)
        uncovered = narrator.prompts_ahead(engine, limit=10, expected=expected)()
        assert engine.state == state and len(engine.history) == turns  # only copies were played
        moving, elsewhere = [], []
        for option in sorted(engine.options(), key=lambda o: not o.is_exit):
            trial = Engine(quest, engine.seed, state=engine.state.copy(),
                           history=[type(t)(**vars(t)) for t in engine.history])
            result = trial.act(str(option.number))
            if result.narrate:
                prompt = narrator.prepare(trial, result).prompt
                if result.scene_entered:
                    moving.append((prompt.text, prompt.prefix))  # the prompt and its known start
                elif prompt.prefix != expected:
                    elsewhere.append((prompt.text, prompt.prefix))
        assert ahead == moving
        assert uncovered == moving + elsewhere
        checked += len(ahead)
        option = next((o for o in engine.options() if o.is_exit), None)
        result = engine.act(str(option.number) if option and i % 3 == 2 else "look")
        if engine.ended:
            break
        narrator.prepare(engine, result)
        engine.set_narration(f"The wind answers, number {i}. " * 4)
    assert checked >= 3
    assert narrator.prompts_ahead(engine, limit=1)() == narrator.prompts_ahead(engine, limit=10)()[:1]


# -- what the Spirit is told about the world model ---------------------------------------

CLOAK = ROOT / "quests" / "cloak-of-darkness.yaml"


def test_an_option_picked_by_number_reaches_the_prompt_and_the_export_as_its_label():
    from game.transcript import to_markdown

    engine = Engine(load_quest(CLOAK), seed=1)
    first = engine.act("2")
    request = context_request(engine, first, persona="")
    assert request.action == "Go west to the cloakroom"
    engine.act("x hook")
    second = engine.act("1")
    request = context_request(engine, second, persona="")
    assert request.action == "Go east to the foyer"
    assert [t.action for t in request.turns] == ["Go west to the cloakroom", "examine hook"]
    exported = to_markdown(engine)
    assert "**> Go west to the cloakroom**" in exported and "**> examine hook**" in exported
    assert "**> 1**" not in exported and "**> 2**" not in exported


def test_the_prompt_carries_the_score_the_description_in_force_and_a_catch_alls_answer():
    engine = Engine(load_quest(CLOAK), seed=1)
    engine.act("s")
    result = engine.act("dance")  # the dark bar's catch-all answers, and the turn is narrated
    assert result.kind == "response" and result.narrate
    request = context_request(engine, result, persona="")
    assert request.scene_text == "It is pitch dark in here. You cannot see a thing."
    assert request.authored == "In the dark? You could easily disturb something."
    assert state_card(engine).render() == "[Scene: Foyer Bar | Carrying: a black velvet cloak | Score: 0 of 2 | disturbed: 1]"
    for action in ("n", "w", "hang cloak on hook", "e", "s"):
        engine.act(action)
    request = context_request(engine, engine.act("look"), persona="")
    assert request.scene_text.startswith("The bar is far rougher")
    assert "Score: 1 of 2" in state_card(engine).render()
