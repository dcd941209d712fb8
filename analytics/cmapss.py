"""NASA C-MAPSS files (Saxena et al., PHM08) read into per-unit arrays, with RUL labels and operating conditions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets import dataset_dir

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
    """Path of train_FD00x.txt / test_FD00x.txt / RUL_FD00x.txt in the full set (under root/cmapss when given)."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown C-MAPSS subset {subset!r}; expected one of {SUBSETS}")
    return (root / "cmapss" if root else dataset_dir("cmapss", full=True)) / f"{split}_{subset}.txt"


def _numbers(path: Path, expected: int | None) -> np.ndarray:
    """The whitespace-separated numbers of a text file, one row per non-blank line; ValueError names line and field."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if expected is not None and len(fields) != expected:
                raise ValueError(f"{path}: line {line_no}: {len(fields)} fields, expected {expected}")
            try:
                values = [float(v) for v in fields]
            except ValueError:
                bad = next(i for i, v in enumerate(fields) if not _is_number(v))
                raise ValueError(f"{path}: line {line_no}: field {bad + 1}: {fields[bad]!r} is not a number") from None
            for i, v in enumerate(values):
                if not np.isfinite(v):
                    raise ValueError(f"{path}: line {line_no}: field {i + 1}: {fields[i]!r} is not finite")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no data lines")
    return np.array(rows, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_units(path: Path) -> list[Unit]:
    """Every unit of a C-MAPSS-format file (26 space-separated columns), in unit order, rows sorted by cycle."""
    path = Path(path)
    table = _numbers(path, 26)
    for col, what in ((0, "unit"), (1, "cycle")):
        frac = np.flatnonzero((table[:, col] != np.round(table[:, col])) | (table[:, col] < 1))
        if frac.size:
            raise ValueError(f"{path}: data row {int(frac[0]) + 1}: field {col + 1} ({what}) {table[frac[0], col]:g} "
                             "is not a positive whole number")
    units = table[:, 0].astype(np.int64)
    out = []
    for u in np.unique(units):
        rows = table[units == u]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        out.append(Unit(int(u), rows[:, 1].astype(np.int64), np.ascontiguousarray(rows[:, 2:])))
    return out


def read_rul(path: Path) -> np.ndarray:
    """True RUL after the last cycle of each test unit, in unit order (one non-negative number per line)."""
    path = Path(path)
    values = _numbers(path, 1)[:, 0]
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise ValueError(f"{path}: data row {int(negative[0]) + 1}: RUL {values[negative[0]]:g} is negative")
    return values


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
