"""`storyteller bench`: how fast the narrator is, next to the plain pipeline it replaced and its peers.

Worker processes load the same model: the *game*, the narrator service the
game uses (`game.narrator.service`, its fast path and prefix cache), and its
peers: the *pipeline*, the classic recipe's plain `pipeline("text-generation")`
call in fp32 (temperature 0.8, top-k 50, top-p 0.95, repetition penalty 1.2),
untouched; with `--peers` also llama.cpp (llama-cpp-python) on GGUF q8_0 and
f16 files written from the same weights (`game.narrator.gguf_export`), and
CTranslate2 when installed (skipped with the reason otherwise, as is any peer
that cannot run or crashes). The parent drives them in turns, one measurement
on each side and then the next, so noise from other work on the machine hits
all alike. The load average is sampled throughout; `targets` never calls a
timed target met when it went above the physical cores (`busy_reason`). Measured:

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
from game.safe_text import inert_line

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
COLD_STARTS = 5  # fresh launches per side for the paint and ready times (a cold start varies most)
# The targets of the speed issues (docs/performance.md): (which way is good, the goal).
TARGETS = {
    "decode_880_vs_llama_cpp_q8_0": (">=", 1.0),  # decode at 880 tokens at least llama.cpp q8_0's
    "decode_880_vs_pipeline": (">=", 3.0),        # ... and 3x the plain pipeline's
    "turn_latency_p90_ms": ("<=", 100),           # Enter -> first token, scene-entering turns included
    "ttft_880_vs_llama_cpp": (">=", 1.0),         # cold first token at 880 tokens no later than llama.cpp's
    "peak_rss_mb": ("<=", 400),
    "ready_s": ("<=", 2.0),                       # launch -> narrator ready
    "tui_paint_s": ("<=", 0.5),
}
UNTIMED = ("peak_rss_mb",)  # targets a busy machine does not move: judged whatever the load
LLAMA_KINDS = ("q8_0", "f16")  # the GGUF formats llama.cpp runs as peers


def text_file() -> Path:
    """The bundled public-domain English text (Grimm's Frog-King, 1884 translation)."""
    return locations.assets_dir() / "texts" / "frog-king.txt"


def _stats(values: list[float], digits: int = 1) -> dict:
    """Median, min, max, 90th percentile (p90) and count of some measurements."""
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "p90": round(p90, digits), "n": len(values)}


# --- the parent ----------------------------------------------------------------------------

class _Worker:
    """A worker process answering one JSON request per line."""

    def __init__(self, side: str, model: str, precision: str, env: dict, device: str = "cpu"):
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "game.bench", "--worker", side, model, precision, device],
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
service = NarratorService(sys.argv[1], precision=sys.argv[2], device=sys.argv[3])
event = service.load()
print(json.dumps({"at": time.time(), "event": type(event).__name__, "precision": service.precision}))
"""
READY_LLAMA = """\
import json, sys, time
from game.bench import open_llama
open_llama(sys.argv[1], sys.argv[2])
print(json.dumps({"at": time.time(), "event": "Ready"}))
"""
READY_BASELINE = """\
import json, sys, time
from transformers import pipeline
pipeline("text-generation", model=sys.argv[1], device=sys.argv[2])
print(json.dumps({"at": time.time(), "event": "Ready"}))
"""


def run_bench(model: str | None, json_path: Path | None, quality: bool, out: TextIO = sys.stdout,
              *, quick: bool = False, precision: str = "auto", peers: bool = False,
              proxy_seconds: float | None = None, device: str = "cpu") -> int:
    """The `storyteller bench` command; returns the exit code.

    `quick` takes fewer repetitions (for tests); `precision` is the game's
    setting (auto|fp32|bf16|int8); `peers` adds llama.cpp (q8_0 and f16, on a
    GGUF of the same weights) and CTranslate2 int8 next to the pipeline. With
    `quality`, only the precision comparison runs (`proxy_seconds`: how long
    the proxy model trains). `device` "cuda" runs the game and the pipeline on
    the GPU (llama.cpp's peers stay on the CPU and are left out).
    """
    if quality:
        return run_quality(model, json_path, out, proxy_seconds=proxy_seconds)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("storyteller bench: --device cuda: torch finds no CUDA GPU here "
                  "(run it where there is one, with a CUDA build of torch)", file=out)
            return 1
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
            report = _measure(model, precision, quick, _env(home), out, peers, home, device)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as error:
            print(inert_line(f"storyteller bench: {error}"), file=out)
            return 1
    report["model"] = label
    _print_report(report, out)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {json_path}", file=out)
    return 0


def _peer_plan(model: str, peers: bool, home: Path, device: str = "cpu") -> tuple[dict, dict]:
    """The peers to run ({name: (worker side, model path, precision)}) and those skipped ({name: reason})."""
    plan = {"pipeline": ("pipeline", model, "fp32")}
    skipped: dict[str, str] = {}
    if not peers:
        return plan, skipped
    import importlib.util

    if device != "cpu":  # llama-cpp-python is built for the CPU here: no GGUF to write
        for kind in LLAMA_KINDS:
            skipped[f"llama_cpp_{kind}"] = (f"llama.cpp runs on the CPU here; --device {device} compares "
                                            "the game and the pipeline")
    elif importlib.util.find_spec("llama_cpp") is None:
        for kind in LLAMA_KINDS:
            skipped[f"llama_cpp_{kind}"] = ("llama-cpp-python is not installed "
                                            "(pip install 'llama-cpp-python[server]==0.3.36')")
    else:
        try:
            from game.narrator.gguf_export import export_gguf
        except ImportError as error:
            export_gguf, why = None, f"no GGUF exporter here ({error})"
        for kind in LLAMA_KINDS:
            name = f"llama_cpp_{kind}"
            if export_gguf is None:
                skipped[name] = why
                continue
            gguf = home / f"model-{kind}.gguf"
            try:
                export_gguf(model, gguf, kind=kind)
            except Exception as error:  # a model the exporter cannot convert: that peer is left out
                skipped[name] = f"could not convert the weights to GGUF {kind}: {_first_line(error)}"
                continue
            plan[name] = ("llama_cpp", str(gguf), kind)
    if importlib.util.find_spec("ctranslate2") is None:
        skipped["ctranslate2_int8"] = "CTranslate2 is not installed (optional: pip install ctranslate2)"
    else:
        skipped["ctranslate2_int8"] = "CTranslate2 is installed, but the benchmark has no CTranslate2 side yet"
    return plan, skipped


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _measure(model: str, precision: str, quick: bool, env: dict, out: TextIO, peers: bool = False,
             home: Path | None = None, device: str = "cpu") -> dict:
    reps, turns = (1, 4) if quick else (3, 30)
    info = machine()
    loads = [info["load_average_before"][0]]
    plan, skipped = _peer_plan(model, peers, home or Path(tempfile.gettempdir()), device)
    print(f"Loading {1 + len(plan)} sides ({'quick' if quick else 'full'} run): game, "
          f"{', '.join(plan)}...", file=out)
    sides = {"game": _Worker("game", model, precision, env, device)}
    sides.update({name: _Worker(side, path, kind, env, device) for name, (side, path, kind) in plan.items()})
    names = list(sides)

    def ask(name: str, **request) -> dict | None:
        """A peer that fails (a crash, an error) is left out with the reason; the game or the
        pipeline failing stops the benchmark."""
        if name in skipped:
            return None
        try:
            return sides[name].ask(**request)
        except RuntimeError as error:
            if name in ("game", "pipeline"):
                raise
            skipped[name] = f"failed during {request.get('op')}: {error}"
            print(inert_line(f"  {name} left out: {skipped[name]}"), file=out)
            sides[name].close()
            return None

    def rotated(k: int) -> list[str]:
        """Each round starts with a different side, so no side always follows the same one."""
        k %= len(names)
        return names[k:] + names[:k]

    try:
        loaded = {name: ask(name, op="load") for name in names}
        ttft = {name: {str(n): [] for n in SIZES} for name in names}
        tps = {name: {str(n): [] for n in SIZES} for name in names}
        for rep in range(reps):
            for i, n in enumerate(SIZES):
                for name in rotated(rep + i):
                    got = ask(name, op="generate", tokens=n, seed=rep)
                    if got is not None:
                        ttft[name][str(n)].append(got["ttft_ms"])
                        tps[name][str(n)].append(got["decode_tps"])
                loads.append(os.getloadavg()[0])
            print(f"  prompts: round {rep + 1} of {reps} done", file=out)
        for name in names:
            ask(name, op="session_start")
        latency = {name: {"all": [], "same_scene": [], "new_scene": []} for name in names}
        per_turn = []  # the game's timed turns
        for turn in range(WARMUP_TURNS + turns):
            for name in rotated(turn):
                got = ask(name, op="turn")
                if got is None or turn < WARMUP_TURNS:
                    continue
                latency[name]["all"].append(got["latency_ms"])
                latency[name]["new_scene" if got["moved"] else "same_scene"].append(got["latency_ms"])
                if name == "game":
                    per_turn.append({"turn": turn - WARMUP_TURNS + 1, "action": got.get("action"),
                                     "enters_scene": got["moved"], "prompt_tokens": got["prompt_tokens"],
                                     "reused_tokens": got["reused"], "latency_ms": round(got["latency_ms"], 1),
                                     "warm_ms": None if got["warm_ms"] is None else round(got["warm_ms"], 1)})
            loads.append(os.getloadavg()[0])
        print(f"  session: {turns} turns timed", file=out)
        again = {}
        # the game again: without looking ahead to the next scenes (before/after in one run),
        # then with no time at all between turns (no warm-up)
        for label, request in (("no_lookahead", {"lookahead": False}), ("unwarmed", {"warm": False})):
            sides["game"].ask(op="session_start")
            again[label] = {"all": [], "same_scene": [], "new_scene": []}
            for turn in range(WARMUP_TURNS + turns):
                got = sides["game"].ask(op="turn", **request)
                if turn >= WARMUP_TURNS:
                    again[label]["all"].append(got["latency_ms"])
                    again[label]["new_scene" if got["moved"] else "same_scene"].append(got["latency_ms"])
            loads.append(os.getloadavg()[0])
        print("  session again on the game side: without scene look-ahead, and with no time between turns",
              file=out)
        memory = {name: ask(name, op="memory") for name in names}
        breakdown = None  # after the memory: the profiler's own memory must not count
        if loaded["game"]["path"] == "lean-gpt2" and device == "cpu":
            try:  # it explains the figures; a failure must not lose them
                breakdown = sides["game"].ask(op="breakdown", tokens=max(SIZES))
            except RuntimeError as error:
                breakdown = {"error": str(error)}
            loads.append(os.getloadavg()[0])
    finally:
        for w in sides.values():
            w.close()
    live = [name for name in names if name not in skipped]
    report: dict = {"machine": info, "device": device, "precision": loaded["game"]["precision"],
                    "game_path": loaded["game"]["path"], "threads": memory["game"].get("threads"),
                    "quick": quick, "peers": {}, "skipped": dict(skipped)}
    for name in live:
        result = {
            "ttft_ms": {k: _stats(v) for k, v in ttft[name].items()},
            "decode_tps": {k: _stats(v) for k, v in tps[name].items()},
            "turn_latency_ms": _latency(latency[name]),
            "peak_rss_mb": memory[name]["peak_rss_mb"],
            "peak_rss_loading_mb": loaded[name]["peak_rss_loaded_mb"],
            "rss_after_play_mb": memory[name]["rss_mb"],
            "threads": loaded[name]["threads"],
            "setup": loaded[name].get("setup", ""),
        }
        if name == "game":
            report["game"] = result
        else:
            report["peers"][name] = result
    game = report["game"]
    game["session"] = {"prompt_tokens": _stats([t["prompt_tokens"] for t in per_turn], 0),
                       "reused_prompt_tokens": _stats([t["reused_tokens"] for t in per_turn], 0)}
    warms = [t["warm_ms"] for t in per_turn if t["warm_ms"] is not None]
    game["warm_ms"] = _stats(warms) if warms else None
    game["turns"] = per_turn
    game["token_breakdown"] = breakdown
    game["turn_latency_no_lookahead_ms"] = _latency(again["no_lookahead"])
    game["turn_latency_unwarmed_ms"] = _latency(again["unwarmed"])
    print("Timing cold starts (fresh processes)...", file=out)
    paints, readies = [], {name: [] for name in live}
    for _ in range(1 if quick else COLD_STARTS):
        paint = _timed_launch(PAINT, [model], env)
        paints.append(paint["seconds"])
        game["torch_imported_before_paint"] = paint["torch_imported_before_paint"]
        for name in live:
            if name == "game":
                readies[name].append(_timed_launch(READY_GAME, [model, precision, device], env)["seconds"])
            elif name == "pipeline":
                readies[name].append(_timed_launch(READY_BASELINE, [model, device], env)["seconds"])
            else:
                _side, path, kind = plan[name]
                readies[name].append(_timed_launch(READY_LLAMA, [path, kind], env)["seconds"])
        loads.append(os.getloadavg()[0])
    game["tui_paint_s"] = _stats(paints, 2)
    for name in live:
        (game if name == "game" else report["peers"][name])["ready_s"] = _stats(readies[name], 2)
    report["ratios"] = ratios(report)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    loads.append(info["load_average_after"][0])
    info["load_average_during_max"] = round(max(loads), 2)
    report["targets"] = targets(report)
    return report


def _latency(kinds: dict) -> dict:
    """Turn latencies: the stats of all turns, their p90, and the medians of the two kinds of turn."""
    result = _stats(kinds["all"])
    for kind, key in (("same_scene", "same_scene_median"), ("new_scene", "scene_entry_median")):
        result[key] = round(statistics.median(kinds[kind]), 1) if kinds[kind] else None
        result[key.replace("median", "n")] = len(kinds[kind])
    return result


def ratios(report: dict) -> dict:
    """The game against each peer: how many times faster (above 1: the game is ahead)."""
    game, out = report["game"], {}
    for name, peer in report["peers"].items():
        out[f"decode_880_vs_{name}"] = round(game["decode_tps"]["880"]["median"]
                                             / peer["decode_tps"]["880"]["median"], 2)
        for n in SIZES:
            out[f"ttft_{n}_vs_{name}"] = round(peer["ttft_ms"][str(n)]["median"]
                                               / game["ttft_ms"][str(n)]["median"], 2)
        out[f"turn_latency_vs_{name}"] = round(peer["turn_latency_ms"]["median"]
                                               / game["turn_latency_ms"]["median"], 2)
        out[f"turn_latency_p90_vs_{name}"] = round(peer["turn_latency_ms"]["p90"]
                                                   / game["turn_latency_ms"]["p90"], 2)
    return out


def busy_reason(machine_info: dict) -> str | None:
    """Why the run's figures cannot judge a target (None: the machine was quiet enough).

    The 1-minute load average, sampled before, during and after the run, must
    stay at or below the number of physical cores: above that, other programs
    were waiting for cores, and the sides' figures say more about them than
    about the narrator.
    """
    cores = machine_info["physical_cores"]
    peak = machine_info.get("load_average_during_max", max(machine_info["load_average_before"][0],
                                                           machine_info.get("load_average_after", [0])[0]))
    if peak > cores:
        return (f"the load average reached {peak:g} during the run, above the {cores} physical cores: "
                "other programs were waiting for the cores, so the figures are not a quiet machine's")
    return None


def targets(report: dict) -> dict:
    """Each target of the speed issues: value, goal, status ('met', 'not met', 'not measurable'), why.

    Nothing is 'met' from a busy run (see `busy_reason`); a target that needs a
    peer which did not run is 'not measurable', with the peer's reason.
    """
    game, peers, rat = report["game"], report["peers"], report["ratios"]
    llama = [n for n in peers if n.startswith("llama_cpp")]
    fastest_llama = min(llama, key=lambda n: peers[n]["ttft_ms"]["880"]["median"]) if llama else None

    def needs(peer: str | None, value_of):
        if peer is None or peer not in peers:
            why = report.get("skipped", {}).get(peer or "llama_cpp_q8_0") or "run with --peers"
            return None, f"{peer or 'llama.cpp'} did not run: {why}"
        return value_of(), None

    measured = {
        "decode_880_vs_llama_cpp_q8_0": needs("llama_cpp_q8_0", lambda: rat["decode_880_vs_llama_cpp_q8_0"]),
        "decode_880_vs_pipeline": needs("pipeline", lambda: rat["decode_880_vs_pipeline"]),
        "turn_latency_p90_ms": (game["turn_latency_ms"]["p90"], None),
        "ttft_880_vs_llama_cpp": needs(fastest_llama, lambda: rat[f"ttft_880_vs_{fastest_llama}"]),
        "peak_rss_mb": (game["peak_rss_mb"],
                        None if game["peak_rss_mb"] is not None else "no /proc here to read memory from"),
        "ready_s": (game["ready_s"]["median"], None),
        "tui_paint_s": (game["tui_paint_s"]["median"], None),
    }
    busy = busy_reason(report["machine"])
    result = {}
    for key, (value, missing) in measured.items():
        way, goal = TARGETS[key]
        row = {"value": value, "goal": f"{way} {goal:g}"}
        if missing:
            row.update(status="not measurable", why=missing)
        elif busy and key not in UNTIMED:
            row.update(status="not measurable", why=busy)
        else:
            ok = value <= goal if way == "<=" else value >= goal
            row.update(status="met" if ok else "not met", why="")
        result[key] = row
    return result


def _print_report(r: dict, out: TextIO) -> None:
    m, game = r["machine"], r["game"]
    sides = {"game": game, **r["peers"]}
    print("\n" + inert_line(f"Storyteller benchmark: {r['model']}"), file=out)  # a folder's name
    print(f"Machine: {inert_line(m['cpu'])}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
          f"flags {' '.join(m['flags']) or '-'}; load average {m['load_average_before'][0]} before, "
          f"{m['load_average_during_max']} at most during the run, {m['load_average_after'][0]} after", file=out)
    print(f"Game: precision {r['precision']} ({r['game_path']}) on {r.get('device', 'cpu')}, "
          f"{r['threads']} thread(s) at the end "
          f"(it uses the cores other programs leave free).", file=out)
    for name, peer in r["peers"].items():
        print(f"{name}: {peer['threads']} thread(s){'; ' + peer['setup'] if peer['setup'] else ''}", file=out)
    for name, why in r["skipped"].items():
        print(inert_line(f"{name}: not run ({why})"), file=out)  # reasons carry errors' text
    print("Medians (min-max) of the runs; p90 = 90th percentile.\n", file=out)

    def cell(s: dict | None, unit: str = "", p90: bool = False) -> str:
        if s is None:
            return ""
        text = f"{s['median']:g}{unit} ({s['min']:g}-{s['max']:g})"
        return text + (f", p90 {s['p90']:g}" if p90 else "")

    rows = [("", *sides)]
    for n in SIZES:
        rows.append((f"first token, {n}-token prompt", *(cell(s["ttft_ms"][str(n)], " ms") for s in sides.values())))
    for n in SIZES:
        rows.append((f"decode tokens/s, {n}-token prompt", *(cell(s["decode_tps"][str(n)]) for s in sides.values())))
    rows.append((f"turn latency, Enter -> first token ({game['turn_latency_ms']['n']} turns)",
                 *(cell(s["turn_latency_ms"], " ms", p90=True) for s in sides.values())))
    for key, label in (("same_scene_median", "  turns staying in a scene (median)"),
                       ("scene_entry_median", "  turns entering a scene (median)")):
        rows.append((label, *(f"{s['turn_latency_ms'][key]:g} ms" if s["turn_latency_ms"][key] is not None
                              else "" for s in sides.values())))
    for key, label in (("turn_latency_no_lookahead_ms", "  game without scene look-ahead"),
                       ("turn_latency_unwarmed_ms", "  game acting at once (no warm-up)")):
        s = game[key]
        rows.append((label, cell(s, " ms", p90=True) + (f"; entering a scene {s['scene_entry_median']:g} ms"
                                                         if s["scene_entry_median"] is not None else ""),
                     *([""] * len(r["peers"]))))
    rows.append(("launch -> narrator ready", *(cell(s["ready_s"], " s") for s in sides.values())))
    rows.append(("launch -> TUI painted", cell(game["tui_paint_s"], " s"), *([""] * len(r["peers"]))))
    rows.append(("peak RSS (whole process)", *(_megabytes(s["peak_rss_mb"]) for s in sides.values())))
    rows.append(("RSS after the session", *(_megabytes(s["rss_after_play_mb"]) for s in sides.values())))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip(), file=out)
    s = game["session"]
    print(f"\nSession prompts: {s['prompt_tokens']['median']:g} tokens (median), of which "
          f"{s['reused_prompt_tokens']['median']:g} came from the game's prefix cache.", file=out)
    if game.get("warm_ms"):
        print(f"After each turn the game computed the next prompt's known start (and the likely next "
              f"scenes') in the background in {cell(game['warm_ms'], ' ms')}, while the player reads and "
              "types; the turn latency above assumes the player takes longer than that.", file=out)
    b = game.get("token_breakdown")
    if b and "error" in b:
        print(inert_line(f"Where one of the game's tokens goes: not measured ({b['error']})"), file=out)
    elif b:
        rate = b["weights_read_mb"] / b["matrix_products_ms"] if b["matrix_products_ms"] else 0
        print(f"Where one of the game's tokens goes after a {b['context_tokens']}-token prompt "
              f"({b['threads']} thread(s), torch's profiler): {b['token_ms']:g} ms = matrix products "
              f"{b['matrix_products_ms']:g} ms ({b['weights_read_mb']:g} MB of weights, {rate:.1f} GB/s) "
              f"+ attention {b['attention_ms']:g} ms + the rest {b['rest_ms']:g} ms.", file=out)
        for name, peer in r["peers"].items():
            if name.startswith("llama_cpp") and peer["decode_tps"].get(str(b["context_tokens"])):
                print(f"  {name}'s whole token there: "
                      f"{1000 / peer['decode_tps'][str(b['context_tokens'])]['median']:.2f} ms", file=out)
    print("\nThe game against each peer (above 1: the game is ahead):", file=out)
    for key, value in r["ratios"].items():
        print(f"  {key}: {value:g}x", file=out)
    print("\nTargets:", file=out)
    for key, t in r["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:g}"
        why = f": {t['why']}" if t["why"] else ""  # a reason may carry a peer's error text
        print(inert_line(f"  {t['status']:<15} {key}: {value} (goal {t['goal']}){why}"), file=out)


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
        print(inert_line(f"storyteller bench: {error}"), file=out)
        return 2
    event = server.load()
    if server.status != "ready":
        print(inert_line(f"storyteller bench: the server cannot narrate: {event.reason}"), file=out)
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
        print(inert_line(f"Timing the local Spirit and {server.describe()}..."), file=out)
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
            print(inert_line(f"storyteller bench: {error}"), file=out)
            return 1
        finally:
            local.close()
    report = {"machine": machine(), "model": label, "through": server.log_record(), "quick": quick,
              "new_tokens": NEW_TOKENS}
    for side, values in figures.items():
        report[side] = {kind: {n: _stats(v) for n, v in by_size.items()} for kind, by_size in values.items()}
    print(f"\nThe Spirit through {url} ({inert_line(server.model_name)}) next to the local Spirit ({label}); medians (min-max), "
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

def run_quality(model: str | None, json_path: Path | None, out: TextIO = sys.stdout, *,
                proxy_seconds: float | None = None) -> int:
    """Compare every precision with fp32: perplexity and next-token agreement.

    First on the quality proxy (`game.narrator.proxy`: a small GPT-2 trained for
    `proxy_seconds` on the bundled English text, measured on held-out paragraphs),
    then on the real model when there is one (`model`, else the cached distilgpt2)
    on the bundled tale. Each verdict (is int8 within `precision.INT8_MARGIN` of
    fp32?) is recorded for `auto` (`precision.record_quality`).
    """
    from game.narrator import precision as formats
    from game.narrator import proxy

    seconds = proxy.DEFAULT_SECONDS if proxy_seconds is None else proxy_seconds
    report: dict = {"margin": formats.INT8_MARGIN}
    print(f"Training the quality proxy: a small GPT-2 on the bundled English text, for {seconds:g} s "
          "at the lowest CPU priority...", file=out)
    try:
        with tempfile.TemporaryDirectory(prefix="storyteller-proxy-") as tmp:
            trained = proxy.train_nicely(Path(tmp) / "proxy-gpt2", seconds)
            rows = quality(str(Path(tmp) / "proxy-gpt2"), proxy.corpus()[1])
    except Exception as error:  # noqa: BLE001 - one line, no traceback
        print(inert_line(f"storyteller bench: the quality proxy failed: {_first_line(error)}"), file=out)
        return 1
    rows["training"] = trained
    rows["int8_ok"] = formats.record_quality(formats.PROXY_KEY, rows)
    report["proxy"] = rows
    _print_quality(f"PROXY (not distilgpt2): a {trained['n_layer']}-layer, width-{trained['n_embd']} GPT-2 "
                   f"trained {trained['steps']} steps ({trained['seconds']:g} s) on "
                   f"{trained['training_tokens']} tokens; held-out text", rows, out)
    if model is None:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache("distilgpt2", "config.json")
        if isinstance(config, str):
            model = str(Path(config).parent)
        else:
            print("\nThe real distilgpt2 is not in the local Hugging Face cache, so only the proxy was "
                  "measured: download it with `storyteller model pull distilgpt2` (or pass --model DIR) "
                  "and run `storyteller bench --quality` again.", file=out)
    if model is not None:
        try:
            rows = quality(model)
        except Exception as error:  # a bad folder or file: one line, no traceback
            print(inert_line(f"storyteller bench: could not compare precisions on '{model}': {_first_line(error)}"), file=out)
            return 1
        rows["int8_ok"] = formats.record_quality(formats.model_key(model), rows)
        report["model"], report["quality"] = model, rows
        _print_quality(f"\nModel {model}, on {text_file().name}", rows, out)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _print_quality(title: str, rows: dict, out: TextIO) -> None:
    from game.narrator import precision as formats

    print(f"{title} ({rows['tokens']} tokens):", file=out)
    print(f"  lean fp32 vs the model's own forward: largest logit difference "
          f"{rows['lean_vs_model_max_diff']:.2g}", file=out)
    for name in ("fp32", "bf16", "int8"):
        row = rows["precisions"][name]
        print(f"  {name:5}  perplexity {row['perplexity']:9.3f}   next-token agreement with fp32 "
              f"{row['agreement']:6.1%}   largest logit difference {row['max_logit_diff']:.3g}", file=out)
    margin = formats.INT8_MARGIN
    print(f"  int8 {'is' if rows['int8_ok'] else 'is NOT'} within the margin (perplexity at most "
          f"{margin['perplexity']:.0%} above fp32's, agreement at least {margin['agreement']:.0%})"
          f"{'' if rows['int8_ok'] else ': `auto` will not choose int8 for it'}.", file=out)


def quality(model: str, text: str | None = None) -> dict:
    """Perplexity and argmax agreement with fp32 for each precision, on `text` (default: the
    bundled tale), computed in windows of the model's context length."""
    import math

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    from game.narrator.fastgen import FastGenerator

    hf_logging.set_verbosity_error()  # the text is longer than the window: it is computed in windows
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    ids = tokenizer(text_file().read_text(encoding="utf-8") if text is None else text).input_ids[:4096]
    rows: dict = {"tokens": len(ids), "precisions": {}}
    reference = None
    for name in ("fp32", "bf16", "int8"):
        loaded = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, dtype=torch.float32)
        window = min(1024, loaded.config.n_positions)
        pieces = [ids[i:i + window] for i in range(0, len(ids), window) if len(ids[i:i + window]) > 1]
        if name == "fp32":
            with torch.inference_mode():
                own = torch.cat([loaded(input_ids=torch.tensor([p])).logits[0].float() for p in pieces])
        generator = FastGenerator.from_model(loaded, name)
        logits = torch.cat([generator.logits(p) for p in pieces])
        if reference is None:
            reference = logits
            rows["lean_vs_model_max_diff"] = float((logits - own).abs().max())
        # each piece predicts its own next tokens (the last position of a piece has no target)
        keep = torch.cat([torch.arange(len(p) - 1) + sum(len(q) for q in pieces[:j])
                          for j, p in enumerate(pieces)])
        target = torch.cat([torch.tensor(p[1:]) for p in pieces])
        nll = F.cross_entropy(logits[keep], target)
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
    ids = tokenizer.encode(text)
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

    def __init__(self, model: str, precision: str, device: str = "cpu"):
        self.model, self.precision, self.device = model, precision, device

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

    def turn(self, warm: bool = True, lookahead: bool = True) -> dict:
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
        warmed = self.warm(lookahead) if warm else None
        return {"latency_ms": (first - began) * 1000, "prompt_tokens": prepared.prompt.prompt_tokens,
                "reused": reused, "moved": result.scene_entered, "warm_ms": warmed, "action": action}

    def warm(self, lookahead: bool = True) -> float | None:
        """Milliseconds the next prompt's start took to compute in the background (None: not done)."""
        return None

    def memory(self) -> dict:
        return {"peak_rss_mb": _rss_mb("VmHWM"), "rss_mb": _rss_mb()}


def _memory_now(when: str) -> dict:
    return {f"rss_{when}_mb": _rss_mb(), f"peak_rss_{when}_mb": _rss_mb("VmHWM")}


def _megabytes(mb: int | None) -> str:
    return "-" if mb is None else f"{mb} MB"


def _rss_mb(field: str = "VmRSS") -> int | None:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in whole MB (None without
    /proc: not measured, never 0)."""
    from game.procfs import process_memory

    held = process_memory("self", field)
    return None if held is None else round(held / 2 ** 20)


class _Baseline(_Side):
    """The classic recipe: `pipeline("text-generation")` in fp32, called as is."""

    def load(self) -> dict:
        import torch
        from transformers import pipeline
        from transformers.generation.streamers import BaseStreamer

        self.pipe = pipeline("text-generation", model=self.model, device=self.device)

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

        self.service = NarratorService(self.model, device=self.device, precision=self.precision)
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

    def breakdown(self, tokens: int = 880, steps: int = 48) -> dict:
        """Where one token's time goes after a `tokens`-token prompt (torch's profiler over
        `steps` one-token steps): matrix products (the weights), attention (the cache), the rest."""
        from game.narrator.compute import COMPUTE

        fast = self.service.generator
        ids = self.service.tokenizer.encode(_prompt_of(self.service.tokenizer, tokens))[:tokens]
        # on the narrator's own thread, as a narration runs (another thread computing would give
        # torch a second team of workers, and slow both: see game.narrator.compute)
        prof, wall = COMPUTE.call(lambda: _profiled_steps(fast, ids, steps), "storyteller-bench")
        parts = {"matrix_products": 0.0, "attention": 0.0}
        for event in prof.key_averages():
            name = event.key
            if "linear" in name or name in ("aten::mm", "aten::addmm", "aten::bmm"):
                parts["matrix_products"] += event.self_cpu_time_total / 1000 / steps
            elif "attention" in name:
                parts["attention"] += event.self_cpu_time_total / 1000 / steps
        weights = _weight_bytes(fast.backend)
        return {"context_tokens": len(ids), "token_ms": round(wall, 3),
                "matrix_products_ms": round(parts["matrix_products"], 3),
                "attention_ms": round(parts["attention"], 3),
                "rest_ms": round(max(0.0, wall - sum(parts.values())), 3),
                "weights_read_mb": round(weights / 1e6, 1), "threads": fast.threads}

    def warm(self, lookahead: bool = True) -> float | None:
        began = time.perf_counter()
        thread = self.turn_narrator.warm(self.engine, lookahead)
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


def _profiled_steps(fast, ids: list[int], steps: int):
    """Torch's profiler over `steps` one-token steps after the prompt `ids`, and their mean
    milliseconds (the generator's cache is dropped before and after)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fast.forget()
    fast._use_threads()
    with torch.inference_mode():
        fast._prefill(ids, False)
        for _ in range(4):  # settle
            fast._advance([ids[-1]])
        fast._crop(len(ids))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            began = time.perf_counter()
            for _ in range(steps):
                fast._advance([ids[-1]])
            wall = (time.perf_counter() - began) * 1000 / steps
    fast.forget()
    return prof, wall


def _weight_bytes(backend) -> int:
    """Bytes of weights one token reads in the lean GPT-2 path: its Linear layers and the LM head
    (int8: one byte a weight, from the layers' shapes; nothing is unpacked to count them)."""
    total = 0
    for layer in [block[i] for block in backend.layers for i in (1, 2, 4, 5)] + [backend.head]:  # qkv, proj, fc, out
        if hasattr(layer, "packed"):
            total += layer.out_features * layer.in_features
        else:
            total += layer.weight.numel() * layer.weight.element_size()
    return total


def open_llama(path: str, kind: str):
    """llama.cpp (llama-cpp-python) on a GGUF file, as the benchmark runs it: the whole window,
    flash attention on, one thread per physical core (llama-cpp-python's default is half the
    logical CPUs). Returns (Llama, a note on how it was set up).

    On a CPU with AMX, llama.cpp's AMX buffer type (one of its "extra buffer types",
    which repack weights) crashed on a q8_0 GPT-2 (a segfault, llama-cpp-python
    0.3.36 built for the native CPU); there q8_0 is loaded with `use_extra_bufts`
    off. llama-cpp-python has no argument for it, so the model parameters it starts
    from are changed in this (worker) process.
    """
    import llama_cpp
    from llama_cpp import llama as llama_module

    from game.narrator import precision

    notes = []
    if kind == "q8_0" and precision.cpu_flags() & {"amx_int8", "amx_tile"}:
        defaults = llama_module.llama_cpp.llama_model_default_params

        def without_extra_buffers():
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        notes.append("use_extra_bufts off (AMX CPU: its q8_0 repacking crashed)")
    cores = precision.threads()
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=cores, n_threads_batch=cores,
                          flash_attn=True, verbose=False, seed=0)
    notes.insert(0, f"llama-cpp-python {llama_cpp.__version__}, GGUF {kind}, flash attention on")
    return llm, "; ".join(notes)


class _LlamaTokenizer:
    """llama.cpp's own tokenizer (the GGUF's copy of the vocabulary), shaped like the narrator's
    for what the benchmark needs: `encode` and `decode`."""

    def __init__(self, llm):
        self.llm = llm

    def encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def decode(self, ids) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")


class _LlamaCpp(_Side):
    """llama.cpp on a GGUF of the same weights: its own prompt cache (the longest common prefix with
    the last sequence is kept), its own sampler with the pipeline's settings (min-p off)."""

    def load(self) -> dict:
        self.llm, setup = open_llama(self.model, self.precision)
        self.tokenizer = _LlamaTokenizer(self.llm)
        self.eos = self.llm.token_eos()
        return {"precision": self.precision, "threads": self.llm.n_threads, "setup": setup,
                **_memory_now("loaded")}

    def narrator_service(self):
        tokenizer = self.tokenizer

        class Counter:  # what TurnNarrator.prepare needs: the same tokenizer and window
            status, window = "ready", 1024
        Counter.tokenizer = tokenizer
        return Counter()

    def _tokens(self, ids: list[int], count: int, seed: int):
        """Generate after `ids`; yields perf_counter() at each new token, `count` tokens at most."""
        self.llm.set_seed(seed)
        made = 0
        for token in self.llm.generate(ids, top_k=BASELINE_SAMPLING["top_k"], top_p=BASELINE_SAMPLING["top_p"],
                                       min_p=0.0, temp=BASELINE_SAMPLING["temperature"],
                                       repeat_penalty=BASELINE_SAMPLING["repetition_penalty"]):
            made += 1
            yield time.perf_counter()
            if made >= count:
                return

    def generate(self, tokens: int, seed: int) -> dict:
        ids = self.tokenizer.encode(_prompt_of(self.tokenizer, tokens))
        self.llm.reset()  # a cold prompt, as the others'
        began = time.perf_counter()
        t = list(self._tokens(ids, NEW_TOKENS, seed))  # end-of-text is one more token: no stop
        return {"ttft_ms": (t[0] - began) * 1000, "decode_tps": (len(t) - 1) / (t[-1] - t[0])}

    def first_token(self, prepared) -> tuple[float, int]:
        from game.narrator.fastgen import common_prefix

        ids = self.tokenizer.encode(prepared.prompt.text)
        reused = common_prefix(list(self.llm._input_ids[:self.llm.n_tokens]), ids)
        first = next(self._tokens(ids, 1, self.turns))
        return first, reused


def _worker_main(args: list[str]) -> int:
    """`python -m game.bench --worker SIDE MODEL PRECISION [DEVICE]`: answer JSON requests on stdin."""
    import warnings

    warnings.filterwarnings("ignore")
    side, model, precision, device = (*args, "cpu")[:4]
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter must not reach the protocol stream
    worker = {"pipeline": _Baseline, "game": _Game, "llama_cpp": _LlamaCpp}[side](model, precision, device)
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
    print("usage: storyteller bench [--model DIR] [--json FILE] [--quick] [--peers] [--quality]", file=sys.stderr)
    sys.exit(2)
