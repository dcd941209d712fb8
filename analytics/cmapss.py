"""NASA C-MAPSS files (Saxena et al., PHM08) read into per-unit arrays, with RUL labels and operating conditions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics.data import data_root

SUBSETS = ("FD001", "FD002", "FD003", "FD004")
RUL_CAP = 125.0
N_CONDITIONS = {"FD001": 1, "FD002": 6, "FD003": 1, "FD004": 6}


@dataclass(frozen=True, slots=True)
class Unit:
    """One engine: its id, cycle numbers and the 24 columns (3 settings + 21 sensors) per cycle."""

    unit: int
    cycles: np.ndarray  # (n,) int
    data: np.ndarray  # (n, 24) float64, settings then sensors, in file order


def subset_path(subset: str, split: str, root: Path | None = None) -> Path:
    """Path of train_FD00x.txt / test_FD00x.txt / RUL_FD00x.txt under the data root."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown C-MAPSS subset {subset!r}; expected one of {SUBSETS}")
    return (root or data_root()) / "cmapss" / f"{split}_{subset}.txt"


def read_units(path: Path) -> list[Unit]:
    """Every unit of a C-MAPSS-format file (26 space-separated columns), in unit order, rows sorted by cycle."""
    table = np.loadtxt(path, ndmin=2)
    if table.shape[1] != 26:
        raise ValueError(f"{path}: expected 26 columns, found {table.shape[1]}")
    units = table[:, 0].astype(np.int64)
    out = []
    for u in np.unique(units):
        rows = table[units == u]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        out.append(Unit(int(u), rows[:, 1].astype(np.int64), np.ascontiguousarray(rows[:, 2:])))
    return out


def read_rul(path: Path) -> np.ndarray:
    """True RUL after the last cycle of each test unit, in unit order."""
    return np.loadtxt(path, ndmin=1).astype(np.float64)


def rul_labels(n_cycles: int, cap: float = RUL_CAP, end_rul: float = 0.0) -> np.ndarray:
    """Piecewise-linear RUL per cycle: remaining cycles to failure, capped at `cap`."""
    remaining = end_rul + np.arange(n_cycles - 1, -1, -1, dtype=np.float64)
    return np.minimum(remaining, cap)


def fit_conditions(settings: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Centroids (k x 3) of the operating conditions, by k-means on the 3 settings (scaled by their spread)."""
    if k == 1:
        return settings.mean(axis=0, keepdims=True)
    scale = settings.std(axis=0) + 1e-12
    x = settings / scale
    rng = np.random.default_rng(seed)
    # k-means++ seeding: the six C-MAPSS regimes are far apart, so this converges in a few steps
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.array(centres)
    for _ in range(iters):
        label = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(axis=2), axis=1)
        new = np.array([x[label == j].mean(axis=0) if np.any(label == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    c = c * scale
    # order by setting 1 so the condition ids are stable across runs
    return c[np.argsort(c[:, 0], kind="stable")]
