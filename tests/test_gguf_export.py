"""GGUF export of our GPT-2 folders, read back by the gguf package and run by llama.cpp."""

from __future__ import annotations

import json
import shutil

import pytest

from game.narrator.gguf_export import KINDS, ExportError, export_gguf

ENGLISH = "The Storyteller Spirit speaks of a dark cave.\n> look around\n  Twice  spaced, 1234 ok?"
RUSSIAN = "Дух Сказителя говорит о тёмной пещере.\n> осмотреться\nЁжик в тумане — «да»!"


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    return {kind: export_gguf(tiny_model_dir, folder / f"tiny-{kind}.gguf", kind) for kind in KINDS}


def test_the_file_has_gpt2s_tensors_vocabulary_and_window(exported, gpt2_tokenizer):
    import gguf

    reader = gguf.GGUFReader(exported["f16"])
    fields = reader.fields

    def value(key):
        return fields[key].contents()

    assert value("general.architecture") == "gpt2"
    assert value("gpt2.context_length") == 1024
    assert value("gpt2.block_count") == 2 and value("gpt2.embedding_length") == 32
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "gpt-2"
    tokens = value("tokenizer.ggml.tokens")
    assert len(tokens) == 50257 and tokens[50256] == "<|endoftext|>"
    assert tokens[gpt2_tokenizer.convert_tokens_to_ids("Ġcave")] == "Ġcave"
    assert value("tokenizer.ggml.eos_token_id") == 50256 == value("tokenizer.ggml.bos_token_id")
    assert len(value("tokenizer.ggml.merges")) == 50000
    names = {t.name: t for t in reader.tensors}
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias",
                "output.weight"} | {f"blk.{n}.{part}.{kind}" for n in range(2) for kind in ("weight", "bias")
                                    for part in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm",
                                                 "ffn_up", "ffn_down")}
    assert set(names) == expected
    assert names["blk.0.attn_qkv.weight"].tensor_type.name == "F16"
    assert names["blk.0.attn_norm.bias"].tensor_type.name == "F32"
    assert list(names["blk.0.ffn_up.weight"].shape) == [32, 128]  # ggml order: [in, out]


def test_q8_0_and_f32_kinds(exported):
    import gguf

    q8 = {t.name: t.tensor_type.name for t in gguf.GGUFReader(exported["q8_0"]).tensors}
    f32 = {t.name: t.tensor_type.name for t in gguf.GGUFReader(exported["f32"]).tensors}
    assert q8["blk.1.ffn_down.weight"] == "Q8_0" and q8["output_norm.weight"] == "F32"
    assert set(f32.values()) == {"F32"}
    assert exported["q8_0"].stat().st_size < exported["f16"].stat().st_size < exported["f32"].stat().st_size


def test_bad_folders_are_one_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(ExportError, match="no model folder"):
        export_gguf(tmp_path / "nothing", tmp_path / "x.gguf")
    with pytest.raises(ExportError, match="unknown GGUF kind 'q4'"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf", "q4")
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ExportError, match="not a GPT-2"):
        export_gguf(other, tmp_path / "x.gguf")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ExportError, match="no .safetensors"):
        export_gguf(no_weights, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf*"))  # nothing half-written is left


@pytest.fixture(scope="module")
def llama_cpp():
    from tests.llama_server import llama_cpp_missing

    if (why := llama_cpp_missing()) is not None:
        pytest.skip(why)
    import llama_cpp

    return llama_cpp


@pytest.mark.parametrize("kind", ["f16", "f32"])
def test_llama_cpp_loads_it_and_tokenizes_as_hugging_face_does(exported, kind, llama_cpp, gpt2_tokenizer):
    model = llama_cpp.Llama(str(exported[kind]), n_ctx=256, n_threads=1, verbose=False)
    try:
        assert model.n_ctx() == 256 and model.n_vocab() == 50257
        for text in (ENGLISH, RUSSIAN, "<|endoftext|>A new story"):
            ids = model.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            assert ids == gpt2_tokenizer.encode(text), text
            assert model.detokenize(ids, special=True).decode("utf-8") == text
    finally:
        model.close()


def test_llama_cpp_computes_the_same_logits_as_transformers(exported, tiny_model_dir, llama_cpp, gpt2_tokenizer):
    """The transposed Conv1D matrices and every name are right: f32 logits agree with the model's own."""
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel

    ids = gpt2_tokenizer.encode(ENGLISH)
    with torch.inference_mode():
        reference = GPT2LMHeadModel.from_pretrained(tiny_model_dir)(torch.tensor([ids])).logits[0].numpy()
    model = llama_cpp.Llama(str(exported["f32"]), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    try:
        model.eval(ids)
        ours = np.array(model.scores[:len(ids)])
    finally:
        model.close()
    assert np.abs(ours - reference).max() < 1e-3


def test_q8_0_runs_in_llama_cpp(exported, llama_cpp):
    from game.narrator import precision

    if precision.cpu_flags() & {"amx_int8", "amx_tile"}:
        pytest.skip("llama-cpp-python 0.3.36 built natively has crashed on GPT-2 q8_0 through its AMX "
                    "buffer type; f16 is what the server tests use on such CPUs")
    model = llama_cpp.Llama(str(exported["q8_0"]), n_ctx=128, n_threads=1, verbose=False)
    try:
        reply = model.create_completion("Once upon a time", max_tokens=5, seed=1, temperature=0.8)
    finally:
        model.close()
    assert reply["usage"]["completion_tokens"] >= 1 and isinstance(reply["choices"][0]["text"], str)


def test_the_command_line_exporter(tiny_model_dir, tmp_path, capsys):
    from game.narrator.gguf_export import main

    out = tmp_path / "cli.gguf"
    assert main([str(tiny_model_dir), str(out), "q8_0"]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1_000_000
    assert main([str(tmp_path / "missing"), str(tmp_path / "x.gguf")]) == 1
    assert capsys.readouterr().err.strip() == f"gguf_export: there is no model folder '{tmp_path / 'missing'}'"
    assert main([]) == 2
