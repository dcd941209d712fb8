"""Bearing vibration from the CWRU drive-end recordings (12 kHz, 0 HP), as the RMS of short windows."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io

from plant.data import dataset_dir

WINDOW = 1200  # 0.1 s at 12 kHz
# healthy first, then growing inner-race faults: wear picks how far along this list a machine is
STAGES = ("Normal/Normal_0.mat", "12k_DE/IR007_0.mat", "12k_DE/IR014_0.mat", "12k_DE/IR021_0.mat")


@lru_cache(maxsize=8)
def _rms_windows(path: Path) -> np.ndarray:
    mat = scipy.io.loadmat(path)
    key = next(k for k in mat if k.endswith("_DE_time"))
    signal = np.asarray(mat[key], dtype=np.float64).ravel()
    n = len(signal) // WINDOW
    return np.sqrt(np.mean(signal[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))


def vibration_rms(wear: float, step: int, root: Path | None = None) -> float:
    """RMS vibration (g) of the recording for this wear (0..1), window `step` of it (wrapping)."""
    # healthy for the first half of life, then ever larger faults
    stage = 0 if wear <= 0.5 else 1 + min(int((wear - 0.5) * 2 * (len(STAGES) - 1)), len(STAGES) - 2)
    windows = _rms_windows(dataset_dir("cwru-bearing", root) / STAGES[stage])
    return float(windows[step % len(windows)])
