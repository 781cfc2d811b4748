"""The narrator's int8 conversion of a model, kept on disk so that the next launch only packs it.

Converting distilgpt2 to int8 (reading its 327 MB of fp32 weights and rounding
every row) takes about half a second of a launch; packing the int8 rows for
torch's kernels takes as long again and cannot be kept (the packed form belongs
to the process). So after a model file is converted once, its int8 rows and
their scales, with the biases, layer norms and positions as the lean GPT-2 pass
uses them, are written to `locations.narrator_cache_dir()` as one safetensors
file (85 MB for distilgpt2), and the next launch reads that and only packs.

Soundness: the file's metadata records the model file's identity (its path,
size, mtime_ns, ctime_ns, inode and a SHA-256 of its safetensors header), the
conversion's `FORMAT` and torch's version; every tensor's name, dtype and shape
must be exactly the layout the caller expects, and each tensor's CRC-32 is
checked as it is read. Anything else (a changed, replaced or touched model, a
damaged, truncated or foreign file, another version) and the cache is not used:
the model is converted afresh and the file rewritten. The file is named after
the model file's path, so a model has at most one cache, replaced, never
accumulated; caches whose model file is gone are removed when one is written.

Writing happens after the model is ready, as a job on the narrator's compute
thread (`write_later`, `game.narrator.compute`: it reads and rounds the weights
with torch, and a thread of its own would give torch a second team of workers
beside the narration's), into a temporary file renamed over the old one when complete
(`atomic.replacing`): a process that exits at once waits for it (`atexit`), one
that is killed leaves at most a temporary file, removed by the next write.
Importing this module imports no torch.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

from game.narrator.compute import COMPUTE, Job

log = logging.getLogger(__name__)

FORMAT = "1"  # the conversion's version: change it when what is stored, or how it is computed, changes
SUFFIX = ".int8.safetensors"
EXIT_WAIT = 120.0  # seconds a process exiting waits for a cache being written
_WRITERS: set[Job] = set()

# A tensor in the layout: (safetensors dtype, shape); in a write: those and a function giving
# its data as contiguous torch tensors, one after another (so a big one need not be copied whole).
Layout = dict[str, tuple[str, tuple[int, ...]]]
_TORCH_DTYPES = {"I8": "int8", "F32": "float32"}


class Damaged(Exception):
    """A cache file's data does not match its checksums (it is converted afresh)."""


def cache_file(model_file: str | os.PathLike) -> Path:
    """Where the cache of `model_file` lives (one file per model file path)."""
    from game import locations

    key = hashlib.sha256(os.path.abspath(model_file).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return locations.narrator_cache_dir() / f"{key}{SUFFIX}"


def identity(model_file: str | os.PathLike) -> dict[str, str]:
    """What must be the same for a cache of `model_file` to be used (the cache's metadata).

    Raises OSError when the file cannot be read, ValueError when it is no safetensors file.
    """
    import torch

    path = os.path.abspath(model_file)
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError(f"{path} is not a safetensors file")
        size = struct.unpack("<Q", head)[0]
        if size > min(stat.st_size, 100 << 20):
            raise ValueError(f"{path} is not a safetensors file")
        header = fh.read(size)
    return {"format": FORMAT, "model": path, "size": str(stat.st_size), "mtime_ns": str(stat.st_mtime_ns),
            "ctime_ns": str(stat.st_ctime_ns), "inode": f"{stat.st_dev}:{stat.st_ino}",
            "header_sha256": hashlib.sha256(head + header).hexdigest(), "torch": torch.__version__}


class Reader:
    """A cache file found sound for its model file: `get(name)` reads one tensor, checksum checked."""

    def __init__(self, path: Path, ident: dict[str, str], layout: Layout, crcs: dict[str, str]):
        self.path, self._ident, self._layout, self._crcs = path, ident, layout, crcs

    def get(self, name: str):
        """The tensor `name`; raises `Damaged` when the file changed or its data is not what it was."""
        from safetensors import SafetensorError, safe_open

        dtype, shape = self._layout[name]
        try:
            with safe_open(str(self.path), "pt") as f:  # opened per tensor: its pages are let go at once
                if not _same(f.metadata(), self._ident):
                    raise Damaged(f"{self.path} was replaced while it was read")
                tensor = f.get_tensor(name)
        except (OSError, SafetensorError) as error:
            raise Damaged(f"{self.path}: {error}") from error
        if str(tensor.dtype) != f"torch.{_TORCH_DTYPES[dtype]}" or tuple(tensor.shape) != shape \
                or _crc(tensor) != self._crcs[name]:
            raise Damaged(f"{self.path}: '{name}' is not what was written")
        return tensor


def open_cache(model_file: str | os.PathLike, layout: Layout,
               ident: dict[str, str] | None = None) -> Reader | None:
    """The cache of `model_file` when it exists and is sound for it (`ident`: its `identity`,
    taken before its weights were read) and `layout`, else None.

    Never raises: a missing, damaged, truncated, stale or foreign file is simply not used.
    """
    path = cache_file(model_file)
    try:
        from safetensors import safe_open

        ident = ident or identity(model_file)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if not _same(meta, ident) or set(f.keys()) != set(layout):
                return None
            for name, (dtype, shape) in layout.items():
                part = f.get_slice(name)
                if part.get_dtype() != dtype or tuple(part.get_shape()) != tuple(shape):
                    return None
        crcs = json.loads(meta.get("crc32", ""))
        if not isinstance(crcs, dict) or set(crcs) != set(layout):
            return None
    except Exception:  # noqa: BLE001 - no file, not safetensors, unreadable: convert afresh
        log.debug("int8 cache %s not used", path, exc_info=True)
        return None
    return Reader(path, ident, {k: (d, tuple(s)) for k, (d, s) in layout.items()}, crcs)


def _same(meta: dict | None, ident: dict[str, str]) -> bool:
    return isinstance(meta, dict) and all(meta.get(key) == value for key, value in ident.items())


def _crc(tensor) -> str:
    return f"{zlib.crc32(tensor.contiguous().view(-1).numpy()):08x}"


def write(model_file: str | os.PathLike, layout: Layout,
          parts: Callable[[], Iterable[tuple[str, Iterator]]], ident: dict[str, str] | None = None) -> Path:
    """Write the cache of `model_file`: `parts()` gives (name, chunks) for every tensor of `layout`
    in any order, chunks being contiguous tensors whose data, one after another, is the tensor's.
    `ident`: the model file's `identity` from before its weights were read (default: now); a
    model file that is no longer that when the data is written gets no cache. The file replaces
    the old one atomically; returns its path. Raises OSError, ValueError."""
    import torch

    ident = ident or identity(model_file)
    path = cache_file(model_file)
    from game import atomic

    atomic.remove_stale_temps(path.parent, name=path.name)
    offsets, at = {}, 0
    for name, (dtype, shape) in layout.items():
        size = torch.empty(0, dtype=getattr(torch, _TORCH_DTYPES[dtype])).element_size()
        for n in shape:
            size *= n
        offsets[name], at = (at, at + size), at + size
    crcs = {name: "0" * 8 for name in layout}

    def header() -> bytes:
        meta = dict(ident, crc32=json.dumps(crcs, sort_keys=True))
        entries = {name: {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets[name])}
                   for name, (dtype, shape) in layout.items()}
        text = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        return struct.pack("<Q", len(text)) + text

    first = header()
    with atomic.replacing(path) as fh:
        fh.write(first)
        written = set()
        for name, chunks in parts():
            dtype, shape = layout[name]
            start, end = offsets[name]
            fh.seek(len(first) + start)
            crc, done = 0, 0
            for chunk in chunks:
                data = chunk.contiguous().view(-1).numpy()
                if str(chunk.dtype) != f"torch.{_TORCH_DTYPES[dtype]}":
                    raise ValueError(f"'{name}' is {chunk.dtype}, not {dtype}")
                crc = zlib.crc32(data, crc)
                fh.write(data)
                done += data.nbytes
            if done != end - start:
                raise ValueError(f"'{name}' has {done} bytes, not {end - start}")
            crcs[name] = f"{crc:08x}"
            written.add(name)
        if written != set(layout):
            raise ValueError(f"no data for {sorted(set(layout) - written)[:3]}")
        last = header()
        if len(last) != len(first):
            raise ValueError("the cache's header changed length")
        if identity(model_file) != ident:
            raise ValueError(f"{model_file} changed while its cache was written")
        fh.seek(0)
        fh.write(last)
    _remove_orphans(path)
    return path


def _remove_orphans(keep: Path) -> None:
    """Remove the caches of model files that no longer exist (never `keep`)."""
    from safetensors import safe_open

    try:
        entries = [p for p in keep.parent.iterdir() if p.name.endswith(SUFFIX) and p != keep]
    except OSError:
        return
    for other in entries:
        try:
            with safe_open(str(other), "pt") as f:
                model = (f.metadata() or {}).get("model")
            if model and not os.path.exists(model):
                other.unlink()
        except Exception:  # noqa: BLE001 - not ours to judge, or gone already
            continue


def write_later(model_file: str | os.PathLike, layout: Layout,
                parts: Callable[[], Iterable[tuple[str, Iterator]]],
                ident: dict[str, str] | None = None) -> Job:
    """`write` as a job on the compute thread, after the work queued before it (the load that
    asks for it); a process exiting waits for it (see module doc). A cache that cannot be
    written (a full disk, a read-only folder) only costs the next launch its conversion."""
    def run() -> None:
        try:
            write(model_file, layout, parts, ident)
        except Exception:  # noqa: BLE001 - see above
            log.debug("writing the int8 cache of %s failed", model_file, exc_info=True)

    job = COMPUTE.submit(run, "storyteller-int8-cache")
    _WRITERS.add(job)
    for done in [j for j in _WRITERS if not j.is_alive()]:
        _WRITERS.discard(done)  # (kept small; joining a finished job costs nothing anyway)
    return job


@atexit.register
def finish_writing(timeout: float = EXIT_WAIT) -> None:
    """Wait for the caches being written. Called at exit: a writer reads torch tensors, so Python
    must not exit under it (the process would abort), and a launch that ends at once should still
    leave its cache for the next."""
    for job in list(_WRITERS):
        job.join(timeout)
