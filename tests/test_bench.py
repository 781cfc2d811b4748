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
    code = bench.run_bench(str(tiny_model_dir), path, False, out=out, quick=True)
    return code, out.getvalue(), json.loads(path.read_text()) if path.exists() else None


def _stat(value) -> bool:
    return set(value) >= {"median", "min", "max"} and value["min"] <= value["median"] <= value["max"]


def test_quick_run_writes_the_json_the_issue_asks_for(quick_run, tiny_model_dir):
    code, text, report = quick_run
    assert code == 0, text
    assert report["model"] == str(tiny_model_dir)
    assert {"cpu", "physical_cores", "flags", "load_average_before"} <= set(report["machine"])
    for side in ("baseline", "game"):
        result = report[side]
        for key in ("ttft_ms", "decode_tps"):
            assert set(result[key]) == set(SIZES)
            assert all(_stat(result[key][n]) and result[key][n]["min"] > 0 for n in SIZES)
        assert _stat(result["turn_latency_ms"]) and result["turn_latency_ms"]["n"] == 4
        assert result["peak_rss_mb"] > 100
    game = report["game"]
    assert _stat(game["tui_paint_s"]) and _stat(game["ready_s"]) and _stat(report["baseline"]["ready_s"])
    assert game["torch_imported_before_paint"] in (True, False)
    assert game["session"]["prompt_tokens"]["median"] > 300  # the window is filling up
    assert report["precision"] == "fp32"  # auto keeps a model this small in fp32
    assert set(report["ratios"]) == {"decode_880", "ttft_880", "turn_latency"}
    assert report["ratios"]["decode_880"] == round(
        game["decode_tps"]["880"]["median"] / report["baseline"]["decode_tps"]["880"]["median"], 2)
    assert set(report["targets"]) == set(bench.TARGETS)


def test_quick_run_prints_a_readable_table(quick_run):
    _code, text, _report = quick_run
    for row in ("first token, 880-token prompt", "decode tokens/s, 512-token prompt",
                "turn latency, Enter -> first token (4 turns)", "launch -> TUI painted",
                "launch -> narrator ready", "peak RSS", "baseline (pipeline, fp32)", "Targets:"):
        assert row in text
    assert "Traceback" not in text


def test_a_folder_that_is_no_model_fails_in_one_line(tmp_path):
    out = io.StringIO()
    assert bench.run_bench(str(tmp_path), None, False, out=out, quick=True) == 1
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("storyteller bench: ") and "Traceback" not in out.getvalue()


def test_quality_compares_each_precision_with_fp32(tiny_model_dir, tmp_path):
    out = io.StringIO()
    path = tmp_path / "quality.json"
    assert bench.run_quality(str(tiny_model_dir), path, out) == 0
    rows = json.loads(path.read_text())["quality"]
    assert rows["tokens"] > 500 and rows["lean_vs_model_max_diff"] < 1e-4
    assert set(rows["precisions"]) == {"fp32", "bf16", "int8"}
    fp32 = rows["precisions"]["fp32"]
    assert fp32["agreement"] == 1.0 and fp32["max_logit_diff"] == 0.0
    for name in ("bf16", "int8"):
        assert rows["precisions"][name]["agreement"] >= 0.9
        assert rows["precisions"][name]["perplexity"] == pytest.approx(fp32["perplexity"], rel=0.05)
    assert "next-token agreement" in out.getvalue()


def test_quality_without_the_real_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    out = io.StringIO()
    assert bench.run_bench(None, None, True, out=out) == 1
    assert "storyteller model pull distilgpt2" in out.getvalue()


def test_the_bundled_text_and_the_scripted_narrations(gpt2_tokenizer):
    assert bench.text_file().read_text(encoding="utf-8").startswith("The Frog-King")
    for n in (16, 512, 880):
        assert abs(len(gpt2_tokenizer(bench._prompt_of(gpt2_tokenizer, n)).input_ids) - n) <= 4
    lines = bench._narrations()
    assert len(lines) > 10 and all(len(line.split()) > 10 for line in lines)


def test_targets_are_judged_against_the_issue():
    report = {"game": {"turn_latency_ms": {"median": 90}, "tui_paint_s": {"median": 0.6},
                       "ready_s": {"median": 3.0}, "peak_rss_mb": 550},
              "ratios": {"decode_880": 3.2}}
    met = {key: value["met"] for key, value in bench.targets(report).items()}
    assert met == {"turn_latency_ms": True, "decode_880": True, "tui_paint_s": False,
                   "ready_s": True, "peak_rss_mb": True}
