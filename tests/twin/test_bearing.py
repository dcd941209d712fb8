"""Bearing-fault features, CWRU file handling and the committed classifier."""

from __future__ import annotations

import numpy as np
import pytest

from analytics import bearing, cwru
from twin.bearing import BearingModel
from twin.bearing_features import FEATURE_NAMES, SKF_6205, bearing_features, bearing_features_batch

FS = 12_000.0
RPM = 1797.0


@pytest.mark.parametrize(
    ("name", "label", "size", "position", "load"),
    [
        ("IR007_2.mat", "inner", 7, None, 2),
        ("OR021@6_1.mat", "outer", 21, 6, 1),
        ("OR007@12_0.mat", "outer", 7, 12, 0),
        ("B028_3.mat", "ball", 28, None, 3),
        ("Normal_0.mat", "normal", None, None, 0),
    ],
)
def test_label_from_standard_name(name, label, size, position, load):
    parsed = cwru.parse_name(f"/any/folder/{name}")
    assert (parsed.label, parsed.size_mils, parsed.position, parsed.load_hp) == (label, size, position, load)


@pytest.mark.parametrize("name", ["105.mat", "IR007.mat", "Normal007_0.mat", "IR007@6_0.mat", "XX007_0.mat"])
def test_non_standard_name_is_rejected(name):
    with pytest.raises(ValueError, match="CWRU|position|size"):
        cwru.parse_name(name)


def test_windows_stay_inside_their_segment():
    signal = np.arange(1000.0)
    w = cwru.windows(signal, 100, 700, 128, 64)
    assert w.shape[1] == 128 and len(w) > 0
    assert w.min() >= 100 and w.max() < 700
    assert len(cwru.windows(signal, 0, 100, 128)) == 0


def _impacts(rate_hz: float, n: int = 8192, resonance: float = 3000.0, seed: int = 0) -> np.ndarray:
    """A train of decaying resonance bursts at rate_hz, plus a little white noise: a textbook local defect."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = np.zeros(n)
    burst_t = np.arange(256) / FS
    burst = np.exp(-burst_t * 800.0) * np.sin(2 * np.pi * resonance * burst_t)
    for start in (np.arange(0.0, t[-1], 1.0 / rate_hz) * FS).astype(int):
        stop = min(n, start + len(burst))
        x[start:stop] += burst[: stop - start]
    return x + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize(("fault", "ratio"), [("bpfi", SKF_6205.bpfi), ("bpfo", SKF_6205.bpfo), ("bsf2", 2 * SKF_6205.bsf)])
def test_envelope_energy_sits_at_the_fault_line(fault, ratio):
    f = dict(zip(FEATURE_NAMES, bearing_features(_impacts(ratio * RPM / 60.0), RPM, FS), strict=True))
    lines = {k: f[f"env0_{k}_h1"] for k in ("bpfi", "bpfo", "bsf2")}
    others = [v for k, v in lines.items() if k != fault]
    # log10 shares: the excited line stands at least a decade above the other defect lines
    assert lines[fault] > max(others) + 1.0, lines


def test_lines_follow_the_shaft_speed():
    slow = 1730.0
    x = _impacts(SKF_6205.bpfo * slow / 60.0)
    right = dict(zip(FEATURE_NAMES, bearing_features(x, slow, FS), strict=True))
    wrong = dict(zip(FEATURE_NAMES, bearing_features(x, 1.2 * slow, FS), strict=True))
    assert right["env0_bpfo_h1"] > wrong["env0_bpfo_h1"]


def test_features_are_level_free_except_rms():
    x = _impacts(150.0)
    a, b = bearing_features(x, RPM, FS), bearing_features(3.0 * x, RPM, FS)
    assert b[0] == pytest.approx(a[0] + np.log10(3.0), abs=1e-4)
    np.testing.assert_allclose(a[1:], b[1:], rtol=1e-3, atol=1e-3)


def test_features_reject_bad_input():
    with pytest.raises(ValueError):
        bearing_features_batch(np.zeros((2, 100)), RPM, FS)
    with pytest.raises(ValueError):
        bearing_features(np.zeros(4096), 0.0, FS)


def _file(name: str):
    # the shared data sets are part of the test setup: missing data fails, it does not skip
    paths = {p.name: p for p in cwru.list_files()}
    assert name in paths, f"{name} not in the CWRU data under {cwru.data_root()}"
    return paths[name]


@pytest.fixture(scope="module")
def model() -> BearingModel:
    return BearingModel.load()


def test_model_card_describes_the_model(model):
    assert model.card.kind == "bearing"
    assert list(model.classes) == list(cwru.CLASSES)
    assert model.card.metrics["heldout_accuracy"] >= 0.99


@pytest.mark.parametrize("name", ["Normal_0.mat", "IR021_0.mat", "OR007@6_0.mat", "B014_0.mat"])
def test_committed_model_classifies_held_out_windows(model, name):
    rec = cwru.read(_file(name))
    cut = cwru.split_point(len(rec.de), bearing.TRAIN_FRACTION)
    w = cwru.windows(rec.de, cut, len(rec.de), model.window)[:2]
    labels, proba = model.classify_batch(w, rec.rpm, rec.fs)
    assert labels == [rec.label] * len(w)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    label, single = model.classify(w[0], rec.rpm, rec.fs)
    assert label == rec.label and set(single) == set(model.classes)


def test_evaluate_reports_the_documented_keys():
    path = _file("IR007_0.mat")
    rec = cwru.read(path)
    result = bearing.evaluate([path])
    assert set(result) == {"model", "sha256", "accuracy", "recall", "n"}
    assert result["n"] == len(rec.de) // BearingModel.load().window
    assert set(result["recall"]) == {"inner"}
    assert 0.0 <= result["accuracy"] <= 1.0
