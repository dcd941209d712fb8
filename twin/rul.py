"""Remaining useful life of a C-MAPSS-like engine from its cycle history, served by onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from twin.model_card import MODELS_DIR, ModelCard, load
from twin.rul_features import FeatureSpec, sequence_input, window_features


@dataclass(slots=True)
class RulModel:
    """A stored RUL model (`rul_<subset>`) with its feature constants; the ONNX graph reads "features" and/or "window"."""

    card: ModelCard
    spec: FeatureSpec
    session: ort.InferenceSession
    cap: float

    @classmethod
    def load(cls, subset: str, folder: Path = MODELS_DIR) -> RulModel:
        """The registered model for a subset such as "FD001", its ONNX checked against the card's sha256."""
        stored = load(f"rul_{subset}", folder)
        session = stored.session()
        inputs = stored.card.inputs
        return cls(stored.card, FeatureSpec.from_dict(inputs), session, float(inputs.get("rul_cap", 125.0)))

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
