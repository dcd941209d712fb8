"""When a model's answer means something: each input inside the range it was trained on, present and fresh.

A model card records `inputs["valid_ranges"]` = {input: [low, high]} measured on its training data. Serving
checks an input against it before any number is produced: a model fed zeros from an idle machine, a missing
reading or one outside what it has seen answers `{"valid": false, "reason": ...}` and no number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np


class Verdict(msgspec.Struct, kw_only=True):
    """A model's answer: `valid` with its value, or not valid with the reason and no value."""

    valid: bool
    value: Any = None  # float (probability, cycles) or label; None when not valid
    reason: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)  # model-specific extras (flagged, probabilities)

    @staticmethod
    def refuse(reason: str, **detail: Any) -> Verdict:
        """A not-valid answer with its reason."""
        return Verdict(valid=False, reason=reason, detail=detail)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: valid, reason, value and the details, flat."""
        return {"valid": self.valid, "reason": self.reason, "value": self.value, **self.detail}


def ranges_of(names: Sequence[str], columns: np.ndarray) -> dict[str, list[float]]:
    """[min, max] of each column (m, len(names)) of training data, by name; rounded outward to 6 significant digits."""
    x = np.asarray(columns, dtype=np.float64).reshape(-1, len(names))
    return {n: [_round(float(np.min(x[:, i])), -1), _round(float(np.max(x[:, i])), 1)] for i, n in enumerate(names)}


def _round(v: float, direction: int) -> float:
    """v rounded to 6 significant digits, never inward (so the training extremes stay inside)."""
    if v == 0.0 or not math.isfinite(v):
        return v
    digits = 5 - int(math.floor(math.log10(abs(v))))
    r = round(v, digits)
    step = 10.0 ** (-digits)
    if direction < 0 and r > v:
        r -= step
    elif direction > 0 and r < v:
        r += step
    return float(round(r, max(digits, 0)))


def check(values: Mapping[str, float | None], ranges: Mapping[str, Sequence[float]], units: Mapping[str, str] | None = None) -> str | None:
    """None when every ranged input is present, finite and inside its training range; else the first problem, named."""
    units = units or {}
    for name, (low, high) in ranges.items():
        if name not in values:
            continue
        v = values[name]
        unit = f" {units[name]}" if name in units else ""
        if v is None or not math.isfinite(float(v)):
            return f"input {name} is missing"
        if not low <= float(v) <= high:
            return f"input {name} = {float(v):g}{unit} is outside the training range [{low:g}, {high:g}]{unit}"
    return None


def check_ages(ages_s: Mapping[str, float] | None, max_age_s: float | None) -> str | None:
    """None when every input is fresher than max_age_s (or no limit is given); else the stalest one, named."""
    if not ages_s or max_age_s is None:
        return None
    name, age = max(ages_s.items(), key=lambda kv: kv[1])
    if age > max_age_s:
        return f"input {name} is stale: last reading {age:.0f} s old (limit {max_age_s:g} s)"
    return None


# A served input not updated for this long (in sample time) is stale: the machine's answer is withheld.
STALE_AFTER_S = 600.0
