"""Remaining useful life of a C-MAPSS-like engine from its cycle history, served by onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from twin.model_card import MODELS_DIR, ModelCard, load
from twin.rul_features import COLUMN_NAMES, FeatureSpec, sequence_input, window_features
from twin.validity import Verdict


@dataclass(slots=True)
class RulModel:
    """A stored RUL model (`rul_<subset>`) with its feature constants; the ONNX graph reads "features" and/or "window"."""

    card: ModelCard
    spec: FeatureSpec
    session: ort.InferenceSession
    cap: float
    min_history: int  # cycles a history needs before the model's answer means anything
    valid_ranges: dict[str, list[float]]  # column name -> [min, max] over the training cycles

    @classmethod
    def load(cls, subset: str, folder: Path = MODELS_DIR) -> RulModel:
        """The registered model for a subset such as "FD001", its ONNX checked against the card's sha256."""
        stored = load(f"rul_{subset}", folder)
        session = stored.session()
        inputs = stored.card.inputs
        return cls(stored.card, FeatureSpec.from_dict(inputs), session, float(inputs.get("rul_cap", 125.0)),
                   int(inputs.get("min_history", 1)), dict(inputs.get("valid_ranges", {})))

    @property
    def name(self) -> str:
        """Model name, e.g. "rul_FD001"."""
        return self.card.name

    @property
    def version(self) -> str:
        """Model version from its card."""
        return self.card.version

    @property
    def sha256(self) -> str:
        """sha256 of the ONNX file, as recorded in the card."""
        return self.card.sha256

    def _feeds(self, histories: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for arg in self.session.get_inputs():
            if arg.name == "features":
                feeds[arg.name] = np.stack([window_features(h, self.spec) for h in histories])
            elif arg.name == "window":
                feeds[arg.name] = np.stack([sequence_input(h, self.spec) for h in histories])
            else:
                raise ValueError(f"{self.name}: unknown model input {arg.name!r}")
        return feeds

    def predict_many(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """RUL (cycles) of each history (cycles x 24 columns, from the unit's first cycle, newest last), in one run."""
        if len(histories) == 0:
            return np.empty(0)
        out = self.session.run(None, self._feeds(histories))[0]
        return np.clip(np.asarray(out, dtype=np.float64).reshape(len(histories)), 0.0, self.cap)

    def predict(self, history: np.ndarray) -> float:
        """RUL (cycles) of one history (cycles x 24 columns, from the unit's first cycle, newest last)."""
        return float(self.predict_many([history])[0])

    def assess(self, history: np.ndarray | Sequence[np.ndarray]) -> Verdict:
        """RUL (cycles) of one history as value, or not valid with the reason and no number.

        Not valid: fewer than min_history cycles, a missing value, or any cycle with a setting or read sensor
        outside the range seen in training (wrong units, a stopped machine, another engine type).
        """
        rows = len(history)
        if rows < self.min_history:
            return Verdict.refuse(f"{rows} of the {self.min_history} cycles of history the model needs", cycles_seen=rows)
        h = np.asarray(history, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != len(COLUMN_NAMES):
            return Verdict.refuse(f"history must be (cycles, {len(COLUMN_NAMES)}), got shape {h.shape}", cycles_seen=rows)
        for name, (low, high) in self.valid_ranges.items():
            col = h[:, COLUMN_NAMES.index(name)]
            bad = np.flatnonzero(~np.isfinite(col) | (col < low) | (col > high))
            if bad.size:
                v = col[bad[-1]]
                what = "missing" if not np.isfinite(v) else f"{v:g}, outside the training range [{low:g}, {high:g}]"
                return Verdict.refuse(f"input {name} at cycle {int(bad[-1]) + 1} of {rows} is {what}", cycles_seen=rows)
        return Verdict(valid=True, value=self.predict(h), detail={"cycles_seen": rows})
