"""A real llama.cpp server (llama-cpp-python's `python -m llama_cpp.server`) for tests.

`LlamaServer(gguf).start()` runs the server on 127.0.0.1 on a free port and waits
until it answers `GET /v1/models`; `stop()` ends it (SIGTERM, then SIGKILL). The
fixtures in conftest.py serve the tiny test GPT-2 exported to GGUF with it; tests
that need a server of their own (an API key, one to stop mid-stream) start another.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Jinja chat template served with the tiny model: the system message, then each turn on its lines.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}> {{ message['content'] }}\n"
    "{% else %}{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
)
MODEL_ALIAS = "tiny-gpt2"


def whole_characters_only(model_dir: Path, out: Path) -> Path:
    """A copy of a random-weight GPT-2 folder that never writes a token which is not whole UTF-8.

    Random weights pick GPT-2's byte tokens (pieces of a character) now and then. llama-cpp-python's
    server holds back streamed text from such a piece on, re-decoding everything after it on every
    token (it never becomes valid), so a long reply stalls it for a minute and a closed stream
    goes unnoticed until it ends. Real models write whole characters; so does this copy: the final
    layer norm gets a bias along the all-ones direction (which normalised activations have no part
    of) and those tokens' embeddings point against it, so their logits are about -64.
    """
    import json
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    shutil.copytree(model_dir, out)
    weights = load_file(str(out / "model.safetensors"))
    prefix = "transformer." if "transformer.wte.weight" in weights else ""
    wte = weights[prefix + "wte.weight"]
    unit = np.ones(wte.shape[1], dtype=wte.dtype) / np.sqrt(wte.shape[1])
    weights[prefix + "ln_f.bias"] = 8 * unit
    letters = [*range(33, 127), *range(161, 173), *range(174, 256)]  # GPT-2's bytes -> characters
    chars = letters + [256 + i for i in range(256 - len(letters))]
    byte_of = {chr(c): b for c, b in zip(chars, letters + [b for b in range(256) if b not in letters])}
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    for token, i in vocab.items():
        try:
            bytes(byte_of[c] for c in token).decode("utf-8")
        except (UnicodeDecodeError, KeyError):
            if not (token.startswith("<|") and token.endswith("|>")):
                wte[i] = -8 * unit
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def llama_cpp_missing() -> str | None:
    """Why the llama.cpp server cannot run here (None when it can)."""
    try:
        import llama_cpp  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as error:
        return (f"llama-cpp-python[server] is not installed ({error}); "
                "install the dev extra: pip install -e '.[dev]'")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """One `python -m llama_cpp.server` process serving `model` (a GGUF file)."""

    def __init__(self, model: Path, *, n_ctx: int = 1024, api_key: str | None = None,
                 alias: str = MODEL_ALIAS, extra: tuple[str, ...] = (), log: Path | None = None):
        self.model, self.n_ctx, self.api_key, self.alias, self.extra = Path(model), n_ctx, api_key, alias, extra
        self.port = free_port()
        self.log = log or Path(str(model) + f".server-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ending in /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "LlamaServer":
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
                   "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                   "--model_alias", self.alias, "--n_threads", "1", "--n_threads_batch", "1",
                   "--verbose", "False", "--logits_all", "False", *self.extra]
        if self.api_key is not None:
            command += ["--api_key", self.api_key]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode}: "
                                   f"{self.tail()}")
            if self.answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the llama.cpp server did not answer within {timeout:g} s: {self.tail()}")

    def answers(self) -> bool:
        request = urllib.request.Request(self.url + "/models")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return reply.status == 200 and "data" in json.loads(reply.read())
        except (OSError, ValueError):
            return False

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crashed or unplugged server would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
