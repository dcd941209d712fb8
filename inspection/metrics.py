"""Scores of the inspection models: accuracy with Wilson intervals, confusion, AUROC, pixel IoU and Dice."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of k successes out of n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [float(max(0.0, c - h)), float(min(1.0, c + h))]


def fold_mean(values: list[float]) -> dict[str, Any]:
    """Mean over CV folds with a 95 % Student-t interval (k - 1 degrees of freedom) and the per-fold values."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": [float(v.mean() - half), float(v.mean() + half)],
            "folds": [float(x) for x in v]}


def classification(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """accuracy (+ CI), per-class recall and the confusion matrix (rows true, columns predicted)."""
    conf = np.zeros((len(classes), len(classes)), int)
    np.add.at(conf, (y, pred), 1)
    correct = int(np.trace(conf))
    return {"n": int(len(y)), "accuracy": correct / max(len(y), 1), "accuracy_ci95": wilson(correct, len(y)),
            "recall": {c: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, c in enumerate(classes)},
            "confusion": conf.tolist()}


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auroc_ci(positive: np.ndarray, score: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float]:
    """95 % bootstrap interval of the AUROC."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        i = rng.integers(0, len(score), len(score))
        if positive[i].any() and (~positive[i]).any():
            vals.append(auroc(positive[i], score[i]))
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else [float("nan")] * 2


def tile(y: np.ndarray, probs: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray,
         classes: list[str]) -> dict[str, Any]:
    """auroc (defect vs Free, score 1 - P(Free)), type accuracy on defective images, pooled pixel IoU and Dice."""
    defect = y != 0
    score = 1 - probs[:, 0]
    types = probs[:, 1:].argmax(1) + 1
    nd = int(defect.sum())
    correct = int((types[defect] == y[defect]).sum())
    inter = float(np.logical_and(pred_mask[defect], true_mask[defect]).sum())
    union = float(np.logical_or(pred_mask[defect], true_mask[defect]).sum())
    total = float(pred_mask[defect].sum() + true_mask[defect].sum())
    out = {"n": int(len(y)), "n_defective": nd, "auroc": auroc(defect, score), "auroc_ci95": auroc_ci(defect, score),
           "type_accuracy": correct / nd if nd else None, "type_accuracy_ci95": wilson(correct, nd),
           "pixel_iou": inter / union if union else None, "dice": 2 * inter / total if total else None,
           "accuracy_at_0.5": float(((score >= 0.5) == defect).mean())}
    out["type_confusion"] = classification(y[defect] - 1, types[defect] - 1, classes[1:])["confusion"] if nd else []
    return out
