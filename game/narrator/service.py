"""The Storyteller Spirit's runtime: loading the model and streaming narration.

`NarratorService` owns one causal language model and its tokenizer (default
`distilgpt2`; any hub id or local folder of a causal LM works), run by the fast
generation path (`game.narrator.fastgen`) in the chosen `precision` (see
`game.narrator.precision`): a GPT-2 folder is read straight into it, any other
model is loaded with transformers' `AutoModelForCausalLM`. A GPT-2 folder's
tokenizer is read by `game.narrator.tokenizer` (no transformers import at
all); any other comes from transformers' `AutoTokenizer`. Importing this module
imports neither torch nor transformers: they are imported on the compute thread.

All of the model's work (loading the weights, warm-ups, generations) runs on
one long-lived thread, `game.narrator.compute.COMPUTE`: torch's OpenMP gives
each thread that computes a team of workers of its own, and a second team alive
made decoding a fifth to a third slower on 2 cores (see that module).

Loading (`start()`, on a daemon thread that hands the weights to the compute
thread; a download stays on it) reports through `on_event` with
`Loading`, then `Ready` or `Silent` (called on the loader thread, or on the
compute thread while the weights load: listeners must only hand them on). It tries the
local folder or the local Hugging Face cache first, and only then the hub,
through `game.narrator.hub`, whose short timeouts make an offline machine give
up in seconds. A service that could not load is "silent" with a one-line
`reason`; the game then goes on with authored text.

Generation (`stream()` / `narrate()`, call them from a worker thread) runs the
fast path's decode loop on the compute thread; each token is passed back as it is
made and decoded incrementally, so text arrives as it is written. The loop
checks the cancel event after every token, so a cancel takes effect within one
token. The key/value cache of the last prompt and narration is kept, so the
next turn computes only what changed since (`clear_cache()` drops it). Seeds
make stories reproducible (same seed, model, prompt and settings → same text);
generations are serialized by a lock. Stop strings (default "\\n>", the
player's next action) end the generation and never reach the caller. `narrate`
cleans the reply with `game.narrator.cleaning`, and re-samples once with a
stronger repetition penalty when `cleaning.judge` finds it bad.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

from game.narrator import cleaning, fastgen, hub, precision as formats
from game.narrator.compute import COMPUTE, Job
from game.narrator.tokenizer import Gpt2Tokenizer
from game.sampling import RANGES, Sampling

log = logging.getLogger(__name__)

DEFAULT_MODEL = "distilgpt2"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
PRECISIONS = formats.PRECISIONS
_DTYPE_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
TIMEOUT = 60.0           # wall-clock limit of one generation, seconds
PENALTY_STEP = 0.3       # added to the repetition penalty when re-sampling
# Services that have warmed up. Held strongly, so that a warm-up (on the compute thread) never drops
# the last reference to a model: freeing torch tensors there while Python exits aborts the process.
_WARMING: set[NarratorService] = set()


@atexit.register
def _stop_warming_at_exit() -> None:
    """A warm-up runs on a daemon thread: torch must not be mid-computation there when Python exits
    (the process would abort), so each is stopped and waited for (one chunk at most)."""
    for service in list(_WARMING):
        service.stop_warming()


# Config fields that hold a model's context window, by model family.
_WINDOW_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length", "max_sequence_length")


@dataclass(frozen=True)
class Loading:
    """Loading is under way; `fraction` is download progress 0..1, or None when unknown."""
    message: str
    fraction: float | None = None


@dataclass(frozen=True)
class Ready:
    """The model is loaded: its name, the device it runs on, its context window in tokens."""
    model: str
    device: str
    window: int


@dataclass(frozen=True)
class Silent:
    """The model could not be loaded; `reason` is one line for the player."""
    reason: str


Event = Union[Loading, Ready, Silent]


@dataclass
class Narration:
    """One narrated turn. `text` is cleaned narration, `raw` what the model wrote.

    `resampled` is True when the first reply was judged bad (`resample_reason`
    says why) and this is the second try. `error` is a one-line message when
    generation failed; `text` is then empty or partial.
    """
    text: str = ""
    raw: str = ""
    new_tokens: int = 0
    cancelled: bool = False
    resampled: bool = False
    resample_reason: str | None = None
    error: str | None = None


class NarratorError(Exception):
    """Generation could not run or failed; str() is one line."""


class Narrating:
    """What every narrator does with its `stream()`: narrate one turn, cleaned, re-sampled once
    when bad. `NarratorService` (the local model) and `game.narrator.remote.ServerNarrator`
    (an inference server) share it; each has `stream()` and `timeout`."""

    timeout: float

    def narrate(self, prompt: str, sampling: Sampling, *, seed: int | None = None,
                previous: Sequence[str] = (), stop_strings: Sequence[str] = cleaning.DEFAULT_STOPS,
                on_chunk: Callable[[str], None] | None = None,
                on_restart: Callable[[str], None] | None = None,
                cancel: threading.Event | None = None, timeout: float | None = None,
                messages: Sequence[dict] | None = None, prefix: str | None = None) -> Narration:
        """Narrate one turn: stream, clean, and re-sample once if the reply is bad.

        `on_chunk(text)` gets raw chunks as they stream (stop strings excluded).
        When the first reply is judged bad (`cleaning.judge` against `previous`,
        the recent narrations), `on_restart(reason)` is called (a UI should
        clear the streamed text) and the turn is generated again with the
        repetition penalty raised by 0.3 (capped) and seed+1; the second result
        is kept. Never raises for generation problems: see `Narration.error`.
        `messages` is the same prompt as chat messages (`BuiltPrompt.messages`), for a
        narrator that talks to a chat API; the local model reads `prompt`. `prefix` is the
        prompt's known start (`BuiltPrompt.prefix`, what `warm` computed while the player typed).
        """
        first = self._attempt(prompt, sampling, seed, stop_strings, on_chunk, cancel, timeout, messages,
                              prefix)
        reason = None if first.error or first.cancelled else cleaning.judge(first.text, previous)
        if reason is None:
            return first
        penalty = min(RANGES["repetition_penalty"][2], sampling.repetition_penalty + PENALTY_STEP)
        if on_restart is not None:
            on_restart(reason)
        second = self._attempt(prompt, sampling.with_values(repetition_penalty=penalty),
                               None if seed is None else seed + 1, stop_strings, on_chunk, cancel, timeout,
                               messages, prefix)
        second.resampled, second.resample_reason = True, reason
        return second

    def _attempt(self, prompt, sampling, seed, stop_strings, on_chunk, cancel, timeout,
                 messages=None, prefix=None) -> Narration:
        extra = {} if messages is None else {"messages": messages}
        if prefix:
            extra["prefix"] = prefix
        run = self.stream(prompt, sampling, seed=seed, cancel=cancel, stop_strings=stop_strings,
                          timeout=timeout, **extra)
        error = None
        try:
            for chunk in run:
                if on_chunk is not None:
                    on_chunk(chunk)
        except Exception as exc:  # one line for the game, never a traceback
            log.debug("narration failed", exc_info=True)
            error = _one_line(exc)
        if run.timed_out and error is None:
            limit = self.timeout if timeout is None else timeout
            error = f"the narration took longer than {limit:g} s and was cut short"
        truncated = run.cancelled or run.timed_out or run.new_tokens >= sampling.max_new_tokens
        text = cleaning.clean(run.text, prompt=prompt, stop_strings=stop_strings,
                              truncated=truncated and not run.stopped)
        return Narration(text=text, raw=run.raw, new_tokens=run.new_tokens,
                         cancelled=run.cancelled, error=error)


class NarratorService(Narrating):
    """The text-generation model, loaded once in the background and reused."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
                 precision: str = "auto", on_event: Callable[[Event], None] | None = None,
                 timeout: float = TIMEOUT):
        self.model_name = model
        self.timeout = timeout
        self._want_device, self._want_dtype, self._want_precision = device, dtype, precision
        self._on_event = on_event
        self._status, self._reason = "idle", None
        self._fast = None        # fastgen.FastGenerator once ready
        self._tokenizer = None
        self._device: str | None = None
        self._window: int | None = None
        self._eos: int | None = None
        self._percent: int | None = None  # last download percent reported
        self._settled = threading.Event()
        self._lock = threading.Lock()       # one generation at a time
        self._start_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._generations = 0  # generations waiting for the lock or holding it: warm-ups give way
        self._warm_stop = threading.Event()  # set: the warm-up in progress (if any) stops
        self._known: dict[str, list[int]] = {}  # the known starts of the last warm-up, tokenized
        self._warm_job: Job | None = None

    # --- state -------------------------------------------------------------------
    @property
    def status(self) -> str:
        """'idle' (not started), 'loading', 'ready' or 'silent'."""
        return self._status

    @property
    def reason(self) -> str | None:
        """Why the service is silent (one line), else None."""
        return self._reason

    @property
    def window(self) -> int | None:
        """The model's context window in tokens, read from its config (None until ready)."""
        return self._window

    @property
    def tokenizer(self):
        """The loaded tokenizer (None until ready): a `game.narrator.tokenizer.Gpt2Tokenizer` or a
        transformers one; the game uses only what both have (`encode`, `decode`, `eos_token_id`,
        `pad_token_id`, `model_max_length`)."""
        return self._tokenizer

    @property
    def precision(self) -> str | None:
        """The number format the model runs in ('fp32', 'bf16', 'int8'), once ready."""
        return self._fast.precision if self._fast is not None else None

    @property
    def generator(self):
        """The `fastgen.FastGenerator` (None until ready): tests and the benchmark look inside."""
        return self._fast

    def clear_cache(self) -> None:
        """Forget the cached prompt prefix: the next generation computes its whole prompt."""
        self._warm_stop.set()
        with self._lock:
            if self._fast is not None:
                self._fast.forget()

    def warm(self, prompt: str, ahead: Callable[[], Iterable[str]] | None = None) -> Job | None:
        """Start computing the key/value cache of `prompt`, the known start of a coming prompt,
        on the compute thread (`compute.COMPUTE`; the job is returned, None when the Spirit is
        not ready).

        `ahead`, when given, is called there once `prompt` is done and gives
        prompts that may come instead (the turn that enters another scene), each a
        (prompt, its known start) pair (`BuiltPrompt.text`, `.prefix`) or a prompt alone;
        the first `fastgen.SPARES` of them are computed whole into spare caches, and a
        generation of that prompt takes its spare instead of computing it.

        While the player reads and types, the next turn's prompt is computed up to its
        new part, so that part is all Enter has to wait for. A generation or a newer
        warm-up stops it after the chunk in progress (tens of milliseconds); a failure
        only drops the cache (the next generation computes its whole prompt).
        """
        if self.status != "ready" or self._fast is None or not prompt:
            return None
        self._warm_stop.set()
        stop = self._warm_stop = threading.Event()

        def run() -> None:
            # never wait on the lock for good: its holder may be waiting for a job queued behind
            # this one (a generation sets `stop` before it takes the lock)
            def give_way() -> bool:
                return stop.is_set() or self._generations > 0

            while not self._lock.acquire(timeout=0.02):
                if give_way():
                    return
            try:
                if not give_way():
                    self._warm_now(prompt, ahead, give_way)
            finally:
                self._lock.release()

        _WARMING.add(self)
        job = self._warm_job = COMPUTE.submit(run, "storyteller-warm")
        return job

    @contextlib.contextmanager
    def _generating(self):
        """Hold the lock for a generation. From the moment one asks for it until it lets go,
        any warm-up gives way: the one running stops after its current chunk, and one queued on
        the compute thread meanwhile (`warm` called while this waits) returns at once instead of
        polling for the lock ahead of the generation's job."""
        with self._count_lock:
            self._generations += 1
        try:
            self._warm_stop.set()
            with self._lock:
                yield
        finally:
            with self._count_lock:
                self._generations -= 1

    def _warm_now(self, prompt: str, ahead, stop: Callable[[], bool]) -> None:
        """The warm-up itself (on the compute thread, holding the lock): see `warm`; `stop()`
        says it must give way."""
        try:
            self._known = {}
            self._fast.warm(self._known_start(prompt), should_stop=stop)
        except Exception:  # noqa: BLE001 - the cache is dropped; narration does not depend on it
            self._fast.forget()
            return
        try:
            others = list(ahead()) if ahead is not None and not stop() else []
        except Exception:  # noqa: BLE001 - looking ahead is a bonus: the main cache stays
            log.debug("looking ahead failed", exc_info=True)
            return
        try:
            for slot, other in enumerate(others[:fastgen.SPARES]):
                if stop():
                    break
                text, start = (other, None) if isinstance(other, str) else other
                ids = self._tokenizer.encode(text)
                self._fast.warm_spare(ids, slot, self.split(ids, start), should_stop=stop)
        except Exception:  # noqa: BLE001 - as above
            self._fast.forget()

    def split(self, ids: list[int], prefix: str | None) -> int | None:
        """Where the known start `prefix` ends in a prompt's tokens `ids` (see `fastgen.chunk_ends`):
        the tokens `warm(prefix)` computed, as far as the prompt starts with them."""
        if not prefix:
            return None
        return fastgen.common_prefix(ids, self._known_start(prefix)) or None

    def _known_start(self, prefix: str) -> list[int]:
        """The tokens of a known start, less its last (which may merge with what follows); those of
        the last warm-up (the expected start, the prompts ahead) are kept, so Enter does not
        tokenize them again."""
        if prefix not in self._known:
            if len(self._known) > fastgen.SPARES:  # no warm-up since: keep it small
                self._known.clear()
            self._known[prefix] = self._tokenizer.encode(prefix)[:-1]
        return self._known[prefix]

    def stop_warming(self, timeout: float = 30.0) -> None:
        """Stop the warm-up in progress, if any, and wait for it (it ends after its current chunk)."""
        self._warm_stop.set()
        job = self._warm_job
        if job is not None and not COMPUTE.is_current():
            job.join(timeout)

    @property
    def device(self) -> str | None:
        """'cpu', 'cuda', ... once ready."""
        return self._device

    def listen(self, on_event: Callable[[Event], None] | None) -> None:
        """Send loading events to `on_event` from now on (it is called on the loader or the compute
        thread, never the caller's)."""
        self._on_event = on_event

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (ready or silent); False on timeout."""
        return self._settled.wait(timeout)

    # --- loading -----------------------------------------------------------------
    def start(self) -> None:
        """Load the model on a background thread (only the first call does anything)."""
        with self._start_lock:
            if self._status != "idle":
                return
            self._status = "loading"
        threading.Thread(target=self.load, name="storyteller-load", daemon=True).start()

    def load(self) -> Event:
        """Load the model and return the final event (Ready or Silent): blocks the calling thread,
        which downloads the model if it must; the weights are read on the compute thread."""
        self._status = "loading"
        name = self.model_name
        self._emit(Loading(f"Waking the Storyteller Spirit ({name})..."))
        try:
            fast, tokenizer, config, device = self._load_model(name)  # the model's work: on COMPUTE
            window = _context_window(config, tokenizer)
            eos = tokenizer.eos_token_id
            if eos is None:
                eos = getattr(config, "eos_token_id", None)
                eos = tokenizer.pad_token_id if eos is None else eos
            if isinstance(eos, (list, tuple)):
                eos = eos[0]
        except hub.HubError as error:
            if error.offline:
                return self._silence(f"could not load model '{name}': not in the local cache and "
                                     f"{error} ({hub.PULL_HINT})")
            return self._silence(f"could not load model '{name}': {error}")
        except Exception as error:  # anything at all: the game must go on without the model
            log.debug("loading %s failed", name, exc_info=True)
            return self._silence(f"could not load model '{name}': {_one_line(error)}")
        self._fast, self._tokenizer, self._window, self._eos = fast, tokenizer, window, eos
        self._device = device
        self._status = "ready"
        event = Ready(name, self._device, window)
        self._settled.set()
        self._emit(event)
        return event

    def _load_model(self, name: str):
        """(generator, tokenizer, config, device) from a local folder, the cache, or (last) the hub."""
        if self._want_device not in DEVICES:
            raise ValueError(f"unknown device '{self._want_device}' (use one of: {', '.join(DEVICES)})")
        if self._want_dtype not in DTYPES:
            raise ValueError(f"unknown dtype '{self._want_dtype}' (use one of: {', '.join(DTYPES)})")
        if self._want_precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{self._want_precision}' "
                             f"(use one of: {', '.join(PRECISIONS)})")
        if hub.is_local_model(name):
            folder = Path(name).expanduser()
            if not folder.is_dir():
                raise ValueError(f"there is no folder '{name}' (pass a model folder, or a hub id like distilgpt2)")
            if not (folder / "config.json").is_file():
                raise ValueError(f"'{name}' is not a model folder (it has no config.json)")
            return self._open_weights(str(folder))
        try:
            return self._open_weights(name)
        except OSError:
            from huggingface_hub import try_to_load_from_cache

            if isinstance(try_to_load_from_cache(name, "config.json"), str):
                raise  # it is cached, yet does not load: report that error
        self._emit(Loading(f"Downloading {name} from the Hugging Face hub...", 0.0))
        folder = hub.download(name, on_progress=self._download_progress)
        self._emit(Loading(f"Loading {name}...", 1.0))
        return self._open_weights(str(folder))

    def _open_weights(self, model: str):
        """`_open(model)` on the compute thread (this thread waits for it)."""
        return COMPUTE.call(lambda: self._open(model), "storyteller-weights")

    def _open(self, model: str):
        """Load the tokenizer, the config and the weights into the fast path.

        A GPT-2 with one model.safetensors is read straight into the lean path
        while another thread loads the tokenizer (`Gpt2Tokenizer`, ~0.1 s, or
        transformers' AutoTokenizer when the folder's tokenizer is not plain
        GPT-2); any other model is loaded by AutoModelForCausalLM and wrapped.
        How busy other programs keep the cores while torch is imported decides
        how many threads convert the weights (see `precision.CoreMeter`).
        """
        meter = formats.CoreMeter()
        meter.begin()
        import torch

        meter.end()
        device = self._want_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            self._emit(Loading("CUDA was asked for but no CUDA GPU is available; using the CPU"))
            device = "cpu"
        chosen = self._want_precision
        if chosen == "auto" and self._want_dtype != "auto":
            chosen = _DTYPE_PRECISION[self._want_dtype]  # an explicit dtype is kept as loaded
        folder = Path(model) if Path(model).is_dir() else _cached_folder(model)
        if folder is None or not fastgen.lean_checkpoint(folder):
            tokenizer, config = _tokenizer_and_config(model)
            from transformers import AutoModelForCausalLM

            dtype = "auto" if self._want_dtype == "auto" else getattr(torch, self._want_dtype)
            loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, local_files_only=True)
            fast = fastgen.FastGenerator.from_model(loaded.to(device), chosen, meter=meter)
            if fast.note:
                self._emit(Loading(fast.note))
            return fast, tokenizer, config, device
        loaded: dict = {}

        def load_tokenizer() -> None:
            try:
                tokenizer = Gpt2Tokenizer.from_folder(folder)  # None: not plain GPT-2, transformers reads it
                if tokenizer is None:
                    tokenizer, _ = _tokenizer_and_config(model, config=False)
                loaded["tokenizer"] = tokenizer
            except BaseException as error:
                loaded["error"] = error

        helper = threading.Thread(target=load_tokenizer, name="storyteller-tokenizer", daemon=True)
        helper.start()
        try:
            config = fastgen.checkpoint_config(folder)
            fast = fastgen.FastGenerator.from_checkpoint(folder, config, chosen, device=device, meter=meter)
        finally:  # even when the weights fail (out of memory): a tokenizer thread still loading
            helper.join()  # when Python exits would abort the process ("terminate called ...")
        if "error" in loaded:
            raise loaded["error"]
        if fast.note:
            self._emit(Loading(fast.note))
        return fast, loaded["tokenizer"], config, device

    def _download_progress(self, done: int, total: int) -> None:
        fraction = done / total if total else None
        percent = None if fraction is None else int(fraction * 100)
        if percent is not None and percent == self._percent:
            return  # one event per whole percent is plenty
        self._percent = percent
        self._emit(Loading(f"Downloading {self.model_name}: {hub.format_size(done)}"
                           f" of {hub.format_size(total)}", fraction))

    def _silence(self, reason: str) -> Silent:
        self._status, self._reason = "silent", reason
        event = Silent(reason)
        self._settled.set()
        self._emit(event)
        return event

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not break loading
            log.exception("narrator event listener failed on %r", event)

    # --- generation --------------------------------------------------------------
    def stream(self, prompt: str, sampling: Sampling, *, seed: int | None = None,
               cancel: threading.Event | None = None,
               stop_strings: Sequence[str] = cleaning.DEFAULT_STOPS,
               timeout: float | None = None, min_new_tokens: int = 0,
               prefix: str | None = None) -> "NarrationStream":
        """Start-on-iteration stream of raw text chunks; see `NarrationStream`.

        `min_new_tokens` keeps the model from ending (end-of-text) before that
        many tokens; the benchmark uses it to time a fixed length. `prefix`: the
        prompt's known start (what `warm` computed), if it has one.
        """
        return NarrationStream(self, prompt, sampling, seed, cancel, tuple(stop_strings),
                               self.timeout if timeout is None else timeout, min_new_tokens, prefix)


class NarrationStream:
    """One generation; iterate it (once) for raw text chunks as the model writes.

    Stop strings, and anything after them, are never yielded (text that could
    be the start of one is held back until it is known not to be). Leaving the
    loop early and calling `close()` (or dropping the stream) stops the
    generation and frees the model for the next one. Afterwards: `text` (all yielded text),
    `raw` (everything the model wrote), `new_tokens`, `cancelled`, `stopped`
    (a stop string ended it), `timed_out`, `token_times` (`time.perf_counter()`
    when each token was made) and `reused` (prompt tokens taken from the cache).
    Raises `NarratorError` (one line) when the model is not ready or generation fails.
    """

    def __init__(self, service: NarratorService, prompt: str, sampling: Sampling, seed: int | None,
                 cancel: threading.Event | None, stop_strings: tuple[str, ...], timeout: float,
                 min_new_tokens: int = 0, prefix: str | None = None):
        self._service, self._prompt, self._sampling, self._seed = service, prompt, sampling, seed
        self._prefix = prefix
        self._cancel = cancel or threading.Event()
        self._stops = tuple(s for s in stop_strings if s)
        self._timeout = timeout
        self._min_new_tokens = min_new_tokens
        self.text = self.raw = ""
        self.new_tokens = self.reused = 0
        self.token_times: list[float] = []
        self.cancelled = self.stopped = self.timed_out = False
        self._chunks: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._chunks is None:
            self._chunks = self._run()
        return self._chunks

    def close(self) -> None:
        """Stop the generation now if it is running (also done when the stream is dropped)."""
        if self._chunks is not None:
            self._chunks.close()

    def _run(self) -> Iterator[str]:
        service = self._service
        if service.status != "ready":
            why = f": {service.reason}" if service.reason else ""
            raise NarratorError(f"the Storyteller Spirit is {service.status}{why}")
        with service._generating():
            tokens, job, result, halt = self._begin()
            longest, lead = _stop_lead(self._stops, self._prompt)
            pending = ""
            try:
                for chunk in _decoded(tokens, service.tokenizer, self._timeout + 10):
                    self.raw += chunk
                    pending += chunk
                    seen = lead + pending
                    hit = _first_stop(seen, self._stops, len(lead))
                    if hit >= 0:
                        pending = pending[:max(0, hit - len(lead))]
                        self.stopped = True
                        break
                    keep = min(len(pending), _partial_stop(seen, self._stops))
                    ready, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
                    if ready:
                        lead = (lead + ready)[-(longest - 1):] if longest > 1 else ""
                        self.text += ready
                        yield ready
                    if self._cancel.is_set():
                        break
                if pending and not self._cancel.is_set():
                    self.text += pending
                    yield pending
            except queue.Empty:
                raise NarratorError(f"the model wrote nothing for {self._timeout:g} s; "
                                    "narration abandoned") from None
            finally:
                halt.set()
                job.join(self._timeout)
                self.cancelled = self._cancel.is_set()
                self.timed_out = result.get("timed_out", job.is_alive())  # not done still: stuck past it
                if job.is_alive():
                    COMPUTE.abandon(job)  # a hung model: later work goes to a fresh compute thread
                self.new_tokens, self.reused = len(self.token_times), result.get("reused", 0)
            if "error" in result:
                raise NarratorError(f"generation failed: {_one_line(result['error'])}")

    def _begin(self):
        """Tokenize and start the fast path's decode loop on the compute thread."""
        service, sampling = self._service, self._sampling
        ids = service.tokenizer.encode(self._prompt) or [service._eos]  # empty: start from end-of-text
        room = max(1, service.window - sampling.max_new_tokens)
        split = service.split(ids, self._prefix) if len(ids) <= room else None
        ids = ids[-room:]  # keep the prompt's end if too long
        halt, tokens, result = threading.Event(), queue.Queue(), {}
        times, cancel = self.token_times, self._cancel
        stopped = _stop_seen(self._stops, self._prompt, service.tokenizer)

        def on_token(token: int) -> None:
            times.append(time.perf_counter())
            tokens.put(token)
            if stopped(token):  # ends generation at this token; the reader, paced, trims the text
                halt.set()

        def run() -> None:  # the generation (on COMPUTE): tokens go to the queue, None ends it
            began = time.monotonic()  # the decode loop's own clock starts just after this
            try:
                if halt.is_set():
                    return  # its reader gave up before it started: the lock is not held any more
                service._fast.generate(
                    ids, sampling, seed=self._seed, max_new_tokens=sampling.max_new_tokens,
                    min_new_tokens=self._min_new_tokens, eos=service._eos, on_token=on_token,
                    should_stop=lambda: halt.is_set() or cancel.is_set(), max_time=self._timeout, split=split)
                result["reused"] = service._fast.reused
                result["timed_out"] = time.monotonic() - began >= self._timeout  # its wall-clock limit stopped it
            except BaseException as error:
                result["error"] = error
            finally:
                tokens.put(None)

        return tokens, COMPUTE.submit(run, "storyteller-generate"), result, halt


PACE = 0.025  # after the first piece, text is handed on at most every this many seconds (40 a second)


def _decoded(tokens: queue.Queue, tokenizer, timeout: float, pace: float | None = None) -> Iterator[str]:
    """Text pieces from a queue of token ids (None ends it), each as soon as it is whole.

    Decodes a short window of recent tokens each time, and holds back a piece
    that ends inside a character (byte-level tokens may split one). The first
    piece comes as soon as its token does; after that the tokens that arrived
    are taken together at most every `pace` seconds: a reader woken for every
    token competed with the decode loop for the cores and the GIL (about a
    sixth of the decode speed on 2 cores), and 40 updates a second read the
    same. `pace` 0: every token as it comes. Raises queue.Empty when no token
    arrives for `timeout` seconds.
    """
    pace = PACE if pace is None else pace
    ids: list[int] = []
    start = done = 0  # ids[start:done] is decoded already; ids[done:] is not yet shown
    ended = False
    while not ended:
        batch = [tokens.get(timeout=timeout)]
        with contextlib.suppress(queue.Empty):
            while pace and done and batch[-1] is not None:  # the first piece comes alone
                batch.append(tokens.get_nowait())
        if batch[-1] is None:
            ended, batch = True, batch[:-1]
        ids.extend(batch)
        text = tokenizer.decode(ids[start:], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue  # an unfinished character: wait for its next byte
        shown = tokenizer.decode(ids[start:done], skip_special_tokens=True)
        start, done = done, len(ids)
        if len(text) > len(shown):
            yield text[len(shown):]
            if not ended:
                time.sleep(pace)
    if done < len(ids):
        text = tokenizer.decode(ids[start:], skip_special_tokens=True)
        yield text[len(tokenizer.decode(ids[start:done], skip_special_tokens=True)):]


def _stop_lead(stops: Sequence[str], prompt: str) -> tuple[int, str]:
    """The longest stop string's length, and the prompt's end read together with the new text
    (its last `longest - 1` characters: a stop may span the prompt's end)."""
    longest = max((len(s) for s in stops), default=1)
    return longest, prompt[-(longest - 1):] if longest > 1 else ""


def _stop_seen(stops: Sequence[str], prompt: str, tokenizer) -> Callable[[int], bool]:
    """A check for the generation (on the compute thread): has a stop string just been written (token by token)?

    The reader shows text at most every `PACE` seconds, and a small model writes several tokens
    in that time; this ends generation at the token that completes a stop string instead of
    writing on past it. It decodes only the last few tokens, after the prompt's end (a stop may
    span it), so a token costs microseconds. Any stop string: the reader still trims the text.
    """
    stops = tuple(s for s in stops if s)
    if not stops:
        return lambda token: False
    longest, lead = _stop_lead(stops, prompt)
    window = 4 * longest + 4  # a character is at most 4 byte-level tokens
    ids: list[int] = []

    def seen(token: int) -> bool:
        ids.append(token)
        text = tokenizer.decode(ids[-window:], skip_special_tokens=True)
        if len(ids) > window:
            return _first_stop(text, stops, 0) >= 0
        return _first_stop(lead + text, stops, len(lead)) >= 0

    return seen


def _first_stop(text: str, stops: Sequence[str], old: int) -> int:
    """Where the first stop string in `text` that ends after its first `old` characters starts
    (-1: none). `old` is the prompt's end put before the new text: a stop may span it, but one
    wholly inside it was the prompt's, not the model's."""
    found = [i for i in (text.find(s, max(0, old - len(s) + 1)) for s in stops) if i >= 0]
    return min(found, default=-1)


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the start of a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


def _tokenizer_and_config(model: str, config: bool = True):
    """The tokenizer (and the config, unless `config` is False) of a folder or cached hub model."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no library chatter or bars over the game screen
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    if len(tokenizer) < 2:  # transformers builds an empty tokenizer when the vocabulary is missing
        raise ValueError(f"'{model}' has no usable tokenizer (vocab.json and merges.txt, or "
                         "tokenizer.json, are missing)")
    return tokenizer, (AutoConfig.from_pretrained(model, local_files_only=True) if config else None)


def _cached_folder(name: str) -> Path | None:
    """The local snapshot folder of a hub model in the Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(name, "config.json")
    return Path(config).parent if isinstance(config, str) else None


def _context_window(config, tokenizer) -> int:
    """The context window: from the model config, else the tokenizer's model_max_length."""
    for name in _WINDOW_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < 1_000_000:  # tokenizers say 1e30 when unknown
        return length
    raise ValueError("its config does not say how long its context window is "
                     f"(none of: {', '.join(_WINDOW_FIELDS)})")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
