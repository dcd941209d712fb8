"""AI4I 2020 process records (Matzka, 2020): the lathe's process signals replay them, one row per part."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from plant.data import dataset_dir

COLUMNS = ("Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]", "Torque [Nm]",
           "Tool wear [min]")


@lru_cache(maxsize=2)
def process_rows(root: Path | None = None) -> np.ndarray:
    """Every record's five process readings (air K, process K, rpm, torque Nm, tool wear min), file order."""
    path = dataset_dir("ai4i2020", root) / "ai4i2020.csv"
    with path.open(encoding="utf-8-sig", newline="") as f:
        return np.array([[float(row[c]) for c in COLUMNS] for row in csv.DictReader(f)])
