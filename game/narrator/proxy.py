"""The quality proxy: a small GPT-2 trained for a few minutes on the game's own English text.

Random weights say nothing about what int8 does to narration: their activations
have no structure. Until a player measures the real distilgpt2 (`storyteller
bench --quality` with it cached), `bench --quality` trains this small GPT-2
(GPT-2's real vocabulary, 4 layers, width 128) on the bundled English text,
public-domain (assets/texts/) and the bundled English quests' prose, and
compares the precisions on paragraphs held out from training. It is a
*proxy*: a model trained for minutes is not distilgpt2, but its weights and
activations have the uneven, structured ranges that quantization errors come
from.

`corpus()` gives (training text, held-out text); `train(folder, seconds)`
trains for that long (the training length is a parameter, so a test can run a
seconds-long version) and saves an ordinary model folder. `train` is run in a
child process at the lowest CPU priority (`nice 19`) by `train_nicely`.
Importing this module imports no torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from game import locations

SHAPE = dict(n_layer=4, n_embd=128, n_head=4, n_positions=256)
SEQUENCE = 128  # tokens per training example
BATCH = 4
HELD_OUT_EVERY = 5  # every 5th paragraph is held out from training
DEFAULT_SECONDS = 150.0


def _quest_prose() -> list[str]:
    """The English prose of the bundled quests: every string of 60 characters or more."""
    import yaml

    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and len(node) >= 60:
            found.append(" ".join(node.split()))

    for path in sorted(locations.bundled_quests_dir().glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("language", "en") == "en":
            walk(data)
    return found


def corpus() -> tuple[str, str]:
    """(training text, held-out text): the bundled English paragraphs (each once), every 5th held out."""
    paragraphs = []
    for path in sorted((locations.assets_dir() / "texts").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        paragraphs += [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    paragraphs = list(dict.fromkeys(paragraphs + _quest_prose()))  # each once: held-out text is never trained on
    train = [p for i, p in enumerate(paragraphs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = [p for i, p in enumerate(paragraphs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    return "\n\n".join(train), "\n\n".join(held)


def train(folder: Path, seconds: float = DEFAULT_SECONDS, seed: int = 0) -> Path:
    """Train the proxy GPT-2 for about `seconds` and save it (with GPT-2's tokenizer) in `folder`."""
    import time

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from game.narrator.model_builder import write_tokenizer

    folder = write_tokenizer(Path(folder))
    tokenizer = GPT2TokenizerFast.from_pretrained(folder)
    text, _held = corpus()
    full_ids = torch.tensor(tokenizer(text).input_ids)
    # trained on the few thousand tokens the text uses (GPT-2's 50257-row head would take most of
    # the time), then put into a GPT-2 of the full vocabulary; the other rows keep their random start
    used, ids = torch.unique(full_ids, return_inverse=True)
    torch.set_num_threads(1)  # a small model: one thread never waits for a core another program holds
    torch.manual_seed(seed)
    config = GPT2Config(**SHAPE, vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(GPT2Config(**SHAPE, vocab_size=len(used)))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    began, steps, losses = time.monotonic(), 0, []
    while (elapsed := time.monotonic() - began) < seconds:
        for group in optimizer.param_groups:  # warm up, then decay linearly over the time given
            group["lr"] = 3e-3 * min(1.0, (steps + 1) / 20) * max(0.05, 1 - elapsed / seconds)
        starts = torch.randint(0, len(ids) - SEQUENCE - 1, (BATCH,))
        batch = torch.stack([ids[s:s + SEQUENCE] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
        losses.append(float(loss))
    full = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name == "transformer.wte.weight":
                full.transformer.wte.weight[used] = value
            elif name != "lm_head.weight":  # tied to the embedding
                full.state_dict()[name].copy_(value)
    full.save_pretrained(folder)
    (folder / "proxy.json").write_text(json.dumps({
        "seconds": round(time.monotonic() - began, 1), "steps": steps, "training_tokens": len(ids), "vocabulary_used": len(used),
        "final_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 3), **SHAPE}, indent=2) + "\n",
        encoding="utf-8")
    return folder


def train_nicely(folder: Path, seconds: float = DEFAULT_SECONDS) -> dict:
    """`train` in a child process at the lowest CPU priority; returns what proxy.json records.

    Raises RuntimeError (one line) when the training fails.
    """
    code = ("import os, sys; os.nice(19); from pathlib import Path; from game.narrator import proxy; "
            "proxy.train(Path(sys.argv[1]), float(sys.argv[2]))")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(locations.PROJECT_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(seconds)], capture_output=True,
                          text=True, env=env, cwd=locations.PROJECT_ROOT, timeout=seconds + 600)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["?"]
        raise RuntimeError(f"training the proxy model failed: {lines[-1]}")
    return json.loads((Path(folder) / "proxy.json").read_text(encoding="utf-8"))
