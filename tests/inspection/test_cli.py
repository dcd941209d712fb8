"""`shopfloor evaluate vision` on the committed slices (a smoke test of the path: these images were trained on)."""

import json
import shutil
import subprocess
import sys

from datasets import SLICES
from inspection.sets import NEU_CLASSES

PROJECT = SLICES.parent


def _run(*args):
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT, timeout=120)


def test_evaluate_neu_on_the_slice():
    r = _run("evaluate", "vision", "--set", "neu", str(SLICES / "neu-surface-defect"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == "neu" and len(out["sha256"]) == 64 and out["n"] == 18
    assert set(out["recall"]) == set(NEU_CLASSES) and len(out["confusion"]) == 6
    assert sum(map(sum, out["confusion"])) == 18 and 0 <= out["accuracy"] <= 1


def test_evaluate_mtile_on_the_slice():
    r = _run("evaluate", "vision", "--set", "mtile", str(SLICES / "magnetic-tile-defect"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == "mtile" and out["n"] == 18 and out["n_defective"] == 15
    for key in ("auroc", "type_accuracy", "pixel_iou", "dice"):
        assert out[key] is None or 0 <= out[key] <= 1, key
    shares = out["ng_share_at_threshold"]
    assert list(shares) == ["0.5", "0.8", "0.9", "0.95"]
    for kind in ("free", "defect"):  # a higher threshold calls no more images NG
        values = [shares[t][kind] for t in shares]
        assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values), kind


def test_bad_files_are_named_not_a_traceback(tmp_path):
    images = tmp_path / "IMAGES"
    images.mkdir()
    shutil.copy(SLICES / "neu-surface-defect" / "IMAGES" / "crazing_1.jpg", images)
    (images / "patches_9.jpg").write_bytes(b"broken")
    r = _run("evaluate", "vision", "--set", "neu", str(tmp_path))
    assert r.returncode == 0 and "patches_9.jpg" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["skipped"] == 1
    (images / "mystery_1.jpg").write_bytes(b"x")
    r = _run("evaluate", "vision", "--set", "neu", str(tmp_path))
    assert r.returncode == 2 and "mystery_1.jpg" in r.stderr and "Traceback" not in r.stderr
