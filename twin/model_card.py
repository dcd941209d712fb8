"""Trained models as committed files: `<name>.onnx` beside `<name>.json`, the record of how it was made and scored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

MODELS_DIR = Path(__file__).resolve().parent / "models"


class ModelCard(msgspec.Struct, kw_only=True):
    """What a model is, what it was trained and scored on, and the sha256 of its ONNX file."""

    name: str  # file stem, e.g. "rul_FD001"
    kind: str  # "rul" | "bearing" | "failure"
    version: str
    dataset: str  # e.g. "NASA C-MAPSS FD001 (train_FD001.txt)"
    split: str  # what was trained on and what was scored on
    protocol: str  # how the scores were measured (CV folds, caps, windows)
    metrics: dict[str, Any]
    features: list[str]  # the model's input columns, in order
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)  # window length, normalisation, classes...
    command: str = ""  # the command that reproduces it
    trained_at: str = ""  # ISO 8601 UTC
    libraries: dict[str, str] = msgspec.field(default_factory=dict)
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A model card with the ONNX file it describes."""

    card: ModelCard
    path: Path

    def session(self) -> Any:
        """An onnxruntime session of the checked ONNX file, one thread: the host is small and shared."""
        import onnxruntime as ort  # loaded only by what serves a model

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(self.onnx_bytes(), options, providers=["CPUExecutionProvider"])

    def onnx_bytes(self) -> bytes:
        """The ONNX file, checked against the card's sha256."""
        data = self.path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.card.sha256:
            raise ValueError(f"{self.path}: sha256 {digest} does not match its card ({self.card.sha256})")
        return data


def save(card: ModelCard, onnx: bytes, folder: Path = MODELS_DIR) -> StoredModel:
    """Write `<name>.onnx` and `<name>.json`, filling in the card's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    card.sha256 = hashlib.sha256(onnx).hexdigest()
    path = folder / f"{card.name}.onnx"
    path.write_bytes(onnx)
    (folder / f"{card.name}.json").write_bytes(msgspec.json.format(msgspec.json.encode(card), indent=2) + b"\n")
    return StoredModel(card, path)


def load(name: str, folder: Path = MODELS_DIR) -> StoredModel:
    """The stored model called name; FileNotFoundError names what is missing."""
    record = folder / f"{name}.json"
    if not record.exists():
        raise FileNotFoundError(f"no model card {record}; train it with `shopfloor train`")
    card = msgspec.json.decode(record.read_bytes(), type=ModelCard)
    return StoredModel(card, folder / f"{name}.onnx")


def load_all(folder: Path = MODELS_DIR) -> list[StoredModel]:
    """Every stored model in folder, by name."""
    return [load(p.stem, folder) for p in sorted(folder.glob("*.json"))]
