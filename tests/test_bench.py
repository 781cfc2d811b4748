"""`storyteller bench`: a quick run on the tiny GPT-2 gives the report and JSON the issue asks for.

Only the shape of the results is checked here, never the timings (the machine is noisy).
"""

from __future__ import annotations

import io
import json

import pytest

from game import bench

SIZES = ("16", "512", "880")


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir, tmp_path_factory):
    out = io.StringIO()
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = bench.run_bench(str(tiny_model_dir), path, False, out=out, quick=True, peers=True)
    return code, out.getvalue(), json.loads(path.read_text()) if path.exists() else None


def _stat(value) -> bool:
    return set(value) >= {"median", "min", "max", "p90"} and value["min"] <= value["median"] <= value["max"] \
        and value["min"] <= value["p90"] <= value["max"]


def _llama_expected() -> bool:
    import importlib.util

    try:
        import game.narrator.gguf_export  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


def test_quick_run_with_peers_writes_the_json_the_issue_asks_for(quick_run, tiny_model_dir):
    code, text, report = quick_run
    assert code == 0, text
    assert report["model"] == str(tiny_model_dir)
    machine = report["machine"]
    assert {"cpu", "physical_cores", "flags", "load_average_before", "load_average_after",
            "load_average_during_max"} <= set(machine)
    assert machine["load_average_during_max"] >= max(machine["load_average_before"][0],
                                                     machine["load_average_after"][0])
    peers, skipped = report["peers"], report["skipped"]
    assert "pipeline" in peers  # the plain pipeline always runs
    # every peer the issue names either ran or says why not
    assert {"pipeline", "llama_cpp_q8_0", "llama_cpp_f16", "ctranslate2_int8"} <= set(peers) | set(skipped)
    assert all(isinstance(why, str) and why for why in skipped.values())
    if _llama_expected():
        assert {"llama_cpp_q8_0", "llama_cpp_f16"} <= set(peers), skipped
    for name, result in {"game": report["game"], **peers}.items():
        for key in ("ttft_ms", "decode_tps"):
            assert set(result[key]) == set(SIZES)
            assert all(_stat(result[key][n]) and result[key][n]["min"] > 0 for n in SIZES), name
        latency = result["turn_latency_ms"]
        assert _stat(latency) and latency["n"] == 4
        assert latency["same_scene_n"] + latency["scene_entry_n"] == 4
        assert result["peak_rss_mb"] > 20 and _stat(result["ready_s"])
    game = report["game"]
    assert game["turn_latency_ms"]["scene_entry_n"] >= 1  # the script enters a scene in its first turns
    assert _stat(game["tui_paint_s"]) and _stat(game["turn_latency_no_lookahead_ms"])
    assert game["torch_imported_before_paint"] in (True, False)
    assert game["session"]["prompt_tokens"]["median"] > 300  # the window is filling up
    assert report["precision"] == "fp32"  # auto keeps a model this small in fp32
    assert report["device"] == "cpu"
    turns = game["turns"]  # every timed turn, with what it computed
    assert len(turns) == 4 and [t["turn"] for t in turns] == [1, 2, 3, 4]
    assert all(0 <= t["reused_tokens"] <= t["prompt_tokens"] and t["latency_ms"] > 0 and t["action"]
               for t in turns)
    assert sum(t["enters_scene"] for t in turns) == game["turn_latency_ms"]["scene_entry_n"]
    assert any(t["enters_scene"] and t["reused_tokens"] == t["prompt_tokens"] for t in turns)  # looked ahead
    b = game["token_breakdown"]  # where a token's time goes, measured
    assert b["context_tokens"] == 880 and b["token_ms"] > 0 and b["weights_read_mb"] > 1
    assert b["matrix_products_ms"] > 0 and b["attention_ms"] >= 0 and b["rest_ms"] >= 0  # a tiny model's
    parts = b["matrix_products_ms"] + b["attention_ms"] + b["rest_ms"]  # attention: ~0; each rounded to 1 µs
    assert parts >= b["token_ms"] - 0.002
    for name in peers:
        assert report["ratios"][f"decode_880_vs_{name}"] == round(
            game["decode_tps"]["880"]["median"] / peers[name]["decode_tps"]["880"]["median"], 2)
        assert {f"ttft_880_vs_{name}", f"turn_latency_vs_{name}", f"turn_latency_p90_vs_{name}"} \
            <= set(report["ratios"])
    assert set(report["targets"]) == set(bench.TARGETS)
    for key, target in report["targets"].items():
        assert target["status"] in ("met", "not met", "not measurable")
        assert bool(target["why"]) == (target["status"] == "not measurable"), key


def test_quick_run_prints_a_readable_table(quick_run):
    _code, text, _report = quick_run
    for row in ("first token, 880-token prompt", "decode tokens/s, 512-token prompt",
                "turn latency, Enter -> first token (4 turns)", "turns entering a scene",
                "game without scene look-ahead", "launch -> TUI painted",
                "launch -> narrator ready", "peak RSS", "pipeline", "Targets:", "decode_880_vs_pipeline",
                "Where one of the game's tokens goes after a 880-token prompt"):
        assert row in text
    assert "Traceback" not in text


def test_device_cuda_without_a_gpu_says_so_in_one_line(tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: docs/performance.md has the figures from `--device cuda`")
    out = io.StringIO()
    assert bench.run_bench(str(tiny_model_dir), None, False, out=out, quick=True, device="cuda") == 1
    assert out.getvalue().strip() == ("storyteller bench: --device cuda: torch finds no CUDA GPU here "
                                      "(run it where there is one, with a CUDA build of torch)")


def test_device_cuda_is_refused_where_the_benchmark_would_not_use_it(tmp_path, capsys):
    from game import cli

    for extra in (["--quality"], ["--server", "http://127.0.0.1:9/v1"]):
        assert cli.main(["bench", "--device", "cuda", *extra]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"storyteller bench: --device cuda is for the speed benchmark; {extra[0]} does not use it"
    plan, skipped = bench._peer_plan(str(tmp_path), True, tmp_path, "cuda")  # no GGUF is written for nothing
    assert set(plan) == {"pipeline"} and not list(tmp_path.glob("*.gguf"))
    assert all("llama.cpp runs on the CPU here" in skipped[f"llama_cpp_{k}"] for k in bench.LLAMA_KINDS)


def test_the_report_shows_folder_names_and_reasons_as_inert_text(quick_run):
    _code, _text, report = quick_run
    hostile = json.loads(json.dumps(report))
    hostile["model"] = "/tmp/\x1b]0;owned\x07model"
    hostile["machine"]["cpu"] = "CPU\x1b[2J"
    hostile["skipped"]["ctranslate2_int8"] = "failed: \x1b[31mred\u202e"
    key = next(iter(hostile["targets"]))
    hostile["targets"][key]["why"] = "llama_cpp_q8_0 did not run: \x1b]0;owned\x07crashed"  # a peer's error
    out = io.StringIO()
    bench._print_report(hostile, out)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "ctranslate2_int8: not run (failed:" in out.getvalue()
    assert "llama_cpp_q8_0 did not run: " in out.getvalue()
    hostile["game"]["token_breakdown"] = {"error": "the game worker failed: breakdown: \x1b[2Jboom"}
    out = io.StringIO()
    bench._print_report(hostile, out)  # a breakdown that failed is said, the other figures kept
    assert "\x1b" not in out.getvalue() and "tokens goes: not measured (the game worker failed" in out.getvalue()
    assert "Targets:" in out.getvalue()


def test_a_folder_that_is_no_model_fails_in_one_line(tmp_path):
    out = io.StringIO()
    assert bench.run_bench(str(tmp_path), None, False, out=out, quick=True) == 1
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("storyteller bench: ") and "Traceback" not in out.getvalue()


def test_quality_compares_each_precision_with_fp32_on_the_proxy_and_the_model(tiny_model_dir, tmp_path):
    """A seconds-long proxy training here; `storyteller bench --quality` trains it for minutes."""
    from game.narrator import precision

    out = io.StringIO()
    path = tmp_path / "quality.json"
    assert bench.run_quality(str(tiny_model_dir), path, out, proxy_seconds=2) == 0, out.getvalue()
    report = json.loads(path.read_text())
    assert report["margin"] == precision.INT8_MARGIN
    for rows in (report["proxy"], report["quality"]):
        assert rows["tokens"] > 500 and rows["lean_vs_model_max_diff"] < 1e-4
        assert set(rows["precisions"]) == {"fp32", "bf16", "int8"}
        fp32 = rows["precisions"]["fp32"]
        assert fp32["agreement"] == 1.0 and fp32["max_logit_diff"] == 0.0
        for name in ("bf16", "int8"):
            assert rows["precisions"][name]["agreement"] >= 0.9
            assert rows["precisions"][name]["perplexity"] == pytest.approx(fp32["perplexity"], rel=0.05)
        assert rows["int8_ok"] == precision.int8_sound(rows)
    assert report["proxy"]["training"]["steps"] >= 1
    # the verdicts are recorded for `auto`: the proxy's, and the measured model's under its folder
    assert precision.int8_allowed("any/unmeasured-model") is report["proxy"]["int8_ok"]
    assert precision.int8_allowed(str(tiny_model_dir)) is report["quality"]["int8_ok"]
    text = out.getvalue()
    assert "PROXY (not distilgpt2)" in text and "next-token agreement" in text and "within the margin" in text


def test_the_proxy_is_held_out_text_it_never_trained_on():
    from game.narrator import proxy

    train, held = proxy.corpus()
    assert len(train) > 10_000 and len(held) > 2_000
    paragraphs = set(train.split("\n\n"))
    assert not any(p in paragraphs for p in held.split("\n\n"))
    assert "frog" in held.lower()  # the public-domain tale is in both halves


def test_quality_without_the_real_model_measures_the_proxy_and_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    out = io.StringIO()
    assert bench.run_bench(None, None, True, out=out, proxy_seconds=1) == 0
    assert "PROXY (not distilgpt2)" in out.getvalue()
    assert "storyteller model pull distilgpt2" in out.getvalue()


def test_the_bundled_text_and_the_scripted_narrations(gpt2_tokenizer):
    assert bench.text_file().read_text(encoding="utf-8").startswith("The Frog-King")
    for n in (16, 512, 880):
        assert abs(len(gpt2_tokenizer(bench._prompt_of(gpt2_tokenizer, n)).input_ids) - n) <= 4
    lines = bench._narrations()
    assert len(lines) > 10 and all(len(line.split()) > 10 for line in lines)


def _report(load: float, cores: int = 2, llama: bool = True) -> dict:
    """A report as `_measure` writes it, with made-up figures (nothing here is timed)."""
    peer = {"decode_tps": {"880": {"median": 100.0}}, "ttft_ms": {"880": {"median": 300.0}}}
    peers = {"pipeline": {"decode_tps": {"880": {"median": 40.0}}, "ttft_ms": {"880": {"median": 600.0}}}}
    if llama:
        peers.update(llama_cpp_q8_0=peer, llama_cpp_f16=peer)
    ratios = {f"decode_880_vs_{n}": 120.0 / p["decode_tps"]["880"]["median"] for n, p in peers.items()}
    ratios.update({f"ttft_880_vs_{n}": p["ttft_ms"]["880"]["median"] / 250.0 for n, p in peers.items()})
    return {"game": {"turn_latency_ms": {"median": 50, "p90": 120}, "tui_paint_s": {"median": 0.4},
                     "ready_s": {"median": 1.9}, "peak_rss_mb": 450},
            "peers": peers, "ratios": ratios,
            "skipped": {} if llama else {"llama_cpp_q8_0": "llama-cpp-python is not installed"},
            "machine": {"physical_cores": cores, "load_average_before": [0.3], "load_average_after": [0.9],
                        "load_average_during_max": load}}


def test_targets_are_judged_against_the_issue_on_a_quiet_machine():
    status = {key: value["status"] for key, value in bench.targets(_report(load=1.5)).items()}
    assert status == {"decode_880_vs_llama_cpp_q8_0": "met", "decode_880_vs_pipeline": "met",
                      "turn_latency_p90_ms": "not met", "ttft_880_vs_llama_cpp": "met",
                      "peak_rss_mb": "not met", "ready_s": "met", "tui_paint_s": "met"}


def test_nothing_timed_is_met_when_the_load_average_passed_the_core_count():
    targets = bench.targets(_report(load=2.4, cores=2))
    for key, target in targets.items():
        if key in bench.UNTIMED:  # memory does not depend on the load
            assert target["status"] == "not met"
            continue
        assert target["status"] == "not measurable", key
        assert "load average reached 2.4" in target["why"] and "2 physical cores" in target["why"]
    assert "load average reached" not in bench.targets(_report(load=2.0, cores=2))["ready_s"]["why"]
    # the peak during the run counts, not just the two ends
    assert bench.busy_reason({"physical_cores": 2, "load_average_before": [0.5], "load_average_after": [0.5],
                              "load_average_during_max": 3.1})


def test_a_target_that_needs_a_missing_peer_is_not_measurable_and_says_why():
    targets = bench.targets(_report(load=0.5, llama=False))
    for key in ("decode_880_vs_llama_cpp_q8_0", "ttft_880_vs_llama_cpp"):
        assert targets[key]["status"] == "not measurable" and targets[key]["value"] is None
        assert "llama-cpp-python is not installed" in targets[key]["why"]
    assert targets["decode_880_vs_pipeline"]["status"] == "met"


def test_on_an_amx_cpu_llama_cpp_q8_0_is_loaded_without_its_extra_buffer_types(tiny_model_dir, tmp_path,
                                                                               monkeypatch):
    """llama-cpp-python 0.3.36 crashed on GPT-2 q8_0 through its AMX buffer type; q8_0 worked with
    `use_extra_bufts` off, so the benchmark turns it off there (and only there)."""
    pytest.importorskip("llama_cpp")
    gguf_export = pytest.importorskip("game.narrator.gguf_export")
    from llama_cpp import llama as llama_module

    from game.narrator import precision

    params = llama_module.llama_cpp
    monkeypatch.setattr(params, "llama_model_default_params", params.llama_model_default_params)  # restored after
    path = tmp_path / "tiny-q8_0.gguf"
    gguf_export.export_gguf(tiny_model_dir, path, kind="q8_0")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))
    llm, setup = bench.open_llama(str(path), "f16")  # not q8_0: nothing changed
    llm.close()
    assert "use_extra_bufts" not in setup and params.llama_model_default_params().use_extra_bufts
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "amx_int8", "amx_tile"}))
    llm, setup = bench.open_llama(str(path), "q8_0")
    try:
        assert "use_extra_bufts off" in setup and "flash attention on" in setup
        assert params.llama_model_default_params().use_extra_bufts is False
        assert llm.n_threads == precision.threads()
        ids = llm.tokenize(b"Once upon a time", add_bos=False)
        assert len(list(zip(range(3), llm.generate(ids, temp=0.8, top_k=50, top_p=0.95)))) == 3
    finally:
        llm.close()


def test_memory_that_could_not_be_read_is_not_measurable_never_met(monkeypatch):
    report = _report(load=0.5)
    report["game"]["peak_rss_mb"] = None  # what a system without /proc gives
    target = bench.targets(report)["peak_rss_mb"]
    assert target["status"] == "not measurable" and "no /proc" in target["why"]
    from game import procfs

    monkeypatch.setattr(procfs, "_kib_field", lambda path, field: None)
    assert bench._rss_mb() is None and bench._rss_mb("VmHWM") is None
