"""Raw C-MAPSS cycles to model input, one definition for training and serving.

A history is one unit's cycles as rows of 24 columns (3 settings, 21 sensors, file order), oldest first.
The steps: pick the informative sensors, z-score them with the constants of the row's operating condition
(nearest centre in settings space), then either summarise the last `window` cycles into features
(gradient-boosted model) or cut the last `window` cycles as a tensor (sequence model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

N_COLUMNS = 24
SETTING_NAMES = ("setting1", "setting2", "setting3")
SENSOR_NAMES = tuple(f"s{i}" for i in range(1, 22))
COLUMN_NAMES = SETTING_NAMES + SENSOR_NAMES
# Sensors flat (or nearly) in every regime of C-MAPSS: s1, s5, s6, s10, s16, s18, s19 carry no degradation trend
INFORMATIVE_SENSORS = ("s2", "s3", "s4", "s7", "s8", "s9", "s11", "s12", "s13", "s14", "s15", "s17", "s20", "s21")
STATS = ("last5", "mean", "std", "slope", "slope_long", "ewma", "drift")
SHORT = 5
BASELINE = 10
EWMA_ALPHA = 0.1


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Constants that turn raw cycles into model input; fitted on training data, stored in the model card."""

    sensors: tuple[str, ...]
    centres: np.ndarray  # (k, 3) operating-condition centres in settings space
    scale: np.ndarray  # (3,) settings scale for the nearest-centre distance
    mean: np.ndarray  # (k, n_sensors)
    std: np.ndarray  # (k, n_sensors)
    window: int = 30
    long_window: int = 100

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ModelCard.inputs."""
        return {
            "sensors": list(self.sensors),
            "condition_centres": self.centres.tolist(),
            "condition_scale": self.scale.tolist(),
            "norm_mean": self.mean.tolist(),
            "norm_std": self.std.tolist(),
            "window": self.window,
            "long_window": self.long_window,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        """Inverse of to_dict."""
        return cls(
            sensors=tuple(d["sensors"]),
            centres=np.asarray(d["condition_centres"], dtype=np.float64),
            scale=np.asarray(d["condition_scale"], dtype=np.float64),
            mean=np.asarray(d["norm_mean"], dtype=np.float64),
            std=np.asarray(d["norm_std"], dtype=np.float64),
            window=int(d["window"]),
            long_window=int(d["long_window"]),
        )

    @property
    def columns(self) -> np.ndarray:
        """Indices of the chosen sensors among the 24 history columns."""
        return np.array([COLUMN_NAMES.index(s) for s in self.sensors], dtype=np.int64)


def feature_names(spec: FeatureSpec) -> list[str]:
    """Names of the window features, in model-input order."""
    return [f"{s}_{stat}" for s in spec.sensors for stat in STATS] + ["cycles"]


def _as_history(history: np.ndarray) -> np.ndarray:
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != N_COLUMNS or len(h) == 0:
        raise ValueError(f"history must be a non-empty (cycles, {N_COLUMNS}) array, got shape {h.shape}")
    return h


def conditions(settings: np.ndarray, centres: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Operating-condition id of each row: the nearest centre in scaled settings space."""
    x = settings / scale
    c = centres / scale
    return np.argmin(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)


def normalise(history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The chosen sensors z-scored with their operating condition's constants: (cycles, n_sensors)."""
    h = _as_history(history)
    cond = conditions(h[:, :3], spec.centres, spec.scale)
    return (h[:, spec.columns] - spec.mean[cond]) / spec.std[cond]


@numba.njit(cache=True)
def _features_at(z: np.ndarray, t: int, window: int, long_window: int, out: np.ndarray) -> None:
    """Features of the cycles up to and including row t; shorter histories use what there is."""
    n_s = z.shape[1]
    lo = max(0, t - window + 1)
    lo_long = max(0, t - long_window + 1)
    lo_short = max(0, t - SHORT + 1)
    n_base = min(BASELINE, t + 1)
    k = 0
    for s in range(n_s):
        m = t - lo + 1
        mean = 0.0
        for i in range(lo, t + 1):
            mean += z[i, s]
        mean /= m
        var = 0.0
        for i in range(lo, t + 1):
            var += (z[i, s] - mean) ** 2
        std = np.sqrt(var / m)
        slope = _slope(z, s, lo, t)
        slope_long = _slope(z, s, lo_long, t)
        last = 0.0
        for i in range(lo_short, t + 1):
            last += z[i, s]
        last /= t - lo_short + 1
        ewma = z[0, s]
        for i in range(1, t + 1):
            ewma += EWMA_ALPHA * (z[i, s] - ewma)
        base = 0.0
        for i in range(n_base):
            base += z[i, s]
        base /= n_base
        out[k] = last
        out[k + 1] = mean
        out[k + 2] = std
        out[k + 3] = slope
        out[k + 4] = slope_long
        out[k + 5] = ewma
        out[k + 6] = last - base
        k += 7
    out[k] = t + 1


@numba.njit(cache=True)
def _slope(z: np.ndarray, s: int, lo: int, t: int) -> float:
    """Least-squares slope per cycle of column s over rows lo..t (0 for a single row)."""
    m = t - lo + 1
    if m < 2:
        return 0.0
    xm = (m - 1) / 2.0
    ym = 0.0
    for i in range(lo, t + 1):
        ym += z[i, s]
    ym /= m
    num = 0.0
    den = 0.0
    for i in range(lo, t + 1):
        dx = (i - lo) - xm
        num += dx * (z[i, s] - ym)
        den += dx * dx
    return num / den


@numba.njit(cache=True)
def _features_every(z: np.ndarray, window: int, long_window: int, n_feat: int) -> np.ndarray:
    out = np.empty((z.shape[0], n_feat))
    for t in range(z.shape[0]):
        _features_at(z, t, window, long_window, out[t])
    return out


def n_features(spec: FeatureSpec) -> int:
    """Length of one feature vector."""
    return len(spec.sensors) * len(STATS) + 1


def window_features(history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of the whole history as of its last cycle: (n_features,) float32."""
    z = np.ascontiguousarray(normalise(history, spec))
    out = np.empty(n_features(spec))
    _features_at(z, len(z) - 1, spec.window, spec.long_window, out)
    return out.astype(np.float32)


def window_features_every(history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features as of every cycle of the history (row t sees cycles 0..t only): (cycles, n_features) float32."""
    z = np.ascontiguousarray(normalise(history, spec))
    return _features_every(z, spec.window, spec.long_window, n_features(spec)).astype(np.float32)


def window_tensor(z: np.ndarray, t: int, window: int) -> np.ndarray:
    """The `window` normalised cycles ending at row t, front-padded with the first cycle: (window, n_sensors)."""
    lo = t - window + 1
    if lo >= 0:
        return z[lo : t + 1].astype(np.float32)
    pad = np.repeat(z[:1], -lo, axis=0)
    return np.concatenate([pad, z[: t + 1]]).astype(np.float32)


def sequence_input(history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Sequence-model input as of the last cycle: (window, n_sensors) float32."""
    z = normalise(history, spec)
    return window_tensor(z, len(z) - 1, spec.window)
