"""The Storyteller Spirit's runtime: loading the model and streaming narration.

`NarratorService` owns one `transformers.pipeline("text-generation")` (default
`distilgpt2`; any hub id or local folder of a causal LM works). Importing this
module imports neither torch nor transformers: they are imported by the loader
thread and by generation.

Loading (`start()`, on a daemon thread) reports through `on_event` with
`Loading`, then `Ready` or `Silent` (called on the loader thread). It tries the
local folder or the local Hugging Face cache first, and only then the hub,
through `game.narrator.hub`, whose short timeouts make an offline machine give
up in seconds. A service that could not load is "silent" with a one-line
`reason`; the game then goes on with authored text.

Generation (`stream()` / `narrate()`, call them from a worker thread) runs
`model.generate` on its own thread with a `TextIteratorStreamer`, so text
arrives as it is made; a stopping criterion watches a `threading.Event`, so a
cancel takes effect within one token. Seeds make stories reproducible (same
seed, model, prompt and settings → same text); generations are serialized by
a lock. Stop strings (default "\\n>", the player's next action) end the
generation and never reach the caller. `narrate` cleans the reply with
`game.narrator.cleaning`, and re-samples once with a stronger repetition
penalty when `cleaning.judge` finds it bad.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

from game.narrator import cleaning, hub
from game.sampling import RANGES, Sampling

log = logging.getLogger(__name__)

DEFAULT_MODEL = "distilgpt2"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TIMEOUT = 60.0           # wall-clock limit of one generation, seconds
PENALTY_STEP = 0.3       # added to the repetition penalty when re-sampling
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


class NarratorService:
    """The text-generation model, loaded once in the background and reused."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
                 on_event: Callable[[Event], None] | None = None, timeout: float = TIMEOUT):
        self.model_name = model
        self.timeout = timeout
        self._want_device, self._want_dtype = device, dtype
        self._on_event = on_event
        self._status, self._reason = "idle", None
        self._pipe = None
        self._device: str | None = None
        self._window: int | None = None
        self._eos: int | None = None
        self._percent: int | None = None  # last download percent reported
        self._settled = threading.Event()
        self._lock = threading.Lock()       # one generation at a time
        self._start_lock = threading.Lock()

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
        """The loaded tokenizer (None until ready), for counting prompt tokens."""
        return self._pipe.tokenizer if self._pipe is not None else None

    @property
    def device(self) -> str | None:
        """'cpu', 'cuda', ... once ready."""
        return self._device

    def listen(self, on_event: Callable[[Event], None] | None) -> None:
        """Send loading events to `on_event` from now on (it is called on the loader thread)."""
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
        """Load the model in the calling thread and return the final event (Ready or Silent)."""
        self._status = "loading"
        name = self.model_name
        self._emit(Loading(f"Waking the Storyteller Spirit ({name})..."))
        try:
            pipe = self._load_pipeline(name)
            window = _context_window(pipe.model.config, pipe.tokenizer)
            eos = pipe.tokenizer.eos_token_id
            if eos is None:
                eos = pipe.model.generation_config.eos_token_id or pipe.tokenizer.pad_token_id
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
        self._pipe, self._window, self._eos = pipe, window, eos
        self._device = str(pipe.model.device.type)
        self._status = "ready"
        event = Ready(name, self._device, window)
        self._settled.set()
        self._emit(event)
        return event

    def _load_pipeline(self, name: str):
        """The pipeline from a local folder, the local cache, or (last) a hub download."""
        if self._want_device not in DEVICES:
            raise ValueError(f"unknown device '{self._want_device}' (use one of: {', '.join(DEVICES)})")
        if self._want_dtype not in DTYPES:
            raise ValueError(f"unknown dtype '{self._want_dtype}' (use one of: {', '.join(DTYPES)})")
        if hub.is_local_model(name):
            folder = Path(name).expanduser()
            if not folder.is_dir():
                raise ValueError(f"there is no folder '{name}' (pass a model folder, or a hub id like distilgpt2)")
            if not (folder / "config.json").is_file():
                raise ValueError(f"'{name}' is not a model folder (it has no config.json)")
            return self._pipeline(str(folder))
        try:
            return self._pipeline(name)
        except OSError:
            from huggingface_hub import try_to_load_from_cache

            if isinstance(try_to_load_from_cache(name, "config.json"), str):
                raise  # it is cached, yet does not load: report that error
        self._emit(Loading(f"Downloading {name} from the Hugging Face hub...", 0.0))
        folder = hub.download(name, on_progress=self._download_progress)
        self._emit(Loading(f"Loading {name}...", 1.0))
        return self._pipeline(str(folder))

    def _pipeline(self, model: str):
        import torch
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # no library chatter or bars over the game screen
        hf_logging.disable_progress_bar()
        device = self._want_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            self._emit(Loading("CUDA was asked for but no CUDA GPU is available; using the CPU"))
            device = "cpu"
        dtype = self._want_dtype if self._want_dtype == "auto" else getattr(torch, self._want_dtype)
        return pipeline("text-generation", model=model, device=device, dtype=dtype,
                        local_files_only=True)

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
               timeout: float | None = None) -> "NarrationStream":
        """Start-on-iteration stream of raw text chunks; see `NarrationStream`."""
        return NarrationStream(self, prompt, sampling, seed, cancel, tuple(stop_strings),
                               self.timeout if timeout is None else timeout)

    def narrate(self, prompt: str, sampling: Sampling, *, seed: int | None = None,
                previous: Sequence[str] = (), stop_strings: Sequence[str] = cleaning.DEFAULT_STOPS,
                on_chunk: Callable[[str], None] | None = None,
                on_restart: Callable[[str], None] | None = None,
                cancel: threading.Event | None = None, timeout: float | None = None) -> Narration:
        """Narrate one turn: stream, clean, and re-sample once if the reply is bad.

        `on_chunk(text)` gets raw chunks as they stream (stop strings excluded).
        When the first reply is judged bad (`cleaning.judge` against `previous`,
        the recent narrations), `on_restart(reason)` is called (a UI should
        clear the streamed text) and the turn is generated again with the
        repetition penalty raised by 0.3 (capped) and seed+1; the second result
        is kept. Never raises for generation problems: see `Narration.error`.
        """
        first = self._attempt(prompt, sampling, seed, stop_strings, on_chunk, cancel, timeout)
        reason = None if first.error or first.cancelled else cleaning.judge(first.text, previous)
        if reason is None:
            return first
        penalty = min(RANGES["repetition_penalty"][2], sampling.repetition_penalty + PENALTY_STEP)
        if on_restart is not None:
            on_restart(reason)
        second = self._attempt(prompt, sampling.with_values(repetition_penalty=penalty),
                               None if seed is None else seed + 1, stop_strings, on_chunk, cancel, timeout)
        second.resampled, second.resample_reason = True, reason
        return second

    def _attempt(self, prompt, sampling, seed, stop_strings, on_chunk, cancel, timeout) -> Narration:
        run = self.stream(prompt, sampling, seed=seed, cancel=cancel, stop_strings=stop_strings,
                          timeout=timeout)
        error = None
        try:
            for chunk in run:
                if on_chunk is not None:
                    on_chunk(chunk)
        except Exception as exc:  # one line for the game, never a traceback
            log.debug("narration failed", exc_info=True)
            error = _one_line(exc)
        truncated = run.cancelled or run.timed_out or run.new_tokens >= sampling.max_new_tokens
        text = cleaning.clean(run.text, prompt=prompt, stop_strings=stop_strings,
                              truncated=truncated and not run.stopped)
        return Narration(text=text, raw=run.raw, new_tokens=run.new_tokens,
                         cancelled=run.cancelled, error=error)


class NarrationStream:
    """One generation; iterate it (once) for raw text chunks as the model writes.

    Stop strings, and anything after them, are never yielded (text that could
    be the start of one is held back until it is known not to be). Leaving the
    loop early and calling `close()` (or dropping the stream) stops the
    generation and frees the model for the next one. Afterwards: `text` (all yielded text),
    `raw` (everything the model wrote), `new_tokens`, `cancelled`, `stopped`
    (a stop string ended it), `timed_out`. Raises `NarratorError` (one line)
    when the model is not ready or generation fails.
    """

    def __init__(self, service: NarratorService, prompt: str, sampling: Sampling, seed: int | None,
                 cancel: threading.Event | None, stop_strings: tuple[str, ...], timeout: float):
        self._service, self._prompt, self._sampling, self._seed = service, prompt, sampling, seed
        self._cancel = cancel or threading.Event()
        self._stops = tuple(s for s in stop_strings if s)
        self._timeout = timeout
        self.text = self.raw = ""
        self.new_tokens = 0
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
        with service._lock:
            streamer, thread, result, halt = self._begin()
            started = time.monotonic()
            longest = max((len(s) for s in self._stops), default=1)
            lead = self._prompt[-(longest - 1):] if longest > 1 else ""  # stops may span the prompt's end
            pending = ""
            try:
                for chunk in streamer:
                    self.raw += chunk
                    pending += chunk
                    seen = lead + pending
                    hits = [i for i in (seen.find(s) for s in self._stops) if i >= 0]
                    if hits:
                        pending = pending[:max(0, min(hits) - len(lead))]
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
                thread.join(self._timeout)
                self.cancelled = self._cancel.is_set()
                self.timed_out = time.monotonic() - started >= self._timeout
                self.new_tokens = result.get("new_tokens", 0)
            if "error" in result:
                raise NarratorError(f"generation failed: {_one_line(result['error'])}")

    def _begin(self):
        """Tokenize, seed and start `generate` on its own thread."""
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        service, sampling = self._service, self._sampling
        pipe = service._pipe
        tokenizer, model = pipe.tokenizer, pipe.model
        ids = tokenizer(self._prompt, return_tensors="pt").input_ids
        if ids.shape[-1] == 0:  # an empty prompt: start from the end-of-text token
            ids = torch.tensor([[service._eos]])
        budget = max(1, service.window - sampling.max_new_tokens)
        ids = ids[:, -budget:].to(model.device)  # keep the prompt's end if it is too long
        halt = threading.Event()
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self._timeout + 10)
        kwargs = dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
            do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k,
            top_p=sampling.top_p, repetition_penalty=sampling.repetition_penalty,
            no_repeat_ngram_size=sampling.no_repeat_ngram_size,
            max_new_tokens=sampling.max_new_tokens, pad_token_id=service._eos,
            max_time=self._timeout,
            stopping_criteria=StoppingCriteriaList([_halt_criterion()(halt, self._cancel)]))
        if self._seed is not None:
            torch.manual_seed(self._seed)
        result: dict = {}
        thread = threading.Thread(target=_generate, args=(model, kwargs, result),
                                  name="storyteller-generate", daemon=True)
        thread.start()
        return streamer, thread, result, halt


def _generate(model, kwargs: dict, result: dict) -> None:
    """Body of the generation thread: run generate, record the token count or the error."""
    try:
        output = model.generate(**kwargs)
        result["new_tokens"] = int(output.shape[-1] - kwargs["input_ids"].shape[-1])
    except BaseException as error:
        result["error"] = error
        streamer = kwargs["streamer"]
        streamer.text_queue.put(streamer.stop_signal)  # wake the reader


@functools.cache
def _halt_criterion():
    """The StoppingCriteria class that stops generation when any of its events is set."""
    import torch
    from transformers import StoppingCriteria

    class Halt(StoppingCriteria):
        def __init__(self, *events: threading.Event):
            self.events = events

        def __call__(self, input_ids, scores, **kwargs):
            stop = any(event.is_set() for event in self.events)
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return Halt


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the start of a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


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
