"""NASA C-MAPSS turbofan run-to-failure trajectories (Saxena et al., PHM08), read as numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plant.data import dataset_dir

COLUMNS = ["unit", "cycle", "setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
@dataclass(frozen=True, slots=True)
class Trajectory:
    """One engine's cycles: settings and 21 sensors per row."""

    unit: int
    data: np.ndarray  # rows x 26 columns, as in the file

    def column(self, name: str) -> np.ndarray:
        """One column by its name in COLUMNS."""
        return self.data[:, COLUMNS.index(name)]


def read(subset: str = "FD001", split: str = "train", root: Path | None = None) -> list[Trajectory]:
    """Every unit of train_FD00x or test_FD00x, in unit order."""
    path = dataset_dir("cmapss", root) / f"{split}_{subset}.txt"
    table = np.loadtxt(path)
    units = table[:, 0].astype(int)
    return [Trajectory(int(u), table[units == u]) for u in np.unique(units)]
