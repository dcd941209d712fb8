"""Probability of machine failure from an AI4I-2020-style process record, served by onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from twin.failure_features import (
    FEATURE_NAMES,
    INPUT_COLUMNS,
    SNAKE_NAMES,
    UNITS,
    MissingInputError,
    derive,
    inputs_from_mapping,
)
from twin.model_card import MODELS_DIR, ModelCard, load
from twin.validity import Verdict, check, check_ages

MODEL_NAME = "failure"


@dataclass(slots=True)
class FailureModel:
    """A stored failure model; its ONNX graph reads "features" (batch, len(FEATURE_NAMES)) float32."""

    card: ModelCard
    session: ort.InferenceSession
    threshold: float  # probability at or above which a record is flagged, chosen by CV on training rows
    valid_ranges: dict[str, list[float]]  # numeric input -> [min, max] seen in training

    @classmethod
    def load(cls, name: str = MODEL_NAME, folder: Path = MODELS_DIR) -> FailureModel:
        """The stored model, its ONNX checked against the card's sha256 and its features against this code."""
        stored = load(name, folder)
        if tuple(stored.card.features) != FEATURE_NAMES:
            raise ValueError(f"{name}: card features differ from twin.failure_features.FEATURE_NAMES; retrain it")
        session = stored.session()
        inputs = stored.card.inputs
        return cls(stored.card, session, float(inputs.get("threshold", 0.5)), dict(inputs.get("valid_ranges", {})))

    @property
    def name(self) -> str:
        """Model name from its card."""
        return self.card.name

    @property
    def sha256(self) -> str:
        """sha256 of the ONNX file, as recorded in the card."""
        return self.card.sha256

    def _inputs(self, records: Sequence[Mapping[str, object]] | np.ndarray) -> np.ndarray:
        if isinstance(records, np.ndarray):
            return np.atleast_2d(records)
        return np.array([inputs_from_mapping(r) for r in records]).reshape(-1, len(INPUT_COLUMNS))

    def probabilities(self, records: Sequence[Mapping[str, object]] | np.ndarray) -> np.ndarray:
        """Failure probability (m,) of records: mappings by column name, or an (m, 6) array in INPUT_COLUMNS order."""
        inputs = self._inputs(records)
        if inputs.shape[0] == 0:
            return np.empty(0)
        (proba,) = self.session.run(["probabilities"], {"features": derive(inputs)})
        return np.asarray(proba, dtype=np.float64)[:, 1]

    def probability(self, features: Mapping[str, object] | np.ndarray) -> float:
        """Failure probability of one record: a mapping by column name or a (6,) array in INPUT_COLUMNS order."""
        if isinstance(features, np.ndarray):
            return float(self.probabilities(features.reshape(1, -1))[0])
        return float(self.probabilities([features])[0])

    def flags(self, records: Sequence[Mapping[str, object]] | np.ndarray) -> np.ndarray:
        """Whether each record's probability reaches the model's threshold (m,) bool."""
        return self.probabilities(records) >= self.threshold

    def assess(
        self, record: Mapping[str, object], *, ages_s: Mapping[str, float] | None = None, max_age_s: float | None = None
    ) -> Verdict:
        """Failure probability of one record (value, with `flagged`), or not valid with the reason and no number.

        Not valid: an input missing, not a number, outside the training range, or older than max_age_s.
        """
        values: dict[str, float | None] = {}
        for column, snake in zip(INPUT_COLUMNS[1:], SNAKE_NAMES[1:], strict=True):
            raw = record.get(column, record.get(snake))
            try:
                values[snake] = None if raw is None else float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return Verdict.refuse(f"input {snake} = {raw!r} is not a number")
        reason = check(values, self.valid_ranges, UNITS) or check_ages(ages_s, max_age_s)
        if reason is not None:
            return Verdict.refuse(reason)
        try:
            x = inputs_from_mapping(record)
        except MissingInputError as e:
            return Verdict.refuse(str(e))
        p = self.probability(x)
        return Verdict(valid=True, value=p, detail={"flagged": bool(p >= self.threshold)})
