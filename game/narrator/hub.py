"""The Hugging Face hub side of the narrator: fetching models and listing the cache.

Owns everything that touches the network or the Hugging Face cache folder:
telling a local model folder from a hub id (`is_local_model`), downloading the
files a text-generation model needs with byte-level progress (`download`), the
`storyteller model pull` / `storyteller model list` commands (`pull`,
`cached_models`, `format_size`). Every hub request is bounded by a short
timeout and never retried, so a machine without network gives up in well under
ten seconds with a one-line `HubError` instead of the library's half-minute of
retries. huggingface_hub and tqdm are imported inside the functions.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Callable, NamedTuple, TextIO

HUB_TIMEOUT = 5.0  # seconds for one hub request (metadata, etag checks)
PULL_HINT = "run `storyteller model pull` when online, or pass --model DIR"
# Files worth fetching besides the weights: config, tokenizer and generation settings.
_SIDE_FILES = re.compile(r"^[^/]+\.(json|txt|model|tiktoken)$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class HubError(Exception):
    """A model could not be fetched from the hub; str() is a one-line reason.

    `offline` is True when the hub could not be reached at all (no network, or
    HF_HUB_OFFLINE set), as opposed to the hub answering "no such model".
    """

    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


class CachedModel(NamedTuple):
    repo_id: str
    size: int  # bytes on disk
    path: Path


def is_local_model(name: str) -> bool:
    """True when `name` means a folder on disk rather than a hub id.

    An existing path is always local; so is anything that cannot be a hub id
    (absolute, starting with '.' or '~', or with more than one '/').
    """
    if Path(name).expanduser().exists():
        return True
    return name.startswith((".", "/", "~")) or not _REPO_ID.match(name)


def format_size(size: float) -> str:
    """Bytes as a short human size: '512 B', '1.5 kB', '353.0 MB', '1.2 GB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def select_files(files: dict[str, int | None]) -> dict[str, int | None]:
    """From a repo listing {path: size}, the files a PyTorch text-generation model needs.

    Top-level config and tokenizer files, plus safetensors weights when the
    repo has them, otherwise `pytorch_model*.bin`. Other formats (TF, Flax,
    ONNX, Core ML, ...) are skipped. Empty when the repo has no PyTorch weights.
    """
    top = {name: size for name, size in files.items() if "/" not in name}
    weights = {n: s for n, s in top.items() if n.endswith(".safetensors")}
    if not weights:
        weights = {n: s for n, s in top.items() if re.fullmatch(r"pytorch_model.*\.bin", n)}
    if not weights:
        return {}
    side = {n: s for n, s in top.items() if _SIDE_FILES.match(n)}
    return {**side, **weights}


def download(name: str, *, on_progress: Callable[[int, int], None] | None = None,
             cache_dir: str | Path | None = None, timeout: float = HUB_TIMEOUT) -> Path:
    """Fetch model `name` into the Hugging Face cache; return its snapshot folder.

    `on_progress(done_bytes, total_bytes)` is called from download threads as
    bytes arrive. Raises `HubError` with a one-line reason on any failure.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    from huggingface_hub.utils import OfflineModeIsEnabled

    try:
        info = HfApi().model_info(name, timeout=timeout, files_metadata=True)
    except OfflineModeIsEnabled:
        raise HubError("the Hugging Face hub is switched off (HF_HUB_OFFLINE is set)", offline=True) from None
    except GatedRepoError:
        raise HubError(f"model '{name}' is gated: accept its terms on huggingface.co, "
                       "then log in with `hf auth login`") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise HubError(f"the Hugging Face hub has no model '{name}' (check the name; "
                       "private models need `hf auth login`)") from None
    except HfHubHTTPError as error:
        raise HubError(f"the Hugging Face hub answered with an error ({_first_line(error)})",
                       offline=True) from None
    except Exception:  # connection refused, DNS failure, timeout: no usable network
        raise HubError("the Hugging Face hub is unreachable", offline=True) from None

    wanted = select_files({s.rfilename: s.size for s in info.siblings or ()})
    if not wanted:
        raise HubError(f"model '{name}' has no PyTorch weights on the hub "
                       "(*.safetensors or pytorch_model.bin)")
    total = sum(size or 0 for size in wanted.values())
    try:
        folder = snapshot_download(
            name, allow_patterns=list(wanted), cache_dir=cache_dir,  # default revision: records refs/main
            etag_timeout=timeout, max_workers=4,
            tqdm_class=_byte_counter(on_progress, total) if on_progress else None)
    except Exception as error:
        raise HubError(f"the download of '{name}' failed ({_first_line(error)})") from None
    if on_progress:
        on_progress(total, total)
    return Path(folder)


def pull(name: str = "distilgpt2", out: TextIO = sys.stderr, cache_dir: str | Path | None = None) -> int:
    """`storyteller model pull NAME`: download a model with a progress line; exit status."""
    if is_local_model(name):
        print(f"error: '{name}' is a folder path, not a hub model id; "
              f"use a folder with --model {name}", file=out)
        return 1
    tty = getattr(out, "isatty", lambda: False)()
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        if tty and percent != shown[0]:
            shown[0] = percent
            out.write(f"\rDownloading {name}: {percent:3d}% "
                      f"({format_size(done)} of {format_size(total)})")
            out.flush()

    print(f"Fetching {name} from the Hugging Face hub...", file=out)
    try:
        folder = download(name, on_progress=progress, cache_dir=cache_dir)
    except HubError as error:
        if tty and shown[0] >= 0:
            out.write("\n")
        hint = " (check the internet connection)" if error.offline else ""
        print(f"error: could not download '{name}': {error}{hint}", file=out)
        return 1
    if tty:
        out.write("\n")
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    print(f"Downloaded {name} ({format_size(size)}) to {folder}", file=out)
    return 0


def cached_models(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Models in the Hugging Face cache as (repo id, size in bytes, path), by name.

    A missing or empty cache is an empty list.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return []
    return sorted((CachedModel(r.repo_id, r.size_on_disk, Path(r.repo_path))
                   for r in info.repos if r.repo_type == "model"), key=lambda m: m.repo_id)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class _NullWriter:
    """Where the counting progress bars 'draw': nowhere."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _byte_counter(on_progress: Callable[[int, int], None], total: int):
    """A tqdm class for snapshot_download that reports downloaded bytes, drawing nothing.

    snapshot_download opens a files bar and two byte bars (network transfer and
    bytes written); progress is the larger byte count, against `total` (the
    sizes listed by the hub) or the bars' own totals when that is unknown.
    """
    from tqdm.std import tqdm

    counts: dict[int, int] = {}
    lock = threading.Lock()

    class ByteCounter(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs.update(file=_NullWriter(), disable=False)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            if self.unit == "B":
                with lock:  # reports stay in order across download threads
                    counts[id(self)] = int(self.n)
                    done = max(counts.values())
                    on_progress(min(done, total) if total else done, total or int(self.total or 0))
            return result

    return ByteCounter

