"""`storyteller bench`: how fast the narrator is, next to the plain pipeline it replaced.

Two worker processes load the same model: the *baseline*, the classic recipe's
plain `pipeline("text-generation")` call in fp32 (temperature 0.8, top-k 50,
top-p 0.95, repetition penalty 1.2), untouched; and the *game*, the narrator
service the game uses (`game.narrator.service`, its fast path and prefix
cache). The parent drives them in turns, one measurement on each side and then
the next, so noise from other work on the machine hits both alike. Measured:

* time to the first token and decode tokens/s with prompts of ~16, ~512 and
  ~880 tokens, 128 new tokens forced (end-of-text is held off); the game's
  prefix cache is cleared first, so these are cold prompts;
* turn latency, Enter → first narrated token, over a scripted session of the
  bundled quest with the real engine and context manager, the history filling
  the 1024-token window (both sides build the same prompts: the narrations
  kept in the history are scripted sentences of the bundled fairy tale, and
  each turn is timed to its first token, then cut);
* cold start, each in fresh processes: launch → TUI painted (headless Textual,
  the model loading in the background as in play) and launch → narrator ready;
* peak RSS of each worker (its own process, so nothing is mixed).

With no `--model` a GPT-2 of distilgpt2's exact shape (random weights, the real
vocabulary) is built in a temporary folder: speed does not depend on the
weights. `--quality` instead compares each precision with fp32 on a bundled
public-domain English text (perplexity, next-token agreement), which needs
real weights: the cached distilgpt2, or `--model DIR`.

`run_bench` is the command; `python -m game.bench --worker ...` is a worker.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from game import locations

QUEST = locations.bundled_quests_dir() / "call-of-the-storyteller.yaml"
SIZES = (16, 512, 880)
NEW_TOKENS = 128
BASELINE_SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2)
# The scripted session: choices, free actions and looks, through most scenes of the quest.
ACTIONS = ("look", "1", "listen to the wind", "2", "examine the archway", "look around", "3",
           "touch the humming fans", "1", "look", "sing softly", "2", "wait", "4", "smell the air",
           "look", "3", "1", "call out to the spirit", "look", "2", "dance in the rain", "4", "1",
           "kneel", "look", "2", "3", "whistle", "look", "hum a tune", "look around", "wait",
           "listen", "look", "think of home", "look", "sit down", "look", "count the stones")
WARMUP_TURNS = 6  # turns before timing starts: the history fills the window by then
TARGETS = {"turn_latency_ms": 100, "decode_880": 3.0, "tui_paint_s": 0.5, "ready_s": 4.0, "peak_rss_mb": 600}


def text_file() -> Path:
    """The bundled public-domain English text (Grimm's Frog-King, 1884 translation)."""
    return locations.assets_dir() / "texts" / "frog-king.txt"


def _stats(values: list[float], digits: int = 1) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


# --- the parent ----------------------------------------------------------------------------

class _Worker:
    """A worker process answering one JSON request per line."""

    def __init__(self, side: str, model: str, precision: str, env: dict):
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "game.bench", "--worker", side, model, precision],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env, cwd=locations.PROJECT_ROOT)

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker stopped (request {request})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the {self.side} worker failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def machine() -> dict:
    """What the numbers were measured on."""
    from game.narrator import precision

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            name = next((line.partition(":")[2].strip() for line in fh if line.startswith("model name")), name)
    except OSError:
        pass
    flags = sorted(precision.cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                            "amx_bf16", "amx_int8", "amx_tile"})
    return {"cpu": name, "physical_cores": precision.threads(), "logical_cpus": os.cpu_count(),
            "flags": flags, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()]}


def _env(home: Path) -> dict:
    env = dict(os.environ, STORYTELLER_CONFIG_DIR=str(home / "config"),
               STORYTELLER_DATA_DIR=str(home / "data"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(locations.PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _timed_launch(code: str, args: list[str], env: dict) -> dict:
    """Run `python -c code *args`; its last stdout line is JSON with 'at' (time.time() of the event)."""
    began = time.time()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=locations.PROJECT_ROOT, timeout=300)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"a launch measurement failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(lines[-1])
    result["seconds"] = result["at"] - began
    return result


PAINT = """\
import asyncio, json, sys, time
from game.narration import make_turn_narrator
from game.personality import load_personalities
from game.settings import Settings
from game.tui.app import make_app
async def main():
    personalities, _ = load_personalities()
    settings = Settings(model=sys.argv[1])
    narrator = make_turn_narrator(settings, personalities)
    app = make_app(settings, personalities, narrator=narrator)
    async with app.run_test(size=(100, 30)):  # entered once the first screen is shown
        print(json.dumps({"at": time.time(), "torch_imported_before_paint": "torch" in sys.modules}), flush=True)
        import os; os._exit(0)  # do not wait for the model
asyncio.run(main())
"""
READY_GAME = """\
import json, sys, time
from game.narrator.service import NarratorService
service = NarratorService(sys.argv[1], precision=sys.argv[2], device="cpu")
event = service.load()
print(json.dumps({"at": time.time(), "event": type(event).__name__, "precision": service.precision}))
"""
READY_BASELINE = """\
import json, sys, time
from transformers import pipeline
pipeline("text-generation", model=sys.argv[1])
print(json.dumps({"at": time.time(), "event": "Ready"}))
"""


def run_bench(model: str | None, json_path: Path | None, quality: bool, out: TextIO = sys.stdout,
              *, quick: bool = False, precision: str = "auto") -> int:
    """The `storyteller bench` command; returns the exit code.

    `quick` takes fewer repetitions (for tests); `precision` is the game's
    setting (auto|fp32|bf16|int8). With `quality`, only the precision
    comparison runs (it needs real weights).
    """
    if quality:
        return run_quality(model, json_path, out)
    with tempfile.TemporaryDirectory(prefix="storyteller-bench-") as tmp:
        home = Path(tmp)
        label = model
        if model is None:
            from transformers.utils import logging as hf_logging

            from game.narrator.model_builder import build_gpt2

            hf_logging.disable_progress_bar()  # no bar from saving the weights
            print("Building a GPT-2 of distilgpt2's shape (random weights, real vocabulary)...", file=out)
            model = str(build_gpt2(home / "distilgpt2-shape", shape="distilgpt2"))
            label = "distilgpt2 shape, random weights"
        try:
            report = _measure(model, precision, quick, _env(home), out)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as error:
            print(f"storyteller bench: {error}", file=out)
            return 1
    report["model"] = label
    _print_report(report, out)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {json_path}", file=out)
    return 0


def _measure(model: str, precision: str, quick: bool, env: dict, out: TextIO) -> dict:
    reps, turns = (1, 4) if quick else (3, 30)
    info = machine()
    print(f"Loading both sides ({'quick' if quick else 'full'} run)...", file=out)
    sides = {"baseline": _Worker("baseline", model, precision, env), "game": _Worker("game", model, precision, env)}
    try:
        loaded = {name: w.ask(op="load") for name, w in sides.items()}
        ttft = {name: {str(n): [] for n in SIZES} for name in sides}
        tps = {name: {str(n): [] for n in SIZES} for name in sides}
        for rep in range(reps):
            for n in SIZES:
                order = ("baseline", "game") if rep % 2 == 0 else ("game", "baseline")
                for name in order:
                    got = sides[name].ask(op="generate", tokens=n, seed=rep)
                    ttft[name][str(n)].append(got["ttft_ms"])
                    tps[name][str(n)].append(got["decode_tps"])
            print(f"  prompts: round {rep + 1} of {reps} done", file=out)
        for w in sides.values():
            w.ask(op="session_start")
        latency = {name: [] for name in sides}
        by_kind = {name: {"same_scene": [], "new_scene": []} for name in sides}
        prompt_tokens, reused, warms = [], [], []
        for turn in range(WARMUP_TURNS + turns):
            order = ("baseline", "game") if turn % 2 == 0 else ("game", "baseline")
            for name in order:
                got = sides[name].ask(op="turn")
                if turn >= WARMUP_TURNS:
                    latency[name].append(got["latency_ms"])
                    by_kind[name]["new_scene" if got["moved"] else "same_scene"].append(got["latency_ms"])
                    if name == "game":
                        prompt_tokens.append(got["prompt_tokens"])
                        reused.append(got["reused"])
                        warms.append(got["warm_ms"])
        print(f"  session: {turns} turns timed", file=out)
        warms = [w for w in warms if w is not None]
        sides["game"].ask(op="session_start")  # again, with no time to warm up between turns
        unwarmed = []
        for turn in range(WARMUP_TURNS + turns):
            got = sides["game"].ask(op="turn", warm=False)
            if turn >= WARMUP_TURNS:
                unwarmed.append(got["latency_ms"])
        print("  session again, the game with no time between turns", file=out)
        memory = {name: w.ask(op="memory") for name, w in sides.items()}
    finally:
        for w in sides.values():
            w.close()
    report: dict = {"machine": info, "precision": loaded["game"]["precision"],
                    "game_path": loaded["game"]["path"], "threads": memory["game"].get("threads"),
                    "baseline_threads": loaded["baseline"]["threads"], "quick": quick}
    for name in sides:
        report[name] = {
            "ttft_ms": {k: _stats(v) for k, v in ttft[name].items()},
            "decode_tps": {k: _stats(v) for k, v in tps[name].items()},
            "turn_latency_ms": _stats(latency[name]),
            "turn_latency_by_kind_ms": {kind: _stats(v) for kind, v in by_kind[name].items() if v},
            "peak_rss_mb": memory[name]["peak_rss_mb"],
            "peak_rss_loading_mb": loaded[name]["peak_rss_loaded_mb"],
            "rss_after_play_mb": memory[name]["rss_mb"],
        }
    report["game"]["session"] = {"prompt_tokens": _stats(prompt_tokens, 0),
                                 "reused_prompt_tokens": _stats(reused, 0)}
    report["game"]["warm_ms"] = _stats(warms) if warms else None
    report["game"]["turn_latency_unwarmed_ms"] = _stats(unwarmed)
    print("Timing cold starts (fresh processes)...", file=out)
    paints, readies, base_readies = [], [], []
    for _ in range(1 if quick else 3):
        paint = _timed_launch(PAINT, [model], env)
        paints.append(paint["seconds"])
        report["game"]["torch_imported_before_paint"] = paint["torch_imported_before_paint"]
        readies.append(_timed_launch(READY_GAME, [model, precision], env)["seconds"])
        base_readies.append(_timed_launch(READY_BASELINE, [model], env)["seconds"])
    report["game"]["tui_paint_s"] = _stats(paints, 2)
    report["game"]["ready_s"] = _stats(readies, 2)
    report["baseline"]["ready_s"] = _stats(base_readies, 2)
    game, base = report["game"], report["baseline"]
    report["ratios"] = {
        "decode_880": round(game["decode_tps"]["880"]["median"] / base["decode_tps"]["880"]["median"], 2),
        "ttft_880": round(base["ttft_ms"]["880"]["median"] / game["ttft_ms"]["880"]["median"], 2),
        "turn_latency": round(base["turn_latency_ms"]["median"] / game["turn_latency_ms"]["median"], 2),
    }
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = targets(report)
    return report


def targets(report: dict) -> dict:
    """Each target of the speed issue: the measured value, the goal, and whether it is met."""
    game = report["game"]
    measured = {
        "turn_latency_ms": (game["turn_latency_ms"]["median"], "<="),
        "decode_880": (report["ratios"]["decode_880"], ">="),
        "tui_paint_s": (game["tui_paint_s"]["median"], "<="),
        "ready_s": (game["ready_s"]["median"], "<="),
        "peak_rss_mb": (game["peak_rss_mb"], "<="),
    }
    return {key: {"value": value, "goal": f"{way} {TARGETS[key]}",
                  "met": value <= TARGETS[key] if way == "<=" else value >= TARGETS[key]}
            for key, (value, way) in measured.items()}


def _print_report(r: dict, out: TextIO) -> None:
    m, base, game = r["machine"], r["baseline"], r["game"]
    print(f"\nStoryteller benchmark: {r['model']}", file=out)
    print(f"Machine: {m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
          f"flags {' '.join(m['flags']) or '-'}; load average {m['load_average_before'][0]} before, "
          f"{m['load_average_after'][0]} after", file=out)
    print(f"Game: precision {r['precision']} ({r['game_path']}), {r['threads']} thread(s) at the end "
          f"(it uses the cores other programs leave free); baseline: {r['baseline_threads']} threads.", file=out)
    print("Medians (min-max) of the runs; ratio = how many times better the game is.\n", file=out)

    def cell(s: dict, unit: str = "") -> str:
        return f"{s['median']:g}{unit} ({s['min']:g}-{s['max']:g})"

    rows = [("", "baseline (pipeline, fp32)", "game", "ratio")]
    for n in SIZES:
        b, g = base["ttft_ms"][str(n)], game["ttft_ms"][str(n)]
        rows.append((f"first token, {n}-token prompt", cell(b, " ms"), cell(g, " ms"),
                     f"{b['median'] / g['median']:.1f}x"))
    for n in SIZES:
        b, g = base["decode_tps"][str(n)], game["decode_tps"][str(n)]
        rows.append((f"decode tokens/s, {n}-token prompt", cell(b), cell(g), f"{g['median'] / b['median']:.1f}x"))
    b, g = base["turn_latency_ms"], game["turn_latency_ms"]
    rows.append((f"turn latency, Enter -> first token ({g['n']} turns)", cell(b, " ms"), cell(g, " ms"),
                 f"{b['median'] / g['median']:.1f}x"))
    u = game["turn_latency_unwarmed_ms"]
    rows.append(("  the same, acting at once (no warm-up)", "", cell(u, " ms"), f"{b['median'] / u['median']:.1f}x"))
    rows.append(("launch -> narrator ready", cell(base["ready_s"], " s"), cell(game["ready_s"], " s"), ""))
    rows.append(("launch -> TUI painted", "", cell(game["tui_paint_s"], " s"), ""))
    rows.append(("peak RSS (whole process)", f"{base['peak_rss_mb']} MB", f"{game['peak_rss_mb']} MB", ""))
    rows.append(("RSS after the session", f"{base['rss_after_play_mb']} MB", f"{game['rss_after_play_mb']} MB", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip(), file=out)
    s = game["session"]
    print(f"\nSession prompts: {s['prompt_tokens']['median']:g} tokens (median), of which "
          f"{s['reused_prompt_tokens']['median']:g} came from the prefix cache.", file=out)
    for kind, label in (("same_scene", "staying in a scene"), ("new_scene", "entering a scene")):
        b, g = base["turn_latency_by_kind_ms"].get(kind), game["turn_latency_by_kind_ms"].get(kind)
        if b and g:
            print(f"Turns {label} ({g['n']}): baseline {b['median']:g} ms, game {g['median']:g} ms (medians).",
                  file=out)
    if game.get("warm_ms"):
        print(f"After each turn the game computed the next prompt's known start in the background in "
              f"{cell(game['warm_ms'], ' ms')}, while the player reads and types; the turn latency above "
              "assumes the player takes longer than that.", file=out)
    print("Targets:", file=out)
    for key, t in r["targets"].items():
        print(f"  {'met    ' if t['met'] else 'NOT met'}  {key}: {t['value']:g} (goal {t['goal']})", file=out)


# --- through a server ------------------------------------------------------------------------

def run_server_bench(url: str, server_model: str | None, model: str | None, json_path: Path | None,
                     out: TextIO = sys.stdout, *, quick: bool = False, precision: str = "auto") -> int:
    """`storyteller bench --server URL`: first-token latency and tokens/s through an
    OpenAI-compatible server, next to the local Spirit (a worker process, as in `run_bench`),
    alternating, with prompts of the same sizes counted by each side's own tokenizer."""
    from game.narrator.remote import ServerConfig, ServerNarrator

    try:
        server = ServerNarrator(ServerConfig(url, model=server_model))
    except ValueError as error:
        print(f"storyteller bench: {error}", file=out)
        return 2
    event = server.load()
    if server.status != "ready":
        print(f"storyteller bench: the server cannot narrate: {event.reason}", file=out)
        return 1
    reps = 1 if quick else 3
    sizes = [n for n in SIZES if n + NEW_TOKENS + 8 <= server.window] or [16]
    with tempfile.TemporaryDirectory(prefix="storyteller-bench-") as tmp:
        home = Path(tmp)
        label = model
        if model is None:
            from game.narrator.model_builder import build_gpt2

            print("Building a GPT-2 of distilgpt2's shape (random weights, real vocabulary)...", file=out)
            model = str(build_gpt2(home / "distilgpt2-shape", shape="distilgpt2"))
            label = "distilgpt2 shape, random weights"
        print(f"Timing the local Spirit and {server.describe()}...", file=out)
        local = _Worker("game", model, precision, _env(home))
        figures: dict = {"local": {"ttft_ms": {}, "decode_tps": {}}, "server": {"ttft_ms": {}, "decode_tps": {}}}
        try:
            local.ask(op="load")
            prompts = {n: _server_prompt(server, n) for n in sizes}
            for rep in range(reps):
                for n in sizes:
                    order = ("local", "server") if rep % 2 == 0 else ("server", "local")
                    for side in order:
                        got = (local.ask(op="generate", tokens=n, seed=rep) if side == "local"
                               else _server_generate(server, prompts[n], rep))
                        figures[side]["ttft_ms"].setdefault(str(n), []).append(got["ttft_ms"])
                        figures[side]["decode_tps"].setdefault(str(n), []).append(got["decode_tps"])
        except (RuntimeError, OSError, ValueError) as error:
            print(f"storyteller bench: {error}", file=out)
            return 1
        finally:
            local.close()
    report = {"machine": machine(), "model": label, "through": server.log_record(), "quick": quick,
              "new_tokens": NEW_TOKENS}
    for side, values in figures.items():
        report[side] = {kind: {n: _stats(v) for n, v in by_size.items()} for kind, by_size in values.items()}
    print(f"\nThe Spirit through {url} ({server.model_name}) next to the local Spirit ({label}); medians (min-max), "
          f"{NEW_TOKENS} new tokens each.", file=out)
    rows = [("", "local Spirit", "server")]
    for n in sizes:
        rows.append((f"first token, {n}-token prompt", *(f"{report[s]['ttft_ms'][str(n)]['median']:g} ms "
                     f"({report[s]['ttft_ms'][str(n)]['min']:g}-{report[s]['ttft_ms'][str(n)]['max']:g})"
                     for s in ("local", "server"))))
    for n in sizes:
        rows.append((f"tokens/s, {n}-token prompt", *(f"{report[s]['decode_tps'][str(n)]['median']:g} "
                     f"({report[s]['decode_tps'][str(n)]['min']:g}-{report[s]['decode_tps'][str(n)]['max']:g})"
                     for s in ("local", "server"))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip(), file=out)
    print("The server's figures include the network and HTTP streaming; its tokens/s counts the pieces "
          "as they were streamed (one token each on llama.cpp and vLLM).", file=out)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {json_path}", file=out)
    return 0


def _server_prompt(server, n: int) -> str:
    """The start of the bundled tale (repeated as needed) that is `n` tokens for the server's tokenizer."""
    text = text_file().read_text(encoding="utf-8")
    while len(server.tokenizer.encode(text)) < n:
        text += "\n" + text
    lo, hi = 0, len(text)  # the longest start with at most n tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(server.tokenizer.encode(text[:mid])) <= n else (lo, mid - 1)
    return text[:lo]


def _server_generate(server, prompt: str, seed: int) -> dict:
    from game.sampling import Sampling

    sampling = Sampling(max_new_tokens=NEW_TOKENS, **BASELINE_SAMPLING)
    began = time.perf_counter()
    stream = server.stream(prompt, sampling, seed=seed, stop_strings=(), min_new_tokens=NEW_TOKENS)
    try:
        for _ in stream:
            pass
    except Exception as error:  # noqa: BLE001 - the server failed: one line
        raise RuntimeError(f"the server failed: {error}") from None
    t = stream.token_times
    if len(t) < 2:
        raise RuntimeError("the server streamed fewer than two pieces; nothing to time")
    return {"ttft_ms": (t[0] - began) * 1000, "decode_tps": (len(t) - 1) / (t[-1] - t[0])}


# --- quality -------------------------------------------------------------------------------

def run_quality(model: str | None, json_path: Path | None, out: TextIO = sys.stdout) -> int:
    """Compare every precision with fp32 on the bundled text: perplexity and next-token agreement."""
    if model is None:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache("distilgpt2", "config.json")
        if not isinstance(config, str):
            print("storyteller bench --quality needs the real distilgpt2, which is not in the local "
                  "Hugging Face cache: download it with `storyteller model pull distilgpt2`, or pass "
                  "--model DIR (random weights would say nothing about quality).", file=out)
            return 1
        model = str(Path(config).parent)
    try:
        rows = quality(model)
    except Exception as error:  # a bad folder or file: one line, no traceback
        print(f"storyteller bench: could not compare precisions on '{model}': {error}", file=out)
        return 1
    print(f"Precision vs fp32 on {text_file().name} ({rows['tokens']} tokens), model {model}", file=out)
    print(f"  lean fp32 vs the model's own forward: largest logit difference "
          f"{rows['lean_vs_model_max_diff']:.2g}", file=out)
    for name in ("fp32", "bf16", "int8"):
        row = rows["precisions"][name]
        print(f"  {name:5}  perplexity {row['perplexity']:9.3f}   next-token agreement with fp32 "
              f"{row['agreement']:6.1%}   largest logit difference {row['max_logit_diff']:.3g}", file=out)
    if json_path is not None:
        Path(json_path).write_text(json.dumps({"model": model, "quality": rows}, indent=2) + "\n",
                                   encoding="utf-8")
    return 0


def quality(model: str) -> dict:
    """Perplexity and argmax agreement with fp32 for each precision, on the bundled text."""
    import math

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from game.narrator.fastgen import FastGenerator

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    ids = tokenizer(text_file().read_text(encoding="utf-8")).input_ids[:1024]
    target = torch.tensor(ids[1:])
    rows: dict = {"tokens": len(ids), "precisions": {}}
    reference = None
    for name in ("fp32", "bf16", "int8"):
        loaded = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, dtype=torch.float32)
        if name == "fp32":
            with torch.inference_mode():
                own = loaded(input_ids=torch.tensor([ids])).logits[0].float()
        logits = FastGenerator.from_model(loaded, name).logits(ids)
        if reference is None:
            reference = logits
            rows["lean_vs_model_max_diff"] = float((logits - own).abs().max())
        nll = F.cross_entropy(logits[:-1], target)
        rows["precisions"][name] = {
            "perplexity": round(math.exp(float(nll)), 4),
            "agreement": round(float((logits.argmax(-1) == reference.argmax(-1)).float().mean()), 4),
            "max_logit_diff": round(float((logits - reference).abs().max()), 4),
        }
    return rows


# --- the workers ---------------------------------------------------------------------------

def _prompt_of(tokenizer, n: int) -> str:
    """Text of about `n` tokens from the bundled tale (repeated as needed)."""
    text = text_file().read_text(encoding="utf-8")
    ids = tokenizer(text).input_ids
    ids = (ids * (n // len(ids) + 1))[:n]
    return tokenizer.decode(ids)


def _narrations() -> list[str]:
    """Scripted narrations for the session: runs of sentences from the bundled tale."""
    import re

    body = text_file().read_text(encoding="utf-8").split("\n", 2)[2]
    sentences = [s.strip() for s in re.split(r'(?<=[.!?])\s+|(?<=[.!?]")\s+', body) if s.strip()]
    return [" ".join(sentences[i:i + 3]) for i in range(len(sentences) - 2)]


class _Side:
    """What one worker measures; `Baseline` and `Game` fill in loading and generation."""

    def __init__(self, model: str, precision: str):
        self.model, self.precision = model, precision

    def session_start(self) -> dict:
        from game.engine import Engine
        from game.narration import TurnNarrator
        from game.personality import load_personalities
        from game.world.loader import load_quest
        from game.settings import Settings

        personalities, _ = load_personalities()
        persona, sampling = Settings().effective_sampling(personalities)
        self.engine = Engine(load_quest(QUEST), seed=1)
        self.turn_narrator = TurnNarrator(self.narrator_service(), persona, sampling, seed=1)
        self.actions, self.lines, self.turns = list(ACTIONS), _narrations(), 0
        return {}

    def turn(self, warm: bool = True) -> dict:
        """One narrated turn of the script: Enter -> first token; the narration kept is scripted.

        Then, as in play, the game computes the next prompt's known start while the
        player reads and types (`warm`): timed, and waited for, as a player takes longer.
        """
        while True:
            action = self.actions[self.turns % len(self.actions)]
            self.turns += 1
            began = time.perf_counter()
            result = self.engine.act(action)
            if result.narrate:
                break
        prepared = self.turn_narrator.prepare(self.engine, result)
        first, reused = self.first_token(prepared)
        self.engine.set_narration(self.lines[self.turns % len(self.lines)])
        warmed = self.warm() if warm else None
        return {"latency_ms": (first - began) * 1000, "prompt_tokens": prepared.prompt.prompt_tokens,
                "reused": reused, "moved": result.scene_entered, "warm_ms": warmed}

    def warm(self) -> float | None:
        """Milliseconds the next prompt's start took to compute in the background (None: not done)."""
        return None

    def memory(self) -> dict:
        return {"peak_rss_mb": round(_rss_mb("VmHWM")), "rss_mb": round(_rss_mb())}


def _memory_now(when: str) -> dict:
    return {f"rss_{when}_mb": round(_rss_mb()), f"peak_rss_{when}_mb": round(_rss_mb("VmHWM"))}


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in MB.

    Not getrusage's ru_maxrss: Linux carries that over from the parent across
    fork and exec, so a worker started by a big parent would report its size.
    """
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024


class _Baseline(_Side):
    """The classic recipe: `pipeline("text-generation")` in fp32, called as is."""

    def load(self) -> dict:
        import torch
        from transformers import pipeline
        from transformers.generation.streamers import BaseStreamer

        self.pipe = pipeline("text-generation", model=self.model)

        class Times(BaseStreamer):  # watches the call: when each new token came out
            def __init__(self):
                self.times, self.calls = [], 0

            def put(self, value):
                self.calls += 1
                if self.calls > 1:  # the first call is the prompt
                    self.times.append(time.perf_counter())

            def end(self):
                pass

        self.Times = Times
        return {"precision": "fp32", "threads": torch.get_num_threads(), **_memory_now("loaded")}

    def narrator_service(self):
        pipe = self.pipe

        class Counter:  # what TurnNarrator.prepare needs: the same tokenizer and window
            status, tokenizer, window = "ready", pipe.tokenizer, 1024
        return Counter()

    def generate(self, tokens: int, seed: int) -> dict:
        times = self.Times()
        began = time.perf_counter()
        self.pipe(_prompt_of(self.pipe.tokenizer, tokens), max_new_tokens=NEW_TOKENS,
                  min_new_tokens=NEW_TOKENS, do_sample=True, streamer=times, **BASELINE_SAMPLING)
        t = times.times
        return {"ttft_ms": (t[0] - began) * 1000, "decode_tps": (len(t) - 1) / (t[-1] - t[0])}

    def first_token(self, prepared) -> tuple[float, int]:
        times = self.Times()
        self.pipe(prepared.prompt.text, max_new_tokens=1, do_sample=True, streamer=times, **BASELINE_SAMPLING)
        return times.times[0], 0


class _Game(_Side):
    """The game's narrator service: fast path, chosen precision, prefix cache."""

    def load(self) -> dict:
        import torch

        from game.narrator.service import NarratorService, Ready

        self.service = NarratorService(self.model, device="cpu", precision=self.precision)
        event = self.service.load()
        if not isinstance(event, Ready):
            raise RuntimeError(event.reason)
        return {"precision": self.service.precision, "threads": torch.get_num_threads(),
                "path": self.service.generator.kind, **_memory_now("loaded")}

    def narrator_service(self):
        return self.service

    def memory(self) -> dict:
        return dict(super().memory(), threads=self.service.generator.threads)

    def generate(self, tokens: int, seed: int) -> dict:
        from game.sampling import Sampling

        self.service.clear_cache()  # a cold prompt, as the baseline's
        sampling = Sampling(max_new_tokens=NEW_TOKENS, **BASELINE_SAMPLING)
        began = time.perf_counter()
        stream = self.service.stream(_prompt_of(self.service.tokenizer, tokens), sampling, seed=seed,
                                     stop_strings=(), min_new_tokens=NEW_TOKENS)
        for _ in stream:
            pass
        t = stream.token_times
        return {"ttft_ms": (t[0] - began) * 1000, "decode_tps": (len(t) - 1) / (t[-1] - t[0])}

    def warm(self) -> float | None:
        began = time.perf_counter()
        thread = self.turn_narrator.warm(self.engine)
        if thread is None:
            return None
        thread.join()
        return (time.perf_counter() - began) * 1000

    def first_token(self, prepared) -> tuple[float, int]:
        import threading

        cancel, seen = threading.Event(), []

        def on_chunk(_text: str) -> None:
            if not seen:
                seen.append(time.perf_counter())
            cancel.set()  # the first narrated word is what we time

        narration = self.turn_narrator.run(prepared, on_chunk=on_chunk, cancel=cancel)
        if narration.error or not seen:
            raise RuntimeError(narration.error or "the narrator wrote nothing")
        return seen[0], self.service.generator.reused


def _worker_main(args: list[str]) -> int:
    """`python -m game.bench --worker SIDE MODEL PRECISION`: answer JSON requests on stdin."""
    import warnings

    warnings.filterwarnings("ignore")
    side, model, precision = args
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter must not reach the protocol stream
    worker = (_Baseline if side == "baseline" else _Game)(model, precision)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            answer = getattr(worker, op)(**request)
        except Exception as error:  # reported to the parent, which stops with one line
            answer = {"error": f"{op}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(_worker_main(sys.argv[2:]))
    print("usage: storyteller bench [--model DIR] [--json FILE] [--quick] [--quality]", file=sys.stderr)
    sys.exit(2)
