"""Machine-failure features of an AI4I-2020-style process record, shared by training and serving.

Inputs are the six process readings only; the failure-mode flags (TWF, HDF, PWF, OSF, RNF), the failure
label and the identifiers (UDI, Product ID) are never read. Derived columns are the physical quantities the
AI4I failure modes are stated in (Matzka 2020): temperature difference, mechanical power and tool strain, and
the stated heat-dissipation, power and overstrain rules as 0/1 flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

INPUT_COLUMNS: tuple[str, ...] = (
    "Type",
    "Air temperature [K]",
    "Process temperature [K]",
    "Rotational speed [rpm]",
    "Torque [Nm]",
    "Tool wear [min]",
)
# snake_case spellings accepted as well, for callers that are not reading the CSV header
ALIASES: dict[str, str] = {
    "type": "Type",
    "air_temperature_k": "Air temperature [K]",
    "process_temperature_k": "Process temperature [K]",
    "rotational_speed_rpm": "Rotational speed [rpm]",
    "torque_nm": "Torque [Nm]",
    "tool_wear_min": "Tool wear [min]",
}
SNAKE_NAMES: tuple[str, ...] = tuple({v: k for k, v in ALIASES.items()}[c] for c in INPUT_COLUMNS)
UNITS: dict[str, str] = {
    "air_temperature_k": "K",
    "process_temperature_k": "K",
    "rotational_speed_rpm": "rpm",
    "torque_nm": "Nm",
    "tool_wear_min": "min",
}
NOT_INPUTS: tuple[str, ...] = ("UDI", "Product ID", "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF")
TYPE_CODES: dict[str, int] = {"L": 0, "M": 1, "H": 2}
# Failure-mode rules as stated for the data set (Matzka 2020); the model gets them as flags and margins.
# Overstrain limit of tool wear x torque (min Nm) per product quality variant L/M/H.
STRAIN_LIMIT = np.array([11_000.0, 12_000.0, 13_000.0])
HEAT_MAX_TEMPERATURE_DIFFERENCE_K = 8.6  # heat dissipation fails below this difference ...
HEAT_MAX_SPEED_RPM = 1380.0  # ... at once with a speed below this
POWER_RANGE_W = (3500.0, 9000.0)  # power failure outside this range

FEATURE_NAMES: tuple[str, ...] = (
    "type_code",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
    "temperature_difference_k",
    "power_w",
    "strain_min_nm",
    "strain_over_limit",
    "heat_dissipation_rule",
    "power_rule",
    "overstrain_rule",
)
RAW_FEATURES = FEATURE_NAMES[:6]
RULE_FEATURES = ("heat_dissipation_rule", "power_rule", "overstrain_rule")


class MissingInputError(ValueError):
    """An input column is absent or unusable; `column` names it."""

    def __init__(self, column: str, problem: str = "missing") -> None:
        super().__init__(f"failure features: input column {column!r} is {problem}; expected columns {list(INPUT_COLUMNS)}")
        self.column = column


def _type_code(value: object, column: str = "Type") -> float:
    if isinstance(value, str):
        code = TYPE_CODES.get(value.strip().upper())
        if code is None:
            raise MissingInputError(column, f"{value!r}, not one of L/M/H")
        return float(code)
    number = float(value)  # type: ignore[arg-type]
    if number not in (0.0, 1.0, 2.0):
        raise MissingInputError(column, f"{value!r}, not one of L/M/H or 0/1/2")
    return number


def _lookup(record: Mapping[str, object], column: str) -> object:
    if column in record:
        return record[column]
    for alias, name in ALIASES.items():
        if name == column and alias in record:
            return record[alias]
    raise MissingInputError(column)


def inputs_from_mapping(record: Mapping[str, object]) -> np.ndarray:
    """The six inputs (6,) float64 of one record keyed by CSV header or snake_case name; Type as L/M/H or 0/1/2."""
    out = np.empty(len(INPUT_COLUMNS))
    for i, column in enumerate(INPUT_COLUMNS):
        value = _lookup(record, column)
        if column == "Type":
            out[i] = _type_code(value)
            continue
        try:
            out[i] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise MissingInputError(column, f"{value!r}, not a number") from None
        if not np.isfinite(out[i]):
            raise MissingInputError(column, "not finite")
    return out


def inputs_from_columns(table: Mapping[str, Sequence[object]]) -> np.ndarray:
    """The inputs (m, 6) float64 of a column table keyed by CSV header or snake_case name."""
    cols = []
    for column in INPUT_COLUMNS:
        values = _lookup(table, column)
        if column == "Type":
            cols.append(np.array([_type_code(v) for v in values]))  # type: ignore[union-attr]
            continue
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise MissingInputError(column, "not numeric") from None
        if not np.all(np.isfinite(arr)):
            raise MissingInputError(column, "not finite in every row")
        cols.append(arr)
    lengths = {len(c) for c in cols}
    if len(lengths) != 1:
        raise ValueError(f"failure features: columns differ in length {sorted(lengths)}")
    return np.column_stack(cols)


def derive(inputs: np.ndarray) -> np.ndarray:
    """Model features (m, len(FEATURE_NAMES)) float32 from inputs (m, 6) in INPUT_COLUMNS order, Type coded 0/1/2."""
    x = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    if x.shape[1] != len(INPUT_COLUMNS):
        raise ValueError(f"failure features: expected {len(INPUT_COLUMNS)} input columns {list(INPUT_COLUMNS)}, got {x.shape[1]}")
    for i, column in enumerate(INPUT_COLUMNS):
        if not np.all(np.isfinite(x[:, i])):
            raise MissingInputError(column, "not finite")
    if not np.all(np.isin(x[:, 0], (0.0, 1.0, 2.0))):
        raise MissingInputError("Type", "not coded 0/1/2 (L/M/H)")
    air, process, speed, torque, wear = x[:, 1], x[:, 2], x[:, 3], x[:, 4], x[:, 5]
    difference = process - air
    power = torque * speed * (2.0 * np.pi / 60.0)
    strain = wear * torque
    over = strain / STRAIN_LIMIT[x[:, 0].astype(np.int64)]
    return np.column_stack(
        [
            x,
            difference,
            power,
            strain,
            over,
            (difference < HEAT_MAX_TEMPERATURE_DIFFERENCE_K) & (speed < HEAT_MAX_SPEED_RPM),
            (power < POWER_RANGE_W[0]) | (power > POWER_RANGE_W[1]),
            over > 1.0,
        ]
    ).astype(np.float32)
