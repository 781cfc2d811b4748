"""Sampling settings for the narrator, with their allowed ranges.

A personality bundles persona text with one `Sampling`; settings files and the
settings screen validate values against `RANGES` and report the allowed range.
Defaults follow the study the project grew from (temperature 0.8, top-k 50,
top-p 0.95, repetition penalty 1.2, 150 new tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

SEED_MAX = 2**32 - 1  # the largest seed: what every random generator the model uses accepts

# name: (type, minimum, maximum, help)
RANGES: dict[str, tuple[type, float, float, str]] = {
    "temperature": (float, 0.05, 2.0, "randomness: low is safe and repetitive, high is wild"),
    "top_k": (int, 0, 50257, "sample only from the k likeliest tokens (0 = no limit)"),
    "top_p": (float, 0.05, 1.0, "sample from the smallest set of tokens whose chances add up to p"),
    "repetition_penalty": (float, 1.0, 3.0, "how strongly to avoid repeating tokens (1.0 = off)"),
    "no_repeat_ngram_size": (int, 0, 10, "never repeat a run of this many tokens (0 = off)"),
    "max_new_tokens": (int, 8, 512, "longest narration, in tokens"),
}


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 0
    max_new_tokens: int = 150

    def with_values(self, **changes) -> "Sampling":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


SAMPLING_KEYS = tuple(f.name for f in fields(Sampling))


def check_value(name: str, value) -> tuple[object, str | None]:
    """Coerce and range-check one sampling value: (value, None) or (None, message)."""
    if name not in RANGES:
        return None, f"unknown sampling setting '{name}'; known: {', '.join(SAMPLING_KEYS)}"
    kind, lo, hi, _ = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{name} must be a number between {lo:g} and {hi:g}"
    if kind is int and isinstance(value, float) and not value.is_integer():
        return None, f"{name} must be a whole number between {lo:g} and {hi:g}"
    value = kind(value)
    if not lo <= value <= hi:
        return None, f"{name} is {value:g}, outside the allowed range {lo:g} to {hi:g}"
    return value, None
