"""Number formats for the narrator's weights, and the threads that do the sums.

Owns the `precision` setting's meaning. `choose(precision, device, parameters)`
turns "auto" into a concrete format for the machine at hand; `linear(weight,
bias, precision)` builds one Linear layer in that format (`int8_linear` and
`quantize_rows` for int8); `threads()` is the number of physical cores and
`CoreMeter` how many of them other programs leave free. Importing this module
imports no torch.

    fp32  the checkpoint's own numbers: exact, the slowest (4 bytes a weight)
    bf16  bfloat16 weights and activations: half the memory traffic; with AMX
          (amx_bf16) or avx512_bf16 a long prompt is much faster, one token is not
    int8  dynamic int8: weights are 8-bit with one scale per output row (the
          LM head too), each layer's input is quantized on the fly (one
          scale per call); a quarter of the memory traffic and VNNI kernels.
          Layer norms, attention, activations and the key/value cache stay
          fp32. The conversion of a model file is cached (`int8_cache`).

`auto` keeps fp32 for a small model (under `SMALL_MODEL` parameters: its speed is
not set by its weights, and fp32 is exact), picks int8 on a CPU with fast int8
dot products (avx512_vnni, avx_vnni or amx_int8) and a quantized engine in
torch when int8 is known to keep quality (`int8_allowed`: the verdict `storyteller
bench --quality` recorded for the model, else the quality proxy's), else bf16 on a CPU with native bf16 (avx512_bf16 or amx_bf16), else fp32;
on a CUDA GPU it picks bf16 when the GPU supports it, else fp32. int8 is
CPU-only: asking for it on a GPU gives fp32. docs/performance.md has the
measurements and the trade-offs.
"""

from __future__ import annotations

import functools
import os
import time
import warnings

PRECISIONS = ("auto", "fp32", "bf16", "int8")
FORMATS = ("fp32", "bf16", "fp16", "int8")  # fp16 only when the model was loaded as float16
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
SMALL_MODEL = 20_000_000  # parameters; below this `auto` keeps fp32
# int8 is sound for a model when, against fp32, its perplexity is at most 2% higher and its most
# likely next token agrees at least 95% of the time (measured by `storyteller bench --quality`).
INT8_MARGIN = {"perplexity": 0.02, "agreement": 0.95}
QUALITY_FILE = "precision-quality.json"  # in the data folder: the verdicts `bench --quality` measured
PROXY_KEY = "proxy"  # the verdict of the quality proxy (game.narrator.proxy), for models not measured
# The proxy's verdict as measured for docs/performance.md (Dec 2026): `auto` uses it until
# `bench --quality` has recorded a verdict on this machine.
PROXY_INT8_SOUND = True


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def threads() -> int:
    """Physical cores this process may run on (hyper-threads share a core's math units)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores, cpu, physical = set(), None, "0"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    physical = value
                elif key == "core id" and cpu in allowed:
                    cores.add((physical, value))
    except (OSError, ValueError):
        pass
    return max(1, len(cores) or len(allowed))


class CoreMeter:
    """How many physical cores other programs leave free while the model works.

    A torch thread that has to wait for its core stalls every step of the work
    it shares, so on a busy machine fewer threads finish sooner. `begin()` and
    `end()` bracket a generation; `free` is then the physical cores that other
    programs left free meanwhile (this process's own time is not counted), and
    the next generation uses that many threads. Reads /proc/stat and
    /proc/self/stat; where they do not exist `free` stays `threads()`.
    """

    SHORTEST = 0.2  # seconds: shorter spans are too coarse to judge (the kernel counts in 10 ms ticks)

    def __init__(self):
        self.cores = self.free = threads()
        self._begun = None

    @staticmethod
    def _sample() -> tuple[int, int, int, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                ticks = [int(x) for x in fh.readline().split()[1:9]]  # user nice system idle iowait ...
            with open("/proc/self/stat", encoding="ascii") as fh:
                mine = fh.read().rpartition(")")[2].split()
            return sum(ticks), ticks[3] + ticks[4], int(mine[11]) + int(mine[12]), time.monotonic()
        except (OSError, ValueError, IndexError):
            return None

    def begin(self) -> None:
        self._begun = self._sample()

    def end(self) -> None:
        now, then = self._sample(), self._begun
        if now is None or then is None or now[3] - then[3] < self.SHORTEST or now[0] <= then[0]:
            return
        total, idle, mine = (a - b for a, b in zip(now[:3], then[:3]))
        others = (total - idle - mine) / total * (os.cpu_count() or self.cores)  # in CPUs
        self.free = max(1, min(self.cores, self.cores - round(others)))


@functools.cache
def int8_engine() -> str | None:
    """The torch quantized engine for int8 layers here, or None when there is none.

    x86/fbgemm first: its packed weights take little more room than the int8
    values, and it runs one row (a decode step) fast. oneDNN prefills long
    prompts faster with AMX, but keeps a second copy of every weight and
    state for every prompt length it sees (memory grows over a session).
    """
    import torch

    if not hasattr(torch.ops.quantized, "linear_dynamic"):
        return None
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in engines), None)


def bf16_native() -> bool:
    """Whether this CPU does bf16 arithmetic natively (not emulated)."""
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in BF16_FLAGS)
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose(precision: str, device: str = "cpu", parameters: int | None = None,
           model: str | None = None) -> tuple[str, str | None]:
    """The concrete precision for a setting on a device, and a note when the wish was changed.

    `auto` keeps fp32 for a model under `SMALL_MODEL` parameters: so little
    weight is not what limits its speed, and fp32 is exact; it picks int8 only
    when int8 is known to keep quality for `model` (`int8_allowed`). Raises
    ValueError for an unknown setting.
    """
    if precision not in PRECISIONS + FORMATS:
        raise ValueError(f"unknown precision '{precision}' (use one of: {', '.join(PRECISIONS)})")
    if device != "cpu":
        if precision == "int8":
            return "fp32", "int8 runs on the processor only; using fp32 on the graphics card"
        if precision == "auto":
            import torch

            return ("bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"), None
        return precision, None
    if precision == "int8" and int8_engine() is None:
        return "fp32", "this torch has no int8 engine; using fp32"
    if precision != "auto":
        return precision, None
    if parameters is not None and parameters < SMALL_MODEL:
        return "fp32", None
    if int8_engine() is not None and cpu_flags() & set(INT8_FLAGS) and int8_allowed(model):
        return "int8", None
    return ("bf16" if bf16_native() else "fp32"), None


def dtype_of(precision: str):
    """The torch dtype of activations (and of weights, except for int8)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def linear(weight, bias, precision: str):
    """A layer computing x @ weight.T + bias in `precision`; weight is (out, in).

    fp32 keeps the given tensors (no copy); bf16 casts them; int8 quantizes the
    weight per output row (`Int8Linear`).
    """
    from torch import nn

    if precision == "int8":
        return int8_linear(int8_weight(*quantize_rows(weight)), None, bias)  # rows let go before packing
    dtype = dtype_of(precision)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=False)
    return layer


def quantize_rows(weight):
    """Symmetric int8 per row: (int8 values, fp32 scales) with weight ≈ values * scales[:, None]."""
    import torch

    weight = weight.detach().float()
    scales = torch.linalg.vector_norm(weight, float("inf"), dim=1).clamp_min_(1e-12).div_(127)
    values = (weight / scales[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return values, scales


def int8_weight(values, scales):
    """The quantized weight an `Int8Linear` packs: int8 rows `values` (copied: they may be let go
    once this returns) with one scale each (see `quantize_rows`)."""
    import torch

    with warnings.catch_warnings():  # torch marks quantized tensors as deprecated
        warnings.simplefilter("ignore")
        return torch._make_per_channel_quantized_tensor(
            values, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0)


def int8_linear(values, scales=None, bias=None):
    """An `Int8Linear` from int8 weight rows and their scales (see `quantize_rows`), or from an
    `int8_weight` (`scales` None: pass that to keep only one copy of the rows while packing)."""
    return _int8_class()(values if scales is None else int8_weight(values, scales), bias)


@functools.cache
def _int8_class():
    import torch
    from torch import nn

    # torch's quantized engine is process-wide, and nothing else in the game quantizes: it is set
    # once, here, before any int8 layer is packed (layers are packed on several threads at once)
    engine = int8_engine()
    if engine is not None:
        torch.backends.quantized.engine = engine

    class Int8Linear(nn.Module):
        """Dynamic int8 Linear: int8 weights (one scale per output row), fp32 in and out.

        Each call quantizes its input on the fly (one scale for the whole input)
        and runs torch's int8 kernel for this CPU's engine (`int8_engine()`).
        """

        def __init__(self, weight, bias=None):
            """`weight`: an `int8_weight`."""
            import torch

            super().__init__()
            with warnings.catch_warnings():  # torch marks quantized tensors as deprecated
                warnings.simplefilter("ignore")
                self.packed = torch.ops.quantized.linear_prepack(
                    weight, None if bias is None else bias.detach().float())
            # a 7-bit input range avoids overflow in int8 kernels without VNNI/AMX
            self.reduce_range = not cpu_flags() & set(INT8_FLAGS)
            self.out_features, self.in_features = weight.shape

        def forward(self, x):
            import torch

            return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)

    return Int8Linear



# --- is int8 sound? ----------------------------------------------------------------------------

def model_key(model: str) -> str:
    """How a model is named in the verdicts file: a folder by its full path, else its hub id."""
    from pathlib import Path

    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def int8_sound(rows: dict) -> bool:
    """Whether a `bench.quality` result keeps int8 within `INT8_MARGIN` of fp32."""
    fp32, int8 = rows["precisions"]["fp32"], rows["precisions"]["int8"]
    return (int8["perplexity"] <= fp32["perplexity"] * (1 + INT8_MARGIN["perplexity"])
            and int8["agreement"] >= INT8_MARGIN["agreement"])


def _verdicts_path():
    from game import locations

    return locations.data_dir() / QUALITY_FILE


def _verdicts() -> dict:
    import json

    try:
        data = json.loads(_verdicts_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none measured yet, or a damaged file: the shipped proxy verdict holds
    return data if isinstance(data, dict) else {}


def record_quality(key: str, rows: dict) -> bool:
    """Record whether int8 is sound for `key` (a `model_key`, or `PROXY_KEY`); returns the verdict.

    The file is replaced atomically; a file that cannot be written only loses the record.
    """
    import json
    import tempfile

    sound = int8_sound(rows)
    data = _verdicts()
    data[key] = {"int8_ok": sound, "perplexity": {k: v["perplexity"] for k, v in rows["precisions"].items()},
                 "int8_agreement": rows["precisions"]["int8"]["agreement"], "margin": INT8_MARGIN,
                 "measured": time.strftime("%Y-%m-%d")}
    path = _verdicts_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp",
                                         encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
        os.replace(fh.name, path)
    except OSError:
        pass
    return sound


def int8_allowed(model: str | None) -> bool:
    """Whether `auto` may pick int8 for `model`: its own measured verdict when `bench --quality`
    recorded one, else the quality proxy's (recorded here, or the shipped `PROXY_INT8_SOUND`)."""
    data = _verdicts()
    for key in ([model_key(model)] if model else []) + [PROXY_KEY]:
        verdict = data.get(key)
        if isinstance(verdict, dict) and isinstance(verdict.get("int8_ok"), bool):
            return verdict["int8_ok"]
    return PROXY_INT8_SOUND
