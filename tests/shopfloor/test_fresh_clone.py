"""A fresh clone carries the data it needs: with no ../shared beside it and SHOPFLOOR_DATA unset, the demo plant's
(its camera's too) and training's data lookups find the committed slices in data/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# run inside the copy: what the demo's plant replays, and what a training test reads
PROBE = """
import json, sys
from pathlib import Path
import datasets, plant.data
from analytics import cmapss, failure
from plant.camera import tile_images
from plant.line import Line
line = Line(["press1", "press2", "oven1", "lathe1"], seed=3)
line.advance(3600)
units = cmapss.read_units(datasets.dataset_dir("cmapss") / "train_FD001.txt")
inputs, y = failure.read_table(failure.csv_path())
print(json.dumps({
    "modules": [m.__file__ for m in (datasets, plant.data, cmapss)],
    "plant": {n: m.good_count for n, m in line.machines.items()},
    "vibration": len({round(m.vibration, 6) for m in line.machines.values()}),
    "cmapss": str(datasets.dataset_dir("cmapss")), "units": len(units),
    "ai4i": str(failure.csv_path()), "ai4i_rows": int(len(y)),
    "cwru": str(plant.data.dataset_dir("cwru-bearing")),
    "tiles": [str(plant.data.dataset_dir("magnetic-tile-defect")), *map(len, tile_images())],
}))
"""


def test_a_copy_with_no_data_beside_it_reads_the_committed_slices(tmp_path: Path):
    clone = tmp_path / "clone" / "shopfloor"  # its parent has no shared/ folder
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a file deleted in the working tree is not part of the clone
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("SHOPFLOOR_DATA", "PYTHONPATH")}
    env["XDG_DATA_HOME"] = str(tmp_path / "empty-user-data")  # no `shopfloor data fetch` folder either
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(m.startswith(str(clone)) for m in seen["modules"]), seen["modules"]  # the copy's code ran
    slices = clone / "data"
    assert seen["cmapss"] == str(slices / "cmapss") and seen["units"] == 8
    assert seen["cwru"] == str(slices / "cwru-bearing")
    assert seen["ai4i"] == str(slices / "ai4i2020" / "ai4i2020.csv") and seen["ai4i_rows"] == 10_000
    assert all(n > 0 for n in seen["plant"].values()), seen["plant"]  # every machine made parts from the slices
    assert seen["vibration"] > 1
    assert seen["tiles"] == [str(slices / "magnetic-tile-defect"), 3, 15]  # the demo camera's good and defect images
