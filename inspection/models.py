"""Serving the committed inspection models with onnxruntime: a grey image in, a verdict-ready result out."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from inspection.images import resize
from inspection.metrics import softmax
from twin.model_card import ModelCard, load

MODELS_DIR = Path(__file__).resolve().parent / "models"
OK_CLASSES = {"Free"}  # classes that are a good part; every NEU class is a defect type


@dataclass(slots=True)
class Result:
    """What a model says about one image: class, defect score, probabilities and, for segmenters, the mask."""

    label: str
    score: float  # probability that the part is defective (segmenter) or of the predicted class (classifier)
    probs: np.ndarray
    defect: bool
    mask: np.ndarray | None = None  # (h, w) float logits at the image's own size
    latency_ms: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


class VisionModel:
    """One ONNX model with its card; run() is thread-safe (onnxruntime sessions are)."""

    def __init__(self, card: ModelCard, onnx: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the host is small and shared; concurrency comes from requests
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.card = card
        self.size = int(card.inputs["size"])
        self.classes: list[str] = list(card.inputs["classes"])
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def batch(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for a (n, 1, size, size) float32 batch."""
        return self.session.run(None, {"image": x})

    def run(self, grey: np.ndarray) -> Result:
        """Judge one (h, w) uint8 grey image."""
        started = time.perf_counter()
        outs = self.batch(resize(grey, self.size)[None, None])
        probs = softmax(outs[0])[0]
        if len(outs) > 1:  # segmenter: Free + defect types, and a mask
            small = outs[1][0, 0]
            score = float(1 - probs[self.classes.index("Free")])
            label = self.classes[int(probs.argmax())] if score < 0.5 else self.classes[1 + int(probs[1:].argmax())]
            mask = _upsample(small, grey.shape)
            result = Result(label, score, probs, label not in OK_CLASSES, mask)
            result.summary = {"mask": mask_summary(mask > 0)}
        else:
            i = int(probs.argmax())
            result = Result(self.classes[i], float(probs[i]), probs, self.classes[i] not in OK_CLASSES)
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result


def _upsample(small: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR))


def mask_summary(mask: np.ndarray) -> dict[str, Any]:
    """Defect area in pixels and as a fraction, and its bounding box [x0, y0, x1, y1] (None when empty)."""
    area = int(mask.sum())
    if not area:
        return {"area_px": 0, "area_fraction": 0.0, "bbox": None}
    ys, xs = np.nonzero(mask)
    return {"area_px": area, "area_fraction": area / mask.size,
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]}


@lru_cache(maxsize=8)
def load_model(name: str, folder: Path = MODELS_DIR) -> VisionModel:
    """The committed model called name (its sha256 checked against the card), loaded once per process."""
    stored = load(name, folder)
    return VisionModel(stored.card, stored.onnx_bytes())
