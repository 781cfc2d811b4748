"""Memory figures Linux keeps under /proc: what is free for new processes, what a process holds.

One reader for the `Name:   1234 kB` lines of /proc/meminfo and /proc/<pid>/status, for
`storyteller serve` (how many games fit), the benchmark and the load test. Elsewhere (no /proc)
every figure is None.
"""

from __future__ import annotations


def _kib_field(path: str, field: str) -> int | None:
    """The `field:` line of a /proc file, in bytes (its value is in kB), or None."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int | None:
    """Bytes of memory available for new processes, or None."""
    return _kib_field("/proc/meminfo", "MemAvailable")


def process_memory(pid: int | str = "self", field: str = "VmRSS") -> int | None:
    """A process's resident memory (`VmRSS`) or its peak (`VmHWM`) in bytes, or None.

    Not getrusage's ru_maxrss for the peak: Linux carries that over from the parent across
    fork and exec, so a process started by a big parent would report the parent's size.
    """
    return _kib_field(f"/proc/{pid}/status", field)
