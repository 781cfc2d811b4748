"""Writing our GPT-2 model folders as GGUF files, for llama.cpp and the servers built on it.

`export_gguf(model_dir, out, kind)` reads a GPT-2 folder (config.json, the weights
in safetensors, the tokenizer as vocab.json + merges.txt or tokenizer.json) and
writes one GGUF file with the `gguf` package's `GGUFWriter`: architecture `gpt2`,
the tensors under llama.cpp's names, the byte-level BPE vocabulary (so llama.cpp
tokenizes exactly as the Hugging Face tokenizer does), the end-of-text ids and the
context window (`n_positions`). `kind` is the number format of the matrices:

    f32   everything in 32-bit floats
    f16   matrices in 16-bit floats, norms and biases in 32-bit (the safe default)
    q8_0  matrices in llama.cpp's 8-bit blocks (a matrix whose rows do not split
          into 32-value blocks stays f16), norms and biases in 32-bit

Hugging Face's GPT-2 keeps its attention and MLP weights as Conv1D, [in, out]; GGUF
wants [out, in], so those four are transposed. The output matrix is the token
embedding unless the folder has its own untied `lm_head`.

Neither torch nor transformers is imported: numpy, safetensors and gguf only.
Used by the server tests (a real llama.cpp server on the tiny test GPT-2),
`storyteller bench --peers` and `storyteller serve`'s documentation.
"""

from __future__ import annotations

import json
from pathlib import Path

KINDS = ("f32", "f16", "q8_0")

# Hugging Face GPT-2 tensor names (without "transformer.") -> GGUF names; {n} is the block.
_NAMES = {
    "wte.weight": "token_embd.weight",
    "wpe.weight": "position_embd.weight",
    "ln_f.weight": "output_norm.weight",
    "ln_f.bias": "output_norm.bias",
}
_BLOCK_NAMES = {
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_SKIPPED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights


class ExportError(ValueError):
    """The folder cannot be written as a GGUF; str() says why in one line."""


def export_gguf(model_dir: Path, out: Path, kind: str = "f16", *, chat_template: str | None = None,
                name: str | None = None) -> Path:
    """Write the GPT-2 in `model_dir` as a GGUF file at `out` (returned).

    `chat_template` (a Jinja template, as in a tokenizer_config.json) is stored as
    `tokenizer.chat_template`, so servers that read it offer the chat API; without it
    the folder's own tokenizer_config.json template is used, if it has one.
    Raises ExportError for a folder that is not a GPT-2 with safetensors weights.
    """
    import numpy as np
    import gguf

    if kind not in KINDS:
        raise ExportError(f"unknown GGUF kind '{kind}'; choose one of: {', '.join(KINDS)}")
    folder, out = Path(model_dir), Path(out)
    config = _config(folder)
    n_layer, n_embd, n_head = config["n_layer"], config["n_embd"], config["n_head"]
    tensors = _weights(folder)
    tokens, types, merges = _vocabulary(folder, config["vocab_size"])
    token_config = _json(folder / "tokenizer_config.json") or {}
    eos = _special_id(config.get("eos_token_id"), token_config.get("eos_token"), tokens)
    bos = _special_id(config.get("bos_token_id"), token_config.get("bos_token"), tokens)
    template = chat_template if chat_template is not None else token_config.get("chat_template")

    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), "gpt2")
    try:
        writer.add_name(name or folder.name)
        writer.add_context_length(config["n_positions"])
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(config.get("n_inner") or 4 * n_embd)
        writer.add_block_count(n_layer)
        writer.add_head_count(n_head)
        writer.add_layer_norm_eps(float(config.get("layer_norm_epsilon", 1e-5)))
        writer.add_file_type(file_type)
        writer.add_vocab_size(len(tokens))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        if bos is not None:
            writer.add_bos_token_id(bos)
        if eos is not None:
            writer.add_eos_token_id(eos)
        writer.add_add_bos_token(False)  # GPT-2's tokenizer adds nothing: the counts stay equal
        if template:
            writer.add_chat_template(template)

        wanted = _wanted_names(n_layer)
        for hf_name, array in _gguf_order(tensors, n_layer, config):
            gguf_name = wanted[hf_name] if hf_name != "lm_head.weight" else "output.weight"
            data = array.T.copy() if hf_name.endswith(_CONV1D) else array
            data = np.ascontiguousarray(data.astype(np.float32, copy=False))
            if data.ndim == 1 or kind == "f32":
                writer.add_tensor(gguf_name, data)
            elif kind == "q8_0" and data.shape[-1] % 32 == 0:
                qtype = gguf.GGMLQuantizationType.Q8_0
                writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
            else:
                writer.add_tensor(gguf_name, data.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    partial.replace(out)
    return out


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ExportError(f"{path} cannot be read: {error}") from None


def _config(folder: Path) -> dict:
    if not folder.is_dir():
        raise ExportError(f"there is no model folder '{folder}'")
    config = _json(folder / "config.json")
    if not isinstance(config, dict):
        raise ExportError(f"'{folder}' is not a model folder (it has no config.json)")
    if config.get("model_type", "gpt2") != "gpt2" or config.get("architectures") not in (None, ["GPT2LMHeadModel"]):
        raise ExportError(f"'{folder}' holds a {config.get('model_type') or config.get('architectures')}, "
                          "not a GPT-2: only GPT-2 folders can be exported")
    defaults = dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)
    return {**defaults, **config}


def _weights(folder: Path) -> dict:
    """Every tensor of the folder's safetensors files, by name without "transformer."."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"'{folder}' has no .safetensors weights (re-save the model with "
                          "save_pretrained(..., safe_serialization=True))")
    tensors = {}
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as weights:
                for key in weights.keys():
                    if key.endswith(_SKIPPED):
                        continue
                    name = key.removeprefix("transformer.")
                    tensors[name] = weights.get_tensor(key)
        except (OSError, ValueError, TypeError) as error:  # a bfloat16 file: numpy has no bfloat16
            raise ExportError(f"{file} cannot be read as float32/float16 weights: {error}") from None
    return tensors


def _wanted_names(n_layer: int) -> dict[str, str]:
    names = dict(_NAMES)
    for n in range(n_layer):
        for hf, ours in _BLOCK_NAMES.items():
            for part in ("weight", "bias"):
                names[f"h.{n}.{hf}.{part}"] = f"blk.{n}.{ours}.{part}"
    return names


def _gguf_order(tensors: dict, n_layer: int, config: dict):
    """(HF name, array) in GGUF order, with the output matrix last; checks nothing is missing."""
    wanted = _wanted_names(n_layer)
    missing = [name for name in wanted if name not in tensors]
    if missing:
        raise ExportError(f"the weights lack {len(missing)} GPT-2 tensor(s), e.g. '{missing[0]}'")
    unknown = sorted(set(tensors) - set(wanted) - {"lm_head.weight"})
    if unknown:
        raise ExportError(f"the weights have tensors a GPT-2 does not, e.g. '{unknown[0]}'")
    for name in wanted:
        yield name, tensors[name]
    untied = "lm_head.weight" in tensors and config.get("tie_word_embeddings", True) is False
    yield ("lm_head.weight", tensors["lm_head.weight"]) if untied else ("lm_head.weight", tensors["wte.weight"])


def _vocabulary(folder: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges "a b") from vocab.json + merges.txt or tokenizer.json."""
    import gguf

    added: dict[str, int] = {}
    whole = _json(folder / "tokenizer.json")
    vocab = _json(folder / "vocab.json")
    if isinstance(vocab, dict) and (folder / "merges.txt").is_file():
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [line for line in lines if line and not line.startswith("#version")]
    elif isinstance(whole, dict) and isinstance(whole.get("model"), dict) and whole["model"].get("type") == "BPE":
        vocab = whole["model"]["vocab"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in whole["model"].get("merges", [])]
    else:
        raise ExportError(f"'{folder}' has no GPT-2 tokenizer (vocab.json and merges.txt, or a BPE "
                          "tokenizer.json)")
    if isinstance(whole, dict):
        added = {t["content"]: t["id"] for t in whole.get("added_tokens", []) if t.get("special")}
    vocab = {**vocab, **{content: i for content, i in added.items() if content not in vocab}}
    by_id = {i: token for token, i in vocab.items()}
    size = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added or (token.startswith("<|") and token.endswith("|>")):
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types], merges


def _special_id(configured, token, tokens: list[str]) -> int | None:
    if isinstance(configured, list):
        configured = configured[0] if configured else None
    if isinstance(configured, int):
        return configured
    if isinstance(token, dict):
        token = token.get("content")
    if isinstance(token, str) and token in tokens:
        return tokens.index(token)
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m game.narrator.gguf_export MODEL_DIR OUT.gguf [f32|f16|q8_0]`."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m game.narrator.gguf_export MODEL_DIR OUT.gguf [f32|f16|q8_0]", file=sys.stderr)
        return 2
    try:
        path = export_gguf(Path(args[0]), Path(args[1]), args[2] if len(args) == 3 else "f16")
    except ExportError as error:
        print(f"gguf_export: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
