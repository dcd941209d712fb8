"""Optional int8 quantisation of the NEU classifier and the tile U-Net: quantise, compare with fp32 on the same images,
serve only if the drop is below a bound (NEU: accuracy; tiles: the larger of the AUROC and type-accuracy drops).

Static quantisation (onnxruntime.quantization.quantize_static, QDQ format, int8 weights per output channel, uint8
activations): a conv net's activations need calibrated ranges, which dynamic quantisation would compute per call and
does not do for convolutions. Calibration images are a stratified pick from the same folder (`calib_per_class` of
each class, seeded). Both models then judge every image of the folder and answer accuracy, agreement, the drop in
points, and single-image latency on one thread (runs interleaved, so both see the same machine load).

What the comparison is: given the developers' share, it is the images the served model was refitted on (no
held-out images exist outside the held-back fifth, which is never read), so it measures how far int8 moves the
fp32 model's answers and accuracy, not how either generalises; the CV scores in the card speak for that.

The int8 model is served (written as `<name>.onnx` with the card's sha256, the fp32 file kept as
`<name>.fp32.onnx`, from which a later run quantises again) only when the drop is below `max_drop_points`;
otherwise fp32 is served and no int8 file is left. Either way the card records the comparison and the decision.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from inspection.images import decode, resize
from inspection.metrics import auroc, softmax, wilson
from inspection.models import MODELS_DIR
from inspection.sets import MTILE_CLASSES, NEU_CLASSES, mtile_samples, neu_samples
from twin.model_card import ModelCard, load

MAX_DROP_POINTS = 0.5


class _Reader:
    """Calibration batches for onnxruntime's quantiser: one image per call."""

    def __init__(self, x: np.ndarray) -> None:
        self._it = iter([{"image": x[i:i + 1]} for i in range(x.shape[0])])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next calibration input, None when done."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Not needed: the quantiser reads the images once."""


def images(folder: Path, size: int, data_set: str = "neu") -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 1, size, size) float32 as served, labels) of every image of the set (neu or mtile) in folder."""
    samples = neu_samples(folder) if data_set == "neu" else mtile_samples(folder)
    if not samples:
        layout = "<class>_<k>.jpg" if data_set == "neu" else "MT_<class>/Imgs/*.jpg"
        raise ValueError(f"{folder}: no {data_set} images ({layout})")
    x = np.stack([resize(decode(s.path.read_bytes()).grey, size)[None] for s in samples]).astype(np.float32)
    return x, np.array([s.label for s in samples])


def calibration_pick(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of `per_class` images of each class (all of a smaller class), seeded."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def quantize_bytes(fp32: bytes, calib: np.ndarray) -> bytes:
    """The int8 (QDQ, per-channel weights) model of an fp32 ONNX model, activations calibrated on `calib`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, prep, out = Path(tmp) / "fp32.onnx", Path(tmp) / "prep.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        # ONNX shape inference and graph folding, as onnxruntime advises before static quantisation (the symbolic
        # pass, which needs sympy, is for dynamic shapes; ours are fixed but for the batch)
        quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)
        quantize_static(str(prep), str(out), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return out.read_bytes()


def _session(onnx: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as served
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def _logits(session: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([session.run(None, {"image": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def latency_ms(sessions: list[Any], x: np.ndarray, runs: int) -> list[dict[str, float]]:
    """Median and p99 single-image latency (ms) of each session, runs interleaved image by image."""
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(runs):
        one = x[r % len(x)][None]
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, {"image": one})
            times[i].append((time.perf_counter() - t) * 1000)
    return [{"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))} for t in times]


def compare(fp32: bytes, int8: bytes, x: np.ndarray, y: np.ndarray, runs: int = 300) -> dict[str, Any]:
    """Accuracy of each model on (x, y), their agreement and the drop in points; 1-thread latency of each."""
    a, b = _session(fp32), _session(int8)
    pa, pb = _logits(a, x).argmax(1), _logits(b, x).argmax(1)
    n = len(y)
    ka, kb = int((pa == y).sum()), int((pb == y).sum())
    lat = latency_ms([a, b], x, runs)
    return {"n": n, "fp32_accuracy": ka / n, "int8_accuracy": kb / n, "fp32_accuracy_ci95": wilson(ka, n),
            "int8_accuracy_ci95": wilson(kb, n), "agreement": float((pa == pb).mean()),
            "drop_points": 100.0 * (ka - kb) / n, "fp32_latency_ms": lat[0], "int8_latency_ms": lat[1],
            "latency_runs": runs, "speedup_p50": lat[0]["p50"] / lat[1]["p50"]}


def compare_tile(fp32: bytes, int8: bytes, x: np.ndarray, y: np.ndarray, runs: int = 300) -> dict[str, Any]:
    """The tile model's AUROC (defect vs Free) and type accuracy under each, their class agreement, the drop in points
    (the larger of the two drops); 1-thread latency of each."""
    a, b = _session(fp32), _session(int8)
    pa, pb = softmax(_logits(a, x)), softmax(_logits(b, x))
    defect = y != 0
    out: dict[str, Any] = {"n": len(y), "n_defective": int(defect.sum())}
    for name, p in (("fp32", pa), ("int8", pb)):
        right = int((p[defect, 1:].argmax(1) + 1 == y[defect]).sum())
        out[f"{name}_auroc"] = auroc(defect, 1 - p[:, 0])
        out[f"{name}_type_accuracy"] = right / max(int(defect.sum()), 1)
        out[f"{name}_type_accuracy_ci95"] = wilson(right, int(defect.sum()))
    lat = latency_ms([a, b], x, runs)
    out.update({"agreement": float((pa.argmax(1) == pb.argmax(1)).mean()),
                "drop_points": 100.0 * max(out["fp32_auroc"] - out["int8_auroc"],
                                           out["fp32_type_accuracy"] - out["int8_type_accuracy"]),
                "fp32_latency_ms": lat[0], "int8_latency_ms": lat[1], "latency_runs": runs,
                "speedup_p50": lat[0]["p50"] / lat[1]["p50"]})
    return out


def run(data: Path, name: str = "neu", folder: Path = MODELS_DIR, calib_per_class: int = 20, runs: int = 1000,
        max_drop_points: float = MAX_DROP_POINTS) -> dict[str, Any]:
    """Quantise the model's fp32 version, compare it with fp32 on every image in `data`, record it in the card, and
    serve int8 only if the drop is below `max_drop_points` (else fp32); the card's record."""
    stored = load(name, folder)
    card: ModelCard = stored.card
    sets = {"neu": NEU_CLASSES, "mtile": MTILE_CLASSES}
    data_set = next((k for k, classes in sets.items() if card.inputs.get("classes") == classes), None)
    if data_set is None:
        raise ValueError(f"{name}: only the NEU classifier and the tile U-Net are quantised here (its card lists "
                         f"other classes)")
    fp32 = _fp32(card, stored.onnx_bytes(), folder)
    x, y = images(data, int(card.inputs["size"]), data_set)
    pick = calibration_pick(y, calib_per_class)
    int8 = quantize_bytes(fp32, x[pick])
    result = (compare if data_set == "neu" else compare_tile)(fp32, int8, x, y, runs)
    what = "accuracy" if data_set == "neu" else "AUROC or type accuracy"
    served = result["drop_points"] < max_drop_points
    result.update({
        "images": f"every image of {data.resolve()} ({len(y)}); the fp32 model was refitted on these same images, "
                  "so this is the change int8 makes, not generalisation",
        "calibration": f"{len(pick)} images, {calib_per_class} per class (seed 0), from the same folder; "
                       "quantize_static QDQ, per-channel int8 weights, uint8 activations, MinMax",
        "fp32_sha256": hashlib.sha256(fp32).hexdigest(), "int8_sha256": hashlib.sha256(int8).hexdigest(),
        "max_drop_points": max_drop_points, "served": "int8" if served else "fp32",
        "decision": (f"int8 served: {what} drop {result['drop_points']:.2f} points < {max_drop_points}" if served
                     else f"fp32 kept: int8 {what} drop {result['drop_points']:.2f} points, not below "
                          f"{max_drop_points}"),
    })
    card.metrics["int8"] = result
    _write(card, fp32, int8 if served else None, folder)
    return result


def _fp32(card: ModelCard, served: bytes, folder: Path) -> bytes:
    """The fp32 model: the served file, or (int8 served) `<name>.fp32.onnx` checked against the card's record."""
    if card.inputs.get("precision", "fp32") == "fp32":
        return served
    path = folder / f"{card.name}.fp32.onnx"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card.metrics["int8"]["fp32_sha256"]:
        raise ValueError(f"{path}: sha256 does not match the card's fp32_sha256")
    return data


def _write(card: ModelCard, fp32: bytes, int8: bytes | None, folder: Path) -> None:
    """The card with its record and the served file: int8 under the model's name with the fp32 one beside it, or
    fp32 alone (no int8 file is left behind)."""
    import msgspec

    served = int8 if int8 is not None else fp32
    (folder / f"{card.name}.onnx").write_bytes(served)
    if int8 is not None:
        (folder / f"{card.name}.fp32.onnx").write_bytes(fp32)
    else:
        (folder / f"{card.name}.fp32.onnx").unlink(missing_ok=True)
    card.sha256 = hashlib.sha256(served).hexdigest()
    card.inputs["precision"] = "int8" if int8 is not None else "fp32"
    step = f" && shopfloor quantize vision --set {card.name}"
    card.command = card.command.split(step)[0] + (step if int8 is not None else "")
    (folder / f"{card.name}.json").write_bytes(msgspec.json.format(msgspec.json.encode(card), indent=2) + b"\n")
