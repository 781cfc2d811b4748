"""The Storyteller Spirit on an inference server: any OpenAI-compatible HTTP API.

`ServerNarrator` is the second implementation of the narrator interface that
`game.narrator.service.NarratorService` offers (status, events, window, tokenizer,
`stream`, `narrate`, `warm`, ...), so the TUI, plain mode, `narrate` and the bench
do not know which one they talk to. It speaks to llama.cpp's server, llama-cpp-python's,
Ollama, vLLM, SGLang, LM Studio or KoboldCpp through httpx (with httpx-sse for the
streamed replies); neither torch nor transformers is imported on this path (unless
settings name a local tokenizer for counting).

Loading (`load()`, or `start()` on a thread) asks the server, in order:

* `GET /v1/models`: the model (the configured one, which must be listed, else the
  only or first one), vLLM's `max_model_len`, llama.cpp's `meta`;
* llama.cpp's `GET /props`: the running context size and the chat template;
* a tokenize endpoint, tried in order: llama-cpp-python `POST /extras/tokenize`,
  llama.cpp `POST /tokenize` (`content`), vLLM/SGLang `POST /tokenize` (`prompt`).

The window is the server's (or the settings' `window`, the smaller of the two when
both are known); the counts are the server's tokenizer's, else a local Hugging Face
tokenizer named in settings, else a conservative bound (one token per UTF-8 byte,
plus one), which `describe()` says. `api_style` auto picks chat when the server
reports a chat template (llama.cpp's /props), else completion.

Every failure becomes one line (`NarratorError`, `Narration.error` or the `Silent`
reason) that never holds the API key; a narrator that could not load tries again
when the next turn asks (`can_retry`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from game.narrator import cleaning
from game.narrator.service import (Event, Loading, Narrating, NarratorError, Ready, Silent, _one_line,
                                   _partial_stop)
from game.safe_text import inert
from game.sampling import Sampling

log = logging.getLogger(__name__)

API_STYLES = ("auto", "completion", "chat")
DEFAULT_KEY_ENV = "STORYTELLER_API_KEY"
DEFAULT_TIMEOUT = 60.0
ASSUMED_WINDOW = 2048      # when neither the server nor the settings say
CHAT_RESERVE = 64          # tokens kept free for what a chat template adds around the messages...
CHAT_PER_MESSAGE = 8       # ... plus this many per message (role markers, separators)
CONNECT_TIMEOUT = 5.0
MAX_BODY_BYTES = 4_000_000  # a JSON answer larger than this is not read
REPLY_BYTES_PER_TOKEN = 64  # a streamed reply larger than this per token asked for (+ 16 KB) is cut
WIRE_BYTES_PER_TOKEN = 4096  # ... and a stream larger than this per token (+ 1 MB), JSON and all
BACKOFF_DEFAULT = 10.0     # seconds to wait after an HTTP 429 that does not say how long
BACKOFF_MAX = 300.0
POLL = 0.05                # how often the streaming loop looks at the cancel event
PROBE_WORDS = 100_000      # the oversized prompt that makes llama-cpp-python name its window
KEY_ENV_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# What each kind of server takes besides the OpenAI basics (temperature, top_p, max_tokens,
# seed, stop): sampling name -> request field.
_EXTRAS = {
    "llama-cpp-python": {"top_k": "top_k", "repetition_penalty": "repeat_penalty"},
    "llama.cpp": {"top_k": "top_k", "repetition_penalty": "repeat_penalty"},
    "vllm": {"top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    "openai-compatible": {},
}
# Sampling values beyond the OpenAI basics, and the value at which each does nothing.
_OFF = {"top_k": 0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
_MIN_TOKENS = {"llama-cpp-python": "min_tokens", "vllm": "min_tokens"}


class ServerError(NarratorError, ValueError):
    """A server failure, one line; a ValueError too, so a turn that cannot be prepared
    (the counts come from the server) is told in one line like any other."""


@dataclass(frozen=True)
class ServerConfig:
    """Where and how to reach the server (the settings' `server:` section, or --server)."""

    url: str
    model: str | None = None
    api_style: str = "auto"
    window: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    api_key_env: str = DEFAULT_KEY_ENV
    tokenizer: str | None = None  # a local Hugging Face tokenizer, when the server cannot count

    def __post_init__(self):
        url = (self.url or "").strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the server address {self.url!r} is not an http:// or https:// address; "
                             "write it like http://127.0.0.1:8080/v1")
        object.__setattr__(self, "url", url)
        if self.api_style not in API_STYLES:
            raise ValueError(f"api_style is {self.api_style!r}; choose one of: {', '.join(API_STYLES)}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or not 16 <= self.window <= 10_000_000):
            raise ValueError(f"window is {self.window!r}; it must be null (ask the server) or a whole "
                             "number of tokens, at least 16")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 1 <= self.timeout <= 3600:
            raise ValueError(f"timeout is {self.timeout!r}; it must be a number of seconds from 1 to 3600")
        if not isinstance(self.api_key_env, str) or not KEY_ENV_PATTERN.fullmatch(self.api_key_env):
            raise ValueError(f"api_key_env is {self.api_key_env!r}; it must be the NAME of an environment "
                             "variable (letters, digits, _), such as STORYTELLER_API_KEY; the key itself "
                             "never goes in the settings file")
        for name in ("model", "tokenizer"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\n" in value):
                raise ValueError(f"{name} is {value!r}; it must be null or a name on one line")

    @property
    def root(self) -> str:
        """The server's address without the OpenAI /v1 (where /props, /tokenize live)."""
        return self.url[:-3] if self.url.endswith("/v1") else self.url


class _ServerCounter:
    """Counts with the server's own tokenizer through its tokenize endpoint."""

    def __init__(self, narrator: "ServerNarrator", path: str, body: Callable[[str], dict]):
        self._narrator, self.path, self._body = narrator, path, body
        self._cache: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        with self._lock:
            ids = self._cache.get(text)
        if ids is None:
            answer = self._narrator._post_json(self._narrator.config.root + self.path, self._body(text),
                                               "counting tokens")
            ids = answer.get("tokens") if isinstance(answer, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ServerError(f"the server's {self.path} answer has no token list")
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[text] = ids
        return list(ids)


class _LocalCounter:
    """Counts with a local Hugging Face tokenizer (settings `tokenizer:`)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self._tokenizer(text).input_ids


class _Bound:
    """No way to count: one token per UTF-8 byte, plus one (a start token). No tokenizer
    in use makes more tokens than that, so a prompt so counted never overflows."""

    def encode(self, text: str) -> list[int]:
        return [0] * (len(text.encode("utf-8")) + 1)


class ServerNarrator(Narrating):
    """The narrator on an OpenAI-compatible server; the same interface as NarratorService."""

    can_retry = True  # a failed load is tried again when the next turn asks

    def __init__(self, config: ServerConfig, *, on_event: Callable[[Event], None] | None = None):
        self.config = config
        self.timeout = float(config.timeout)
        self._on_event = on_event
        self._status, self._reason = "idle", None
        self._model: str | None = config.model
        self._models: list[str] = []
        self._window: int | None = None
        self._counter = None
        self._kind = "openai-compatible"
        self.api_style: str | None = None     # "completion" or "chat", once ready
        self.api_reason = ""
        self.window_source = ""
        self.count_source = ""
        self.notes: list[str] = []            # what the last request could not send (see notes_for)
        self._client = None
        self._settled = threading.Event()
        self._start_lock = threading.Lock()
        self._busy_until = 0.0

    # --- the narrator interface ------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self._model or self.config.model or "(the server's model)"

    @property
    def status(self) -> str:
        return self._status

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def window(self) -> int | None:
        return self._window

    @property
    def tokenizer(self):
        return self._counter

    @property
    def device(self) -> str:
        return f"server {urlsplit(self.config.url).netloc}"

    precision = None
    generator = None

    @property
    def prompt_reserve(self) -> int:
        """Tokens of the window the prompt must leave free besides the reply (chat templates)."""
        return CHAT_RESERVE if self.api_style == "chat" else 0

    def chat_overhead(self, messages: Sequence[dict]) -> int:
        """Tokens a chat template may add around `messages` (0 for the completion API): the
        prompt's count plus this plus the reply must fit the window."""
        return CHAT_RESERVE + CHAT_PER_MESSAGE * len(messages) if self.api_style == "chat" else 0

    computes_ahead = False  # TurnNarrator.warm builds no prompt for it: nothing is computed ahead

    def warm(self, prompt: str, ahead=None):
        return None  # the server keeps its own prompt cache (and nothing is computed ahead)

    def clear_cache(self) -> None:
        pass

    def stop_warming(self, timeout: float = 30.0) -> None:
        pass

    def listen(self, on_event: Callable[[Event], None] | None) -> None:
        self._on_event = on_event

    def wait(self, timeout: float | None = None) -> bool:
        return self._settled.wait(timeout)

    def start(self) -> None:
        """Connect on a background thread; again after a failure (the server may be back)."""
        with self._start_lock:
            if self._status not in ("idle", "silent"):
                return
            self._status = "loading"
            self._settled.clear()
        threading.Thread(target=self.load, name="storyteller-server", daemon=True).start()

    def unsent(self, sampling: Sampling) -> list[str]:
        """The sampling values that are in use (not at their 'off' value) and that this kind of
        server does not take, so they are not sent."""
        extras = _EXTRAS[self._kind]
        return [name for name, off in _OFF.items() if name not in extras and getattr(sampling, name) != off]

    def notes_for(self, sampling: Sampling) -> list[str]:
        """One sentence naming the values `sampling` sets that this server cannot take (front ends
        say it once); [] when it takes them all."""
        names = self.unsent(sampling)
        if not names:
            return []
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        return [f"This server ({self._kind}) does not take {listed}: the personality's "
                f"value{'s' if len(names) > 1 else ''} for {'them' if len(names) > 1 else 'it'} "
                "cannot be used."]

    def describe(self) -> str:
        """One line for the inspector: server, model, API style, window and how tokens are counted."""
        if self._status != "ready":
            return f"server {self.config.url}: {self._status}" + (f" ({self._reason})" if self._reason else "")
        line = (f"server {self.config.url}, model {self.model_name}: {self.api_style} API ({self.api_reason}); "
                f"window {self._window} tokens ({self.window_source}); counts: {self.count_source}")
        if self.api_style == "chat":
            line += (f"; kept free for the chat template: {CHAT_RESERVE} tokens + {CHAT_PER_MESSAGE} per "
                     "message")
        return " ".join([line] + self.notes)

    def log_record(self) -> dict:
        """What the context log says about the narrator (never the API key)."""
        return {"server": self.config.url, "model": self.model_name, "api_style": self.api_style,
                "window_source": self.window_source, "counts": self.count_source}

    # --- loading ---------------------------------------------------------------------
    def load(self) -> Event:
        """Ask the server for its model, window, tokenizer and chat template (in this thread)."""
        self._status = "loading"
        self._settled.clear()
        self._emit(Loading(f"Reaching the Storyteller Spirit at {self.config.url}..."))
        try:
            self._connect()
        except Exception as error:  # noqa: BLE001 - every failure is one line for the player
            log.debug("connecting to %s failed", self.config.url, exc_info=True)
            reason = self._scrub(_one_line(error) if isinstance(error, NarratorError) else self._explain(error))
            self._status, self._reason = "silent", reason
            self._settled.set()
            event = Silent(reason)
            self._emit(event)
            return event
        self._status, self._reason = "ready", None
        event = Ready(self.model_name, self.device, self._window)
        self._settled.set()
        self._emit(event)
        return event

    def _connect(self) -> None:
        import httpx

        config = self.config
        if self._client is None:
            headers = {"Accept": "application/json"}
            key = os.environ.get(config.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key.strip()}"
            self._client = httpx.Client(headers=headers, follow_redirects=False,
                                        timeout=httpx.Timeout(config.timeout, connect=CONNECT_TIMEOUT))
        listing = self._get_json(config.url + "/models", "listing the models")
        entries = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            raise ServerError(f"{config.url}/models did not list models: is {config.url} an OpenAI-compatible "
                              "base URL? It usually ends in /v1")
        models = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        self._models = [e["id"] for e in models]
        if not models:
            raise ServerError(f"the server at {config.url} serves no model yet")
        if config.model is not None and config.model not in self._models:
            raise ServerError(f"the server has no model '{inert(config.model)}'; it has: "
                              f"{', '.join(inert(m) for m in self._models[:20])}")
        entry = next(e for e in models if config.model is None or e["id"] == config.model)
        self._model = entry["id"]
        owned = str(entry.get("owned_by", "")).lower()
        if owned in ("vllm", "sglang"):
            self._kind = "vllm"

        served, source, template = self._server_window(entry)
        self._counter, self.count_source = self._pick_counter()
        if self._kind == "vllm" and served is None and isinstance(getattr(self, "_vllm_window", None), int):
            served, source = self._vllm_window, "vLLM /tokenize max_model_len"
        if self._kind == "llama-cpp-python" and served is None:
            served = self._probe_window()
            source = "llama-cpp-python's answer to an oversized prompt"
        if config.window is not None and served is not None:
            self._window = min(config.window, served)
            self.window_source = (f"settings, within the server's {served}" if config.window <= served
                                  else f"{source}; the settings' {config.window} is more than it has")
        elif served is not None:
            self._window, self.window_source = served, source
        elif config.window is not None:
            self._window, self.window_source = config.window, "settings"
        else:
            self._window = ASSUMED_WINDOW
            self.window_source = (f"ASSUMED: the server does not say its window; {ASSUMED_WINDOW} is a guess, "
                                  "set server window in the settings")

        if config.api_style != "auto":
            self.api_style, self.api_reason = config.api_style, "set in the settings"
        elif template:
            self.api_style, self.api_reason = "chat", "auto: the server reports a chat template"
        else:
            self.api_style, self.api_reason = "completion", "auto: the server reports no chat template"

    def _server_window(self, entry: dict) -> tuple[int | None, str, str | None]:
        """(window, where it came from, chat template) from the models entry and llama.cpp's /props."""
        window, source, template = None, "", None
        if isinstance(entry.get("max_model_len"), int):
            window, source = entry["max_model_len"], "the server's /v1/models max_model_len"
            self._kind = "vllm"
        try:
            props = self._get_json(self.config.root + "/props", "reading /props", quiet=True)
        except ServerError:
            props = None
        if isinstance(props, dict) and ("default_generation_settings" in props or "chat_template" in props):
            self._kind = "llama.cpp"
            settings = props.get("default_generation_settings") or {}
            n_ctx = settings.get("n_ctx", props.get("n_ctx"))
            if isinstance(n_ctx, int) and n_ctx > 0:
                window, source = n_ctx, "llama.cpp /props n_ctx"
            if isinstance(props.get("chat_template"), str) and props["chat_template"].strip():
                template = props["chat_template"]
        meta = entry.get("meta")
        if window is None and isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):
            window, source = meta["n_ctx_train"], "the server's /v1/models meta n_ctx_train"
        return window, source, template

    def _probe_window(self) -> int | None:
        """llama-cpp-python says its context size only when a prompt does not fit: ask with one
        of PROBE_WORDS tokens (it is refused after tokenizing, before any computing)."""
        body = {"model": self._model, "prompt": " a" * PROBE_WORDS, "max_tokens": 1, "stream": False}
        try:
            self._post_json(self.config.url + "/completions", body, "asking the window")
        except ServerError as error:
            return _window_in(str(error))
        return None

    def _pick_counter(self):
        """The server's tokenize endpoint, else the settings' local tokenizer, else the bound."""
        model = self._model
        probes = [("/extras/tokenize", lambda text: {"input": text, "model": model}, "llama-cpp-python"),
                  ("/tokenize", lambda text: {"content": text, "add_special": True}, "llama.cpp"),
                  ("/tokenize", lambda text: {"model": model, "prompt": text}, "vllm")]
        if self._kind == "vllm":
            probes.reverse()
        for path, body, kind in probes:
            try:
                answer = self._post_json(self.config.root + path, body("Hello, world"), "counting", quiet=True)
            except ServerError:
                continue
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if isinstance(tokens, list) and tokens and all(isinstance(t, int) for t in tokens):
                if self._kind == "openai-compatible":
                    self._kind = kind
                if isinstance(answer.get("max_model_len"), int):
                    self._vllm_window = answer["max_model_len"]
                return _ServerCounter(self, path, body), f"the server's tokenizer ({path})"
        if self.config.tokenizer:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.config.tokenizer)
            except Exception as error:  # noqa: BLE001
                raise ServerError(f"the server cannot count tokens and the settings' tokenizer "
                                  f"'{inert(self.config.tokenizer)}' does not load: {_one_line(error)}") from None
            return _LocalCounter(tokenizer), f"the local tokenizer '{self.config.tokenizer}' (settings)"
        return _Bound(), ("AN UPPER BOUND (1 token per byte): the server has no tokenize endpoint; "
                          "name the model's tokenizer in the settings' server tokenizer for exact counts")

    # --- HTTP ------------------------------------------------------------------------
    def _get_json(self, url: str, doing: str, quiet: bool = False):
        return self._request("GET", url, None, doing, quiet)

    def _post_json(self, url: str, body: dict, doing: str, quiet: bool = False):
        return self._request("POST", url, body, doing, quiet)

    def _request(self, method: str, url: str, body, doing: str, quiet: bool):
        """JSON from one request; ServerError (one line) for anything else. `quiet`: a probe,
        so 4xx answers are plain ServerErrors without the back-off bookkeeping."""
        if self._client is None:
            raise ServerError("the Storyteller Spirit is not connected to its server yet")
        try:
            with self._client.stream(method, url, json=body) as response:
                data = _bounded(response)
                if response.status_code != 200:
                    if quiet:
                        raise ServerError(f"HTTP {response.status_code}")
                    raise ServerError(self._status_line(response.status_code, data, response.headers, url))
        except ServerError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ServerError(self._explain(error)) from None
        try:
            return json.loads(data)
        except ValueError:
            raise ServerError(self._scrub(f"the server's answer to {doing} is not JSON "
                                          f"({_content_type(response.headers)}): {_preview(data)}")) from None

    def _status_line(self, code: int, data: bytes, headers, url: str) -> str:
        """One line for an HTTP error status (never holding the API key, even if the server echoes it)."""
        return self._scrub(self._status_text(code, data, headers, url))

    def _status_text(self, code: int, data: bytes, headers, url: str) -> str:
        detail = _detail(data)
        env = self.config.api_key_env
        if code in (401, 403):
            if os.environ.get(env):
                return (f"the server refused the API key (HTTP {code}): check the key in the environment "
                        f"variable {env}")
            return f"the server wants an API key (HTTP {code}): set the environment variable {env}"
        if code == 404:
            if url.endswith("/models"):
                return (f"{self.config.url}/models was not found (HTTP 404): is {self.config.url} the "
                        "server's OpenAI base URL? It usually ends in /v1")
            if "model" in detail.lower() and self._models:
                return (f"the server has no model '{inert(self.model_name)}' (HTTP 404); it has: "
                        f"{', '.join(inert(m) for m in self._models[:20])}")
            if url.endswith("/chat/completions"):
                return "the server has no chat API (HTTP 404): set the server api_style to completion"
            return f"the server has no {urlsplit(url).path} (HTTP 404){': ' + detail if detail else ''}"
        if code == 429:
            wait = _retry_after(headers)
            self._busy_until = time.monotonic() + wait
            return f"the server is busy (HTTP 429): the Spirit waits {wait:g} s before asking it again"
        if code == 400 and (window := _window_in(detail)):
            if self._window and window < self._window:
                self._window, self.window_source = window, "the server's own error message"
                return (f"the prompt was too long for the server's {window}-token window "
                        "(HTTP 400); the next turn is fitted to it")
        if code >= 500:
            return f"the server failed (HTTP {code}){': ' + detail if detail else ''}"
        return f"the server answered HTTP {code}{': ' + detail if detail else ''}"

    def _explain(self, error: BaseException) -> str:
        """One line for a network-level failure (never holding the API key)."""
        return self._scrub(self._explain_text(error))

    def _explain_text(self, error: BaseException) -> str:
        import httpx

        url, timeout = self.config.url, self.config.timeout
        host = urlsplit(url).netloc
        text = _one_line(error)
        if isinstance(error, httpx.ConnectTimeout):
            return f"the server at {host} did not accept a connection within {CONNECT_TIMEOUT:g} s"
        if isinstance(error, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return f"the server at {host} sent nothing for {timeout:g} s"
        if isinstance(error, httpx.ConnectError):
            if _is_tls(error) or "SSL" in text or "certificate" in text.lower():
                return (f"TLS error talking to {host}: {text} (is the address https:// where the server "
                        "speaks http://, or is its certificate not trusted here?)")
            if "refused" in text.lower():
                return f"cannot reach the server at {url}: connection refused (is it running?)"
            if "name" in text.lower() and ("resolution" in text.lower() or "known" in text.lower()):
                return f"cannot find the server's host '{urlsplit(url).hostname}'"
            return f"cannot reach the server at {url}: {text}"
        if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError)):
            if _is_tls(error):
                return f"TLS error talking to {host}: {text}"
            return f"the server at {host} closed the connection mid-reply ({text})"
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return f"'{url}' is not a usable server address: {text}"
        return f"talking to the server at {host} failed: {text}"

    def _scrub(self, line: str) -> str:
        """Never let the API key into a message."""
        key = os.environ.get(self.config.api_key_env)
        return line.replace(key.strip(), "***") if key and key.strip() else line

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not break loading
            log.exception("narrator event listener failed on %r", event)

    # --- generation ------------------------------------------------------------------
    def stream(self, prompt: str, sampling: Sampling, *, seed: int | None = None,
               cancel: threading.Event | None = None,
               stop_strings: Sequence[str] = cleaning.DEFAULT_STOPS,
               timeout: float | None = None, min_new_tokens: int = 0,
               messages: Sequence[dict] | None = None, prefix: str | None = None) -> "ServerStream":
        """Start-on-iteration stream of raw text chunks from the server; see `ServerStream`.
        `prefix` (the prompt's known start) is not used: a server keeps its own cache."""
        return ServerStream(self, prompt, messages, sampling, seed, cancel, tuple(s for s in stop_strings if s),
                            self.timeout if timeout is None else timeout, min_new_tokens)

    def request_body(self, prompt: str, messages, sampling: Sampling, seed: int | None,
                     stops: tuple[str, ...], min_new_tokens: int) -> tuple[str, dict]:
        """(URL, JSON body) of one streamed completion or chat completion."""
        body: dict = {"model": self._model, "stream": True, "max_tokens": sampling.max_new_tokens,
                      "temperature": sampling.temperature, "top_p": sampling.top_p}
        self.notes = self.notes_for(sampling)
        for name, field in _EXTRAS[self._kind].items():
            body[field] = getattr(sampling, name)
        if seed is not None:
            body["seed"] = seed
        if stops:
            body["stop"] = list(stops[:4])  # the OpenAI API takes four at most; the rest are caught here
        if min_new_tokens and self._kind in _MIN_TOKENS:
            body[_MIN_TOKENS[self._kind]] = min_new_tokens
        elif min_new_tokens and self._kind == "llama.cpp":
            body["ignore_eos"] = True
        if self.api_style == "chat":
            body["messages"] = list(messages) if messages else [{"role": "user", "content": prompt}]
            return self.config.url + "/chat/completions", body
        body["prompt"] = prompt
        return self.config.url + "/completions", body


class ServerStream:
    """One streamed reply; iterate it (once) for raw text chunks as the server sends them.

    The same contract as `NarrationStream`: stop strings (and what follows) are never
    yielded, `close()` or dropping the stream ends it, and afterwards `text`, `raw`,
    `new_tokens`, `cancelled`, `stopped`, `timed_out`, `token_times`, `reused` (always 0)
    say what happened. The HTTP reply is read on its own thread; the loop here looks at
    the cancel event every 50 ms and closes the connection at once when it is set, or when
    the time limit passes. Raises `NarratorError` (one line) when the server fails.
    """

    def __init__(self, narrator: ServerNarrator, prompt: str, messages, sampling: Sampling,
                 seed: int | None, cancel: threading.Event | None, stops: tuple[str, ...], timeout: float,
                 min_new_tokens: int = 0):
        self._narrator, self._prompt, self._messages = narrator, prompt, messages
        self._sampling, self._seed, self._stops = sampling, seed, stops
        self._cancel = cancel or threading.Event()
        self._timeout, self._min_new_tokens = timeout, min_new_tokens
        self.text = self.raw = ""
        self.new_tokens = self.reused = 0
        self.token_times: list[float] = []
        self.cancelled = self.stopped = self.timed_out = False
        self.finish_reason: str | None = None
        self._chunks: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._chunks is None:
            self._chunks = self._run()
        return self._chunks

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()

    def _run(self) -> Iterator[str]:
        narrator = self._narrator
        if narrator.status != "ready":
            why = f": {narrator.reason}" if narrator.reason else ""
            raise NarratorError(f"the Storyteller Spirit is {narrator.status}{why}")
        wait = narrator._busy_until - time.monotonic()
        if wait > 0:
            raise NarratorError(f"the server is busy (HTTP 429): the Spirit waits {wait:.0f} s more "
                                "before asking it again")
        url, body = narrator.request_body(self._prompt, self._messages, self._sampling, self._seed,
                                          self._stops, self._min_new_tokens)
        pieces: queue.Queue = queue.Queue()
        held: dict = {}
        stop = threading.Event()
        reader = threading.Thread(target=self._read, args=(url, body, pieces, held, stop),
                                  name="storyteller-server-stream", daemon=True)
        limit = max(16_384, self._sampling.max_new_tokens * REPLY_BYTES_PER_TOKEN)  # characters of text
        wire_limit = max(1_000_000, self._sampling.max_new_tokens * WIRE_BYTES_PER_TOKEN)  # bytes, events and all
        deadline = time.monotonic() + self._timeout
        longest = max((len(s) for s in self._stops), default=1)
        lead = self._prompt[-(longest - 1):] if longest > 1 else ""
        pending, failure = "", None
        reader.start()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.timed_out = True
                    break
                if self._cancel.is_set():
                    break
                response = held.get("response")
                if response is not None and response.num_bytes_downloaded > wire_limit:
                    failure = ("the server sent far more than was asked "
                               f"({response.num_bytes_downloaded} bytes for {self._sampling.max_new_tokens} "
                               "tokens); the reply was cut")
                    break
                try:
                    item = pieces.get(timeout=min(POLL, left))
                except queue.Empty:
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    failure = item
                    break
                self.token_times.append(time.perf_counter())
                self.new_tokens += 1
                self.raw += item
                if len(self.raw) > limit or self.new_tokens > 4 * self._sampling.max_new_tokens + 16:
                    failure = (f"the server sent far more than was asked ({len(self.raw)} characters in "
                               f"{self.new_tokens} pieces for {self._sampling.max_new_tokens} tokens); "
                               "the reply was cut")
                    break
                pending += item
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
            if pending and failure is None and not self._cancel.is_set() and not self.timed_out:
                self.text += pending
                yield pending
        finally:
            stop.set()
            response = held.get("response")
            if response is not None:
                _hang_up(response)  # the server sees the client gone and stops generating
            reader.join(2 if response is not None else 0.5)  # a reader still waiting for headers is left
            self.cancelled = self._cancel.is_set()
            self.finish_reason = held.get("finish")
            if isinstance(held.get("usage"), int) and not self.cancelled:
                self.new_tokens = held["usage"]
        if failure is not None:
            raise NarratorError(narrator._scrub(failure if isinstance(failure, str) else _one_line(failure)))
        if self.timed_out and not self.raw:
            raise NarratorError(f"the server at {urlsplit(narrator.config.url).netloc} sent nothing for "
                                f"{self._timeout:g} s; the turn goes on without narration")
        if not (self.stopped or self.cancelled or self.timed_out or held.get("done")):
            raise NarratorError("the server ended the reply mid-stream (it may have stopped or crashed)")

    def _read(self, url: str, body: dict, out: queue.Queue, held: dict, stop: threading.Event) -> None:
        """The reader thread: text pieces, then None, or a ServerError, go to `out`."""
        narrator = self._narrator
        chat = narrator.api_style == "chat"
        try:
            from httpx_sse import EventSource

            with narrator._client.stream("POST", url, json=body,
                                         headers={"Accept": "text/event-stream"}) as response:
                held["response"] = response
                if response.status_code != 200:
                    data = _bounded(response)
                    raise ServerError(narrator._status_line(response.status_code, data, response.headers, url))
                if "text/event-stream" not in _content_type(response.headers):
                    self._whole_reply(_bounded(response), response.headers, chat, out, held)
                    return
                for event in EventSource(response).iter_sse():
                    if stop.is_set():
                        return
                    if event.data.strip() == "[DONE]":
                        held["done"] = True
                        break
                    if not event.data.strip():
                        continue
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        raise ServerError(f"the server's stream holds something that is not JSON: "
                                          f"{_preview(event.data.encode())}") from None
                    text = _piece(data, chat, held)
                    if text:
                        out.put(text)
        except BaseException as error:  # noqa: BLE001 - reported to the loop as one line
            if stop.is_set():
                out.put(None)
                return
            if isinstance(error, ServerError):
                out.put(error)
            else:
                log.debug("server stream failed", exc_info=True)
                out.put(ServerError(narrator._explain(error)))
            return
        out.put(None)

    def _whole_reply(self, data: bytes, headers, chat: bool, out: queue.Queue, held: dict) -> None:
        """A server that answered a streamed request with one JSON body (or with garbage)."""
        try:
            answer = json.loads(data)
        except ValueError:
            raise ServerError(f"the server's reply is not JSON ({_content_type(headers)}): "
                              f"{_preview(data)}") from None
        text = _piece(answer, chat, held, whole=True)
        held["done"] = True
        if text:
            out.put(text)
        out.put(None)


# --- small pure helpers ------------------------------------------------------------------

def _piece(data, chat: bool, held: dict, whole: bool = False) -> str:
    """The text in one streamed event (or a whole reply); ServerError when it is not one."""
    if not isinstance(data, dict):
        raise ServerError(f"the server sent {type(data).__name__} where a completion was expected")
    if "error" in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ServerError(f"the server reported an error mid-reply: {_clip(inert(str(message)))}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise ServerError("the server's reply has no 'choices': is this an OpenAI-compatible server?")
    if isinstance(data.get("usage"), dict) and isinstance(data["usage"].get("completion_tokens"), int):
        held["usage"] = data["usage"]["completion_tokens"]
    if not choices:
        return ""
    choice = choices[0] if isinstance(choices[0], dict) else {}
    if choice.get("finish_reason"):
        held["finish"] = choice["finish_reason"]
        held["done"] = True
    if chat:
        part = choice.get("message" if whole else "delta") or {}
        text = part.get("content") if isinstance(part, dict) else None
    else:
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise ServerError("the server's reply holds text that is not a string")
    return text or ""


def _hang_up(response) -> None:
    """Close a streamed response now, from another thread: shutting the socket down wakes the
    reader thread out of a blocked read at once (closing alone may leave it waiting)."""
    import socket

    try:
        network = response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass
    try:
        response.close()
    except Exception:  # noqa: BLE001 - it is being dropped anyway
        pass


def _bounded(response) -> bytes:
    """The body of a (streamed) response, at most MAX_BODY_BYTES."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise ServerError(f"the server's answer is larger than {MAX_BODY_BYTES // 1_000_000} MB; "
                              "it was not read")
    return bytes(data)


def _content_type(headers) -> str:
    return (headers.get("content-type") or "no content type").partition(";")[0].strip()


def _clip(text: str, size: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 1] + "…"


def _preview(data: bytes) -> str:
    return _clip(inert(data[:400].decode("utf-8", "replace"))) or "(empty)"


def _detail(data: bytes) -> str:
    """The message in an error body: OpenAI's error.message, FastAPI's detail, or the text."""
    try:
        body = json.loads(data)
    except ValueError:
        return _preview(data) if data.strip() else ""
    message = body
    if isinstance(body, dict):
        message = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(message, dict):
            message = message.get("message", message)
    return _clip(inert(str(message)))


def _retry_after(headers) -> float:
    value = headers.get("retry-after", "")
    try:
        return min(BACKOFF_MAX, max(1.0, float(value)))
    except ValueError:
        return BACKOFF_DEFAULT


def _window_in(detail: str) -> int | None:
    """The window a server names in a prompt-too-long error (llama.cpp, vLLM, OpenAI wording)."""
    match = re.search(r"(?:context window of|maximum context length is|context size[^0-9]{0,20}|"
                      r"n_ctx[^0-9]{0,5})\s*(\d{2,9})", detail)
    return int(match.group(1)) if match else None


def _is_tls(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLError):
            return True
        error = error.__cause__ or error.__context__
    return False
