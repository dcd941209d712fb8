"""Bearing condition (normal / inner race / outer race / ball fault) from drive-end vibration, served by onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy.signal import resample_poly

from twin.bearing_features import FEATURE_NAMES, bearing_features_batch
from twin.model_card import MODELS_DIR, ModelCard, load
from twin.validity import Verdict, check

MODEL_NAME = "bearing"


@dataclass(slots=True)
class BearingModel:
    """A stored bearing classifier; its ONNX graph reads "features" (batch, len(FEATURE_NAMES)) float32."""

    card: ModelCard
    session: ort.InferenceSession
    classes: tuple[str, ...]
    window: int  # samples per window the model was trained on, at fs
    fs: float
    valid_ranges: dict[str, list[float]]  # "rpm" and "log_rms" -> [min, max] seen in training

    @classmethod
    def load(cls, name: str = MODEL_NAME, folder: Path = MODELS_DIR) -> BearingModel:
        """The stored model, its ONNX checked against the card's sha256 and its features against this code."""
        stored = load(name, folder)
        card = stored.card
        if tuple(card.features) != FEATURE_NAMES:
            raise ValueError(f"{name}: card features differ from twin.bearing_features.FEATURE_NAMES; retrain it")
        inputs = card.inputs
        return cls(card, stored.session(), tuple(inputs["classes"]), int(inputs["window"]), float(inputs["fs"]),
                   dict(inputs.get("valid_ranges", {})))

    @property
    def name(self) -> str:
        """Model name from its card."""
        return self.card.name

    @property
    def sha256(self) -> str:
        """sha256 of the ONNX file, as recorded in the card."""
        return self.card.sha256

    def _at_model_rate(self, windows: np.ndarray, fs: float) -> np.ndarray:
        """Windows resampled to the model's sample rate, so the spectral bands mean the same Hz."""
        if fs == self.fs:
            return windows
        ratio = Fraction(self.fs / fs).limit_denominator(1000)
        return resample_poly(windows, ratio.numerator, ratio.denominator, axis=1)

    def probabilities(self, windows: np.ndarray, rpm: float | np.ndarray, fs: float = 12_000.0) -> np.ndarray:
        """Class probabilities (m, len(classes)) of windows (m, n) of drive-end acceleration at shaft speed rpm."""
        x = self._at_model_rate(np.asarray(windows, dtype=np.float64), fs)
        if x.ndim != 2:
            raise ValueError(f"windows must be 2-D (m, n), got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty((0, len(self.classes)), dtype=np.float32)
        features = bearing_features_batch(x, rpm, self.fs)
        (proba,) = self.session.run(["probabilities"], {"features": features})
        return np.asarray(proba, dtype=np.float32).reshape(len(features), len(self.classes))

    def classify_batch(
        self, windows: np.ndarray, rpm: float | np.ndarray, fs: float = 12_000.0
    ) -> tuple[list[str], np.ndarray]:
        """Most likely class of each window and the (m, classes) probabilities; best with windows of `self.window`."""
        proba = self.probabilities(windows, rpm, fs)
        return [self.classes[i] for i in np.argmax(proba, axis=1)], proba

    def classify(self, window: np.ndarray, rpm: float, fs: float = 12_000.0) -> tuple[str, dict[str, float]]:
        """Most likely class of one window of drive-end acceleration (g) and the probability of each class."""
        labels, proba = self.classify_batch(np.asarray(window)[None, :], rpm, fs)
        return labels[0], {c: float(p) for c, p in zip(self.classes, proba[0], strict=True)}

    def assess(self, window: np.ndarray, rpm: float | None, fs: float = 12_000.0) -> Verdict:
        """Class of one window (value, with `probabilities`), or not valid with the reason and no class.

        Not valid: rpm missing or outside the training speeds, a window shorter than the model's, a sample
        not finite, or a vibration level (log10 RMS) outside what training saw (a stopped machine reads ~0 g).
        """
        x = np.asarray(window, dtype=np.float64).ravel()
        need = int(np.ceil(self.window * fs / self.fs))
        if len(x) < need:
            return Verdict.refuse(f"window has {len(x)} samples; the model needs {need} at {fs:g} Hz")
        if not np.all(np.isfinite(x)):
            return Verdict.refuse("window holds a missing (not finite) sample")
        x = x[-need:]
        level = float(np.log10(np.sqrt(np.mean((x - x.mean()) ** 2)) + 1e-12))
        reason = check({"rpm": rpm, "log_rms": level}, self.valid_ranges, {"rpm": "rpm", "log_rms": "log10 g"})
        if reason is not None:
            return Verdict.refuse(reason)
        label, proba = self.classify(x, float(rpm), fs)  # type: ignore[arg-type]
        return Verdict(valid=True, value=label, detail={"probabilities": proba})
