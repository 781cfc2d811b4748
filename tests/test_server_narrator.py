"""The Storyteller Spirit on a REAL llama.cpp server (llama-cpp-python's), serving the tiny GPT-2.

Streaming, cancel, seeds, stop strings, both API styles, exact window and counts, the
context log, and every failure: a closed port, a wrong URL, TLS, a missing or wrong
API key (the real server's own --api_key), an unknown model, a server stopped
mid-stream, and, through a small local proxy in front of the real server, 403, 429,
garbage, a huge reply, a stream cut off and a server that never answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from game.engine import Engine
from game.narration import TurnNarrator
from game.narrator.remote import ServerConfig, ServerNarrator
from game.narrator.service import Ready, Silent
from game.world.loader import load_quest
from game.sampling import Sampling
from tests.conftest import QUESTS, ROOT
from tests.llama_server import MODEL_ALIAS, LlamaServer, free_port
from tests.server_double import FaultyProxy

PROMPT = "The Storyteller Spirit speaks of a dark cave.\n> look around\n"
FEW = Sampling(max_new_tokens=12)
ENGLISH = "The Storyteller Spirit speaks of a dark cave.\n> look around\n  Twice  spaced, 1234 ok?"
RUSSIAN = "Дух Сказителя говорит о тёмной пещере. Ёжик — «да»!"
KEY = "sk-test-5ecret-value"


def server_tokens(server, text: str) -> list[int]:
    """The server's own tokenizer, asked directly."""
    request = urllib.request.Request(server.root + "/extras/tokenize", method="POST",
                                     data=json.dumps({"input": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())["tokens"]


def connected(url: str, **config) -> ServerNarrator:
    narrator = ServerNarrator(ServerConfig(url, **config))
    event = narrator.load()
    assert isinstance(event, Ready), event
    return narrator


def silent_reason(url: str, **config) -> str:
    narrator = ServerNarrator(ServerConfig(url, **config))
    event = narrator.load()
    assert isinstance(event, Silent) and narrator.status == "silent", event
    assert "\n" not in event.reason and "Traceback" not in event.reason
    return event.reason


@pytest.fixture(scope="module")
def narrator(llama_server) -> ServerNarrator:
    return connected(llama_server.url)


@pytest.fixture(scope="module")
def chat_narrator(llama_server) -> ServerNarrator:
    return connected(llama_server.url, api_style="chat")


# --- connecting: model, window, counts, API style ----------------------------------------------

def test_connects_with_the_servers_model_window_and_tokenizer(narrator, llama_server, gpt2_tokenizer):
    assert narrator.status == "ready" and narrator.model_name == MODEL_ALIAS
    assert narrator.window == 1024  # the server's n_ctx, which it names itself
    assert "oversized prompt" in narrator.window_source
    assert narrator.count_source == "the server's tokenizer (/extras/tokenize)"
    for text in (ENGLISH, RUSSIAN):
        assert narrator.tokenizer.encode(text) == server_tokens(llama_server, text) == gpt2_tokenizer.encode(text)
    # llama-cpp-python reports no chat template, so auto talks completion, and says why
    assert narrator.api_style == "completion" and "no chat template" in narrator.api_reason
    about = narrator.describe()
    assert "completion API" in about and "window 1024" in about and "/extras/tokenize" in about
    # it takes top_k and the repetition penalty; no server takes no_repeat_ngram_size: named
    assert narrator.notes_for(Sampling(no_repeat_ngram_size=0)) == []
    assert narrator.notes_for(Sampling(no_repeat_ngram_size=3)) == [
        "This server (llama-cpp-python) does not take no_repeat_ngram_size: the personality's value for it "
        "cannot be used."]


def test_the_settings_window_is_kept_within_the_servers(llama_server):
    assert connected(llama_server.url, window=512).window == 512
    bigger = connected(llama_server.url, window=4096)
    assert bigger.window == 1024 and "4096 is more than it has" in bigger.window_source


def test_the_server_path_imports_no_torch_or_transformers(llama_server):
    code = ("import sys\n"
            "from game.narrator.remote import ServerConfig, ServerNarrator\n"
            "from game.sampling import Sampling\n"
            f"n = ServerNarrator(ServerConfig({llama_server.url!r}))\n"
            "assert type(n.load()).__name__ == 'Ready', n.reason\n"
            "story = n.narrate('Once upon a time', Sampling(max_new_tokens=4), seed=1)\n"
            "assert story.error is None, story.error\n"
            "heavy = {'torch', 'transformers'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))


# --- narrating -----------------------------------------------------------------------------------

def test_text_streams_in_chunks(narrator):
    chunks = []
    stream = narrator.stream(PROMPT, Sampling(max_new_tokens=20), seed=1, stop_strings=())
    for chunk in stream:
        chunks.append(chunk)
    assert len(chunks) >= 3 and "".join(chunks) == stream.text == stream.raw
    assert 3 <= stream.new_tokens <= 20 and len(stream.token_times) == len(chunks)
    assert stream.token_times == sorted(stream.token_times)


def test_same_seed_same_story_different_seed_different_story(narrator):
    first = narrator.narrate(PROMPT, FEW, seed=7, stop_strings=())
    again = narrator.narrate(PROMPT, FEW, seed=7, stop_strings=())
    other = narrator.narrate(PROMPT, FEW, seed=8, stop_strings=())
    assert first.error is None and first.raw
    assert first.raw == again.raw and other.raw != first.raw


def test_stop_strings_end_the_reply_and_are_never_shown(narrator):
    plain = narrator.narrate(PROMPT, Sampling(max_new_tokens=16), seed=5, stop_strings=())
    stop = next(char for char in plain.raw if char.isalpha())  # a letter it is about to write
    chunks = []
    story = narrator.narrate(PROMPT, Sampling(max_new_tokens=16), seed=5, stop_strings=[stop],
                             on_chunk=chunks.append)
    assert stop not in "".join(chunks) and stop not in story.text and story.error is None


def test_cancel_closes_the_stream_at_once_and_frees_the_server(narrator):
    cancel, chunks = threading.Event(), []
    began = []

    def on_chunk(text):
        chunks.append(text)
        if not began:
            began.append(time.monotonic())
            cancel.set()

    story = narrator.narrate(PROMPT, Sampling(max_new_tokens=900), seed=3, cancel=cancel,
                             on_chunk=on_chunk, stop_strings=())
    assert story.cancelled and story.error is None
    assert time.monotonic() - began[0] < 1.0 and len(chunks) <= 3
    assert narrator.narrate(PROMPT, FEW, seed=4).error is None  # the server took the next one


def test_personality_values_reach_the_server_by_its_own_names(narrator):
    sampling = Sampling(temperature=0.7, top_p=0.9, top_k=33, repetition_penalty=1.3, max_new_tokens=9)
    url, body = narrator.request_body("x", None, sampling, 5, ("\n>",), 0)
    assert url.endswith("/v1/completions") and body["prompt"] == "x" and body["stream"] is True
    assert (body["temperature"], body["top_p"], body["top_k"], body["repeat_penalty"]) == (0.7, 0.9, 33, 1.3)
    assert body["max_tokens"] == 9 and body["seed"] == 5 and body["stop"] == ["\n>"]


# --- turns through the game: counts equal the server's tokenizer ----------------------------------

def play_turns(narrator, actions, context_log=None):
    from game.personality import load_personalities
    from game.settings import Settings

    persona, sampling = Settings().effective_sampling(load_personalities()[0])
    engine = Engine(load_quest(QUESTS / "call-of-the-storyteller.yaml"), seed=1)
    turn_narrator = TurnNarrator(narrator, persona, sampling.with_values(max_new_tokens=24), seed=11,
                                 context_log=context_log)
    told = []
    for action in actions:
        result = engine.act(action)
        if not result.narrate:
            continue
        prepared = turn_narrator.prepare(engine, result)
        narration = turn_narrator.run(prepared)
        assert narration.error is None, narration.error
        engine.set_narration(narration.text)
        told.append((prepared, narration))
    return told


ACTIONS = ["look", "1", "listen to the wind", "2", "examine the archway", "look around", "3", "1", "look"]


def test_turns_are_narrated_with_exact_counts_inside_the_window(narrator, llama_server, tmp_path):
    log = tmp_path / "context.jsonl"
    told = play_turns(narrator, ACTIONS, log)
    assert len(told) >= 5
    for prepared, narration in told:
        prompt = prepared.prompt
        assert prompt.prompt_tokens == len(server_tokens(llama_server, prompt.text))
        assert prompt.prompt_tokens + prepared.sampling.max_new_tokens <= 1024
    assert any(n.text for _, n in told)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(told)
    for record in records:
        assert record["prompt_tokens"] == len(server_tokens(llama_server, record["prompt"]))
        assert record["narrator"] == {"server": llama_server.url, "model": MODEL_ALIAS, "api_style": "completion",
                                      "window_source": narrator.window_source,
                                      "counts": "the server's tokenizer (/extras/tokenize)"}


def test_a_long_story_is_trimmed_to_the_servers_window(narrator, llama_server):
    narrator_small = connected(llama_server.url, window=300)
    told = play_turns(narrator_small, ACTIONS * 2)
    assert any(p.prompt.with_status("trimmed") for p, _ in told)
    for prepared, _ in told:
        assert prepared.prompt.prompt_tokens + prepared.sampling.max_new_tokens <= 300
        assert prepared.prompt.prompt_tokens == len(server_tokens(llama_server, prepared.prompt.text))


def chat_narrator_log(server) -> str:
    return server.log.read_text(encoding="utf-8", errors="replace")


def test_chat_style_sends_messages_through_the_servers_chat_template(chat_narrator, llama_server, tmp_path):
    assert chat_narrator.api_style == "chat" and chat_narrator.api_reason == "set in the settings"
    assert chat_narrator.prompt_reserve > 0
    log = tmp_path / "chat.jsonl"
    told = play_turns(chat_narrator, ACTIONS[:5], log)
    assert told
    for prepared, _ in told:
        messages = prepared.prompt.messages
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
        assert messages[-1]["content"].startswith("> ")
        overhead = chat_narrator.chat_overhead(messages)
        assert prepared.prompt.prompt_tokens + prepared.sampling.max_new_tokens + overhead <= 1024
    record = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert record["narrator"]["api_style"] == "chat" and record["messages"] == told[-1][0].prompt.messages
    assert "POST /v1/chat/completions HTTP/1.1\" 200" in chat_narrator_log(llama_server)
    stream = chat_narrator.stream("", Sampling(max_new_tokens=16), seed=2, stop_strings=(),
                                  messages=[{"role": "system", "content": "A tale."},
                                            {"role": "user", "content": "go on"}])
    chunks = list(stream)
    assert chunks and stream.new_tokens >= 1


def test_chat_prompts_with_the_templates_own_tokens_fit_the_window(llama_server):
    """The server's own count of the templated prompt (usage.prompt_tokens) leaves room for the reply."""
    narrator = connected(llama_server.url, api_style="chat", window=400)
    told = play_turns(narrator, ACTIONS * 2)
    assert any(p.prompt.with_status("trimmed") for p, _ in told)
    for prepared, _ in told:
        request = urllib.request.Request(llama_server.url + "/chat/completions", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"messages": prepared.prompt.messages,
                                                          "max_tokens": 1}).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            used = json.loads(reply.read())["usage"]["prompt_tokens"]
        assert used + prepared.sampling.max_new_tokens <= 400


def test_plain_play_narrates_every_turn_from_the_server(llama_server, tmp_path):
    """The issue's 'done when': play --plain --server URL, with the context log's counts exact."""
    log = tmp_path / "context.jsonl"
    env = dict(os.environ, STORYTELLER_CONFIG_DIR=str(tmp_path / "config"),
               STORYTELLER_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "game", "play", str(QUESTS / "call-of-the-storyteller.yaml"),
                          "--plain", "--server", llama_server.url, "--seed", "5", "--context-log", str(log)],
                         input="look\n1\nlisten to the wind\n2\nquit\n", capture_output=True, text=True,
                         encoding="utf-8", cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "silent" not in run.stdout and "lost its words" not in run.stdout
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 3
    for record in records:
        assert record["prompt_tokens"] == len(server_tokens(llama_server, record["prompt"]))
        assert record["window"] == 1024 and record["narrator"]["server"] == llama_server.url
    assert run.stdout.count("\n~ ") >= 1  # the Spirit's words, as they came from the server
    assert run.stdout.count("(Storyteller Spirit: This server (llama-cpp-python) does not take "
                            "no_repeat_ngram_size: the personality's value for it cannot be used.)") == 1


# --- failures: one line each, the game goes on ----------------------------------------------------

def test_a_closed_port_is_one_line_and_the_next_try_connects_again(tmp_path):
    port = free_port()
    reason = silent_reason(f"http://127.0.0.1:{port}/v1")
    assert reason == f"cannot reach the server at http://127.0.0.1:{port}/v1: connection refused (is it running?)"


def test_a_wrong_url_says_where_the_base_url_ends(llama_server):
    reason = silent_reason(llama_server.root + "/api")
    assert "/api/models was not found (HTTP 404)" in reason and "usually ends in /v1" in reason


def test_tls_to_a_plain_http_server_is_one_line(llama_server):
    reason = silent_reason(llama_server.url.replace("http://", "https://"))
    assert reason.startswith(f"TLS error talking to 127.0.0.1:{llama_server.port}")


def test_an_unknown_model_lists_the_servers_models(llama_server):
    reason = silent_reason(llama_server.url, model="gpt-9")
    assert reason == f"the server has no model 'gpt-9'; it has: {MODEL_ALIAS}"


@pytest.fixture(scope="module")
def key_server(tiny_gguf, llama_server):
    with LlamaServer(tiny_gguf, api_key=KEY) as server:
        yield server


def test_a_server_that_wants_a_key_names_the_variable_and_the_key_never_shows(key_server, monkeypatch, tmp_path):
    monkeypatch.delenv("STORYTELLER_API_KEY", raising=False)
    assert silent_reason(key_server.url) == ("the server wants an API key (HTTP 401): set the environment "
                                             "variable STORYTELLER_API_KEY")
    monkeypatch.setenv("MY_KEY", "wrong-key")
    assert silent_reason(key_server.url, api_key_env="MY_KEY") == (
        "the server refused the API key (HTTP 401): check the key in the environment variable MY_KEY")
    monkeypatch.setenv("STORYTELLER_API_KEY", KEY)
    narrator = connected(key_server.url)
    log = tmp_path / "log.jsonl"
    told = play_turns(narrator, ["look", "1"], log)
    assert told
    seen = narrator.describe() + json.dumps(narrator.log_record()) + log.read_text(encoding="utf-8")
    assert KEY not in seen


def test_a_server_that_repeats_the_key_in_its_error_never_gets_it_shown(llama_server, monkeypatch):
    monkeypatch.setenv("STORYTELLER_API_KEY", KEY)
    with FaultyProxy(llama_server.root, "echo") as proxy:
        story = connected(proxy.url).narrate(PROMPT, FEW, seed=1)
    assert story.error == "the server failed (HTTP 500): bad key Bearer ***"
    assert any(headers.get("Authorization") == f"Bearer {KEY}" for _, _, headers in proxy.requests)


def test_forbidden_names_the_variable(llama_server, monkeypatch):
    monkeypatch.delenv("STORYTELLER_API_KEY", raising=False)
    with FaultyProxy(llama_server.root, "forbidden") as proxy:
        story = connected(proxy.url).narrate(PROMPT, FEW, seed=1)
    assert story.error == "the server wants an API key (HTTP 403): set the environment variable STORYTELLER_API_KEY"
    assert story.text == ""


def test_busy_server_backs_off_and_says_so(llama_server):
    with FaultyProxy(llama_server.root, "busy") as proxy:
        narrator = connected(proxy.url)
        first = narrator.narrate(PROMPT, FEW, seed=1)
        asked = sum(path.endswith("/completions") for _, path, _ in proxy.requests)
        second = narrator.narrate(PROMPT, FEW, seed=1)
        assert sum(path.endswith("/completions") for _, path, _ in proxy.requests) == asked  # it waited
    assert first.error == "the server is busy (HTTP 429): the Spirit waits 7 s before asking it again"
    assert second.error.startswith("the server is busy (HTTP 429): the Spirit waits ")


def test_garbage_is_one_line(llama_server):
    with FaultyProxy(llama_server.root, "garbage") as proxy:
        story = connected(proxy.url).narrate(PROMPT, FEW, seed=1)
    assert story.error == "the server's reply is not JSON (text/html): <html><body>Welcome to nginx!</body></html>"


def test_a_reply_far_larger_than_asked_is_cut(llama_server):
    with FaultyProxy(llama_server.root, "huge") as proxy:
        began = time.monotonic()
        story = connected(proxy.url).narrate(PROMPT, FEW, seed=1)
    assert story.error.startswith("the server sent far more than was asked") and story.error.endswith("cut")
    assert time.monotonic() - began < 20


def test_a_server_that_never_answers_meets_the_time_limit(llama_server):
    with FaultyProxy(llama_server.root, "hang") as proxy:
        narrator = connected(proxy.url, timeout=2)
        began = time.monotonic()
        story = narrator.narrate(PROMPT, FEW, seed=1)
        took = time.monotonic() - began
    assert story.error == f"the server at 127.0.0.1:{proxy.url.split(':')[2].split('/')[0]} sent nothing for 2 s; " \
                          "the turn goes on without narration"
    assert took < 6


def test_a_stream_cut_off_is_one_line(llama_server):
    with FaultyProxy(llama_server.root, "cut") as proxy:
        story = connected(proxy.url).narrate(PROMPT, Sampling(max_new_tokens=50), seed=1, stop_strings=())
    assert story.error == "the server ended the reply mid-stream (it may have stopped or crashed)"
    assert story.raw == " The wind rises"


def test_a_server_stopped_mid_stream_is_one_line_and_the_next_turn_retries(tiny_gguf, llama_server):
    server = LlamaServer(tiny_gguf).start()
    try:
        narrator = connected(server.url)
        stopped = []

        def on_chunk(_text):
            if not stopped:
                stopped.append(True)
                server.kill()

        story = narrator.narrate(PROMPT, Sampling(max_new_tokens=900), seed=1, on_chunk=on_chunk,
                                 stop_strings=())
        assert stopped and story.error is not None and "\n" not in story.error
        assert story.error.startswith(("the server at", "the server ended the reply mid-stream"))
        down = narrator.narrate(PROMPT, FEW, seed=1)
        assert down.error == f"cannot reach the server at {server.url}: connection refused (is it running?)"
        server.start()  # the same port: the server is back
        again = narrator.narrate(PROMPT, FEW, seed=1)
        assert again.error is None and again.raw
    finally:
        server.stop()


def test_plain_play_with_the_server_down_keeps_the_quests_words(tmp_path):
    env = dict(os.environ, STORYTELLER_CONFIG_DIR=str(tmp_path / "config"),
               STORYTELLER_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = subprocess.run([sys.executable, "-m", "game", "play", str(QUESTS / "call-of-the-storyteller.yaml"),
                          "--plain", "--server", url], input="look\n1\nquit\n", capture_output=True,
                         text=True, encoding="utf-8", cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    line = (f"(The Storyteller Spirit is silent: cannot reach the server at {url}: connection refused "
            "(is it running?). The quest's own words go on.)")
    assert run.stdout.count(line) == 1  # said once, though each turn tried again
    assert "Traceback" not in run.stderr


def test_a_bad_server_url_on_the_command_line_is_one_line(tmp_path):
    from game.cli import main

    assert main(["play", str(QUESTS / "call-of-the-storyteller.yaml"), "--plain", "--server", "ftp://x"]) == 2


# --- the bench through the server -----------------------------------------------------------------

def test_bench_reports_first_token_latency_and_speed_through_the_server(llama_server, tiny_model_dir, tmp_path):
    import io

    from game.bench import SIZES, run_server_bench

    out = io.StringIO()
    figures = tmp_path / "bench.json"
    assert run_server_bench(llama_server.url, None, str(tiny_model_dir), figures, out, quick=True) == 0, out.getvalue()
    report = json.loads(figures.read_text(encoding="utf-8"))
    assert report["through"]["server"] == llama_server.url and report["through"]["model"] == MODEL_ALIAS
    for side in ("local", "server"):
        for n in SIZES:
            assert report[side]["ttft_ms"][str(n)]["median"] > 0
            assert report[side]["decode_tps"][str(n)]["median"] > 0
    text = out.getvalue()
    assert "first token, 880-token prompt" in text and "tokens/s, 16-token prompt" in text
    assert "local Spirit" in text and "server" in text


def test_bench_with_the_server_down_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = subprocess.run([sys.executable, "-m", "game", "bench", "--server", url], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert run.returncode == 1
    assert run.stdout.strip() == (f"storyteller bench: the server cannot narrate: cannot reach the server at {url}: "
                                  "connection refused (is it running?)")


# --- other kinds of server: a chat template reported, no tokenizer, no window -----------------------

def test_auto_picks_chat_when_the_server_reports_a_chat_template(llama_server):
    with FaultyProxy(llama_server.root, looks_like="llama.cpp") as proxy:
        narrator = connected(proxy.url)
        assert narrator.api_style == "chat" and narrator.api_reason == "auto: the server reports a chat template"
        assert narrator.window == 1024 and narrator.window_source == "llama.cpp /props n_ctx"
        assert "chat API (auto: the server reports a chat template)" in narrator.describe()
        told = play_turns(narrator, ["look", "1"])
        assert told and sum(path == "/v1/chat/completions" for _, path, _ in proxy.requests) == len(told)
        assert not any(path == "/v1/completions" for _, path, _ in proxy.requests)
        assert connected(proxy.url, api_style="completion").api_style == "completion"  # settings win


def test_a_server_that_cannot_count_gets_a_stated_upper_bound_that_never_overflows(llama_server):
    with FaultyProxy(llama_server.root, looks_like="generic") as proxy:
        unknown = connected(proxy.url)
        assert unknown.window == 2048 and unknown.window_source.startswith("ASSUMED")
        assert unknown.count_source.startswith("AN UPPER BOUND")
        assert "ASSUMED" in unknown.describe() and "AN UPPER BOUND" in unknown.describe()
        # top_k and the repetition penalty are not OpenAI API fields: said once, never sent
        assert unknown.notes_for(Sampling(no_repeat_ngram_size=3)) == [
            "This server (openai-compatible) does not take top_k, repetition_penalty and no_repeat_ngram_size: "
            "the personality's values for them cannot be used."]
        assert unknown.notes_for(Sampling(top_k=0, repetition_penalty=1.0)) == []  # all off: nothing lost
        _, body = unknown.request_body("x", None, Sampling(top_k=5, repetition_penalty=1.5), None, (), 0)
        assert not {"top_k", "repeat_penalty", "repetition_penalty"} & set(body)
        narrator = connected(proxy.url, window=1024)
        told = play_turns(narrator, ACTIONS)
        assert told
        for prepared, _ in told:
            prompt = prepared.prompt
            assert prompt.prompt_tokens + prepared.sampling.max_new_tokens <= 1024
            assert len(server_tokens(llama_server, prompt.text)) <= prompt.prompt_tokens  # a true bound


def test_a_retry_of_the_same_turn_is_a_different_take(narrator):
    from game.personality import load_personalities
    from game.settings import Settings

    persona, sampling = Settings().effective_sampling(load_personalities()[0])
    engine = Engine(load_quest(QUESTS / "call-of-the-storyteller.yaml"), seed=1)
    turn_narrator = TurnNarrator(narrator, persona, sampling.with_values(max_new_tokens=16), seed=3)
    result = engine.act("look")
    first = turn_narrator.run(turn_narrator.prepare(engine, result))
    again = turn_narrator.run(turn_narrator.prepare(engine, result))
    retry = turn_narrator.run(turn_narrator.prepare(engine, result, attempt=1))
    assert first.error is None and first.raw == again.raw and retry.raw != first.raw


# --- validate's budget check counts as the server does ---------------------------------------------

def run_validate(*args, home):
    env = dict(os.environ, STORYTELLER_CONFIG_DIR=str(home / "config"), STORYTELLER_DATA_DIR=str(home / "data"),
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "game", "validate", str(QUESTS / "call-of-the-storyteller.yaml"),
                           *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_validate_checks_the_budget_with_the_servers_tokenizer_and_window(llama_server, tmp_path):
    run = run_validate("--server", llama_server.url, home=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (f"note: the token budget is checked for the server {llama_server.url}, model {MODEL_ALIAS}: "
            "completion API") in run.stderr
    assert "window 1024 tokens" in run.stderr and "counts: the server's tokenizer (/extras/tokenize)" in run.stderr
    assert ": ok: " in run.stdout


def test_validate_says_when_the_server_can_only_bound_the_counts(llama_server, tmp_path):
    with FaultyProxy(llama_server.root, looks_like="generic") as proxy:
        run = run_validate("--server", proxy.url, home=tmp_path)
    assert "counts: AN UPPER BOUND (1 token per byte)" in run.stderr and "window 2048 tokens (ASSUMED" in run.stderr
    down = run_validate("--server", f"http://127.0.0.1:{free_port()}/v1", home=tmp_path)
    assert "the token budget is checked for the local Spirit instead" in down.stderr and down.returncode == 0


def test_narrate_command_through_the_server(llama_server, tmp_path):
    env = dict(os.environ, STORYTELLER_CONFIG_DIR=str(tmp_path / "config"),
               STORYTELLER_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "game", "narrate", "Once upon a time", "--server", llama_server.url,
                          "--server-model", MODEL_ALIAS, "--seed", "3", "--max-new-tokens", "12"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Once upon a time") and len(run.stdout.strip()) > len("Once upon a time")
    wrong = subprocess.run([sys.executable, "-m", "game", "narrate", "x", "--server", llama_server.url,
                            "--server-model", "nope"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().endswith(f"the Spirit is silent: the server has no model 'nope'; it has: {MODEL_ALIAS}")
