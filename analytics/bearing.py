"""Train and score the CWRU bearing-fault classifier (normal / inner / outer / ball) on contiguous segments.

Each 0 HP recording is cut once in time: the first 70 % feeds training, the last 30 % is held out and only
scored. Windows are taken inside one segment, so none straddles the cut. Because held-out windows come
from recordings that were trained on, the card puts leave-one-recording-out and leave-one-fault-size-out
beside that figure: they say how the model does on a bearing it has not heard. The features are
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

VERSION = "2.0.0"
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


def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion (windows of one recording are correlated: read it as a floor)."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _scored(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    correct = int(np.sum(pred == true))
    return {
        "accuracy": correct / len(true) if len(true) else float("nan"),
        "accuracy_ci95": wilson(correct, len(true)),
        "n": int(len(true)),
        "recall": _recalls(pred, true),
        "confusion": _confusion(pred, true),
    }


def _cv_inside_training(recs: Sequence[cwru.Recording], cuts: Sequence[int], seed: int, progress: bool) -> dict[str, Any]:
    """Contiguous-block CV inside the training segments only: fold k scores block k, trains on the other blocks.

    The held-out tails are never in any fold, so model selection cannot lean on them.
    """
    from tqdm import tqdm

    blocks = [list(cwru.blocks(c, CV_BLOCKS)) for c in cuts]
    train = [[segment_windows(r, i, lo, hi, TRAIN_STEP, AUGMENT) for lo, hi in blocks[i]] for i, r in enumerate(recs)]
    test = [[segment_windows(r, i, lo, hi, WINDOW) for lo, hi in blocks[i]] for i, r in enumerate(recs)]
    accs, pred, true = [], [], []
    for k in tqdm(range(CV_BLOCKS), desc="bearing CV in training segments", disable=not progress):
        tr = Windows.join([b for per in train for j, b in enumerate(per) if j != k])
        te = Windows.join([per[k] for per in test])
        p = _classifier(seed).fit(tr.x, tr.y).predict(te.x)
        accs.append(float(np.mean(p == te.y)))
        pred.append(p)
        true.append(te.y)
    pooled = _scored(np.concatenate(pred), np.concatenate(true))
    return {"folds": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs)), **pooled}


def whole_recording_windows(recs: Sequence[cwru.Recording]) -> Windows:
    """Non-overlapping windows of every recording from start to end (for recordings a model never trained on)."""
    return Windows.join([segment_windows(r, i, 0, len(r.de), WINDOW) for i, r in enumerate(recs)])


def _leave_group_out(
    recs: Sequence[cwru.Recording], train: Windows, whole: Windows, groups: dict[str, list[int]], seed: int, desc: str, progress: bool
) -> dict[str, Any]:
    """Per group: train on every other recording's training segment, score the group's recordings end to end."""
    from tqdm import tqdm

    per, pred, true = {}, [], []
    for name, members in tqdm(groups.items(), desc=desc, disable=not progress):
        keep = ~np.isin(train.rec, members)
        rows = np.isin(whole.rec, members)
        p = _classifier(seed).fit(train.x[keep], train.y[keep]).predict(whole.x[rows])
        per[name] = float(np.mean(p == whole.y[rows]))
        pred.append(p)
        true.append(whole.y[rows])
    pooled = _scored(np.concatenate(pred), np.concatenate(true))
    return {"per_group": per, "mean_of_groups": float(np.mean(list(per.values()))), **pooled}


def heldout_windows(recs: Sequence[cwru.Recording]) -> Windows:
    """The non-overlapping windows of every recording's held-out tail (after the TRAIN_FRACTION cut)."""
    cuts = [cwru.split_point(len(r.de), TRAIN_FRACTION) for r in recs]
    return Windows.join([segment_windows(r, i, c, len(r.de), WINDOW) for i, (r, c) in enumerate(zip(recs, cuts))])


def training_recordings(folder: Path | None = None) -> list[cwru.Recording]:
    """The 0 HP recordings the model is trained and scored on, in file order."""
    return [cwru.read(p) for p in cwru.list_files(folder, loads=(0,))]


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
    """Fit on the first 70 % of every 0 HP recording; score the last 30 %, leave-one-recording/size-out; save `bearing`."""
    from tqdm import tqdm

    paths = cwru.list_files(data_root / "cwru-bearing" if data_root else None, loads=(0,))
    recs = [cwru.read(p) for p in tqdm(paths, desc="read CWRU", disable=not progress)]
    cuts = [cwru.split_point(len(r.de), TRAIN_FRACTION) for r in recs]
    train_set = Windows.join([segment_windows(r, i, 0, c, TRAIN_STEP, AUGMENT) for i, (r, c) in enumerate(zip(recs, cuts))])
    held = heldout_windows(recs)
    slowed = Windows.join(
        [segment_windows(r, i, c, len(r.de), WINDOW, ((SLOWDOWN_CHECK, 1.0),)) for i, (r, c) in enumerate(zip(recs, cuts))]
    )
    model = _classifier(seed).fit(train_set.x, train_set.y)
    pred = model.predict(held.x)
    within = _scored(pred, held.y)
    within["per_file"] = {r.path.name: float(np.mean(pred[held.rec == i] == held.y[held.rec == i])) for i, r in enumerate(recs)}
    whole = whole_recording_windows(recs)
    faults = [i for i, r in enumerate(recs) if r.label != "normal"]
    loro = _leave_group_out(recs, train_set, whole, {recs[i].path.name: [i] for i in faults}, seed,
                            "bearing leave-one-recording-out", progress)
    sizes = sorted({recs[i].name.size_mils for i in faults})
    lofso = _leave_group_out(
        recs, train_set, whole,
        {f"{size:03d} mils": [i for i in faults if recs[i].name.size_mils == size] for size in sizes}, seed,
        "bearing leave-one-fault-size-out", progress,
    )
    cv = _cv_inside_training(recs, cuts, seed, progress)
    metrics: dict[str, Any] = {
        "headline": {
            "within_recording_heldout_accuracy": within["accuracy"],
            "within_recording_heldout_ci95": within["accuracy_ci95"],
            "within_recording_heldout_n": within["n"],
            "leave_one_recording_out_accuracy": loro["accuracy"],
            "leave_one_recording_out_ci95": loro["accuracy_ci95"],
            "leave_one_recording_out_n": loro["n"],
            "leave_one_fault_size_out_accuracy": lofso["accuracy"],
            "leave_one_fault_size_out_ci95": lofso["accuracy_ci95"],
            "leave_one_fault_size_out_n": lofso["n"],
        },
        "heldout_accuracy": within["accuracy"],
        "heldout_n": within["n"],
        "within_recording_heldout": within,
        "leave_one_recording_out": loro,
        "leave_one_fault_size_out": lofso,
        "cv_inside_training_segments": cv,
        "heldout_slowed_to_3hp_speed_accuracy": float(np.mean(model.predict(slowed.x) == slowed.y)),
        "train_windows": int(len(train_set.y)),
    }
    rms_col = FEATURE_NAMES.index("log_rms")
    rpms = [r.rpm * speed for r in recs for speed, _ in AUGMENT]
    card = ModelCard(
        name=MODEL_NAME,
        kind="bearing",
        version=VERSION,
        dataset="CWRU Bearing Data Center, drive-end accelerometer, 0 HP: "
        + ", ".join(f"{r.path.name} ({r.fs:g} Hz{' measured, folder states none' if r.fs_stated is None else ''})" for r in recs),
        split=f"each recording cut in time: first {TRAIN_FRACTION:.0%} of samples train, last {1 - TRAIN_FRACTION:.0%} held out "
        "(windows never straddle the cut); the exported model is the one fitted on the training segments only; "
        "1-3 HP recordings held back and not used",
        protocol=f"window {WINDOW} samples at 12 kHz; training windows hop {TRAIN_STEP} inside the training segment, "
        f"augmented by (speed, gain) {list(AUGMENT)} with RPM scaled alike; scored windows non-overlapping (hop {WINDOW}). "
        "Three protocols, headline side by side: (1) within-recording: the held-out last 30 % of every recording "
        "(the same recordings trained on: optimistic); (2) leave-one-recording-out: per fault recording, a model trained on "
        "the training segments of all OTHER recordings scores that recording end to end (the single normal recording "
        "cannot be left out: without it there is no normal class); (3) leave-one-fault-size-out: per fault size "
        "(7/14/21/28 mils), a model trained without any recording of that size scores them end to end. "
        f"Model selection CV: {CV_BLOCKS} contiguous blocks inside each recording's training segment, fold k scores block k "
        "and trains on the others (the held-out tails are in no fold). Accuracy with 95 % Wilson intervals over windows "
        "(windows of one recording are correlated, so the intervals are optimistic), per-class recall, confusion matrix "
        "(rows true, columns predicted, class order as inputs.classes). Slowed check: held-out segments time-stretched to "
        "1730/1797 of the speed with RPM scaled (synthetic, not a real load change). Sample rate of every recording "
        "measured from its shaft-speed harmonics (cwru.estimate_sample_rate) and checked against its folder's statement",
        metrics=metrics,
        features=list(FEATURE_NAMES),
        inputs={
            "model": f"sklearn RandomForestClassifier({N_TREES} trees, min_samples_leaf=2)",
            "input_name": "features",
            "outputs": ["label", "probabilities"],
            "classes": list(cwru.CLASSES),
            "window": WINDOW,
            "fs": cwru.FS_DEFAULT,
            "train_fraction": TRAIN_FRACTION,
            "training_recordings": [r.path.name for r in recs],
            "signal": "drive-end acceleration X<nnn>_DE_time (g)",
            "rpm": "shaft speed, X<nnn>RPM of the file; nominal for its load (0 HP 1797) when absent",
            "valid_ranges": {
                "rpm": [round(min(rpms), 1), round(max(rpms), 1)],
                "log_rms": [float(np.min(train_set.x[:, rms_col])), float(np.max(train_set.x[:, rms_col]))],
            },
            "units": {"rpm": "rpm", "log_rms": "log10 g"},
            "bearing": {"name": SKF_6205.name, "bpfi": SKF_6205.bpfi, "bpfo": SKF_6205.bpfo, "bsf": SKF_6205.bsf, "ftf": SKF_6205.ftf},
            "envelope_bands_hz": [list(b) for b in ENVELOPE_BANDS],
            "harmonics": HARMONICS,
            "line_tolerance": LINE_TOLERANCE,
        },
        command="shopfloor train bearing",
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        libraries=libraries(_LIBRARIES),
    )
    onnx = export_onnx(model, len(FEATURE_NAMES))
    save(card, onnx, out_dir)
    # the within-recording figures are those of the served ONNX graph, as `evaluate` and the tests see it
    served = BearingModel.load(MODEL_NAME, out_dir)
    (proba,) = served.session.run(["probabilities"], {"features": held.x})
    served_pred = np.argmax(np.asarray(proba).reshape(len(held.y), -1), axis=1)
    if not np.array_equal(served_pred, pred):
        changed = int(np.sum(served_pred != pred))
        metrics["onnx_vs_sklearn_heldout_disagreements"] = changed
        within.update(_scored(served_pred, held.y))
        metrics["headline"]["within_recording_heldout_accuracy"] = within["accuracy"]
        metrics["headline"]["within_recording_heldout_ci95"] = within["accuracy_ci95"]
        metrics["heldout_accuracy"] = within["accuracy"]
        save(card, onnx, out_dir)
    return card


def evaluate(files: Sequence[Path], *, models_dir: Path = MODELS_DIR, whole: bool = False) -> dict[str, Any]:
    """Score the stored model on CWRU files (label from the file name), one prediction per non-overlapping window.

    A recording the model was trained on is scored on its held-out tail only (unless whole=True, which says so);
    any other recording end to end.
    """
    model = BearingModel.load(MODEL_NAME, models_dir)
    if not files:
        raise ValueError("no files to evaluate")
    trained = set(model.card.inputs.get("training_recordings", []))
    fraction = float(model.card.inputs.get("train_fraction", TRAIN_FRACTION))
    pred, true, per_file = [], [], {}
    for path in files:
        rec = cwru.read(path)
        # windows span the model's window length at the file's own rate
        length = int(round(model.window * rec.fs / model.fs))
        seen = rec.path.name in trained and not whole
        start = cwru.split_point(len(rec.de), fraction) if seen else 0
        w = cwru.windows(rec.de, start, len(rec.de), length)
        if len(w) == 0:
            raise ValueError(f"{path}: {len(rec.de) - start} samples to score, shorter than one window of {length}")
        labels, _ = model.classify_batch(w, rec.rpm, rec.fs)
        pred += labels
        true += [rec.label] * len(labels)
        per_file[rec.path.name] = {
            "n": len(labels),
            "accuracy": float(np.mean(np.array(labels) == rec.label)),
            "scored": f"held-out last {1 - fraction:.0%} (the first {fraction:.0%} was trained on)" if seen
            else ("whole recording, INCLUDING the part trained on" if rec.path.name in trained else "whole recording (never trained on)"),
        }
    p = np.array([model.classes.index(c) for c in pred])
    t = np.array([model.classes.index(c) for c in true])
    scored = _scored(p, t)
    return {
        "model": model.name,
        "sha256": model.sha256,
        "protocol": f"non-overlapping windows of {model.window} samples at {model.fs:g} Hz (resampled from the file's measured "
        "rate); a recording in the model's training set is scored on its held-out tail only, any other end to end; "
        "accuracy with a 95 % Wilson interval over windows, per-class recall, confusion matrix rows = true class, "
        f"columns = predicted, order {list(model.classes)}",
        "accuracy": scored["accuracy"],
        "accuracy_ci95": scored["accuracy_ci95"],
        "recall": {model.classes[i]: v for i, v in enumerate(_recalls_by_index(p, t, len(model.classes))) if v is not None},
        "confusion": scored["confusion"],
        "classes": list(model.classes),
        "n": scored["n"],
        "files": per_file,
    }


def _recalls_by_index(pred: np.ndarray, true: np.ndarray, k: int) -> list[float | None]:
    return [float(np.mean(pred[true == i] == i)) if np.any(true == i) else None for i in range(k)]
