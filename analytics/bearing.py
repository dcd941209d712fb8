"""Train and score the CWRU bearing-fault classifier (normal / inner / outer / ball) on contiguous segments.

Each 0 HP recording is cut once in time: the first 70 % feeds training, the last 30 % is held out and only
scored. Windows are taken inside one segment, so none straddles the cut. The features are
twin.bearing_features, the same code the served model runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from analytics import cwru
from analytics.provenance import libraries
from twin.bearing import MODEL_NAME, BearingModel
from twin.bearing_features import ENVELOPE_BANDS, FEATURE_NAMES, HARMONICS, LINE_TOLERANCE, SKF_6205, bearing_features_batch
from twin.model_card import MODELS_DIR, ModelCard, save

VERSION = "1.0.0"
WINDOW = 4096  # 0.34 s at 12 kHz: ~10 shaft turns, envelope resolution 2.9 Hz
TRAIN_STEP = WINDOW // 2  # overlap inside the training segment only
TRAIN_FRACTION = 0.7
CV_BLOCKS = 5
# Training-only augmentation (speed factor, gain): stretching a segment in time is a slower shaft with the
# RPM scaled alike, the gain a different load level; it teaches the trees not to lean on exact levels or bins.
AUGMENT: tuple[tuple[float, float], ...] = ((1.0, 1.0), (0.97, 0.8), (0.985, 1.0), (1.0, 1.25), (1.02, 1.0))
SLOWDOWN_CHECK = 1730.0 / 1797.0  # 0 HP -> 3 HP nominal speed ratio
N_TREES = 100


@dataclass(frozen=True, slots=True)
class Windows:
    """Features of windows with their class index and the recording they came from."""

    x: np.ndarray  # (m, features) float32
    y: np.ndarray  # (m,) int
    rec: np.ndarray  # (m,) int, index into the recording list

    @staticmethod
    def join(parts: Sequence[Windows]) -> Windows:
        """All parts as one set."""
        if not parts:
            return Windows(np.empty((0, len(FEATURE_NAMES)), np.float32), np.empty(0, np.int64), np.empty(0, np.int64))
        return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "rec")))


def _stretch(signal: np.ndarray, speed: float) -> np.ndarray:
    """The signal as if the shaft turned `speed` times as fast, at the same sample rate."""
    if speed == 1.0:
        return signal
    return resample_poly(signal, int(round(1000 / speed)), 1000)


def segment_windows(
    rec: cwru.Recording, index: int, start: int, stop: int, step: int, variants: Sequence[tuple[float, float]] = ((1.0, 1.0),)
) -> Windows:
    """Features of the windows inside rec.de[start:stop], once per (speed, gain) variant."""
    y = cwru.CLASSES.index(rec.label)
    parts = []
    for speed, gain in variants:
        segment = gain * _stretch(rec.de[start:stop], speed)
        w = cwru.windows(segment, 0, len(segment), WINDOW, step)
        if len(w):
            x = bearing_features_batch(w, rec.rpm * speed, rec.fs)
            parts.append(Windows(x, np.full(len(x), y), np.full(len(x), index)))
    return Windows.join(parts)


def _classifier(seed: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=N_TREES, min_samples_leaf=2, max_features="sqrt", random_state=seed, n_jobs=1)


def _recalls(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {c: float(np.mean(pred[true == i] == i)) for i, c in enumerate(cwru.CLASSES) if np.any(true == i)}


def _confusion(pred: np.ndarray, true: np.ndarray) -> list[list[int]]:
    k = len(cwru.CLASSES)
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k).tolist()


def _block_cv(recs: Sequence[cwru.Recording], seed: int, progress: bool) -> dict[str, Any]:
    """Contiguous-block CV: fold k holds out block k of every recording; training windows stay inside other blocks."""
    from tqdm import tqdm

    blocks = [list(cwru.blocks(len(r.de), CV_BLOCKS)) for r in recs]
    train = [[segment_windows(r, i, lo, hi, TRAIN_STEP, AUGMENT) for lo, hi in blocks[i]] for i, r in enumerate(recs)]
    test = [[segment_windows(r, i, lo, hi, WINDOW) for lo, hi in blocks[i]] for i, r in enumerate(recs)]
    accs = []
    for k in tqdm(range(CV_BLOCKS), desc="bearing block CV", disable=not progress):
        tr = Windows.join([b for per in train for j, b in enumerate(per) if j != k])
        te = Windows.join([per[k] for per in test])
        model = _classifier(seed).fit(tr.x, tr.y)
        accs.append(float(np.mean(model.predict(te.x) == te.y)))
    return {"block_cv_accuracy_mean": float(np.mean(accs)), "block_cv_accuracy_std": float(np.std(accs)), "block_cv_folds": accs}


def _leave_one_recording_out(
    recs: Sequence[cwru.Recording], train: Windows, held: Windows, seed: int, progress: bool
) -> dict[str, float]:
    """Accuracy on each fault recording's held-out segment when that recording is absent from training."""
    from tqdm import tqdm

    out = {}
    for i, r in enumerate(tqdm(recs, desc="bearing leave-one-recording-out", disable=not progress)):
        if r.label == "normal":  # the only normal recording: without it there is no normal class
            continue
        keep = train.rec != i
        model = _classifier(seed).fit(train.x[keep], train.y[keep])
        rows = held.rec == i
        out[r.path.name] = float(np.mean(model.predict(held.x[rows]) == held.y[rows]))
    return out


def export_onnx(model, n_features: int) -> bytes:
    """The classifier as ONNX: input "features" float32 (batch, n_features); outputs "label" and "probabilities"."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    proto = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return proto.SerializeToString()


_LIBRARIES = ("numpy", "scipy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime")


def train(*, data_root: Path | None = None, out_dir: Path = MODELS_DIR, progress: bool = False, seed: int = 0) -> ModelCard:
    """Fit on the first 70 % of every 0 HP recording, score the last 30 %, export ONNX and save as `bearing`."""
    from tqdm import tqdm

    paths = cwru.list_files(data_root, loads=(0,))
    recs = [cwru.read(p) for p in tqdm(paths, desc="read CWRU", disable=not progress)]
    cuts = [cwru.split_point(len(r.de), TRAIN_FRACTION) for r in recs]
    train_set = Windows.join([segment_windows(r, i, 0, c, TRAIN_STEP, AUGMENT) for i, (r, c) in enumerate(zip(recs, cuts))])
    held = Windows.join([segment_windows(r, i, c, len(r.de), WINDOW) for i, (r, c) in enumerate(zip(recs, cuts))])
    slowed = Windows.join(
        [segment_windows(r, i, c, len(r.de), WINDOW, ((SLOWDOWN_CHECK, 1.0),)) for i, (r, c) in enumerate(zip(recs, cuts))]
    )
    model = _classifier(seed).fit(train_set.x, train_set.y)
    pred = model.predict(held.x)
    metrics: dict[str, Any] = {
        "heldout_accuracy": float(np.mean(pred == held.y)),
        "heldout_recall": _recalls(pred, held.y),
        "heldout_n": int(len(held.y)),
        "heldout_confusion": _confusion(pred, held.y),
        "heldout_accuracy_per_file": {
            r.path.name: float(np.mean(pred[held.rec == i] == held.y[held.rec == i])) for i, r in enumerate(recs)
        },
        "heldout_slowed_to_3hp_speed_accuracy": float(np.mean(model.predict(slowed.x) == slowed.y)),
        "train_windows": int(len(train_set.y)),
    }
    metrics.update(_block_cv(recs, seed, progress))
    loro = _leave_one_recording_out(recs, train_set, held, seed, progress)
    metrics["leave_one_recording_out_accuracy"] = loro
    metrics["leave_one_recording_out_mean"] = float(np.mean(list(loro.values())))
    card = ModelCard(
        name=MODEL_NAME,
        kind="bearing",
        version=VERSION,
        dataset="CWRU Bearing Data Center, 12 kHz drive-end accelerometer, 0 HP: "
        + ", ".join(r.path.name for r in recs),
        split=f"each recording cut in time: first {TRAIN_FRACTION:.0%} of samples train, last {1 - TRAIN_FRACTION:.0%} held out "
        "(windows never straddle the cut); the exported model is the one fitted on the training segments only; "
        "1-3 HP recordings held back and not used",
        protocol=f"window {WINDOW} samples at 12 kHz; training windows hop {TRAIN_STEP} inside the training segment, "
        f"augmented by (speed, gain) {list(AUGMENT)} with RPM scaled alike; held-out windows non-overlapping (hop {WINDOW}); "
        f"metrics: accuracy and per-class recall over held-out windows; block CV: {CV_BLOCKS} contiguous blocks per recording, "
        "fold k scores block k of every recording; slowed check: held-out segments time-stretched to 1730/1797 of the "
        "speed with RPM scaled (synthetic, not a real load change); leave-one-recording-out: a fault recording's "
        "held-out segment scored by a model trained without that recording (new fault size/position; a stress test)",
        metrics=metrics,
        features=list(FEATURE_NAMES),
        inputs={
            "model": f"sklearn RandomForestClassifier({N_TREES} trees, min_samples_leaf=2)",
            "input_name": "features",
            "outputs": ["label", "probabilities"],
            "classes": list(cwru.CLASSES),
            "window": WINDOW,
            "fs": cwru.FS_DEFAULT,
            "signal": "drive-end acceleration X<nnn>_DE_time (g)",
            "rpm": "shaft speed, X<nnn>RPM of the file; nominal for its load (0 HP 1797) when absent",
            "bearing": {"name": SKF_6205.name, "bpfi": SKF_6205.bpfi, "bpfo": SKF_6205.bpfo, "bsf": SKF_6205.bsf, "ftf": SKF_6205.ftf},
            "envelope_bands_hz": [list(b) for b in ENVELOPE_BANDS],
            "harmonics": HARMONICS,
            "line_tolerance": LINE_TOLERANCE,
        },
        command="shopfloor train bearing",
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        libraries=libraries(_LIBRARIES),
    )
    save(card, export_onnx(model, len(FEATURE_NAMES)), out_dir)
    return card


def evaluate(files: Sequence[Path], *, models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    """Score the stored model on CWRU files (label from the file name), one prediction per non-overlapping window."""
    model = BearingModel.load(MODEL_NAME, models_dir)
    if not files:
        raise ValueError("no files to evaluate")
    pred, true = [], []
    for path in files:
        rec = cwru.read(path)
        # windows span the model's window length at the file's own rate
        length = int(round(model.window * rec.fs / model.fs))
        w = cwru.windows(rec.de, 0, len(rec.de), length)
        labels, _ = model.classify_batch(w, rec.rpm, rec.fs)
        pred += labels
        true += [rec.label] * len(labels)
    p, t = np.array(pred), np.array(true)
    return {
        "model": model.name,
        "sha256": model.sha256,
        "accuracy": float(np.mean(p == t)) if len(t) else float("nan"),
        "recall": {c: float(np.mean(p[t == c] == c)) for c in model.classes if np.any(t == c)},
        "n": int(len(t)),
    }
