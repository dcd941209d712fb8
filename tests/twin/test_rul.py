"""RUL features, served models and evaluation on C-MAPSS-format data (synthetic, built from the cards' constants)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.support import has_full_set

from analytics.cmapss import RUL_CAP, fit_conditions, read_units, rul_labels
from analytics.rul import evaluate, nasa_score, rmse
from twin.rul import RulModel
from twin.rul_features import (
    INFORMATIVE_SENSORS,
    FeatureSpec,
    conditions,
    feature_names,
    normalise,
    sequence_input,
    window_features,
    window_features_every,
)

SUBSETS = ["FD001", "FD002", "FD003", "FD004"]  # each has a committed model: a missing one fails


# the six operating regimes of C-MAPSS FD002/FD004 (altitude kft, Mach number, throttle resolver angle)
REGIMES = np.array(
    [[0.0, 0.0, 100.0], [10.0, 0.25, 100.0], [20.0, 0.7, 100.0], [25.0, 0.62, 60.0], [35.0, 0.84, 100.0], [42.0, 0.84, 100.0]]
)


def synthetic_spec(k: int) -> FeatureSpec:
    """Constants of k well-separated operating conditions."""
    rng = np.random.default_rng(k)
    centres = REGIMES[:k]
    n = len(INFORMATIVE_SENSORS)
    return FeatureSpec(
        INFORMATIVE_SENSORS, centres, np.array([14.0, 0.3, 15.0]), rng.normal(500, 50, (k, n)), rng.uniform(0.5, 2, (k, n))
    )


# C-MAPSS degradation lowers s7, s12, s20, s21 (pressures, coolant bleeds) and raises the other informative sensors
WEAR_SIGN = np.array([-1.0 if s in ("s7", "s12", "s20", "s21") else 1.0 for s in INFORMATIVE_SENSORS])


def synthetic_history(spec: FeatureSpec, n: int, seed: int, wear: float = 0.0) -> np.ndarray:
    """n cycles (24 columns) visiting the spec's conditions at random, sensors drifting by `wear` std per cycle."""
    rng = np.random.default_rng(seed)
    cond = rng.integers(len(spec.centres), size=n)
    h = np.zeros((n, 24))
    h[:, :3] = spec.centres[cond] + rng.normal(0, 1e-3, (n, 3))
    h[:, 3:] = rng.normal(100, 1, (n, 21))
    cols = spec.columns
    drift = wear * np.arange(n)[:, None] * WEAR_SIGN[None, :]
    h[:, cols] = spec.mean[cond] + spec.std[cond] * (rng.normal(0, 1, (n, len(cols))) + drift)
    return h


@pytest.mark.parametrize("k", [1, 6])
def test_features_batch_equals_stream(k):
    spec = synthetic_spec(k)
    history = synthetic_history(spec, 140, seed=k, wear=0.02)
    batch = window_features_every(history, spec)
    streamed = np.stack([window_features(history[: t + 1], spec) for t in range(len(history))])
    assert batch.shape == (140, len(feature_names(spec)))
    np.testing.assert_array_equal(batch, streamed)


def test_normalise_uses_each_rows_condition():
    spec = synthetic_spec(6)
    history = synthetic_history(spec, 3000, seed=1)
    z = normalise(history, spec)
    cond = conditions(history[:, :3], spec.centres, spec.scale)
    # sensors were drawn as mean + std * N(0, 1) of their condition, so z is standard normal in every condition
    for j in range(6):
        assert abs(z[cond == j].mean()) < 0.1
        assert abs(z[cond == j].std() - 1.0) < 0.1


def test_short_history_is_padded_with_first_cycle():
    spec = synthetic_spec(1)
    history = synthetic_history(spec, 4, seed=2)
    x = sequence_input(history, spec)
    z = normalise(history, spec)
    assert x.shape == (spec.window, len(spec.sensors))
    np.testing.assert_allclose(x[: spec.window - 4], np.repeat(z[:1], spec.window - 4, axis=0), rtol=1e-6)
    np.testing.assert_allclose(x[-4:], z, rtol=1e-6)
    assert np.all(np.isfinite(window_features(history[:1], spec)))


def test_rul_labels_are_capped_and_linear():
    y = rul_labels(200)
    assert y[0] == RUL_CAP and y.max() == RUL_CAP
    assert y[-1] == 0.0
    np.testing.assert_array_equal(y[-126:], np.arange(125, -1, -1))
    np.testing.assert_array_equal(rul_labels(50), np.arange(49, -1, -1))


def test_nasa_score_and_rmse_on_hand_worked_numbers():
    pred = np.array([10.0, 20.0, 30.0])
    true = np.array([20.0, 20.0, 20.0])
    # d = -10 (early: e^(10/13) - 1), 0 (no cost), +10 (late: e^(10/10) - 1)
    assert nasa_score(pred, true) == pytest.approx(math.exp(10 / 13) - 1 + math.e - 1)
    assert rmse(pred, true) == pytest.approx(math.sqrt(200 / 3))
    # late by 13 costs more than early by 13
    assert nasa_score(np.array([13.0]), np.array([0.0])) > nasa_score(np.array([0.0]), np.array([13.0]))


def test_fit_conditions_finds_six_regimes():
    spec = synthetic_spec(6)
    history = synthetic_history(spec, 2000, seed=3)
    centres = fit_conditions(history[:, :3], 6)
    np.testing.assert_allclose(centres, spec.centres, atol=0.01)


@pytest.mark.parametrize("subset", SUBSETS)
def test_committed_model_predicts_finite_capped_rul(subset):
    model = RulModel.load(subset)
    assert model.name == f"rul_{subset}" and len(model.sha256) == 64 and model.version
    fresh = synthetic_history(model.spec, 40, seed=4)
    worn = synthetic_history(model.spec, 300, seed=5, wear=0.01)
    histories = [fresh, worn, fresh[:1], worn[:7]]
    many = model.predict_many(histories)
    assert many.shape == (4,)
    assert np.all(np.isfinite(many)) and np.all(many >= 0) and np.all(many <= model.cap)
    np.testing.assert_allclose([model.predict(h) for h in histories], many, rtol=1e-5)
    # a long history drifting away from the fleet's normal is nearer failure than a young, normal one
    assert many[1] < many[0]


def write_cmapss(path: Path, histories: list[np.ndarray]) -> None:
    """C-MAPSS text format: unit, cycle, 3 settings, 21 sensors, space-separated with trailing spaces."""
    rows = [
        " ".join([str(u + 1), str(c + 1), *(f"{v:.4f}" for v in row)]) + "  "
        for u, h in enumerate(histories)
        for c, row in enumerate(h)
    ]
    path.write_text("\n".join(rows) + "\n")


def test_evaluate_on_synthetic_test_file(tmp_path):
    model = RulModel.load("FD001")
    histories = [synthetic_history(model.spec, n, seed=n, wear=0.01) for n in (25, 80, 150)]
    true = np.array([90.0, 40.0, 5.0])
    write_cmapss(tmp_path / "test.txt", histories)
    (tmp_path / "rul.txt").write_text("\n".join(f"{int(v)}" for v in true) + "\n")
    units = read_units(tmp_path / "test.txt")
    assert [len(u.data) for u in units] == [25, 80, 150]
    result = evaluate("FD001", tmp_path / "test.txt", tmp_path / "rul.txt")
    assert result["n"] == 3 and result["model"] == "rul_FD001" and result["sha256"] == model.sha256
    pred = model.predict_many([u.data for u in units])
    d = pred - true
    assert result["rmse"] == pytest.approx(float(np.sqrt(np.mean(d**2))))
    expected = float(sum(math.exp(-x / 13) - 1 if x < 0 else math.exp(x / 10) - 1 for x in d))
    assert result["score"] == pytest.approx(expected)


def test_evaluate_rejects_mismatched_rul_file(tmp_path):
    spec = RulModel.load("FD001").spec
    write_cmapss(tmp_path / "test.txt", [synthetic_history(spec, 30, seed=1)])
    (tmp_path / "rul.txt").write_text("10\n20\n")
    with pytest.raises(ValueError, match="2 RUL values for 1 units"):
        evaluate("FD001", tmp_path / "test.txt", tmp_path / "rul.txt")


def linear_onnx(input_name: str, shape: list[int | None], weights: np.ndarray) -> bytes:
    """A one-input ONNX graph: flatten the input and multiply by a weight column, giving (batch, 1)."""
    import onnx  # a dependency of training (installed with the project)
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Flatten", [input_name], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["out"])]
    graph = helper.make_graph(
        nodes,
        input_name,
        [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]).SerializeToString()


def test_average_onnx_means_members_with_their_own_inputs():
    import onnxruntime as ort

    from analytics.rul import average_onnx

    wa, wb = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 4.0, 2.0])
    merged = average_onnx([linear_onnx("features", [None, 3], wa), linear_onnx("window", [None, 2, 2], wb)])
    session = ort.InferenceSession(merged)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 3)).astype(np.float32)
    window = rng.normal(size=(5, 2, 2)).astype(np.float32)
    out = session.run(None, {"features": features, "window": window})[0]
    expected = (features @ wa + window.reshape(5, 4) @ wb) / 2
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-5)


# the full set is here (CI): both subsets' official test files against their cards; else FD001's committed
# slice (test units 1-5 and their RUL rows), where only evaluate's own arithmetic can be checked
@pytest.mark.parametrize("subset", ["FD001", "FD003"] if has_full_set("cmapss") else ["FD001"])
def test_full_test_set_scores_as_the_card_says(subset):
    model = RulModel.load(subset)
    recorded = model.card.metrics["test"]
    if has_full_set("cmapss"):
        result = evaluate(subset)  # the full official test_ and RUL_ files
        assert result["n"] == recorded["n"] == 100
        assert result["rmse"] == pytest.approx(recorded["rmse"], abs=0.05)
        assert result["rmse_capped"] == pytest.approx(recorded["rmse_capped"], abs=0.05)
        assert result["score"] == pytest.approx(recorded["score"], rel=0.01)
    else:
        from datasets import dataset_dir

        folder = dataset_dir("cmapss")
        result = evaluate(subset, folder / "test_FD001.txt", folder / "RUL_FD001.txt")
        assert result["n"] == 5
    # the capped convention is the same predictions against min(true, cap)
    units = read_units(Path(result["test_file"]))
    true = np.loadtxt(result["rul_file"])
    pred = model.predict_many([u.data for u in units])
    assert result["rmse_capped"] == pytest.approx(rmse(pred, np.minimum(true, model.cap)))
    assert result["score_capped"] == pytest.approx(nasa_score(pred, np.minimum(true, model.cap)))
    assert result["cap"] == RUL_CAP and result["units_above_cap"] == int(np.sum(true > RUL_CAP))
    assert "rmse_capped/score_capped against min(true RUL, cap" in result["protocol"]


def test_rul_is_null_with_a_reason_until_the_history_is_long_and_in_range():
    from datasets import dataset_dir

    model = RulModel.load("FD001")
    unit = read_units(dataset_dir("cmapss") / "test_FD001.txt")[0].data  # unit 1 is in the slice too
    assert model.min_history == 20 and set(model.valid_ranges) >= {"setting1", "s2", "s21"}
    short = model.assess(unit[:5])
    assert not short.valid and short.value is None and short.reason == "5 of the 20 cycles of history the model needs"
    assert not model.assess(np.empty((0, 24))).valid
    good = model.assess(unit)
    assert good.valid and good.value == pytest.approx(model.predict(unit)) and good.detail["cycles_seen"] == len(unit)
    hot = unit.copy()
    hot[25, 3 + 1] = 500.0  # s2 read in the wrong unit at cycle 26
    bad = model.assess(hot)
    assert not bad.valid and "input s2 at cycle 26" in bad.reason and "outside the training range" in bad.reason


def test_train_reads_no_test_file(tmp_path, monkeypatch):
    from analytics import rul
    from datasets import dataset_dir

    full = (dataset_dir("cmapss") / "train_FD001.txt").read_text().splitlines()  # the slice holds units 1-8
    (tmp_path / "cmapss").mkdir()
    # twelve units of the training file, and no test_ or RUL_ file beside it
    (tmp_path / "cmapss" / "train_FD001.txt").write_text("\n".join(r for r in full if int(r.split()[0]) <= 12) + "\n")
    monkeypatch.setitem(rul.XGB_PARAMS, "FD001", rul.XgbParams(n_estimators=5))
    card = rul.train("FD001", data_root=tmp_path, out_dir=tmp_path / "models")
    assert "test" not in card.metrics and card.metrics["cv_n"] > 0
    assert "training never opens a test file" in card.split and card.inputs["valid_ranges"]["s2"][0] < 643
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["rul_FD001.json", "rul_FD001.onnx"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 1" + " 0.5" * 23 + "\n", "line 1: 25 fields, expected 26"),
        ("1 1" + " 0.5" * 23 + " abc\n", "line 1: field 26: 'abc' is not a number"),
        ("1 1" + " 0.5" * 24 + "\n1 2" + " 0.5" * 23 + " nan\n", "line 2: field 26: 'nan' is not finite"),
        ("\n\n", "no data lines"),
    ],
)
def test_malformed_c_mapss_lines_are_named(tmp_path, text, message):
    (tmp_path / "test.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_units(tmp_path / "test.txt")
