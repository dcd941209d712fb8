"""Cut the committed slices in data/ from the full sets: `python -m datasets.make_slices [FULL_ROOT]`.

Each slice mirrors its full set's layout (same folders and file names) so the same code reads both:
- cmapss: the first TRAIN_UNITS units of train_FD001 and the first TEST_UNITS units of test_FD001 with
  their RUL_FD001 rows, lines copied byte for byte; NASA's readme.txt.
- cwru-bearing: the recordings the simulated plant replays plus one per fault class, drive-end channel
  and RPM only, the first CWRU_SAMPLES samples (values unchanged), zlib-compressed MATLAB v5.
- ai4i2020: the whole csv (0.5 MB): the slice is the complete set.
SOURCE.md of each slice is written by hand; this only cuts the files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import scipy.io

from datasets import SLICES, full_root

TRAIN_UNITS = 8
TEST_UNITS = 5
CWRU_SAMPLES = 24_000  # 2 s at 12 kHz
CWRU_FILES = ("Normal/Normal_0.mat", "12k_DE/IR007_0.mat", "12k_DE/IR014_0.mat", "12k_DE/IR021_0.mat",
              "12k_DE/OR007@6_0.mat", "12k_DE/B014_0.mat")


def _units(src: Path, dst: Path, units: int) -> None:
    keep = [line for line in src.read_bytes().splitlines(keepends=True) if int(line.split()[0]) <= units]
    dst.write_bytes(b"".join(keep))


def cut(root: Path, out: Path = SLICES) -> None:
    """Write every slice under `out` from the full sets under `root`."""
    cm = out / "cmapss"
    cm.mkdir(parents=True, exist_ok=True)
    _units(root / "cmapss" / "train_FD001.txt", cm / "train_FD001.txt", TRAIN_UNITS)
    _units(root / "cmapss" / "test_FD001.txt", cm / "test_FD001.txt", TEST_UNITS)
    rul = (root / "cmapss" / "RUL_FD001.txt").read_bytes().splitlines(keepends=True)[:TEST_UNITS]
    (cm / "RUL_FD001.txt").write_bytes(b"".join(rul))
    shutil.copyfile(root / "cmapss" / "readme.txt", cm / "readme.txt")
    for name in CWRU_FILES:
        mat = scipy.io.loadmat(root / "cwru-bearing" / name)
        keep = {k: (v[:CWRU_SAMPLES] if k.endswith("_DE_time") else v) for k, v in mat.items()
                if k.endswith("_DE_time") or k.endswith("RPM")}
        target = out / "cwru-bearing" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(target, {k: np.asarray(v) for k, v in keep.items()}, do_compression=True)
    (out / "ai4i2020").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "ai4i2020" / "ai4i2020.csv", out / "ai4i2020" / "ai4i2020.csv")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else full_root()
    if source is None:
        sys.exit("make_slices: no full data sets found; pass their folder")
    cut(source)
