"""The int8 conversion cache: a cached load gives the very numbers of a fresh conversion, and a
damaged, truncated, foreign or stale cache is never used (converted afresh and rewritten)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from game.narrator import fastgen, int8_cache, precision
from tests.test_fastgen import ROOT, ids, small_model_dir  # noqa: F401 - fixtures


def load(folder: Path, threads: int = 1) -> fastgen.FastGenerator:
    gen = fastgen.FastGenerator.from_checkpoint(folder, fastgen.checkpoint_config(folder), "int8",
                                                threads=threads)
    int8_cache.finish_writing()
    return gen


@pytest.fixture
def model(tmp_path, small_model_dir) -> Path:  # noqa: F811
    """A copy of the small GPT-2 that a test may change."""
    return Path(shutil.copytree(small_model_dir, tmp_path / "model"))


@pytest.fixture
def conversions(monkeypatch) -> list:
    """Every weight matrix quantized from now on (a cached load quantizes none)."""
    seen = []
    real = precision.quantize_rows

    def counted(weight):
        seen.append(tuple(weight.shape))
        return real(weight)

    monkeypatch.setattr(precision, "quantize_rows", counted)
    return seen


def cache_of(folder: Path) -> Path:
    return int8_cache.cache_file(folder / "model.safetensors")


def layout(folder: Path) -> dict:
    return fastgen._int8_layout(fastgen.checkpoint_config(folder))


def test_a_cached_load_gives_the_fresh_conversions_very_numbers(model, ids, conversions):  # noqa: F811
    import torch
    from safetensors import safe_open

    fresh = load(model)
    assert conversions and cache_of(model).is_file()  # converted, and the cache written after
    conversions.clear()
    cached = load(model, threads=2)  # two layers packed at once
    assert conversions == []  # nothing quantized: read from the cache and packed
    assert torch.equal(fresh.logits(ids), cached.logits(ids))
    assert fresh.generate(ids[:50], None, max_new_tokens=8) == \
        cached.generate(ids[:50], None, max_new_tokens=8)
    # the stored int8 rows and scales are exactly a fresh conversion of the model file's weights
    with safe_open(str(model / "model.safetensors"), "pt") as f, \
            safe_open(str(cache_of(model)), "pt") as c:
        assert set(c.keys()) == set(layout(model))
        pre = "transformer." if "transformer.wte.weight" in f.keys() else ""
        values, scales = precision.quantize_rows(f.get_tensor(pre + "h.1.mlp.c_fc.weight").t())
        assert torch.equal(c.get_tensor("h.1.mlp.c_fc.values"), values)
        assert torch.equal(c.get_tensor("h.1.mlp.c_fc.scales"), scales)
        assert torch.equal(c.get_tensor("h.1.mlp.c_fc.bias"), f.get_tensor(pre + "h.1.mlp.c_fc.bias"))
        values, scales = precision.quantize_rows(f.get_tensor(pre + "wte.weight"))
        assert torch.equal(c.get_tensor("head.values"), values)
        assert torch.equal(c.get_tensor("head.scales"), scales)
        assert torch.equal(c.get_tensor("wpe.weight"), f.get_tensor(pre + "wpe.weight"))


def test_layers_packed_on_two_threads_give_the_same_numbers_as_on_one(model, ids):
    import torch

    one = load(model, threads=1)
    os.unlink(cache_of(model))
    two = load(model, threads=2)  # converted afresh on two threads
    assert torch.equal(one.logits(ids), two.logits(ids))


def _flip_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # in the last tensor's data (the head's scales): the header stays valid
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:  # a sound cache, but of another model file
    import torch

    other = path.parent.parent / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(other))
    int8_cache.write(other, {"x": ("F32", (3,))}, lambda: [("x", [torch.zeros(3)])])
    shutil.copyfile(int8_cache.cache_file(other), path)
    os.unlink(int8_cache.cache_file(other))


def _wrong_shape(path: Path) -> None:  # the right identity, a tensor of another shape
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["head.scales"] = tensors["head.scales"][:-1]
    save_file(tensors, str(path), metadata=meta)


DAMAGE = {
    "truncated": lambda p: os.truncate(p, p.stat().st_size // 2),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(5000)),
    "a flipped data byte": _flip_data_byte,
    "another model's": _foreign,
    "a wrong shape": _wrong_shape,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_truncated_or_foreign_cache_is_converted_afresh_and_rewritten(model, ids, damage,
                                                                                 conversions):
    import torch

    reference = load(model).logits(ids)
    DAMAGE[damage](cache_of(model))
    conversions.clear()
    again = load(model)
    assert conversions  # not used: converted afresh
    assert torch.equal(again.logits(ids), reference)
    assert int8_cache.open_cache(model / "model.safetensors", layout(model)) is not None  # rewritten
    assert [p.name for p in cache_of(model).parent.iterdir()] == [cache_of(model).name]


def test_a_changed_model_is_never_served_from_a_stale_cache(model, tmp_path, ids, conversions):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    load(model)
    stat = (model / "model.safetensors").stat()
    with safe_open(str(model / "model.safetensors"), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    key = next(k for k in tensors if k.endswith("h.0.mlp.c_fc.weight"))
    tensors[key] = tensors[key] * 2  # same shapes, same header
    save_file(tensors, str(model / "model.safetensors"), metadata=meta)
    os.utime(model / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same mtime
    conversions.clear()
    changed = load(model)
    assert conversions
    fresh_copy = tmp_path / "fresh"
    shutil.copytree(model, fresh_copy)
    assert torch.equal(changed.logits(ids), load(fresh_copy).logits(ids))
    # one cache per model file: the stale one was replaced, not kept beside the new one
    assert len(list(cache_of(model).parent.glob("*" + int8_cache.SUFFIX))) == 2  # model and fresh_copy
    shutil.rmtree(fresh_copy)
    os.unlink(cache_of(model))
    load(model)  # a cache written again removes those of model files that are gone
    assert [p.name for p in cache_of(model).parent.iterdir()] == [cache_of(model).name]


def test_a_write_that_fails_leaves_the_old_cache_and_no_temporary_file(model):
    load(model)
    before = cache_of(model).read_bytes()
    reader = layout(model)

    def failing():
        yield "wpe.weight", [__import__("torch").zeros(3)]  # wrong size: the write fails midway

    with pytest.raises(ValueError):
        int8_cache.write(model / "model.safetensors", reader, failing)
    assert cache_of(model).read_bytes() == before
    assert [p.name for p in cache_of(model).parent.iterdir()] == [cache_of(model).name]


def test_a_launch_that_exits_at_once_still_leaves_a_whole_cache(model, isolated_user_folders):
    code = ("import sys\nfrom game.narrator.service import NarratorService\n"
            "service = NarratorService(sys.argv[1], precision='int8', device='cpu')\n"
            "assert type(service.load()).__name__ == 'Ready'\n")  # and Python exits straight away
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, str(model)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int8_cache.open_cache(model / "model.safetensors", layout(model)) is not None
    assert [p.name for p in cache_of(model).parent.iterdir()] == [cache_of(model).name]  # no temporary


def test_a_model_file_changed_before_its_cache_is_written_gets_none(model):
    """The identity is taken before the weights are read: a model replaced meanwhile gets no cache
    (its cache would hold the old weights under the new file's name)."""
    import torch

    path = model / "model.safetensors"
    before = int8_cache.identity(path)
    os.utime(path, ns=(1, 1))  # changed after its weights were read
    with pytest.raises(ValueError, match="changed"):
        int8_cache.write(path, {"x": ("F32", (3,))}, lambda: [("x", [torch.zeros(3)])], before)
    assert not cache_of(model).exists()
    assert [p.name for p in cache_of(model).parent.iterdir()] == []  # no temporary left either


def test_a_cache_folder_that_cannot_be_written_only_costs_the_conversion(model, ids, conversions):
    import torch

    cache_of(model).parent.parent.mkdir(parents=True, exist_ok=True)
    cache_of(model).parent.write_text("not a folder")  # where the folder should be
    first = load(model)
    conversions.clear()
    second = load(model)  # no cache could be written: converted again, the same numbers
    assert conversions and torch.equal(first.logits(ids), second.logits(ids))
    assert cache_of(model).parent.read_text() == "not a folder"


def test_a_model_file_cut_short_before_its_cache_is_written_fails_the_write_not_the_game(model, ids,
                                                                                      monkeypatch):
    """The cache is written from the model file read through file descriptors, not a memory map:
    a file truncated in place meanwhile is an error of the write (SIGBUS would kill the game)."""
    later = []
    monkeypatch.setattr(int8_cache, "write_later", lambda *args: later.append(args))
    gen = load(model)
    with open(model / "model.safetensors", "r+b") as f:
        f.truncate(200_000)  # in place: the weights' data is cut, the header stays
    with pytest.raises(OSError, match="cut short"):
        int8_cache.write(*later[0])
    assert not cache_of(model).exists()
    with pytest.raises(OSError, match="cut short"):  # the game says so, as without a cache
        gen.generate(ids[:5], None, max_new_tokens=1)
