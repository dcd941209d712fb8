"""`shopfloor quantize vision` on the committed NEU and tile slices: int8 built, compared with fp32 on the same images,
recorded in the card, and served only below the drop bound (these images were trained on: a test of the path)."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import SLICES
from inspection.models import MODELS_DIR, VisionModel
from inspection.quantize import calibration_pick
from twin.model_card import load

NEU = SLICES / "neu-surface-defect"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", "quantize", "vision", *args], capture_output=True,
                          text=True, cwd=SLICES.parent, timeout=300)


@pytest.fixture
def models(tmp_path) -> Path:
    for p in MODELS_DIR.glob("neu*"):  # a copy: the committed model is left as it is
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _served_model_runs(models: Path) -> None:
    stored = load("neu", models)
    model = VisionModel(stored.card, stored.onnx_bytes())  # the sha256 the card names is the file served
    assert model.run(np.full((200, 200), 128, np.uint8)).probs.shape == (6,)


def test_quantize_records_the_comparison_and_serves_by_the_bound(models):
    r = _run("--set", "neu", "--data", str(NEU), "--models", str(models), "--calib-per-class", "2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] == 18 and 0 <= out["agreement"] <= 1
    assert out["drop_points"] == pytest.approx(100 * (out["fp32_accuracy"] - out["int8_accuracy"]))
    assert out["int8_latency_ms"]["p50"] > 0 and out["fp32_latency_ms"]["p50"] > 0
    assert out["served"] == ("int8" if out["drop_points"] < 0.5 else "fp32")
    card = load("neu", models).card
    assert card.metrics["int8"]["served"] == out["served"] and card.inputs["precision"] == out["served"]
    assert card.sha256 == _sha(models / "neu.onnx") == out[f"{out['served']}_sha256"]
    assert (models / "neu.fp32.onnx").exists() == (out["served"] == "int8")
    _served_model_runs(models)

    # with a bound of 0 points int8 is served only if it is more accurate: else fp32 again, no int8 file left
    again = json.loads(_run("--set", "neu", "--data", str(NEU), "--models", str(models), "--calib-per-class", "2",
                            "--max-drop", "0").stdout.strip().splitlines()[-1])
    assert again["fp32_sha256"] == out["fp32_sha256"]  # quantised from the same fp32 model
    if again["drop_points"] >= 0:
        assert again["served"] == "fp32" and _sha(models / "neu.onnx") == again["fp32_sha256"]
        assert not (models / "neu.fp32.onnx").exists()
    _served_model_runs(models)


def test_the_tile_model_is_quantised_by_its_auroc_and_type_accuracy(tmp_path):
    for p in MODELS_DIR.glob("mtile*"):  # a copy: the committed model is left as it is
        shutil.copy(p, tmp_path / p.name)
    r = _run("--set", "mtile", "--data", str(SLICES / "magnetic-tile-defect"), "--models", str(tmp_path),
             "--calib-per-class", "2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] == 18 and out["n_defective"] == 15 and 0 <= out["agreement"] <= 1
    assert out["drop_points"] == pytest.approx(100 * max(out["fp32_auroc"] - out["int8_auroc"],
                                                         out["fp32_type_accuracy"] - out["int8_type_accuracy"]))
    assert out["served"] == ("int8" if out["drop_points"] < 0.5 else "fp32")
    card = load("mtile", tmp_path).card
    assert card.inputs["precision"] == out["served"] and card.sha256 == _sha(tmp_path / "mtile.onnx")
    stored = load("mtile", tmp_path)
    result = VisionModel(stored.card, stored.onnx_bytes()).run(np.full((300, 200), 128, np.uint8))
    assert result.mask is not None and result.mask.shape == (300, 200) and 0 <= result.score <= 1


def test_calibration_takes_each_class():
    labels = np.repeat(np.arange(6), 3)
    pick = calibration_pick(labels, 2)
    assert np.bincount(labels[pick]).tolist() == [2] * 6 and len(set(pick.tolist())) == 12


@pytest.mark.parametrize(("args", "problem"), [
    (["--set", "mtile", "--max-drop", "101"], "--max-drop"),
    (["--set", "neu", "--calib-per-class", "0"], "--calib-per-class"),
    (["--set", "neu", "--max-drop", "-1"], "--max-drop"),
])
def test_bad_options_end_in_one_line(args, problem):
    r = _run(*args)
    assert r.returncode == 2 and problem in r.stderr and "Traceback" not in r.stderr


def test_a_folder_without_images_is_named(tmp_path, models):
    r = _run("--set", "neu", "--data", str(tmp_path / "none"), "--models", str(models))
    assert r.returncode == 2 and "none" in r.stderr and "Traceback" not in r.stderr
