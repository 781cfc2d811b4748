"""The fast generation path on real (random-weight) GPT-2s: exactness, the prefix cache, precisions.

Tolerances for the lower precisions, against fp32 logits on the bundled English
text: the largest logit difference stays under 2% (bf16) and 5% (int8) of the
largest fp32 logit, and the logits correlate at 0.999 (bf16) and 0.998 (int8).
On distilgpt2's shape (random weights) bf16 measures about 1% and int8 about 3.4%.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
from pathlib import Path

import pytest

from game.context import ContextBuilder
from game.narrator import fastgen, precision
from game.narrator.service import NarratorService, _decoded
from game.sampling import Sampling

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "assets" / "texts" / "frog-king.txt").read_text(encoding="utf-8")
TOLERANCE = {"bf16": (0.02, 0.999), "int8": (0.05, 0.998)}  # (max diff / max |logit|, correlation)


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory) -> Path:
    """A GPT-2 bigger than the tiny one (4 layers, width 128), with an untied copy of nothing."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from game.narrator.model_builder import write_tokenizer

    folder = write_tokenizer(tmp_path_factory.mktemp("small-gpt2"))
    torch.manual_seed(1)
    config = GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=1024, vocab_size=50257,
                        bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ids(gpt2_tokenizer) -> list[int]:
    return gpt2_tokenizer(TEXT).input_ids[:400]


def load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def from_checkpoint(folder: Path, kind: str, threads: int | None = 1) -> fastgen.FastGenerator:
    """One thread: fp32 and bf16 numbers may differ in the last digits between thread counts."""
    return fastgen.FastGenerator.from_checkpoint(folder, fastgen.checkpoint_config(folder), kind,
                                                 threads=threads)


def test_importing_the_fast_path_and_the_benchmark_imports_no_torch():
    code = ("import sys, game.narrator.fastgen, game.narrator.precision, game.bench; "
            "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("folder", ["tiny_model_dir", "small_model_dir"])
def test_lean_fp32_gives_the_models_own_logits(folder, ids, request):
    import torch

    folder = request.getfixturevalue(folder)
    model = load(folder)
    with torch.inference_mode():
        own = model(input_ids=torch.tensor([ids])).logits[0]
    for gen in (fastgen.FastGenerator.from_model(load(folder), "fp32", threads=1), from_checkpoint(folder, "fp32")):
        assert gen.kind == "lean-gpt2" and gen.precision == "fp32"
        assert torch.allclose(gen.logits(ids), own, atol=1e-4, rtol=0)


def test_generic_path_matches_the_lean_path_and_transformers_greedy(tiny_model_dir, ids):
    import torch

    model = load(tiny_model_dir)
    prompt = ids[:150]
    with torch.inference_mode():
        want = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              do_sample=False, max_new_tokens=20, min_new_tokens=20,
                              pad_token_id=50256)[0, len(prompt):].tolist()
    generic = fastgen.FastGenerator.from_model(load(tiny_model_dir), "fp32", lean=False, threads=1)
    assert generic.kind == "generic"
    lean = from_checkpoint(tiny_model_dir, "fp32")
    for gen in (generic, lean):
        assert gen.generate(prompt, None, max_new_tokens=20) == want


def test_the_generic_path_runs_in_int8_and_stays_near_fp32(small_model_dir, ids):
    """A model the lean pass cannot read (here forced) gets int8 Linear layers too."""
    import torch

    generic = fastgen.FastGenerator.from_model(load(small_model_dir), "int8", lean=False, threads=1)
    assert generic.kind == "generic" and generic.precision == "int8"
    assert generic.generate(ids[:40], None, max_new_tokens=8) and generic.reused == 0
    reference = from_checkpoint(small_model_dir, "fp32").logits(ids[:100])
    logits = generic.logits(ids[:100])
    most, correlation = TOLERANCE["int8"]
    assert float(torch.corrcoef(torch.stack([logits.flatten(), reference.flatten()]))[0, 1]) >= correlation


@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8"])
def test_greedy_with_and_without_the_prefix_cache_match_exactly(small_model_dir, ids, kind):
    gen = from_checkpoint(small_model_dir, kind)
    first = ids[:300]
    gen.generate(first, None, max_new_tokens=16)
    longer = first + ids[300:380]  # the next turn: the same start, then more
    cached = gen.generate(longer, None, max_new_tokens=24)
    assert gen.reused == 256  # whole 128-token grid chunks of the earlier prompt
    cold = gen.generate(longer, None, max_new_tokens=24, reuse_cache=False)
    assert gen.reused == 0
    assert cached == cold
    again = gen.generate(longer, None, max_new_tokens=24)  # the same prompt once more
    assert again == cold and gen.reused == 256


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_a_warmed_up_prefix_gives_the_same_tokens_as_no_cache(small_model_dir, ids, kind):
    gen = from_checkpoint(small_model_dir, kind)
    gen.generate(ids[:200], None, max_new_tokens=8)
    assert gen.warm(ids[:330]) == 202  # [0, 128) is cached; [128, 256) and [256, 330) are computed
    assert gen.cached == ids[:330]
    assert gen.warm(ids[:330]) == 0  # nothing left to do
    prompt = ids[:330] + ids[350:370]
    warmed = gen.generate(prompt, None, max_new_tokens=24, split=330)
    assert gen.reused == 330  # Enter computes only the new turn
    assert warmed == gen.generate(prompt, None, max_new_tokens=24, split=330, reuse_cache=False)
    gen.warm(ids[:330])
    gen.generate(prompt, None, max_new_tokens=24)  # no known start: the grid alone
    assert gen.reused == 256  # the chunk [256, 330) was computed apart: not reused for other chunks
    stopped = gen.warm(ids[:600], should_stop=lambda: True)
    assert stopped == 0 and len(gen.cached) in fastgen.chunk_ends(600)  # stopped before a chunk


def test_chunks_end_on_the_grid_and_where_the_known_start_ends():
    assert fastgen.chunk_ends(300) == [128, 256, 300]
    assert fastgen.chunk_ends(300, 200) == [128, 200, 256, 300]
    assert fastgen.chunk_ends(300, 256) == fastgen.chunk_ends(300, 0) == fastgen.chunk_ends(300, 300) \
        == [128, 256, 300]
    assert fastgen.chunk_ends(5, 3) == [3, 5]


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_a_prompt_computed_whole_ahead_into_a_spare_needs_nothing_and_changes_no_story(
        small_model_dir, ids, kind):
    gen = from_checkpoint(small_model_dir, kind)
    sampling = Sampling(max_new_tokens=12)
    expected, other = ids[:290], ids[50:370]  # the expected start; a scene's prompt instead
    cold = gen.generate(other, sampling, seed=7, max_new_tokens=12, split=300, reuse_cache=False)
    gen.forget()
    gen.warm(expected)
    assert gen.warm_spare(other, 0, split=300) == 320
    assert gen.cached == expected  # the main cache is left as it was
    assert gen.warm_spare(other, 0, split=300) == 0  # nothing left to do
    assert gen.generate(other, sampling, seed=7, max_new_tokens=12, split=300) == cold
    assert gen.reused == 320  # the whole prompt: its first token came at once
    gen.warm_spare(other, 1, split=300)
    gen.generate(other[:-1], sampling, seed=7, max_new_tokens=12, split=300)
    assert gen.reused == 300  # a prompt that ends earlier reuses the chunks it shares
    gen.forget()
    gen.warm_spare(other, 1, split=None)
    assert gen.generate(other, sampling, seed=7, max_new_tokens=12, split=300) == cold
    assert gen.reused == 256  # computed in other chunks: only the common ones are taken


def test_a_prompt_that_differs_early_reuses_nothing_it_should_not(tiny_model_dir, ids):
    gen = from_checkpoint(tiny_model_dir, "fp32")
    gen.generate(ids[:300], None, max_new_tokens=4)
    changed = ids[:200] + [13] + ids[201:300]
    gen.generate(changed, None, max_new_tokens=4)
    assert gen.reused == 128  # the grid chunk holding the change is computed again
    gen.generate([ids[1]] + ids[1:300], None, max_new_tokens=4)
    assert gen.reused == 0
    assert fastgen.common_prefix([1, 2, 3], [1, 2, 4]) == 2 and fastgen.common_prefix([], [1]) == 0


@pytest.mark.parametrize("sampling", [
    Sampling(max_new_tokens=30),
    Sampling(max_new_tokens=30, temperature=1.3, top_k=0, top_p=0.9, repetition_penalty=1.5),
    Sampling(max_new_tokens=30, temperature=0.6, top_k=5, top_p=1.0, no_repeat_ngram_size=2),
])
def test_fp32_sampling_draws_what_transformers_draws(tiny_model_dir, ids, sampling):
    import torch

    model = load(tiny_model_dir)
    gen = from_checkpoint(tiny_model_dir, "fp32")
    prompt = ids[:60]
    for seed in (3, 4):
        torch.manual_seed(seed)
        with torch.inference_mode():
            want = model.generate(
                torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                repetition_penalty=sampling.repetition_penalty, no_repeat_ngram_size=sampling.no_repeat_ngram_size,
                max_new_tokens=30, pad_token_id=50256)[0, len(prompt):].tolist()
        assert gen.generate(prompt, sampling, seed=seed, max_new_tokens=30, eos=50256) == want


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_seeded_sampling_is_reproducible_whatever_the_cache_holds(small_model_dir, ids, kind):
    gen = from_checkpoint(small_model_dir, kind)
    sampling = Sampling(max_new_tokens=24)
    first = gen.generate(ids[:290], sampling, seed=11, max_new_tokens=24)
    gen.generate(ids[:350], sampling, seed=5, max_new_tokens=24)  # something else in the cache
    assert gen.generate(ids[:290], sampling, seed=11, max_new_tokens=24) == first and gen.reused == 256
    assert gen.generate(ids[:290], sampling, seed=12, max_new_tokens=24) != first


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_lower_precisions_stay_within_the_stated_tolerance_of_fp32(small_model_dir, ids, kind):
    import torch

    reference = from_checkpoint(small_model_dir, "fp32").logits(ids)
    logits = from_checkpoint(small_model_dir, kind).logits(ids)
    most, correlation = TOLERANCE[kind]
    assert float((logits - reference).abs().max()) <= most * float(reference.abs().max())
    assert float(torch.corrcoef(torch.stack([logits.flatten(), reference.flatten()]))[0, 1]) >= correlation
    assert float((logits.argmax(-1) == reference.argmax(-1)).float().mean()) >= 0.9


def test_int8_reads_embedding_rows_from_the_file_and_packs_the_tied_head_once(small_model_dir, ids):
    import torch
    from safetensors import safe_open

    gen = from_checkpoint(small_model_dir, "int8")
    backend = gen.backend
    assert backend.wte is None and backend.wte_scales is None  # no int8 table kept
    assert type(backend.head).__name__ == "Int8Linear"
    assert backend.keys.dtype == torch.float32  # the key/value cache: fp32 attention
    assert gen.precision == "int8" and gen.note is None
    with safe_open(str(small_model_dir / "model.safetensors"), "pt") as f:
        table = f.get_tensor("transformer.wte.weight")
    picked = [ids[3], ids[0], ids[3], 50256, 0]
    assert torch.equal(backend.rows.read(picked), table[picked])  # exact rows, repeats and ends too


def test_a_model_file_cut_short_while_playing_is_an_error_naming_it(tmp_path, small_model_dir, ids):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(small_model_dir, folder)
    gen = from_checkpoint(folder, "int8")
    gen.generate(ids[:10], None, max_new_tokens=2)
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(1000)  # in place, under the running game
    with pytest.raises(OSError, match="cut short"):
        gen.generate(ids[:20], None, max_new_tokens=2)
    assert gen.cached == []  # nothing half-written is trusted


def test_a_model_file_cut_short_before_launch_is_named_with_the_way_out(tmp_path, small_model_dir):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(small_model_dir, folder)
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(1000)  # a download that did not finish
    event = NarratorService(str(folder), device="cpu", precision="int8").load()
    assert str(folder / "model.safetensors") in event.reason and "not a whole safetensors file" in event.reason
    assert "storyteller model pull" in event.reason and "\n" not in event.reason
    with pytest.raises(ValueError, match="has no readable 'missing' table: download the model again"):
        fastgen.RowFile(str(small_model_dir / "model.safetensors"), "missing")
    with pytest.raises(ValueError, match=r"is F32 \[\d+\], not a 2-D float table"):
        fastgen.RowFile(str(small_model_dir / "model.safetensors"), "transformer.ln_f.weight")


def test_a_model_already_in_memory_keeps_its_int8_embedding(small_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(small_model_dir)
    backend = fastgen.FastGenerator.from_model(model, "int8", threads=1).backend
    assert backend.rows is None and backend.wte.dtype == torch.int8 and backend.wte_scales is not None


def test_int8_gives_the_same_numbers_on_any_number_of_threads(small_model_dir, ids):
    import torch

    adaptive = from_checkpoint(small_model_dir, "int8", threads=None)
    assert adaptive.fixed_threads is None
    one, two = from_checkpoint(small_model_dir, "int8", 1), from_checkpoint(small_model_dir, "int8", 2)
    one.generate(ids[:10], None, max_new_tokens=1)
    two.generate(ids[:10], None, max_new_tokens=1)
    assert two.threads == 2 and torch.equal(one.logits(ids), two.logits(ids))


@pytest.mark.skipif(precision.threads() < 2 or not Path("/proc/stat").exists(), reason="needs 2 cores and /proc")
def test_the_core_meter_leaves_busy_cores_to_other_programs():
    burn = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    meter = precision.CoreMeter()
    assert meter.free == meter.cores == precision.threads()
    others = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(meter.cores)]
    try:
        __import__("time").sleep(0.3)
        meter.begin()
        __import__("time").sleep(0.8)  # we idle while the others keep every core busy
        meter.end()
    finally:
        for proc in others:
            proc.wait()
    assert meter.free == 1


def test_quantize_rows_round_trips_within_half_a_step():
    import torch

    weight = torch.randn(64, 32)
    weight[3] = 0.0  # an all-zero row must not divide by zero
    values, scales = precision.quantize_rows(weight)
    assert values.dtype == torch.int8 and values.abs().max() <= 127
    error = (values.float() * scales[:, None] - weight).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-7).all())


def test_choosing_a_precision():
    assert precision.choose("fp32") == ("fp32", None)
    assert precision.choose("bf16", "cpu", 10) == ("bf16", None)
    assert precision.choose("auto", "cpu", 1_000_000) == ("fp32", None)  # small: exact and as fast
    assert precision.choose("int8", "cuda") == ("fp32", "int8 runs on the processor only; using fp32 on "
                                                        "the graphics card")
    flags = precision.cpu_flags()
    want = ("int8" if precision.int8_engine() and flags & set(precision.INT8_FLAGS)
            else "bf16" if precision.bf16_native() else "fp32")
    assert precision.choose("auto", "cpu", 80_000_000) == (want, None)
    with pytest.raises(ValueError, match="unknown precision 'int4'.*auto, fp32, bf16, int8"):
        precision.choose("int4")
    assert precision.threads() >= 1


def _quality_rows(perplexity: float, agreement: float) -> dict:
    return {"precisions": {"fp32": {"perplexity": 20.0, "agreement": 1.0},
                           "bf16": {"perplexity": 20.1, "agreement": 0.99},
                           "int8": {"perplexity": perplexity, "agreement": agreement}}}


def test_auto_leaves_int8_out_where_bench_quality_found_it_loses_too_much(monkeypatch, tmp_path):
    """`auto` learns from the verdicts `bench --quality` records: the model's own, else the proxy's."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx512_bf16"}))
    if precision.int8_engine() is None:
        pytest.skip("this torch has no int8 engine")
    big, model, other = 80_000_000, str(tmp_path), "some/other-model"
    assert precision.choose("auto", "cpu", big, model)[0] == ("int8" if precision.PROXY_INT8_SOUND else "bf16")
    assert precision.int8_sound(_quality_rows(20.39, 0.96))  # within 2% and at least 95%
    assert not precision.int8_sound(_quality_rows(20.41, 0.99))
    assert not precision.int8_sound(_quality_rows(20.0, 0.94))
    assert precision.record_quality(precision.model_key(model), _quality_rows(21.0, 0.97)) is False
    assert precision.choose("auto", "cpu", big, model) == ("bf16", None)  # its own verdict
    assert precision.choose("int8", "cpu", big, model) == ("int8", None)  # asked for: the player decides
    assert precision.record_quality(precision.PROXY_KEY, _quality_rows(20.1, 0.99)) is True
    assert precision.choose("auto", "cpu", big, other) == ("int8", None)  # not measured: the proxy's verdict
    assert precision.choose("auto", "cpu", big, model) == ("bf16", None)  # measured: its own still wins
    precision.record_quality(precision.PROXY_KEY, _quality_rows(25.0, 0.80))
    assert precision.choose("auto", "cpu", big, other) == ("bf16", None)
    verdicts = precision._verdicts_path()
    assert json.loads(verdicts.read_text())[precision.PROXY_KEY]["int8_ok"] is False
    verdicts.write_text("{not json")  # a damaged file: the shipped proxy verdict holds, nothing breaks
    assert precision.int8_allowed(model) is precision.PROXY_INT8_SOUND


def test_stop_conditions_min_tokens_and_the_window(tiny_model_dir, ids):
    gen = from_checkpoint(tiny_model_dir, "fp32")
    seen = []
    out = gen.generate(ids[:20], None, max_new_tokens=50, on_token=seen.append, should_stop=lambda: len(seen) >= 3)
    assert out == seen and len(out) == 3
    eos = gen.generate(ids[:20], None, max_new_tokens=5)[0]  # make the first greedy token the "end"
    assert gen.generate(ids[:20], None, max_new_tokens=5, eos=eos) == [eos]
    forced = gen.generate(ids[:20], None, max_new_tokens=5, min_new_tokens=5, eos=eos)
    assert len(forced) == 5 and eos not in forced
    long = (ids * 4)[:1500]  # longer than the window: its end is kept, room is left for the new tokens
    assert len(gen.generate(long, None, max_new_tokens=40)) == 40
    assert len(gen.cached) <= 1024
    with pytest.raises(ValueError, match="temperature"):
        gen.generate(ids[:20], Sampling(temperature=0.0))
    with pytest.raises(ValueError, match="no tokens"):
        gen.generate([], None)


def test_streamed_text_is_the_decoded_whole_even_when_tokens_split_characters(gpt2_tokenizer):
    text = "The frog said: \u00ab\u00e9t\u00e9 \U0001F438 \u2014 ok\u00bb.\nNext line \u6c34."
    tokens = gpt2_tokenizer(text).input_ids
    assert len(tokens) > len(text.split())  # some characters take several byte tokens
    q: queue.Queue = queue.Queue()
    for token in tokens + [None]:
        q.put(token)
    pieces = list(_decoded(q, gpt2_tokenizer, timeout=5, pace=0))  # token by token
    assert "".join(pieces) == gpt2_tokenizer.decode(tokens) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert len(pieces) > len(text.split())


def test_after_the_first_piece_tokens_that_came_together_are_handed_on_together(gpt2_tokenizer):
    """The reader takes what arrived at most every `pace` seconds, so it does not wake for every
    token (it competed with the decode loop for the cores); the first piece comes at once."""
    import threading
    import time

    tokens = gpt2_tokenizer("Once upon a time there lived a king whose daughters were all beautiful.").input_ids
    q: queue.Queue = queue.Queue()

    def produce():
        for token in tokens:
            q.put(token)
            time.sleep(0.002)
        q.put(None)

    threading.Thread(target=produce, daemon=True).start()
    began = time.perf_counter()
    pieces, times = [], []
    for piece in _decoded(q, gpt2_tokenizer, timeout=5, pace=0.05):
        pieces.append(piece)
        times.append(time.perf_counter() - began)
    assert "".join(pieces) == gpt2_tokenizer.decode(tokens)
    assert pieces[0] == gpt2_tokenizer.decode(tokens[:1]) and times[0] < 0.05  # the first at once
    assert 2 <= len(pieces) < len(tokens) // 2  # then a few pieces, not one per token


@pytest.fixture(scope="module")
def int8_service(small_model_dir) -> NarratorService:
    service = NarratorService(str(small_model_dir), device="cpu", precision="int8")
    service.load()
    assert service.status == "ready", service.reason
    return service


def test_service_runs_int8_and_keeps_its_cache_between_turns(int8_service, ids, gpt2_tokenizer):
    service = int8_service
    assert service.precision == "int8" and service.generator.kind == "lean-gpt2"
    prompt = gpt2_tokenizer.decode(ids[:300])
    few = Sampling(max_new_tokens=12)
    first = service.narrate(prompt, few, seed=4)
    stream = service.stream(prompt + " And then", few, seed=4)
    list(stream)
    assert stream.reused == 256 and len(stream.token_times) == stream.new_tokens
    again = service.narrate(prompt, few, seed=4)
    assert again.raw == first.raw  # the cache never changes the story
    service.clear_cache()
    stream = service.stream(prompt, few, seed=4)
    assert "".join(stream) == stream.text and stream.reused == 0


def test_service_warms_the_next_prompt_in_the_background_and_gives_way(int8_service, ids, gpt2_tokenizer):
    service = int8_service
    service.clear_cache()
    few = Sampling(max_new_tokens=6)
    start = gpt2_tokenizer.decode(ids[:300])
    thread = service.warm(start)
    thread.join(30)
    assert not thread.is_alive() and len(service.generator.cached) == 299  # its last token may merge on
    encode, encoded = service.tokenizer.encode, []
    service.tokenizer.encode = lambda text: encoded.append(text) or encode(text)
    try:
        stream = service.stream(start + " And then the frog spoke.", few, seed=1, prefix=start)
        list(stream)
    finally:
        del service.tokenizer.encode
    assert stream.reused == 299  # Enter only waited for the new part
    assert encoded == [start + " And then the frog spoke."]  # the known start was tokenized once, ahead
    cold = service.clear_cache() or service.narrate(start + " And then the frog spoke.", few, seed=1,
                                                    prefix=start)
    assert cold.raw == stream.raw  # warming changes when the story comes, never which story
    thread = service.warm(start)
    thread.join(30)
    stream = service.stream(start + " And then the frog spoke.", few, seed=1)  # no known start given
    list(stream)
    assert stream.reused == 256  # the grid's chunks alone
    service.clear_cache()
    expected = service.narrate(start, few, seed=1)
    thread = service.warm(gpt2_tokenizer.decode((ids * 3)[:900]))
    narration = service.narrate(start, few, seed=1)  # the player acts at once: the warm-up gives way
    thread.join(30)
    assert narration.raw == expected.raw and not thread.is_alive()
    assert service.generator.cached[:300] == gpt2_tokenizer(start).input_ids  # it did not go on after
    assert service.warm("") is None


def test_service_rejects_an_unknown_precision(tiny_model_dir):
    event = NarratorService(str(tiny_model_dir), precision="int3").load()
    assert "unknown precision 'int3' (use one of: auto, fp32, bf16, int8)" in event.reason


def test_full_window_turns_keep_the_window_guarantee_and_reuse_the_cache(int8_service, gpt2_tokenizer):
    """A session's prompts from the context manager, narrated with the cache: never past the window."""
    from game.engine import Engine
    from game.narration import TurnNarrator
    from game.world.loader import load_quest

    engine = Engine(load_quest(ROOT / "quests" / "call-of-the-storyteller.yaml"), seed=2)
    sampling = Sampling(max_new_tokens=150)
    narrator = TurnNarrator(int8_service, "The Storyteller Spirit tells the tale.", sampling, seed=3)
    assert isinstance(narrator.builder(), ContextBuilder) and int8_service.window == 1024
    sentences = TEXT.split(". ")
    reused = []
    for turn, action in enumerate(["look", "listen to the wind", "look around", "sing", "wait",
                                   "look", "touch the archway", "look", "whistle", "look"]):
        result = engine.act(action)
        prepared = narrator.prepare(engine, result)
        built = prepared.prompt
        assert built.prompt_tokens + built.max_new_tokens <= built.window
        assert len(gpt2_tokenizer(built.text).input_ids) == built.prompt_tokens
        stream = int8_service.stream(built.text, sampling.with_values(max_new_tokens=8), seed=turn)
        list(stream)
        assert stream.new_tokens >= 1 and len(int8_service.generator.cached) <= 1024
        reused.append(stream.reused)
        engine.set_narration(" ".join(sentences[turn * 3:turn * 3 + 3]))  # a long narration
    assert max(reused[3:]) >= 128  # the stable start of the prompt comes from the cache


def test_stop_warming_waits_for_the_warm_up_so_exit_never_finds_torch_mid_step(int8_service, ids,
                                                                                  gpt2_tokenizer):
    """A warm-up is a daemon thread; at exit (atexit) each service's is stopped and waited for,
    since Python leaving a daemon thread inside torch aborts the process."""
    from game.narrator import service as service_module

    service = int8_service
    service.clear_cache()
    thread = service.warm(gpt2_tokenizer.decode((ids * 3)[:1000]))
    assert service in service_module._WARMING  # the exit hook will find it
    service.stop_warming()
    assert not thread.is_alive()
    assert len(service.generator.cached) % 128 == 0  # it stopped between whole chunks
    service_module._stop_warming_at_exit()  # nothing running: returns at once


def test_prompts_computed_ahead_into_spare_caches_are_taken_and_change_no_story(int8_service, ids,
                                                                                 gpt2_tokenizer):
    """The prompt the player may enter instead (another scene) is computed into a spare cache;
    a generation that starts like it takes it, and the main cache is kept for the expected one."""
    service = int8_service
    service.clear_cache()
    few = Sampling(max_new_tokens=6)
    expected = gpt2_tokenizer.decode(ids[:300])
    other = gpt2_tokenizer.decode(ids[100:400])  # differs from the first token on
    cold = service.narrate(other + " The end.", few, seed=3)
    service.clear_cache()
    thread = service.warm(expected, ahead=lambda: [other])
    thread.join(30)
    assert not thread.is_alive() and len(service.generator.cached) == 299  # the main cache: the expected start
    stream = service.stream(other + " The end.", few, seed=3)
    list(stream)
    assert stream.reused == 256  # taken from the spare
    assert stream.raw == cold.raw  # computed ahead changes when the story comes, never which
    whole = other + " The end."
    cold = service.clear_cache() or service.narrate(whole, few, seed=3, prefix=other)
    thread = service.warm(expected, ahead=lambda: [(whole, other)])  # a scene's prompt and its known start
    thread.join(30)
    stream = service.stream(whole, few, seed=3, prefix=other)
    list(stream)
    assert stream.reused == len(gpt2_tokenizer(whole).input_ids)  # all of it: the first token came at once
    assert stream.raw == cold.raw
    stream = service.stream(expected + " And so on.", few, seed=3)
    list(stream)
    assert stream.reused == 256  # the expected start was kept aside meanwhile
    service.clear_cache()
    stream = service.stream(other + " The end.", few, seed=3)
    list(stream)
    assert stream.reused == 0  # clearing the cache clears the spares too

    def broken():
        raise RuntimeError("a quest that cannot be played ahead")

    service.clear_cache()
    thread = service.warm(expected, ahead=broken)
    thread.join(30)
    assert len(service.generator.cached) == 299  # looking ahead failed: the warm-up is kept
