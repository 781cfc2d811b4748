"""GPT-2's tokenizer without transformers (game/narrator/tokenizer.py) against transformers' own
AutoTokenizer: the same ids and the same text, decoded whole and token by token as the narrator
streams it, for folders with vocab.json + merges.txt and with a tokenizer.json; anything it does
not understand is left to transformers; the narrator loads a GPT-2 without importing transformers."""

from __future__ import annotations

import json
import queue
import random
import shutil
import subprocess
import sys

import pytest

from game.narrator.service import _decoded
from game.narrator.tokenizer import Gpt2Tokenizer, gpt2_offline
from tests.conftest import QUESTS, ROOT

HAND_PICKED = [
    "", " ", "  ", "\n", "Hello world", " Hello world", "   three leading spaces", "trailing spaces   ",
    "The Storyteller Spirit wakes in the circle of 1024 stones.", "don't , . ? ! ... -- it's",
    "Привет, мир! Сказитель просыпается.", " ёлка Ёж", "emoji 🎉👍🏽🧙‍♀️ and flags 🇷🇺",
    "<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> spaced ", "<|endoftext|><|endoftext|>",
    "<|endoftext", "tabs\tand\r\nwindows\u00a0nbsp\u2003em\u200bzero-width", "\n\n> look\n\n",
    "[Scene: The Hall]\nA cold wind.\n", "ﬁ ligature, café, naïve, 日本語のテキスト", "\x00\x01 control",
    "\ud7ff\ue000", "x" * 300, " ".join(["word"] * 200),
]


def _texts() -> list[str]:
    """The hand-picked strings, and the bundled prose: each quest and tale whole and line by line."""
    texts = list(HAND_PICKED)
    for path in sorted(QUESTS.glob("*.yaml")) + sorted((ROOT / "assets" / "texts").glob("*.txt")):
        whole = path.read_text(encoding="utf-8")
        texts += [whole] + [line for line in whole.splitlines() if line.strip()]
    return texts


TEXTS = _texts()


def _stream(tokenizer, ids: list[int]) -> list[str]:
    """The pieces the narrator would show for `ids`, decoded as it decodes them."""
    tokens: queue.Queue = queue.Queue()
    for token in ids + [None]:
        tokens.put(token)
    return list(_decoded(tokens, tokenizer, 1.0, pace=0))  # token by token


@pytest.fixture(scope="module")
def folders(tiny_model_dir, tmp_path_factory):
    """Tokenizer folders, each with transformers' tokenizer for it: the tiny model (vocab.json and
    merges.txt), what transformers' save_pretrained writes (tokenizer.json only), a copy shaped
    like distilgpt2 on the hub, one that asks for a prefix space, and one that asks for the
    clean-up of spaces (which transformers 5 skips for a BPE tokenizer: " ," stays " ,")."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    saved = root / "saved"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(saved)
    assert not (saved / "vocab.json").exists() and (saved / "tokenizer.json").is_file()
    hub = root / "hub-shaped"  # distilgpt2's own files: merges as strings, a ByteLevel post-processor
    hub.mkdir()
    spec = json.loads((saved / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                              "use_regex": True}
    spec["added_tokens"][0]["normalized"] = True
    (hub / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    shutil.copy(tiny_model_dir / "vocab.json", hub)
    shutil.copy(tiny_model_dir / "merges.txt", hub)
    (hub / "config.json").write_text(json.dumps({"model_type": "gpt2"}), encoding="utf-8")
    (hub / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1024}), encoding="utf-8")
    prefix = root / "prefix-space"
    shutil.copytree(saved, prefix)
    config = json.loads((prefix / "tokenizer_config.json").read_text(encoding="utf-8"))
    (prefix / "tokenizer_config.json").write_text(json.dumps({**config, "add_prefix_space": True}))
    clean = root / "clean-up"
    shutil.copytree(saved, clean)
    (clean / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    out = {}
    for name, folder in (("vocab files", tiny_model_dir), ("tokenizer.json", saved), ("hub-shaped", hub),
                         ("prefix space", prefix), ("clean-up", clean)):
        ours = Gpt2Tokenizer.from_folder(folder)
        assert ours is not None, name
        out[name] = (ours, AutoTokenizer.from_pretrained(folder, local_files_only=True))
    return out


@pytest.mark.parametrize("name", ["vocab files", "tokenizer.json", "hub-shaped", "prefix space", "clean-up"])
def test_the_same_ids_and_text_as_transformers(folders, name):
    ours, theirs = folders[name]
    for text in TEXTS:
        ids = theirs(text).input_ids
        assert ours.encode(text) == ids == theirs.encode(text), (name, text[:60])
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert (ours.eos_token_id, ours.pad_token_id, ours.model_max_length) == \
        (theirs.eos_token_id, theirs.pad_token_id, theirs.model_max_length) == (50256, None, 1024)


def test_the_prefix_space_is_honoured_and_spaces_are_never_cleaned_up(folders):
    plain, prefixed = folders["tokenizer.json"][0], folders["prefix space"][0]
    assert plain.encode("Hello") != prefixed.encode("Hello") == plain.encode(" Hello")
    ours, theirs = folders["clean-up"]
    assert ours.decode(ours.encode("Wait , what ?")) == "Wait , what ?" == theirs.decode(theirs.encode("Wait , what ?"))


@pytest.mark.parametrize("name", ["vocab files", "tokenizer.json", "hub-shaped", "clean-up"])
def test_streamed_text_is_the_same_piece_by_piece(folders, name):
    """The narrator's incremental decoding (`_decoded`, special tokens skipped) shows the same
    pieces with either tokenizer: for the texts, with end-of-text ids among them, and for random
    ids (byte-level tokens split characters, so many end mid-character)."""
    ours, theirs = folders[name]
    draw = random.Random(15)
    sequences = [theirs.encode(text) for text in TEXTS[:400]]
    sequences += [ids[:len(ids) // 2] + [50256] + ids[len(ids) // 2:] + [50256] for ids in sequences[:50]]
    sequences += [[draw.randrange(50257) for _ in range(draw.randrange(1, 40))] for _ in range(300)]
    sequences += [[draw.randrange(188, 256) for _ in range(12)] for _ in range(50)]  # lone bytes
    for ids in sequences:
        assert _stream(ours, ids) == _stream(theirs, ids), ids


def test_what_it_does_not_understand_is_left_to_transformers(tiny_model_dir, tmp_path):
    def variant(name: str, **config) -> object:
        folder = tmp_path / name
        shutil.copytree(tiny_model_dir, folder)
        path = folder / "tokenizer_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}), encoding="utf-8")
        return folder

    assert Gpt2Tokenizer.from_folder(variant("plain")) is not None
    for name, config in [("other class", {"tokenizer_class": "LlamaTokenizer"}),
                         ("bos first", {"add_bos_token": True}), ("eos last", {"add_eos_token": True}),
                         ("extra", {"extra_special_tokens": ["<|im_start|>"]}),
                         ("split", {"split_special_tokens": True}),
                         ("forced clean-up", {"clean_up_tokenization_spaces": True,
                          "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output": True}),
                         ("new token", {"pad_token": "<pad>"}),  # not in the vocabulary: appended
                         ("moved", {"added_tokens_decoder": {"7": {"content": "<|endoftext|>", "special": True}}})]:
        assert Gpt2Tokenizer.from_folder(variant(name, **config)) is None, name
    legacy = variant("legacy")
    (legacy / "special_tokens_map.json").write_text("{}", encoding="utf-8")
    damaged = variant("damaged")
    (damaged / "vocab.json").write_text("{ half-written", encoding="utf-8")
    bare = tmp_path / "bare"
    bare.mkdir()
    for folder in (legacy, damaged, bare):
        assert Gpt2Tokenizer.from_folder(folder) is None, folder.name


def test_a_folder_it_leaves_alone_still_loads_through_transformers(tiny_model_dir, tmp_path):
    from game.narrator.service import NarratorService

    folder = tmp_path / "bos"
    shutil.copytree(tiny_model_dir, folder)
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "add_bos_token": True}), encoding="utf-8")
    service = NarratorService(str(folder), device="cpu")
    service.load()
    assert service.status == "ready" and not isinstance(service.tokenizer, Gpt2Tokenizer)
    assert service.tokenizer.encode("a cave")[0] == 50256  # transformers put the bos token first


def test_loading_a_gpt2_narrator_never_imports_transformers(tiny_model_dir):
    code = ("import sys; from game.narrator.service import NarratorService; "
            f"s = NarratorService({str(tiny_model_dir)!r}, device='cpu'); s.load(); "
            "assert s.status == 'ready', s.reason; "
            "assert type(s.tokenizer).__name__ == 'Gpt2Tokenizer', type(s.tokenizer); "
            "assert s.tokenizer.decode(s.tokenizer.encode('a cave')) == 'a cave'; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'); "
            "assert not heavy, heavy")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def test_offline_gpt2_is_the_narrators_tokenizer(folders):
    ours, theirs = folders["vocab files"]
    found = gpt2_offline()
    assert found is not None
    assert [found.encode(t) for t in TEXTS[:60]] == [theirs.encode(t) for t in TEXTS[:60]]
