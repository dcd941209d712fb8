"""`shopfloor evaluate`: anyone can score the committed models on a held-out set, one JSON line each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from analytics.data import data_root

ROOT = Path(__file__).resolve().parents[2]


def shopfloor(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "shopfloor.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def test_evaluate_bearing_scores_files_by_their_standard_names():
    folder = data_root() / "cwru-bearing"
    files = [folder / "Normal" / "Normal_0.mat", folder / "12k_DE" / "IR021_0.mat"]
    result = shopfloor("evaluate", "bearing", *map(str, files))
    assert result["model"] == "bearing" and len(result["sha256"]) == 64
    assert set(result["recall"]) == {"normal", "inner"} and result["n"] > 50
    assert 0.0 <= result["accuracy"] <= 1.0


def test_evaluate_rul_on_a_c_mapss_format_test_set(tmp_path):
    # three units of the FD001 test set, written out as a user's own file in the same format
    test = np.loadtxt(data_root() / "cmapss" / "test_FD001.txt")
    truth = np.loadtxt(data_root() / "cmapss" / "RUL_FD001.txt")
    keep = np.isin(test[:, 0], [1, 2, 3])
    np.savetxt(tmp_path / "test.txt", test[keep], fmt="%.4f")
    np.savetxt(tmp_path / "rul.txt", truth[:3], fmt="%d")
    result = shopfloor("evaluate", "rul", "--subset", "FD001", "--test-file", str(tmp_path / "test.txt"),
                       "--rul-file", str(tmp_path / "rul.txt"))
    assert result["n"] == 3 and result["model"] == "rul_FD001"
    assert result["rmse"] >= 0 and np.isfinite(result["score"])
