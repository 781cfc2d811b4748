"""The fast generation path: the model in its chosen precision, a prefix cache, a lean decode loop.

`FastGenerator.from_checkpoint(folder, config, precision)` reads a GPT-2
(gpt2, distilgpt2) straight from its model.safetensors, one tensor at a time,
into a lean forward pass written here (transformers' model classes are never
imported); `FastGenerator.from_model(model, precision)` wraps any loaded
Hugging Face causal LM: a GPT-2 gets the same lean pass over its weights, any
other model runs its own forward with a `DynamicCache`.

The lean GPT-2 pass: weights converted by `game.narrator.precision` (GPT-2's
`Conv1D` layers become Linear layers with the transposed weight; in int8 the
tied LM head is a packed int8 copy of the embedding, whose rows a prompt needs
are read exactly from model.safetensors as needed (`RowFile`), or kept as int8
rows with a scale each when the model came loaded), a key/value cache (in the
activations' dtype: fp32 but in bf16) preallocated for the whole window and taking
memory only as it is written (cropping it is free, a token costs no copying),
and one call per token with nothing else in between.

The prefix cache: after a generation the key/values stay. The next `generate`
finds the longest common token prefix with its prompt, crops the cache there
(`DynamicCache.crop` on the generic path) and computes only the rest. A prompt
is always computed in the same chunks (`chunk_ends`: a grid of `ALIGN` tokens,
plus where its known start ends), and only cached tokens computed in those very
chunks are reused (a whole prompt together with its last logits), so every
number comes out exactly as without the cache: the cache changes how soon a
story comes, never which story (greedy or seeded, in every precision). Spare
caches (`warm_spare`, `SPARES`) hold prompts computed ahead, and a generation
takes the cache, main or spare, that shares the most with its prompt.

Sampling (`Sampler`) does what transformers' processors do for repetition
penalty, no-repeat n-grams, temperature, top-k and top-p, in that order, but
cheaply: the penalty works on the gathered logits of the tokens seen, top-k
runs once on the full vocabulary, temperature and top-p only on those k. A
`torch.Generator` seeded per generation makes seeded stories reproducible; in
fp32 it draws exactly as transformers does, so a seed gives the classic
pipeline's very story (bf16 and int8 logits differ anyway: they draw once,
among the k candidates). `sampling=None` decodes greedily (the argmax, no
processors), for tests.

Importing this module imports no torch; the service calls it on its compute thread
(`game.narrator.compute`), one job at a time.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from game.narrator import int8_cache, precision as formats

_GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
TABLE_ROWS = 8192  # the embedding table is converted this many rows at a time
HEAD_ROWS = 256  # rows quantized again at a time for the int8 cache (little memory)
TRIM_AFTER = 64  # after computing more prompt tokens than this, freed memory goes back to the system
ALIGN = 128  # prompts are computed in chunks of this many tokens, at fixed positions (see _prefill)
SPARES = 3  # key/value caches kept besides the main one, for prompts computed ahead (see warm_spare)


def lean_checkpoint(folder) -> bool:
    """Whether `folder` holds a GPT-2 the lean path can read directly (one model.safetensors)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return ((folder / "model.safetensors").is_file() and isinstance(config, dict)
            and config.get("architectures") in (None, ["GPT2LMHeadModel"])
            and _lean_ok(_Defaults(config), "GPT2LMHeadModel"))


def parameter_count(config) -> int:
    """A GPT-2's number of weights, from its config."""
    width = config.n_embd
    return (config.vocab_size + config.n_positions) * width + config.n_layer * (12 * width * width + 13 * width)


def checkpoint_config(folder):
    """A GPT-2 folder's config.json as attributes (GPT-2's defaults fill the gaps); no transformers needed."""
    return _Defaults(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))


class _Defaults:
    """A config.json as attributes, with GPT-2's defaults for what it leaves out."""

    GPT2 = dict(model_type=None, activation_function="gelu_new", scale_attn_weights=True,
                scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
                add_cross_attention=False, n_layer=12, n_head=12, n_embd=768, n_positions=1024,
                layer_norm_epsilon=1e-5, vocab_size=50257, tie_word_embeddings=True,
                eos_token_id=50256, pad_token_id=None)

    def __init__(self, config: dict):
        self.__dict__.update(self.GPT2, **config)


def chunk_ends(n: int, split: int | None = None) -> list[int]:
    """Where the chunks of an `n`-token prompt end: on a fixed grid of `ALIGN` tokens, and at
    `split`, the end of the prompt's known start (the part computed while the player typed).

    Computing a prompt in other chunks changes its last digits (int8 quantizes each chunk's input
    with one scale), so a prompt is always computed in these chunks, cached or not, and only
    tokens cached in the same chunks are reused (see `FastGenerator._prefill`).
    """
    ends = set(range(ALIGN, n, ALIGN)) | {n}
    if split is not None and 0 < split < n:
        ends.add(split)
    return sorted(ends)


def _reusable(cached: Sequence[int], bounds: Sequence[int], last, ids: Sequence[int], split: int | None,
              limit: int | None = None) -> int:
    """How many of a cache's tokens (`cached`, computed in chunks ending at `bounds`, `last` the
    logits of its last position or None) a prompt `ids` with `split` can take: the longest
    common start computed in the very chunks the prompt's own computation would use
    (`chunk_ends`). At most `limit` (default: all but the last token, or all of them when the
    cache holds exactly `ids` with its last position's logits)."""
    if limit is None:
        limit = len(ids) if last is not None and len(cached) == len(ids) else len(ids) - 1
    same = min(common_prefix(cached, ids), limit)
    keep = 0
    for had, wants in zip(bounds, chunk_ends(len(ids), split)):
        if had != wants or had > same:
            break
        keep = had
    return keep


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common start of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class FastGenerator:
    """One model ready for token-by-token generation, with the key/value cache of its last sequence."""

    def __init__(self, backend, precision: str, window: int, vocab: int, note: str | None = None,
                 threads: int | None = None, meter=None):
        self.backend = backend
        self.precision = precision  # concrete: fp32, bf16 or int8
        self.note = note  # why the precision differs from the one asked for, if it does
        self.window = window
        self.vocab = vocab
        self.cached: list[int] = []  # the tokens whose keys/values are in the cache
        self.reused = 0  # prompt tokens the last generation took from the cache
        self._trim = False
        self._bounds: list[int] = []  # where each chunk of the cached tokens ended (see `_prefill`)
        self._last = None  # the logits of the last cached position, when a look-ahead kept them
        self._spares: list[list] = []  # [keys, values, cached, bounds, last] of caches computed ahead
        self._cores = meter or formats.CoreMeter()
        self.fixed_threads = threads  # None: each generation uses the cores others left free
        self.threads = 0  # torch threads of the last run
        _give_back_freed_memory()

    @classmethod
    def from_model(cls, model, precision: str = "auto", *, window: int | None = None,
                   lean: bool = True, threads: int | None = None, meter=None) -> "FastGenerator":
        """Convert `model` to `precision` ("auto" chooses for its device) and wrap it.

        After this, use the generator, not the model: in bf16 and int8 the lean
        path copies what it needs and the model may be dropped. `lean=False`
        forces the generic path (the model's own forward with a DynamicCache).
        Each generation runs on as many threads as the physical cores other
        programs left free during the last one (`meter`, a `precision.CoreMeter`;
        the conversion uses what it says now), or on `threads` threads when
        given: int8 gives the very same numbers on any number of threads, fp32
        and bf16 may differ in the last digits.
        """
        import torch

        meter = meter or formats.CoreMeter()
        torch.set_num_threads(threads or meter.free)
        device = model.device.type
        chosen, note = formats.choose(precision, device, sum(p.numel() for p in model.parameters()),
                                      getattr(model.config, "_name_or_path", None) or None)
        model.eval()
        config = model.config
        window = window or getattr(config, "n_positions", None) or config.max_position_embeddings
        with torch.inference_mode(), _loading_memory():
            if lean and _lean_ok(config, type(model).__name__):
                weights = dict(model.named_parameters())
                weights["lm_head.weight"] = model.lm_head.weight
                tied = weights["lm_head.weight"] is weights["transformer.wte.weight"]

                def fetch(name: str, rows: tuple[int, int] | None = None):
                    tensor = weights[name if name.startswith("lm_head") else "transformer." + name].detach()
                    return tensor if rows is None else tensor[rows[0]:rows[1]]

                backend = _Gpt2(config, fetch, chosen, model.device, window, tied)
            else:
                backend = _Generic(model, chosen)
        return cls(backend, chosen, window, config.vocab_size, note, threads, meter)

    @classmethod
    def from_checkpoint(cls, folder, config, precision: str = "auto", *, device: str = "cpu",
                        window: int | None = None, threads: int | None = None,
                        meter=None) -> "FastGenerator":
        """The lean GPT-2 path straight from a folder's model.safetensors (see `lean_checkpoint`).

        Reads one tensor at a time (the big embedding table in slices of rows)
        and converts it at once, so memory holds little more than the result;
        transformers' model classes are never imported. `config` is the
        folder's config (`checkpoint_config`); `threads` and `meter` as in `from_model`,
        and as many layers are converted and packed at once as there are threads.

        In int8 on the CPU the conversion is cached (`int8_cache`): a launch that finds a
        sound cache of this model file only packs its int8 rows; one that does not converts
        them and has the cache written as the compute thread's next job (`int8_cache.write_later`).
        """
        import torch
        from safetensors import safe_open

        meter = meter or formats.CoreMeter()
        torch.set_num_threads(threads or meter.free)
        chosen, note = formats.choose(precision, device, parameter_count(config), str(folder))
        path = str(Path(folder) / "model.safetensors")
        try:
            with safe_open(path, "pt") as f:
                names = set(f.keys())
        except Exception as error:  # safetensors' own errors name neither the file nor a way out
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{path} is not a whole safetensors file ({first}): {MODEL_FILE_FIX}") from None
        prefix = "transformer." if "transformer.wte.weight" in names else ""

        def key(name: str) -> str:
            if name == "lm_head.weight" and name not in names:
                name = "wte.weight"  # tied to the embedding
            return name if name.startswith("lm_head") else prefix + name

        def fetch(name: str, rows: tuple[int, int] | None = None):
            with safe_open(path, "pt") as f:  # opened per tensor: its pages are let go at once
                return f.get_tensor(key(name)) if rows is None else f.get_slice(key(name))[rows[0]:rows[1]]

        window = window or config.n_positions
        kept = chosen == "int8" and torch.device(device).type == "cpu"  # the int8 conversion is cached
        layout, cached, ident = _int8_layout(config), None, None
        if kept:
            try:
                ident = int8_cache.identity(path)  # before any weight is read
            except (OSError, ValueError):
                kept = False  # loading says what is wrong with the file
            else:
                cached = int8_cache.open_cache(path, layout, ident)

        def build(cached):
            return _Gpt2(config, fetch, chosen, torch.device(device), window,
                         tied=config.tie_word_embeddings or "lm_head.weight" not in names,
                         embedding_file=(path, prefix + "wte.weight"), cached=cached,
                         workers=threads or meter.free)

        with torch.inference_mode(), _loading_memory():
            try:
                backend = build(cached)
            except int8_cache.Damaged:  # its data is not what was written: convert afresh
                cached = None
                backend = build(None)
        if kept and cached is None:  # after the load, off its clock
            # read again through `RowFile`, not a memory map: a model file cut short meanwhile
            # fails the write, never the process (SIGBUS)
            int8_cache.write_later(path, layout, functools.partial(
                backend.int8_parts, lambda name: RowFile(path, key(name))), ident)
        return cls(backend, chosen, window, config.vocab_size, note, threads, meter)

    @property
    def kind(self) -> str:
        """'lean-gpt2' or 'generic'."""
        return self.backend.kind

    def _use_threads(self) -> None:
        """Set torch's threads for this generator: fixed, or the cores others left free last time."""
        import torch

        self.threads = self.fixed_threads or self._cores.free
        torch.set_num_threads(self.threads)  # process-wide, so set every time (it costs nothing)

    def forget(self) -> None:
        """Drop the cached prefix and the spare caches (the next generation computes its whole prompt)."""
        self.backend.truncate(0)
        self.cached, self._bounds, self._last = [], [], None
        for spare in self._spares:
            spare[2:] = [[], [], None]

    def _swap(self, spare: list) -> None:
        """Exchange the main cache with a spare one (tensors change places: nothing is copied)."""
        b = self.backend
        b.keys, b.values, self.cached, self._bounds, self._last, spare[:] = (
            *spare, [b.keys, b.values, self.cached, self._bounds, self._last])

    def _take_spare(self, ids: Sequence[int], split: int | None) -> None:
        """Make the main cache the one, main or spare, with the most reusable tokens for `ids`."""
        best, most = None, self._reusable(ids, split)
        for spare in self._spares:
            n = _reusable(spare[2], spare[3], spare[4], ids, split)
            if n > most:
                best, most = spare, n
        if best is not None:
            self._swap(best)

    def warm_spare(self, ids: Sequence[int], slot: int, split: int | None = None,
                   should_stop: Callable[[], bool] = lambda: False) -> int:
        """Compute a whole prompt that may come instead of the expected one (the player may enter
        another scene) into spare cache `slot` (0 to SPARES - 1), leaving the main cache as it
        is: in chunks as `generate(ids, split=split)` would, keeping the last position's logits,
        so that a generation of that very prompt computes nothing before its first token. A
        generation whose prompt starts like a spare takes it (`_take_spare`). Only the lean GPT-2
        path has spares; elsewhere this does nothing. Returns the tokens computed."""
        if not hasattr(self.backend, "new_cache") or not 0 <= slot < SPARES:
            return 0
        while len(self._spares) <= slot:
            self._spares.append([*self.backend.new_cache(), [], [], None])
        spare = self._spares[slot]
        self._swap(spare)
        try:
            return self._compute_ahead(list(ids)[: self.window - 1], split, should_stop, keep_logits=True)
        finally:
            self._swap(spare)

    def _advance(self, ids: list[int], all_logits: bool = False):
        """Feed `ids` after the cached tokens, as one chunk; logits of the last (or every) new position."""
        start = len(self.cached)
        self._last = None
        try:
            logits = self.backend.forward(ids, start, all_logits)
        except BaseException:
            self.forget()  # a half-written cache must not be trusted
            raise
        self.cached.extend(ids)
        self._bounds.append(len(self.cached))
        return logits

    def _reusable(self, ids: Sequence[int], split: int | None, limit: int | None = None) -> int:
        """How many tokens of the main cache a prompt `ids` can take (see the function `_reusable`)."""
        return _reusable(self.cached, self._bounds, self._last, ids, split, limit)

    def _crop(self, keep: int) -> None:
        """Keep only the first `keep` cached tokens (`keep` is the end of a chunk)."""
        self.backend.truncate(keep)
        del self.cached[keep:]
        while self._bounds and self._bounds[-1] > keep:
            self._bounds.pop()
            self._last = None

    def _prefill(self, ids: list[int], reuse_cache: bool, split: int | None = None):
        """Crop the cache to what `ids` can reuse, compute the rest; the last position's logits.

        A prompt is computed in chunks that end at `chunk_ends(len(ids), split)`, whether or
        not part of it is cached, and only cached tokens computed in those very chunks are
        reused: every number is computed exactly as without a cache, so the cache changes how
        fast a story comes, never which story.
        """
        if reuse_cache:
            self._take_spare(ids, split)
        keep = self._reusable(ids, split) if reuse_cache else 0
        logits = self._last.clone() if keep == len(ids) else None
        self._crop(keep)
        self.reused = keep
        for end in chunk_ends(len(ids), split):
            if end > keep:
                logits = self._advance(ids[len(self.cached):end])
        return logits

    def _compute_ahead(self, ids: list[int], split: int | None, should_stop: Callable[[], bool],
                       keep_logits: bool = False) -> int:
        """Compute `ids` into the cache in the chunks of `chunk_ends(len(ids), split)`, keeping
        what is cached already; `should_stop()` is checked before each chunk. Returns how many
        tokens were computed."""
        import torch

        keep = self._reusable(ids, split, len(ids))
        if keep == len(ids):
            if not keep_logits or (self._last is not None and len(self.cached) == len(ids)):
                return 0
            keep = self._reusable(ids, split, len(ids) - 1)  # the last chunk again, for its logits
        self._use_threads()
        with torch.inference_mode():
            self._crop(keep)
            for end in chunk_ends(len(ids), split):
                if end <= keep:
                    continue
                if should_stop():
                    break
                logits = self._advance(ids[len(self.cached):end])
                if keep_logits and end == len(ids):
                    self._last = logits
        return len(self.cached) - keep

    def warm(self, ids: Sequence[int], should_stop: Callable[[], bool] = lambda: False) -> int:
        """Compute `ids` into the cache ahead of a prompt that starts with them (the player is still
        typing), in the chunks a prompt split at `len(ids)` uses (see `chunk_ends`). Chunks already
        cached are kept; `should_stop()` is checked before each chunk. Returns how many tokens were
        computed."""
        return self._compute_ahead(list(ids)[: self.window - 1], None, should_stop)

    def logits(self, ids: Sequence[int]):
        """Logits (fp32) at every position of `ids`, computed from scratch: shape (len, vocab)."""
        import torch

        ids = list(ids)
        self._use_threads()
        with torch.inference_mode():
            self.forget()
            out = torch.cat([self._advance(ids[i:i + ALIGN], all_logits=True) for i in range(0, len(ids), ALIGN)])
            self.forget()
        return out

    def generate(self, prompt: Sequence[int], sampling=None, *, seed: int | None = None,
                 max_new_tokens: int = 64, min_new_tokens: int = 0, eos: int | None = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_token: Callable[[int], None] | None = None,
                 max_time: float | None = None, reuse_cache: bool = True,
                 split: int | None = None) -> list[int]:
        """New tokens after `prompt` (a non-empty token list); the prompt's end is kept if too long.

        `split`: how many of the prompt's tokens were known before the player acted (what
        `warm` computed); the prompt is computed in the chunks of `chunk_ends(len, split)`
        whether or not they are cached, so the same prompt and split give the same story.

        `sampling` is a `game.sampling.Sampling` (None: greedy). Stops at `eos`
        (once `min_new_tokens` are out), at `max_new_tokens`, after `max_time`
        seconds, or when `should_stop()` turns true; both are checked after
        each token, so at least one token is made. `on_token(id)` is called
        for each token as soon as it is chosen. Raises ValueError for bad
        sampling values.
        """
        import torch

        if not prompt:
            raise ValueError("the prompt has no tokens")
        max_new_tokens = max(1, min(max_new_tokens, self.window - 1))
        kept = list(prompt)[-(self.window - max_new_tokens):]
        if len(kept) < len(prompt):
            split = None  # its start was cut off: the known start is gone
        prompt = kept
        deadline = None if max_time is None else time.monotonic() + max_time
        sampler = None if sampling is None else \
            Sampler(sampling, seed, prompt, self.vocab, exact_draws=self.precision == "fp32")
        out: list[int] = []
        self._use_threads()
        self._cores.begin()
        with torch.inference_mode():
            logits = self._prefill(prompt, reuse_cache, split)
            if len(prompt) - self.reused > TRIM_AFTER:
                self._trim = True
            while True:
                if eos is not None and len(out) < min_new_tokens:
                    logits[eos] = float("-inf")
                token = int(logits.argmax()) if sampler is None else sampler.pick(logits)
                out.append(token)
                if on_token is not None:
                    on_token(token)
                if (token == eos and len(out) >= min_new_tokens) or len(out) >= max_new_tokens \
                        or should_stop() or (deadline is not None and time.monotonic() >= deadline):
                    self._cores.end()
                    if self._trim:  # a long prompt's working memory: give it back, off the clock
                        _give_back_freed_memory()
                        self._trim = False
                    return out
                if sampler is not None:
                    sampler.saw(token)
                logits = self._advance([token])


@contextlib.contextmanager
def _loading_memory():
    """While weights are converted, glibc maps big temporaries on their own and unmaps them when
    freed (no fragmented heap left behind); afterwards working buffers of up to 32 MB are reused.
    From then on the process keeps at most two malloc heaps (arenas)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        yield  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    # the threads that compute (loader, generation, warm-up) share two heaps instead of one
    # each: glibc keeps what a heap freed, and a heap per thread held ~25 MB more in play
    mallopt(_M_ARENA_MAX, 2)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
_M_ARENA_MAX = -8


def _give_back_freed_memory() -> None:
    """Return the memory freed while converting weights to the system (glibc keeps it otherwise)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:  # else not glibc: nothing to do
        trim(0)


@functools.cache
def _libc():
    """The C library (glibc on Linux), or None. Opened by its usual name first:
    `ctypes.util.find_library` runs `ldconfig -p` in a subprocess (~30 ms each time)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


class Sampler:
    """Chooses each next token like transformers' sampling, with less work per token."""

    def __init__(self, sampling, seed: int | None, context: Sequence[int], vocab: int,
                 exact_draws: bool = True):
        """`exact_draws`: draw as transformers does (one number per vocabulary entry), so that
        fp32 logits give transformers' very tokens; otherwise draw once among the k candidates."""
        import torch

        s = sampling
        if not s.temperature > 0:
            raise ValueError(f"temperature must be a positive number, not {s.temperature}")
        if not 0 < s.top_p <= 1:
            raise ValueError(f"top_p must be above 0 and at most 1, not {s.top_p}")
        if s.top_k < 0 or s.repetition_penalty <= 0 or s.no_repeat_ngram_size < 0:
            raise ValueError("top_k and no_repeat_ngram_size must be 0 or more and "
                             "repetition_penalty above 0")
        self.temperature, self.top_p, self.penalty = s.temperature, s.top_p, s.repetition_penalty
        self.k = s.top_k if 0 < s.top_k < vocab else vocab
        self.vocab, self.exact_draws = vocab, exact_draws
        self.n = s.no_repeat_ngram_size
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.history = list(context)
        self.seen = set(self.history)
        self._seen_ids = torch.tensor(sorted(self.seen), dtype=torch.long)
        self._new_seen: list[int] = []
        self.ngrams: dict[tuple[int, ...], set[int]] = {}
        if self.n:
            for i in range(len(self.history) - self.n + 1):
                self._add_ngram(i)

    def _add_ngram(self, i: int) -> None:
        gram = self.history[i:i + self.n]
        self.ngrams.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def saw(self, token: int) -> None:
        """Record a chosen token (it is penalized and counts for n-grams from now on)."""
        self.history.append(token)
        if token not in self.seen:
            self.seen.add(token)
            self._new_seen.append(token)
        if self.n and len(self.history) >= self.n:
            self._add_ngram(len(self.history) - self.n)

    def pick(self, logits) -> int:
        """The next token from the last position's logits (a 1-D float tensor, changed in place)."""
        import torch

        if self.penalty != 1.0:
            if self._new_seen:
                self._seen_ids = torch.cat([self._seen_ids, torch.tensor(self._new_seen, dtype=torch.long)])
                self._new_seen = []
            ids = self._seen_ids.to(logits.device)
            score = logits.index_select(0, ids)
            logits.index_copy_(0, ids, torch.where(score < 0, score * self.penalty, score / self.penalty))
        if self.n and len(self.history) >= self.n - 1:
            banned = self.ngrams.get(tuple(self.history[len(self.history) - self.n + 1:]))
            if banned:
                logits[list(banned)] = float("-inf")
        values, indices = torch.topk(logits, self.k)
        probs = torch.softmax(values / self.temperature, dim=0)
        if self.top_p < 1.0:
            before = probs.cumsum(0) - probs  # the chance of the likelier tokens
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        if self.exact_draws:
            # torch.multinomial over the whole vocabulary (what transformers does) draws one Exp(1)
            # number per token and takes the largest p / q: drawing the same numbers gives the
            # same token for the same seed and logits, for the price of the draws alone
            draws = torch.empty(self.vocab).exponential_(generator=self.generator)
            indices = indices.cpu()
            return int(indices[torch.argmax(probs.cpu() / draws[indices])])
        return int(indices[torch.multinomial(probs.cpu(), 1, generator=self.generator)])


# --- backends ----------------------------------------------------------------------------

def _lean_ok(config, architecture: str) -> bool:
    """Whether the lean GPT-2 forward computes exactly what this model's own forward does."""
    return (getattr(config, "model_type", None) == "gpt2" and architecture == "GPT2LMHeadModel"
            and config.activation_function in _GELU and config.scale_attn_weights
            and not config.scale_attn_by_inverse_layer_idx and not config.reorder_and_upcast_attn
            and not config.add_cross_attention)


_DENSE = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # a block's layers, in order


def _int8_layout(config) -> dict:
    """Every tensor of a GPT-2's int8 conversion as `_Gpt2` uses it: {name: (dtype, shape)} in
    safetensors' dtype names (what `int8_cache` stores and checks)."""
    width, vocab = config.n_embd, config.vocab_size
    inner = getattr(config, "n_inner", None) or 4 * width
    layout = {}
    for i in range(config.n_layer):
        for part in ("ln_1", "ln_2"):
            layout[f"h.{i}.{part}.weight"] = layout[f"h.{i}.{part}.bias"] = ("F32", (width,))
        for name, rows, cols in zip(_DENSE, (3 * width, width, inner, width), (width, width, width, inner)):
            layout[f"h.{i}.{name}.values"] = ("I8", (rows, cols))
            layout[f"h.{i}.{name}.scales"] = layout[f"h.{i}.{name}.bias"] = ("F32", (rows,))
    layout["ln_f.weight"] = layout["ln_f.bias"] = ("F32", (width,))
    layout["wpe.weight"] = ("F32", (config.n_positions, width))
    layout["head.values"], layout["head.scales"] = ("I8", (vocab, width)), ("F32", (vocab,))
    return layout


def _in_parallel(jobs: list[Callable], workers: int) -> list:
    """The results of `jobs` (functions of no argument), run on up to `workers` threads at once
    (torch releases the GIL in its kernels), each in inference mode; torch's own threads are
    shared out between them meanwhile."""
    import torch

    if workers <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    def run(job):
        with torch.inference_mode():
            return job()

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // workers))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="storyteller-convert") as pool:
            futures = [pool.submit(run, job) for job in jobs]
            return [future.result() for future in futures]  # the pool waits for all, even on an error
    finally:
        torch.set_num_threads(before)


class _Gpt2:
    """GPT-2's forward pass over converted weights, with a preallocated key/value cache."""

    kind = "lean-gpt2"

    def __init__(self, config, fetch, precision: str, device, window: int, tied: bool = True,
                 embedding_file: tuple[str, str] | None = None, cached=None, workers: int = 1):
        """`fetch(name, rows=None)` gives a weight by its GPT-2 name ("h.0.attn.c_attn.weight").
        `embedding_file` (the safetensors file and the embedding's name in it): in int8 on the CPU,
        the rows of the tokens met are read from there as needed (`RowFile`) rather than kept.
        `cached`: an `int8_cache.Reader` of this model's int8 conversion (in `_int8_layout`), whose
        tensors are used as they are and only packed (raises `int8_cache.Damaged` when one is not
        what was written). `workers`: how many layers are converted and packed at once (threads)."""
        import torch

        act = formats.dtype_of(precision)
        self.act, self.device = act, device
        # int8 on the CPU from a file: the embedding's rows are read from it as needed, and the
        # layers' biases are kept for the int8 cache (all that is decided here, once)
        from_file = precision == "int8" and embedding_file is not None and device.type == "cpu"
        if cached is not None and not from_file:
            raise ValueError("a cached int8 conversion needs int8 on the CPU and the embedding's file")
        self.heads, self.width, self.eps = config.n_head, config.n_embd, config.layer_norm_epsilon
        self.gelu = _GELU[config.activation_function]

        def get(name):
            return cached.get(name) if cached is not None else fetch(name).to(device)

        def kept(name):
            """A tensor used as it is. In int8 a copy: safetensors gives views of the file's memory
            map, and a file cut short in place while the game runs would kill it (SIGBUS) when
            touched (fp32 keeps the views: the model is not copied at all)."""
            tensor = get(name).to(act)
            return tensor.clone() if precision == "int8" else tensor

        def norm(name):
            return kept(name + ".weight"), kept(name + ".bias")

        def dense(name):  # GPT-2's Conv1D stores (in, out): a Linear wants the transpose
            if cached is not None:
                # the rows read from the cache are let go (int8_weight copies them) before packing
                return formats.int8_linear(formats.int8_weight(cached.get(name + ".values"),
                                                               cached.get(name + ".scales")),
                                           None, kept(name + ".bias"))
            if from_file:  # the bias is kept for `int8_parts`
                bias = self.biases[name] = kept(name + ".bias")
                return formats.linear(get(name + ".weight").t(), bias, precision)
            return formats.linear(get(name + ".weight").t(), get(name + ".bias"), precision)

        def head():
            # int8: the LM head is packed int8 rows; the embedding is read from the file as needed
            # (exact, and no second 39 MB table), or, for a model already in memory, int8 rows with
            # a scale each, from which the tied head is packed
            if cached is not None:
                weight = formats.int8_weight(cached.get("head.values"), cached.get("head.scales"))
                return None, None, formats.int8_linear(weight)
            wte, scales = self._table(fetch, "wte.weight", config.vocab_size, precision)
            rows, row_scales = (wte, scales) if tied else \
                self._table(fetch, "lm_head.weight", config.vocab_size, precision)
            if precision == "int8":
                return wte, scales, formats.int8_linear(rows, row_scales)
            return wte, scales, formats.linear(rows, None, precision)  # shares the table when tied

        self.biases: dict = {}  # int8: the layers' biases, until the int8 cache is written
        # the biggest first: with two workers, the head on one and the layers on the other
        jobs = [head] + [functools.partial(dense, f"h.{i}.{name}") for i in range(config.n_layer)
                         for name in _DENSE]
        done = _in_parallel(jobs, workers)
        (self.wte, self.wte_scales, self.head), denses = done[0], done[1:]
        self.layers = [
            (norm(f"h.{i}.ln_1"), *denses[4 * i:4 * i + 2], norm(f"h.{i}.ln_2"), *denses[4 * i + 2:4 * i + 4])
            for i in range(config.n_layer)]
        self.ln_f = norm("ln_f")
        self.wpe = kept("wpe.weight")
        self.head_name = "wte.weight" if tied else "lm_head.weight"  # the rows the LM head is made of
        self.rows = None
        if from_file:
            self.rows = RowFile(*embedding_file, (config.vocab_size, self.width))
            self.wte = self.wte_scales = None
        # the key/value cache, in the activations' dtype (fp32 in int8): torch's CPU attention over
        # a bf16 cache was the slowest part of a token at long contexts (see docs/performance.md);
        # (layers, 1, heads, window, dim)
        self.kv = act
        self._shape = (len(self.layers), 1, self.heads, window, self.width // self.heads)
        self.keys, self.values = self.new_cache()

    def new_cache(self):
        """An empty key/value cache for the whole window: (keys, values), left uninitialised: a
        position is always written before it is read (attention reads the cached positions
        only), and memory the size of a window comes straight from the system, so its pages
        are only used as they are written (`torch.zeros` would write them all at once: 37 MB
        for distilgpt2 in fp32, however short the story)."""
        import torch

        return (torch.empty(self._shape, dtype=self.kv, device=self.device),
                torch.empty(self._shape, dtype=self.kv, device=self.device))

    def int8_parts(self, rows_of):
        """(name, chunks) of every tensor in `_int8_layout` (for `int8_cache.write`): the int8 rows
        quantized again, as `__init__` did, from the model file (`rows_of(name)`: a `RowFile` of
        that weight), `HEAD_ROWS` rows at a time (the same numbers: each row is quantized on its
        own; unpacking the packed layers instead would hold tens of MB more at once); the rest
        as the pass uses them. The biases kept for this are let go at the end."""
        import torch

        def quantized(name, source, transposed):
            table = rows_of(source)
            rows = table.width if transposed else table.rows  # a block's layer is stored (in, out)
            scales = torch.empty(rows)  # one tensor: small ones kept one by one fragment the heap

            def values():
                matrix = table.span(0, table.rows) if transposed else None  # a block's: a few MB
                for start in range(0, rows, HEAD_ROWS):
                    end = min(rows, start + HEAD_ROWS)
                    part = matrix[:, start:end].t() if transposed else table.span(start, end)
                    chunk, scales[start:end] = formats.quantize_rows(part)
                    yield chunk

            yield name + ".values", values()
            yield name + ".scales", [scales]  # filled as the values are written

        for i, (ln1, _, _, ln2, _, _) in enumerate(self.layers):
            for part, (weight, bias) in (("ln_1", ln1), ("ln_2", ln2)):
                yield f"h.{i}.{part}.weight", [weight]
                yield f"h.{i}.{part}.bias", [bias]
            for name in _DENSE:
                yield from quantized(f"h.{i}.{name}", f"h.{i}.{name}.weight", True)
                yield f"h.{i}.{name}.bias", [self.biases[f"h.{i}.{name}"]]
        yield "ln_f.weight", [self.ln_f[0]]
        yield "ln_f.bias", [self.ln_f[1]]
        yield "wpe.weight", [self.wpe]
        yield from quantized("head", self.head_name, False)
        self.biases = {}
        _give_back_freed_memory()  # the temporaries' memory (only reached once all was written)

    def _table(self, fetch, name: str, vocab: int, precision: str):
        """A (vocab, width) matrix read in slices of rows: (int8 rows, their scales) in int8,
        else (the matrix in the activation dtype, None)."""
        import torch

        if precision == "int8":
            table = torch.empty(vocab, self.width, dtype=torch.int8, device=self.device)
            scales = torch.empty(vocab, device=self.device)
        else:
            table, scales = torch.empty(vocab, self.width, dtype=self.act, device=self.device), None
        for start in range(0, vocab, TABLE_ROWS):
            end = min(vocab, start + TABLE_ROWS)
            rows = fetch(name, (start, end)).to(self.device)
            if scales is None:
                table[start:end] = rows
            else:
                table[start:end], scales[start:end] = formats.quantize_rows(rows)
        return table, scales

    def truncate(self, n: int) -> None:
        pass  # positions past the cached length are simply overwritten

    def forward(self, ids: list[int], start: int, all_logits: bool = False):
        import torch
        import torch.nn.functional as F

        n, end, width, heads = len(ids), start + len(ids), self.width, self.heads
        if end > self.keys.shape[3]:
            raise ValueError(f"{end} tokens do not fit the {self.keys.shape[3]}-token window")
        tokens = torch.tensor(ids, device=self.device)
        positions = torch.arange(start, end, device=self.device)
        if self.rows is not None:
            h = self.rows.read(ids).to(self.act)
        else:
            h = self.wte[tokens].to(self.act)
            if self.wte_scales is not None:
                h = h * self.wte_scales[tokens].unsqueeze(1)
        h = h + self.wpe[positions]
        mask = None
        if n > 1 and start > 0:  # the new tokens see the whole cached prefix and their own past
            mask = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(start)
        causal = n > 1 and start == 0
        for i, (ln1, qkv, proj, ln2, fc, out) in enumerate(self.layers):
            x = F.layer_norm(h, (width,), ln1[0], ln1[1], self.eps)
            q, k, v = qkv(x).view(1, n, 3, heads, -1).permute(2, 0, 3, 1, 4)  # each (1, heads, n, dim)
            self.keys[i, :, :, start:end] = k
            self.values[i, :, :, start:end] = v
            att = F.scaled_dot_product_attention(q, self.keys[i, :, :, :end], self.values[i, :, :, :end],
                                                 attn_mask=mask, is_causal=causal)
            h = h + proj(att[0].transpose(0, 1).reshape(n, width))
            x = F.layer_norm(h, (width,), ln2[0], ln2[1], self.eps)
            h = h + out(F.gelu(fc(x), approximate=self.gelu))
        if not all_logits:
            h = h[-1:]
        logits = self.head(F.layer_norm(h, (width,), self.ln_f[0], self.ln_f[1], self.eps)).float()
        return logits if all_logits else logits[0]


MODEL_FILE_FIX = ("download the model again (`storyteller model pull` and its name) or put a whole "
                  "copy of the file there")
"""How to mend a damaged or cut-short model file, said after what is wrong with it."""


class RowFile:
    """Rows of one 2-D tensor of a safetensors file, read from the file when asked for.

    For the int8 embedding: a prompt meets a few hundred of GPT-2's 50,257 tokens, so reading
    their rows (3 KB each, in the checkpoint's own precision: exact) costs microseconds and saves
    keeping the whole table (39 MB in int8). Reads go through a file descriptor held open
    (`os.pread`), not a memory map: a file cut short while the game runs gives an error naming
    it, never a SIGBUS; a file replaced (a new download) leaves the open one readable.
    """

    _DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}

    def __init__(self, path: str, name: str, shape: tuple[int, int] | None = None):
        """`shape`: what the tensor must be (None: any 2-D float tensor)."""
        import struct

        self.path = path
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            try:
                size = struct.unpack("<Q", os.pread(self._fd, 8, 0))[0]
                entry = json.loads(os.pread(self._fd, size, 8))[name]
            except (struct.error, ValueError, KeyError, TypeError):
                raise ValueError(f"{path} has no readable '{name}' table: {MODEL_FILE_FIX}") from None
            dtype = self._DTYPES.get(entry.get("dtype"))
            found = tuple(entry.get("shape") or ())
            if shape is None and len(found) == 2:
                shape = found
            if dtype is None or shape is None or found != tuple(shape):
                wanted = "a 2-D" if shape is None else f"a {shape[0]} x {shape[1]}"
                raise ValueError(f"{path}: '{name}' is {entry.get('dtype')} {list(found)}, not {wanted} "
                                 f"float table: {MODEL_FILE_FIX}")
            import torch

            self.dtype = getattr(torch, dtype)
            self.row_bytes = shape[1] * torch.empty(0, dtype=self.dtype).element_size()
            self.width, self.rows = shape[1], shape[0]
            self._start = 8 + size + entry["data_offsets"][0]
        except BaseException:
            os.close(self._fd)
            raise

    def span(self, start: int, end: int):
        """Rows `start` to `end` (not included) as a (end - start, width) tensor, read at once."""
        import torch

        if not 0 <= start <= end <= self.rows:
            raise IndexError(f"rows {start} to {end} are outside the {self.rows} rows")
        import mmap

        size = (end - start) * self.row_bytes
        # an anonymous mapping, not the heap: given back whole when freed (no fragmented heap)
        out = mmap.mmap(-1, size) if size else bytearray()
        if os.preadv(self._fd, [out], self._start + start * self.row_bytes) != size:
            raise OSError(f"{self.path} was cut short while the game was running: {MODEL_FILE_FIX}")
        return torch.frombuffer(out, dtype=self.dtype).view(end - start, self.width)

    def read(self, ids: Sequence[int]):
        """The rows of `ids` as a (len(ids), width) tensor in the file's dtype."""
        import torch

        out = bytearray(len(ids) * self.row_bytes)
        view = memoryview(out)
        for i, token in enumerate(ids):
            if not 0 <= token < self.rows:
                raise IndexError(f"token {token} is outside the vocabulary of {self.rows}")
            row = os.pread(self._fd, self.row_bytes, self._start + token * self.row_bytes)
            if len(row) != self.row_bytes:
                raise OSError(f"{self.path} was cut short while the game was running: {MODEL_FILE_FIX}")
            view[i * self.row_bytes:(i + 1) * self.row_bytes] = row
        return torch.frombuffer(out, dtype=self.dtype).view(len(ids), self.width)

    def __del__(self):
        try:
            os.close(self._fd)
        except (OSError, AttributeError, TypeError):
            pass


class _Generic:
    """Any causal LM: its own forward, with a DynamicCache cropped to the reused prefix."""

    kind = "generic"

    def __init__(self, model, precision: str):
        import torch
        from transformers import DynamicCache

        if precision == "int8":
            from torch import nn

            for parent in list(model.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, formats.linear(child.weight, child.bias, "int8"))
        else:
            model.to(formats.dtype_of(precision))
        self.model = model
        self.cache = DynamicCache(config=model.config)
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params
        self._torch = torch

    def truncate(self, n: int) -> None:
        have = self.cache.get_seq_length()
        if have > n:
            self.cache.crop(n - have)  # a negative count: remove that many from the end

    def forward(self, ids: list[int], start: int, all_logits: bool = False):
        torch = self._torch
        tokens = torch.tensor([ids], device=self.model.device)
        kwargs = {self._cache_arg: self.cache, "use_cache": True}
        if self._keep_arg and not all_logits:
            kwargs["logits_to_keep"] = 1
        logits = self.model(input_ids=tokens, **kwargs).logits[0].float()
        return logits if all_logits else logits[-1]
