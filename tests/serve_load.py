"""A game night under load: N players at once, T turns each, every game narrating through
one llama.cpp server, all on 127.0.0.1.

`storyteller serve --server URL` runs one game process per player; each player is a
websocket client typing as a person does (tests/serving.Terminal): a name, the first
quest, then T free actions that name the player and the turn. A turn is done when the
player's autosave holds it with its narration. Measured per player: the time from Enter
to the narration's first characters on the player's screen ("first words"), and the
time to the whole narrated turn; for the host, the memory of the serve process and its
games, and of the llama.cpp server.

The test (tests/test_serve_load.py) asserts what must hold; run as a benchmark it
prints the figures for docs/performance.md:

    nice -n 19 .venv/bin/python -m tests.serve_load --players 8 --turns 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from game.procfs import process_memory
from tests.serving import ESCAPES, Terminal, children, serving

QUEST_ID = "call-of-the-storyteller"
FIRST_CHARS = 12  # of the narration, looked for on the player's screen


def action(player: int, turn: int) -> str:
    return f"hum a tune for player {player} turn {turn}"


@dataclass
class PlayerRun:
    name: str
    first_words: list[float] = field(default_factory=list)  # seconds, Enter -> narration's first chars shown
    turn_times: list[float] = field(default_factory=list)  # seconds, Enter -> turn narrated and autosaved
    errors: list[str] = field(default_factory=list)
    unmeasured: int = 0  # narrated turns whose first words could not be told apart on screen


def rss(pid: int) -> int:
    return process_memory(pid) or 0


def tree_rss(pid: int) -> int:
    return rss(pid) + sum(tree_rss(child) for child in children(pid))


class Recording(Terminal):
    """A Terminal that can tell when a text first reached the screen."""

    def shown_at(self, text: str, since: int) -> float | None:
        """When `text` (whitespace collapsed) was first on screen after raw offset `since`."""
        wanted = " ".join(text.split())
        for when, end in self.arrivals:
            if end <= since:
                continue
            shown = " ".join(ESCAPES.sub(b"", self.raw[since:end]).decode("utf-8", "replace").split())
            if wanted in shown:
                return when
        return None


async def play(served, session, index: int, turns: int, players_dir: Path, deadline: float) -> PlayerRun:
    from game.saves import read_save

    name = f"Player{index}"
    run = PlayerRun(name)
    autosave = players_dir / name.lower() / "saves" / "autosave" / f"{QUEST_ID}.json"
    async with Recording(session, served.url, width=100, height=30) as term:
        await term.wait_for("Your name", timeout=120)
        await term.read(1.5)
        await term.type(f"{name}\r")
        await term.wait_for(f"Playing as {name}", timeout=60)
        await term.wait_for("Spirit is ready", timeout=120)
        await term.type("\r")  # the first quest, highlighted
        await term.wait_for("Gate of Dead Links", timeout=60)
        await term.read(0.5)
        for turn in range(1, turns + 1):
            text = action(index, turn)
            await term.type(text)
            mark = term.mark()
            await term.read(0.05)
            started = time.monotonic()
            await term.type("\r", pause=0)
            while True:  # done: the autosave holds this turn with its narration
                await term.read(0.2)
                history = []
                if autosave.exists():
                    try:
                        history = read_save(autosave).history
                    except Exception:  # caught mid-replace on a slow disk: read again
                        history = []
                if len(history) >= turn and history[turn - 1].narration:
                    break
                if term.closed or time.monotonic() > deadline:
                    run.errors.append(f"turn {turn} was not narrated in time" if not term.closed
                                      else f"the game closed at turn {turn}")
                    return run
            run.turn_times.append(time.monotonic() - started)
            await term.read(0.3)
            shown = term.shown_at(first_words(history[turn - 1].narration), mark)
            if shown is None:
                run.unmeasured += 1
            else:
                run.first_words.append(shown - started)
    actions = [t.action for t in read_save(autosave).history]
    if actions != [action(index, turn) for turn in range(1, turns + 1)]:
        run.errors.append(f"the autosave holds other actions than this player's: {actions}")
    return run


def first_words(narration: str) -> str:
    """What to look for on screen: the narration's first word of 3 characters or more (with
    what comes before it), so that a line break or a partial redraw rarely splits it."""
    words = narration.split()
    for i, word in enumerate(words[:4]):
        if len(word) >= 3:
            return " ".join(words[:i + 1])[:FIRST_CHARS]
    return " ".join(words[:2])[:FIRST_CHARS]


async def night(players: int, turns: int, server_url: str, players_dir: Path, budget: float, extra=()):
    """Serve `players` games through the llama.cpp server at `server_url`; returns the figures."""
    import aiohttp

    with serving("--server", server_url, "--seed", "7", "--max-players", str(players), *extra,
                 ready_timeout=120) as served:
        peak = {"host": 0}
        deadline = time.monotonic() + budget

        async def watch():
            while True:
                peak["host"] = max(peak["host"], tree_rss(served.process.pid))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        try:
            async with aiohttp.ClientSession() as session:
                runs = await asyncio.gather(*(play(served, session, i, turns, players_dir, deadline)
                                              for i in range(1, players + 1)))
        finally:
            watcher.cancel()
        wall = time.monotonic() - started
    return runs, {"wall_s": wall, "host_peak_rss": peak["host"]}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(runs: list[PlayerRun], figures: dict, llama_rss: int) -> str:
    mb = 1024 * 1024
    lines = ["| player | turns | first words p50 (s) | p95 (s) | narrated turn p50 (s) | errors |",
             "|---|---|---|---|---|---|"]
    unmeasured = sum(run.unmeasured for run in runs)
    for run in runs:
        lines.append(f"| {run.name} | {len(run.turn_times)} | {percentile(run.first_words, 50):.2f} | "
                     f"{percentile(run.first_words, 95):.2f} | {percentile(run.turn_times, 50):.2f} | "
                     f"{len(run.errors)} |")
    every = [t for run in runs for t in run.first_words]
    lines.append(f"| all | {sum(len(r.turn_times) for r in runs)} | {percentile(every, 50):.2f} | "
                 f"{percentile(every, 95):.2f} | "
                 f"{statistics.median([t for r in runs for t in r.turn_times] or [float('nan')]):.2f} | "
                 f"{sum(len(r.errors) for r in runs)} |")
    for run in runs:
        lines += [f"- {run.name}: {error}" for error in run.errors]
    lines.append("")
    if unmeasured:
        lines.append(f"({unmeasured} narrated turns whose first words could not be told apart on screen "
                     "are left out of the first-words figures.)")
    lines.append(f"Host memory at its peak: serve and its {len(runs)} games {figures['host_peak_rss'] / mb:.0f} MB "
                 f"({figures['host_peak_rss'] / mb / max(1, len(runs)):.0f} MB per player), the llama.cpp "
                 f"server {llama_rss / mb:.0f} MB; wall time {figures['wall_s']:.0f} s.")
    return "\n".join(lines)


def main(argv=None) -> int:
    import os
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=8)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--budget", type=float, default=900, help="seconds before giving up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from game.narrator.gguf_export import export_gguf
    from game.narrator.model_builder import build_gpt2
    from tests.llama_server import CHAT_TEMPLATE, LlamaServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["STORYTELLER_DATA_DIR"] = str(tmp / "data")
        os.environ["STORYTELLER_CONFIG_DIR"] = str(tmp / "config")
        model = build_gpt2(tmp / "tiny", shape="tiny")
        gguf = export_gguf(model, tmp / "tiny-f16.gguf", "f16", chat_template=CHAT_TEMPLATE)
        with LlamaServer(gguf) as llama:
            runs, figures = asyncio.run(night(args.players, args.turns, llama.url, tmp / "data" / "players",
                                              args.budget))
            llama_rss = rss(llama.proc.pid)
    print(report(runs, figures, llama_rss))
    if args.json:
        args.json.write_text(json.dumps({"runs": [run.__dict__ for run in runs], **figures,
                                         "llama_rss": llama_rss}, indent=1))
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
