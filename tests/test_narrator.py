"""The narrator service on a real (tiny, random-weight) GPT-2, and the hub helpers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from game.narrator import cleaning, hub
from game.narrator.service import Loading, Narration, NarratorService, Ready, Silent
from game.sampling import Sampling

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "The Storyteller Spirit speaks of a dark cave.\n> look around\n"
FEW = Sampling(max_new_tokens=8)


@pytest.fixture(scope="module")
def service(tiny_model_dir) -> NarratorService:
    events: list = []
    spirit = NarratorService(str(tiny_model_dir), device="cpu", on_event=events.append)
    spirit.start()
    assert spirit.wait(60), "loading the tiny model never finished"
    spirit.events = events
    return spirit


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Point the hub client at a closed local port: a network failure on any machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")


def test_importing_the_narrator_imports_no_torch_or_transformers():
    code = ("import sys, game.narrator.service, game.narrator.hub, game.narrator.cleaning; "
            "heavy = {'torch', 'transformers', 'huggingface_hub'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_loads_in_background_and_reports_ready(service, tiny_model_dir):
    assert service.status == "ready" and service.reason is None
    assert isinstance(service.events[0], Loading)
    assert service.events[-1] == Ready(str(tiny_model_dir), "cpu", 1024)
    assert service.window == 1024 and service.device == "cpu"
    assert service.tokenizer.encode("a cave")  # the real tokenizer, for counting


def test_start_returns_at_once_with_status_loading(tiny_model_dir):
    spirit = NarratorService(str(tiny_model_dir), device="cpu")
    assert spirit.status == "idle"
    spirit.start()
    assert spirit.status in ("loading", "ready")
    assert spirit.wait(60) and spirit.status == "ready"


def test_text_streams_in_chunks_while_generating(service):
    chunks, while_running = [], []
    stream = service.stream(PROMPT, Sampling(max_new_tokens=20), seed=1)
    for chunk in stream:
        chunks.append(chunk)
        while_running.append(any(t.name == "storyteller-generate" and t.is_alive()
                                 for t in threading.enumerate()))
    assert stream.new_tokens == 20 and not stream.cancelled
    assert len(chunks) >= 3 and while_running[0]
    assert "".join(chunks) == stream.text == stream.raw


def test_narrate_passes_chunks_on_and_cleans_the_whole(service):
    chunks = []
    story = service.narrate(PROMPT, FEW, seed=1, on_chunk=chunks.append)
    assert story.error is None and chunks
    if not story.resampled:
        assert "".join(chunks) == story.raw
    assert story.text == cleaning.clean(story.raw, prompt=PROMPT, truncated=True)


def test_only_new_text_is_returned(service):
    story = service.narrate(PROMPT, FEW, seed=2)
    assert story.raw and not story.raw.startswith(PROMPT.strip()[:10])
    assert "Storyteller Spirit speaks" not in story.text


def test_same_seed_same_story_different_seed_different_story(service):
    first = service.narrate(PROMPT, FEW, seed=7)
    again = service.narrate(PROMPT, FEW, seed=7)
    other = service.narrate(PROMPT, FEW, seed=8)
    assert first.raw == again.raw and first.text == again.text
    assert other.raw != first.raw


def test_cancel_before_start_stops_after_one_token(service):
    cancel = threading.Event()
    cancel.set()
    story = service.narrate(PROMPT, Sampling(max_new_tokens=200), seed=3, cancel=cancel)
    assert story.cancelled and story.new_tokens == 1 and story.error is None


def test_cancel_after_first_chunk_stops_quickly(service):
    cancel = threading.Event()
    chunks = []

    def on_chunk(text):
        chunks.append(text)
        cancel.set()

    story = service.narrate(PROMPT, Sampling(max_new_tokens=512), seed=3, cancel=cancel, on_chunk=on_chunk)
    assert story.cancelled and not story.resampled
    assert len(chunks) == 1 and story.new_tokens < 50


def test_leaving_the_stream_early_stops_generation_and_frees_the_model(service):
    stream = service.stream(PROMPT, Sampling(max_new_tokens=512), seed=4)
    for _chunk in stream:
        break
    stream.close()
    assert stream.new_tokens < 50 and not stream.cancelled
    assert service.narrate(PROMPT, FEW, seed=4).error is None  # would block if the lock were still held


def test_stop_string_ends_generation_and_is_never_shown(service):
    plain = service.narrate(PROMPT, Sampling(max_new_tokens=16), seed=5)
    stop = next(char for char in plain.raw if char.isalpha())  # a letter the model is about to write
    chunks = []
    story = service.narrate(PROMPT, Sampling(max_new_tokens=16), seed=5, stop_strings=[stop],
                            on_chunk=chunks.append)
    assert stop not in "".join(chunks) and stop not in story.text
    assert story.new_tokens < 16


def test_a_stop_string_ends_generation_even_while_the_reader_waits(service, monkeypatch):
    # The reader hands text on at most every PACE seconds; the tiny model writes all 16 tokens
    # within one such wait. Generation must still end at the token that writes the stop.
    from game.narrator import service as module

    monkeypatch.setattr(module, "PACE", 0.3)
    plain = service.stream(PROMPT, Sampling(max_new_tokens=16), seed=5, stop_strings=())
    chunks = list(plain)
    assert len(chunks) >= 2 and plain.new_tokens == 16  # the first token alone, then the rest
    stop = next(char for char in "".join(chunks[1:]) if char.isalpha() and char not in chunks[0])
    stream = service.stream(PROMPT, Sampling(max_new_tokens=16), seed=5, stop_strings=[stop])
    shown = "".join(stream)
    assert stream.stopped and stop not in shown and plain.raw.startswith(shown)
    assert stream.new_tokens < 16


def test_a_stop_string_inside_the_prompt_end_is_not_the_models(service):
    plain = service.stream(PROMPT, FEW, seed=6, stop_strings=())
    text = "".join(plain)
    assert PROMPT.endswith("d\n") and "d\n" not in text
    # the prompt's last 9 characters are read with the new text (a 10-character stop may span
    # them); "d\n" lies wholly inside them
    stream = service.stream(PROMPT, FEW, seed=6, stop_strings=["d\n", "z" * 10])
    assert "".join(stream) == text and not stream.stopped and stream.new_tokens == FEW.max_new_tokens


def test_stop_string_spanning_the_prompt_end_is_caught(service):
    plain = service.stream(PROMPT, FEW, seed=6)
    first_char = "".join(plain)[0]
    stream = service.stream(PROMPT, FEW, seed=6, stop_strings=["\n" + first_char])
    assert list(stream) == [] and stream.stopped and stream.text == ""


def test_wall_clock_timeout_bounds_generation(service):
    story = service.narrate(PROMPT, Sampling(max_new_tokens=512), seed=1, timeout=0.3)
    assert story.new_tokens < 512
    assert story.error == "the narration took longer than 0.3 s and was cut short"  # said, not silent


def test_error_inside_generation_becomes_one_line(service):
    story = service.narrate(PROMPT, Sampling(temperature=-1.0), seed=1)
    assert isinstance(story, Narration) and story.text == ""
    assert story.error.startswith("generation failed:") and "temperature" in story.error
    assert "\n" not in story.error
    assert service.narrate(PROMPT, FEW, seed=1).error is None  # still usable afterwards


def test_bad_reply_is_resampled_once_with_a_stronger_penalty(service):
    seed, first = next((seed, story) for seed in range(11, 40)
                       if (story := service.narrate(PROMPT, FEW, seed=seed)).text and not story.resampled)
    restarts = []
    story = service.narrate(PROMPT, FEW, seed=seed, previous=[first.text], on_restart=restarts.append)
    assert restarts == ["repeats an earlier narration"]
    assert story.resampled and story.resample_reason == restarts[0]
    assert story.raw != first.raw and story.error is None


def test_prompt_longer_than_the_window_keeps_its_end(service):
    story = service.narrate("cave " * 1500, FEW, seed=1)
    assert story.error is None and story.new_tokens == FEW.max_new_tokens


def test_empty_prompt_still_narrates(service):
    assert service.narrate("", FEW, seed=1).error is None


def test_silent_service_narrates_nothing_without_raising():
    spirit = NarratorService("/no/such/model/folder")
    spirit.load()
    story = spirit.narrate(PROMPT, FEW)
    assert story.text == "" and "silent" in story.error and "/no/such/model/folder" in story.error


def test_unknown_hub_model_offline_goes_silent_fast(unreachable_hub):
    events = []
    spirit = NarratorService("no-such-org/no-such-model-xyz", on_event=events.append)
    began = time.monotonic()
    spirit.start()
    assert spirit.wait(30)
    assert time.monotonic() - began < 10
    assert spirit.status == "silent" and isinstance(events[-1], Silent)
    assert spirit.reason == events[-1].reason
    assert "\n" not in spirit.reason
    assert spirit.reason.startswith("could not load model 'no-such-org/no-such-model-xyz': "
                                    "not in the local cache and the Hugging Face hub is unreachable")
    assert "storyteller model pull" in spirit.reason


def test_folder_that_is_not_a_model_gives_a_clear_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    event = NarratorService(str(tmp_path)).load()
    assert event == Silent(f"could not load model '{tmp_path}': '{tmp_path}' is not a model folder "
                           "(it has no config.json)")


def test_broken_model_folder_gives_a_one_line_reason(tmp_path):
    (tmp_path / "config.json").write_text("{ this is not json")
    event = NarratorService(str(tmp_path)).load()
    assert isinstance(event, Silent) and "\n" not in event.reason
    assert event.reason.startswith(f"could not load model '{tmp_path}': ")


def test_unknown_device_or_dtype_is_named(tiny_model_dir):
    event = NarratorService(str(tiny_model_dir), device="tpu").load()
    assert isinstance(event, Silent) and "unknown device 'tpu'" in event.reason
    event = NarratorService(str(tiny_model_dir), dtype="int3").load()
    assert isinstance(event, Silent) and "unknown dtype 'int3'" in event.reason


def test_a_broken_event_listener_does_not_break_loading(tiny_model_dir):
    def listener(event):
        raise RuntimeError("listener bug")

    spirit = NarratorService(str(tiny_model_dir), device="cpu", dtype="float32", on_event=listener)
    assert isinstance(spirit.load(), Ready) and spirit.status == "ready"


# --- hub helpers ----------------------------------------------------------------------

def test_pull_fails_fast_with_a_clear_message_when_the_hub_is_unreachable(unreachable_hub, tmp_path):
    out = io.StringIO()
    began = time.monotonic()
    assert hub.pull("distilgpt2", out=out, cache_dir=tmp_path) == 1
    assert time.monotonic() - began < 10
    assert out.getvalue().splitlines()[-1] == (
        "error: could not download 'distilgpt2': the Hugging Face hub is unreachable "
        "(check the internet connection)")


def test_pull_refuses_a_folder_path():
    out = io.StringIO()
    assert hub.pull("./models/mine", out=out) == 1
    assert "not a hub model id" in out.getvalue()


def test_cached_models_lists_the_cache_and_tolerates_a_missing_one(tmp_path):
    assert hub.cached_models(tmp_path / "missing") == []
    assert hub.cached_models(tmp_path) == []
    repo = tmp_path / "models--acme--tiny-gpt"
    commit = "a" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs" / "0123").write_bytes(b"x" * 1234)
    os.symlink("../../blobs/0123", repo / "snapshots" / commit / "config.json")
    assert hub.cached_models(tmp_path) == [hub.CachedModel("acme/tiny-gpt", 1234, repo)]


def test_select_files_prefers_safetensors_and_skips_other_formats():
    listing = {"config.json": 1, "merges.txt": 2, "vocab.json": 3, "model.safetensors": 4,
               "pytorch_model.bin": 5, "tf_model.h5": 6, "coreml/x/Manifest.json": 7, "README.md": 8}
    assert set(hub.select_files(listing)) == {"config.json", "merges.txt", "vocab.json", "model.safetensors"}
    del listing["model.safetensors"]
    assert "pytorch_model.bin" in hub.select_files(listing)
    assert hub.select_files({"config.json": 1, "tf_model.h5": 2}) == {}


def test_progress_counter_reports_bytes_against_the_listed_total():
    seen = []
    bar = hub._byte_counter(lambda done, total: seen.append((done, total)), 1000)(
        total=0, unit="B", desc="Downloading")
    bar.update(300)
    bar.update(200)
    bar.close()
    files = hub._byte_counter(lambda done, total: seen.append((done, total)), 1000)(total=2, desc="Fetching")
    files.update(1)  # a file count, not bytes: not reported
    assert seen == [(300, 1000), (500, 1000)]


def test_is_local_model_and_format_size(tmp_path):
    assert hub.is_local_model(str(tmp_path)) and hub.is_local_model("./x") and hub.is_local_model("a/b/c")
    assert not hub.is_local_model("distilgpt2") and not hub.is_local_model("ai-forever/rugpt3small_based_on_gpt2")
    assert [hub.format_size(n) for n in (512, 1500, 353_000_000, 2_500_000_000)] == [
        "512 B", "1.5 kB", "353.0 MB", "2.5 GB"]


# --- a download from a stand-in hub ------------------------------------------------------

def _serve_hub(repos: dict[str, Path]):
    """A local HTTP server speaking the few hub endpoints a download uses."""
    import hashlib
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    commit = "c" * 40
    files = {repo: {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
             for repo, folder in repos.items()}

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for key, value in [("Content-Length", str(len(body))), *headers]:
                self.send_header(key, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            for repo, content in files.items():
                if path in (f"/api/models/{repo}", f"/api/models/{repo}/revision/main"):
                    siblings = [{"rfilename": n, "size": len(b)} for n, b in content.items()]
                    return self.reply(200, json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode())
                if path.startswith(f"/api/models/{repo}/tree/"):
                    tree = [{"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                            for n, b in content.items()]
                    return self.reply(200, json.dumps(tree).encode())
                name = path.rpartition("/")[2]
                if path.startswith(f"/{repo}/resolve/") and name in content:
                    body = content[name]
                    return self.reply(200, body, [("X-Repo-Commit", commit),
                                                  ("ETag", f'"{hashlib.sha1(body).hexdigest()}"')])
            self.reply(404, headers=[("X-Error-Code", "RepoNotFound")])

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


DOWNLOAD_SCENARIO = """
import io, json, huggingface_hub.constants as constants
from game.narrator import cleaning, hub
from game.narrator.service import NarratorService, Loading
out, fetched, cached, offline = io.StringIO(), [], [], []
result = {"pull": hub.pull("acme/pulled", out=out), "pull_out": out.getvalue()}
result["fetched"] = repr(NarratorService("acme/fetched", on_event=fetched.append).load())
result["fractions"] = [e.fraction for e in fetched if isinstance(e, Loading) and e.fraction is not None]
result["cached"] = repr(NarratorService("acme/pulled", on_event=cached.append).load())
result["cached_events"] = len(cached)
result["missing"] = NarratorService("acme/missing").load().reason
constants.ENDPOINT = "http://127.0.0.1:9"  # the hub goes away: the cache still serves
result["offline"] = repr(NarratorService("acme/fetched").load())
result["list"] = [m.repo_id for m in hub.cached_models()]
print(json.dumps(result))
"""


def test_download_from_the_hub_then_load_from_the_cache(tiny_model_dir, tmp_path):
    import json

    server = _serve_hub({"acme/pulled": tiny_model_dir, "acme/fetched": tiny_model_dir})
    try:
        env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   HF_HUB_DISABLE_TELEMETRY="1")
        done = subprocess.run([sys.executable, "-c", DOWNLOAD_SCENARIO], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["pull"] == 0 and "Downloaded acme/pulled (" in result["pull_out"]
    assert result["missing"] == ("could not load model 'acme/missing': the Hugging Face hub has no model "
                                 "'acme/missing' (check the name; private models need `hf auth login`)")
    ready = "Ready(model='acme/{}', device='cpu', window=1024)"
    assert result["fetched"] == ready.format("fetched")
    fractions = result["fractions"]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result["cached"] == ready.format("pulled") and result["cached_events"] == 2  # no download
    assert result["offline"] == ready.format("fetched")
    assert result["list"] == ["acme/fetched", "acme/pulled"]


def test_a_model_folder_without_a_vocabulary_is_silent_with_a_reason(tiny_model_dir, tmp_path):
    import shutil

    from game.narrator.service import NarratorService

    broken = tmp_path / "no-vocab"
    shutil.copytree(tiny_model_dir, broken)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (broken / name).unlink(missing_ok=True)
    service = NarratorService(str(broken))
    service.load()
    assert service.status == "silent"
    assert "tokenizer" in service.reason and "\n" not in service.reason
