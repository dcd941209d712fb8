"""AI4I failure features and the committed failure model."""

from __future__ import annotations

import numpy as np
import pytest

from twin.failure import FailureModel
from twin.failure_features import (
    FEATURE_NAMES,
    INPUT_COLUMNS,
    MissingInputError,
    derive,
    inputs_from_columns,
    inputs_from_mapping,
)

BENIGN = {
    "Type": "M",
    "Air temperature [K]": 298.1,
    "Process temperature [K]": 308.6,
    "Rotational speed [rpm]": 1551.0,
    "Torque [Nm]": 42.8,
    "Tool wear [min]": 10.0,
}


def _features(record: dict) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, derive(inputs_from_mapping(record))[0], strict=True))


@pytest.mark.parametrize("column", INPUT_COLUMNS)
def test_missing_column_is_named(column):
    record = {k: v for k, v in BENIGN.items() if k != column}
    with pytest.raises(MissingInputError, match=column.replace("[", r"\[").replace("]", r"\]")) as caught:
        inputs_from_mapping(record)
    assert caught.value.column == column


def test_missing_column_in_a_table_is_named():
    table = {k: [v, v] for k, v in BENIGN.items() if k != "Tool wear [min]"}
    with pytest.raises(MissingInputError) as caught:
        inputs_from_columns(table)
    assert caught.value.column == "Tool wear [min]"


def test_bad_values_are_named():
    with pytest.raises(MissingInputError, match="Type"):
        inputs_from_mapping({**BENIGN, "Type": "X"})
    with pytest.raises(MissingInputError, match="Torque"):
        inputs_from_mapping({**BENIGN, "Torque [Nm]": "n/a"})
    with pytest.raises(MissingInputError, match="Air temperature"):
        inputs_from_mapping({**BENIGN, "Air temperature [K]": float("nan")})


def test_failure_mode_columns_are_not_inputs():
    assert not {"UDI", "Product ID", "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"} & set(INPUT_COLUMNS)
    # extra columns in a record are ignored, so a whole CSV row can be passed
    with_flags = {**BENIGN, "TWF": 1, "HDF": 1, "UDI": 7, "Product ID": "M1"}
    np.testing.assert_array_equal(inputs_from_mapping(with_flags), inputs_from_mapping(BENIGN))


def test_snake_case_names_are_accepted():
    snake = {
        "type": "M",
        "air_temperature_k": 298.1,
        "process_temperature_k": 308.6,
        "rotational_speed_rpm": 1551.0,
        "torque_nm": 42.8,
        "tool_wear_min": 10.0,
    }
    np.testing.assert_array_equal(inputs_from_mapping(snake), inputs_from_mapping(BENIGN))


def test_derived_quantities():
    f = _features(BENIGN)
    assert f["temperature_difference_k"] == pytest.approx(308.6 - 298.1, abs=1e-4)
    assert f["power_w"] == pytest.approx(42.8 * 1551.0 * 2 * np.pi / 60, rel=1e-5)
    assert f["strain_min_nm"] == pytest.approx(428.0, rel=1e-5)
    assert (f["heat_dissipation_rule"], f["power_rule"], f["overstrain_rule"]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"Process temperature [K]": 306.0, "Rotational speed [rpm]": 1300.0}, "heat_dissipation_rule"),
        ({"Torque [Nm]": 70.0, "Rotational speed [rpm]": 1400.0}, "power_rule"),
        ({"Type": "L", "Torque [Nm]": 55.0, "Tool wear [min]": 210.0}, "overstrain_rule"),
    ],
)
def test_each_rule_fires_alone(change, rule):
    f = _features({**BENIGN, **change})
    fired = {r for r in ("heat_dissipation_rule", "power_rule", "overstrain_rule") if f[r]}
    assert fired == {rule}


@pytest.fixture(scope="module")
def model() -> FailureModel:
    return FailureModel.load()


def test_committed_model_probabilities_are_probabilities(model):
    rng = np.random.default_rng(0)
    m = 200
    inputs = np.column_stack(
        [
            rng.integers(0, 3, m),
            rng.uniform(295, 305, m),
            rng.uniform(305, 314, m),
            rng.uniform(1150, 2900, m),
            rng.uniform(3, 77, m),
            rng.uniform(0, 255, m),
        ]
    )
    p = model.probabilities(inputs)
    assert p.shape == (m,)
    assert np.all((p >= 0.0) & (p <= 1.0))
    assert 0.0 < model.threshold < 1.0


def test_mapping_and_array_agree(model):
    assert model.probability(BENIGN) == pytest.approx(model.probability(inputs_from_mapping(BENIGN)), abs=1e-6)


def test_a_rule_breaking_record_scores_above_a_benign_one(model):
    overstrained = {**BENIGN, "Type": "L", "Torque [Nm]": 60.0, "Tool wear [min]": 220.0}
    assert model.probability(overstrained) > model.threshold > model.probability(BENIGN)


def test_untouched_test_split_scores_as_the_card_says(model):
    from analytics import failure

    inputs, y = failure.read_table(failure.csv_path())
    train, test = failure.holdout_split(y)
    recorded = model.card.metrics["test"]
    assert failure.rows_digest(test) == recorded["rows_sha256"] and recorded["split_seed"] == failure.TEST_SEED
    assert not set(train) & set(test) and len(test) == recorded["n"] == 2000
    assert y[test].mean() == pytest.approx(y.mean(), abs=0.002)  # stratified
    result = failure.evaluate()
    for key in ("f1", "f1_at_0.5", "roc_auc", "pr_auc"):
        assert result[key] == pytest.approx(recorded[key], abs=1e-9), key
    assert "untouched" in result["protocol"] and model.card.metrics["train_rows"] == len(train)


def test_the_card_records_each_inputs_training_range(model):
    ranges = model.card.inputs["valid_ranges"]
    assert set(ranges) == {"air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm", "tool_wear_min"}
    assert ranges["air_temperature_k"][0] > 290 and ranges["rotational_speed_rpm"][1] < 3000


def test_an_idle_machines_zeros_get_no_probability(model):
    zeros = {"type": "L", "air_temperature_k": 0.0, "process_temperature_k": 0.0, "rotational_speed_rpm": 0.0,
             "torque_nm": 0.0, "tool_wear_min": 0.0}
    verdict = model.assess(zeros)
    assert not verdict.valid and verdict.value is None
    assert "air_temperature_k = 0 K is outside the training range" in verdict.reason
    missing = model.assess({**BENIGN, "Torque [Nm]": None})
    assert not missing.valid and "torque_nm is missing" in missing.reason
    stale = model.assess(BENIGN, ages_s={"torque_nm": 900.0, "tool_wear_min": 5.0}, max_age_s=600.0)
    assert not stale.valid and "torque_nm is stale" in stale.reason
    fine = model.assess(BENIGN, ages_s={"torque_nm": 5.0}, max_age_s=600.0)
    assert fine.valid and fine.value == pytest.approx(model.probability(BENIGN)) and fine.detail["flagged"] is False


def test_malformed_csv_is_named_by_line_and_column(tmp_path):
    from analytics import failure

    lines = failure.csv_path().read_text(encoding="utf-8-sig").splitlines()[:4]
    cells = lines[2].split(",")
    cells[3] = "nan"
    (tmp_path / "bad.csv").write_text("\n".join([lines[0], lines[1], ",".join(cells), lines[3]]) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3: column 'Air temperature \[K\]': 'nan'"):
        failure.read_table(tmp_path / "bad.csv")


def test_fast_auc_and_average_precision_equal_sklearns():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from analytics.failure import average_precision, roc_auc

    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(np.int64)
    p = np.round(rng.random(400) * 0.6 + 0.3 * y, 2)  # rounded: ties included
    assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert average_precision(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-12)
