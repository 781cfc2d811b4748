"""Atomic file writes: the one way this game replaces a file people care about.

Write to a temporary file in the same folder (all at once with `write_atomic`,
piece by piece with `replacing`), flush and fsync it, then rename it over the
target (atomic on POSIX and Windows), then fsync the folder. A crash, a full disk
or a read-only folder at any point leaves the previous file intact.
`locked` serialises replacing one file across processes (two games of the same
quest autosaving at once), and `remove_stale_temps` clears the temporary files
a killed process left behind.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace `path` with `data` atomically; the old file survives any failure."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with replacing(path) as fh:
        fh.write(data)


@contextmanager
def replacing(path: str | os.PathLike):
    """A binary file (seekable) for `path`'s new content, written piece by piece: leaving the block
    replaces `path` with it atomically (flushed and fsynced first); an error in the block or while
    replacing leaves the old file as it was and removes the temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Our own temporary files: `.<name>.<8 random>.tmp` (write_atomic) and `.<name>.link` (rotation).
_OWN_TEMP = re.compile(r"^\..+\.(?:[A-Za-z0-9_]{8}\.tmp|link)$")


def remove_stale_temps(folder: str | os.PathLike, older_than: float = 60.0, name: str | None = None) -> int:
    """Remove temporary files of our own naming left in `folder` by a killed process.

    Only files named like ours and last changed more than `older_than` seconds ago
    (a write in progress takes milliseconds); with `name`, only those of that file.
    Returns how many were removed. Never raises.
    """
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not _OWN_TEMP.match(entry.name) or (name and not entry.name.startswith(f".{name}.")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


@contextmanager
def locked(path: str | os.PathLike):
    """Hold an exclusive lock for replacing `path` (`.<name>.lock` beside it) across processes.

    Where file locks are not available the block runs unlocked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
