"""Training the inspection models on CPU: cross-validation on stratified folds, a final fit, ONNX export and the card.

Deterministic under a seed (torch and numpy seeded, deterministic algorithms, fixed thread count); a progress bar
per epoch. Images are decoded once into arrays at the model's input size.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inspection import metrics
from inspection.images import decode, resize, resize_mask
from inspection.nets import SmallCnn, TileUnet, TinyVit
from inspection.sets import MTILE_CLASSES, NEU_CLASSES, Sample, mtile_samples, neu_samples, stratified_folds
from twin.model_card import ModelCard, StoredModel, save

MODELS_DIR = Path(__file__).resolve().parent / "models"
NEU_SIZE = 96
MTILE_SIZE = 96
VALID_INPUT = ("any image Pillow decodes (JPEG, PNG, BMP, TIFF), converted to 8-bit grey, up to 20 MB and 40 megapixels; "
               "resized to the input size without keeping the aspect ratio, as in training")


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how many folds: the defaults fit the 30-minute-per-model budget on 2 shared cores."""

    folds: int = 3
    epochs: int = 10
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    balanced: bool = False  # draw batches with class weights ~ count^-1/2 (and the same in the loss): rare types seen


def _seed(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def load_images(samples: list[Sample], size: int, masks: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, 1, size, size) float32 images and, with masks, (n, 1, size, size) 0/1 masks."""
    x = np.empty((len(samples), 1, size, size), np.float32)
    m = np.zeros_like(x) if masks else None
    for i, s in enumerate(tqdm(samples, desc="decode", unit="img", leave=False)):
        x[i, 0] = resize(decode(s.path.read_bytes()).grey, size)
        if m is not None and s.mask is not None:
            m[i, 0] = resize_mask(decode(s.mask.read_bytes()).grey, size)
    return x, m


def _augment(x: torch.Tensor, gen: torch.Generator,
             m: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random horizontal and vertical flips (defects have no preferred side), the same on image and mask."""
    h = torch.rand(x.shape[0], generator=gen) < 0.5
    v = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(h[:, None, None, None], x.flip(3), x)
    x = torch.where(v[:, None, None, None], x.flip(2), x)
    if m is not None:
        m = torch.where(h[:, None, None, None], m.flip(3), m)
        m = torch.where(v[:, None, None, None], m.flip(2), m)
    return x, m


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    return (1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)).mean()


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, plan: Plan, masks: np.ndarray | None = None,
        label: str = "") -> nn.Module:
    """Train model on (x, y[, masks]) with AdamW and a one-cycle schedule; class-weighted cross-entropy."""
    _seed(plan.seed, plan.threads)
    gen = torch.Generator().manual_seed(plan.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    mt = torch.from_numpy(masks) if masks is not None else None
    counts = np.maximum(np.bincount(y, minlength=int(y.max()) + 1).astype(np.float32), 1)
    # balanced: half the correction from sampling, half from the loss, so rare classes are neither drowned nor
    # repeated a dozen times per epoch
    power = 0.5 if plan.balanced else 1.0
    weight = torch.from_numpy(counts.sum() / counts ** power / (counts.sum() / counts ** power).mean())
    draw = torch.from_numpy((1 / np.sqrt(counts))[y].astype(np.float64))
    ce = nn.CrossEntropyLoss(weight=weight.float())
    steps = math.ceil(len(x) / plan.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, plan.lr, total_steps=steps * plan.epochs)
    model.train()
    for epoch in range(plan.epochs):
        order = torch.multinomial(draw, len(x), replacement=True, generator=gen) if plan.balanced \
            else torch.randperm(len(x), generator=gen)
        total = 0.0
        bar = tqdm(range(steps), desc=f"{label} epoch {epoch + 1}/{plan.epochs}", unit="batch", leave=False)
        for b in bar:
            idx = order[b * plan.batch:(b + 1) * plan.batch]
            xb, mb = _augment(xt[idx], gen, mt[idx] if mt is not None else None)
            out = model(xb)
            if mb is not None:
                logits, mlogits = out
                loss = ce(logits, yt[idx]) + nn.functional.binary_cross_entropy_with_logits(mlogits, mb) \
                    + _dice_loss(mlogits, mb)
            else:
                loss = ce(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (b + 1):.3f}")
        tqdm.write(f"{label} epoch {epoch + 1}/{plan.epochs} loss {total / steps:.4f}", file=sys.stderr)
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 128) -> Any:
    """The model's outputs on x in eval mode, as numpy (a tuple for the tile model)."""
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o[k] for o in outs]).numpy() for k in range(len(outs[0])))
    return torch.cat(outs).numpy()


def export_onnx(model: nn.Module, size: int, outputs: list[str]) -> bytes:
    """ONNX bytes of model with input `image` (batch, 1, size, size), the batch axis dynamic."""
    buf = io.BytesIO()
    axes = {"image": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    torch.onnx.export(model, (torch.zeros(1, 1, size, size),), buf, input_names=["image"], output_names=outputs,
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return buf.getvalue()


def _libraries() -> dict[str, str]:
    import onnxruntime

    return {"torch": str(torch.__version__), "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def _note_cv(name: str, cv: dict[str, Any]) -> None:
    """Log the CV scores as they are known, so a later failure (refit, export, card) cannot lose them."""
    tqdm.write(f"{name} cv {json.dumps(cv, default=str)}", file=sys.stderr)


def train_neu(folder: Path, plan: Plan = Plan(), out: Path = MODELS_DIR) -> StoredModel:
    """CV of the small CNN and the tiny ViT on the same folds; the better one refitted on all and exported."""
    samples = neu_samples(folder)
    y = np.array([s.label for s in samples])
    x, _ = load_images(samples, NEU_SIZE)
    folds = stratified_folds(y, plan.folds, plan.seed)
    makers: dict[str, Callable[[], nn.Module]] = {
        "cnn": lambda: SmallCnn(len(NEU_CLASSES)),
        "vit": lambda: TinyVit(len(NEU_CLASSES), NEU_SIZE),
    }
    cv: dict[str, Any] = {}
    for name, make in makers.items():
        pred = np.empty(len(y), int)
        started = time.monotonic()
        for k, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(y)), test)
            model = fit(make(), x[train], y[train], plan, label=f"neu {name} fold {k + 1}/{plan.folds}")
            pred[test] = predict(model, x[test]).argmax(1)
        cv[name] = metrics.classification(y, pred, NEU_CLASSES)
        cv[name]["params"] = sum(p.numel() for p in make().parameters())
        cv[name]["cv_seconds"] = round(time.monotonic() - started, 1)
        cv[name]["fold_accuracy"] = metrics.fold_mean([float((pred[f] == y[f]).mean()) for f in folds])
        _note_cv("neu", cv)
    best = max(cv, key=lambda n: cv[n]["accuracy"])
    model = fit(makers[best](), x, y, plan, label=f"neu {best} final")
    card = ModelCard(
        name="neu", kind="vision-classifier", version="1.0.0",
        dataset=f"NEU surface defect (NEU-DET), {len(y)} images of the developers' part ({folder})",
        split=f"{plan.folds}-fold stratified CV (seed {plan.seed}) on every image held here; the served model is "
              f"refitted on all of them; the held-back fifth was never read",
        protocol=f"grey image resized to {NEU_SIZE}x{NEU_SIZE} (bilinear), pixels/255; augmentation: random h/v "
                 f"flips; AdamW, one-cycle lr {plan.lr}, {plan.epochs} epochs, batch {plan.batch}; class-weighted "
                 f"cross-entropy. Both architectures scored on the same folds; out-of-fold predictions pooled; "
                 f"95 % Wilson intervals. Served: {best}",
        metrics={"cv": cv, "served": best},
        features=["image"],
        inputs={"size": NEU_SIZE, "channels": 1, "scale": "pixel/255", "classes": NEU_CLASSES, "output": "logits",
                "architecture": best, "valid_input": VALID_INPUT},
        command=f"shopfloor train vision --set neu --seed {plan.seed} --epochs {plan.epochs} --folds {plan.folds}",
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"), libraries=_libraries())
    return save(card, export_onnx(model, NEU_SIZE, ["logits"]), out)


def train_mtile(folder: Path, plan: Plan = Plan(), out: Path = MODELS_DIR) -> StoredModel:
    """CV of the tile U-Net (mask + Free/defect-type head), then a refit on all and export."""
    samples = mtile_samples(folder)
    y = np.array([s.label for s in samples])
    x, m = load_images(samples, MTILE_SIZE, masks=True)
    assert m is not None
    folds = stratified_folds(y, plan.folds, plan.seed)
    probs = np.empty((len(y), len(MTILE_CLASSES)), np.float32)
    mask_logits = np.empty_like(m)
    started = time.monotonic()
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        model = fit(TileUnet(len(MTILE_CLASSES)), x[train], y[train], plan, masks=m[train],
                    label=f"mtile fold {k + 1}/{plan.folds}")
        logits, ml = predict(model, x[test])
        probs[test] = metrics.softmax(logits)
        mask_logits[test] = ml
        fold_cv = metrics.tile(y[test], probs[test], ml > 0, m[test] > 0.5, MTILE_CLASSES)
        tqdm.write(f"mtile fold {k + 1} auroc {fold_cv['auroc']:.4f} type {fold_cv['type_accuracy']:.4f} "
                   f"iou {fold_cv['pixel_iou']}", file=sys.stderr)
    cv = metrics.tile(y, probs, mask_logits > 0, m > 0.5, MTILE_CLASSES)
    cv["folds"] = {key: metrics.fold_mean([metrics.tile(y[f], probs[f], mask_logits[f] > 0, m[f] > 0.5,
                                                        MTILE_CLASSES)[key] for f in folds])
                   for key in ("auroc", "type_accuracy", "pixel_iou", "dice")}
    # other defect scores from the same out-of-fold outputs, reported beside the served one (1 - P(Free))
    defect = y != 0
    peak = mask_logits.reshape(len(y), -1).max(1)
    area = (mask_logits > 0).reshape(len(y), -1).mean(1)
    cv["auroc_other_scores"] = {"mask_peak_logit": metrics.auroc(defect, peak),
                                "mask_area": metrics.auroc(defect, area)}
    cv["cv_seconds"] = round(time.monotonic() - started, 1)
    _note_cv("mtile", cv)
    model = fit(TileUnet(len(MTILE_CLASSES)), x, y, plan, masks=m, label="mtile final")
    card = ModelCard(
        name="mtile", kind="vision-segmenter", version="1.0.0",
        dataset=f"Magnetic-tile surface defects (Huang et al.), {len(y)} image/mask pairs of the developers' part "
                f"({folder})",
        split=f"{plan.folds}-fold stratified CV by class (seed {plan.seed}); the served model is refitted on all "
              f"pairs held here; the held-back fifth was never read",
        protocol=f"grey ROI resized to {MTILE_SIZE}x{MTILE_SIZE} (aspect not kept), masks thresholded >127 and "
                 f"resized nearest; augmentation: random h/v flips on image and mask; batches drawn with class "
                 f"weights count^-1/2 and the cross-entropy over Free+5 types weighted count^-1/2 (together "
                 f"class-balanced) + BCE + Dice on the mask; AdamW one-cycle lr {plan.lr}, "
                 f"{plan.epochs} epochs, batch {plan.batch}. Defect score = 1 - P(Free); AUROC with a 95 % "
                 f"bootstrap interval (1000 resamples); type accuracy over defective images (argmax over the 5 "
                 f"types); pixel IoU and Dice pooled over defective images at {MTILE_SIZE} px, mask logit > 0",
        metrics={"cv": cv},
        features=["image"],
        inputs={"size": MTILE_SIZE, "channels": 1, "scale": "pixel/255", "classes": MTILE_CLASSES,
                "output": ["logits", "mask_logits"], "free_class": "Free", "valid_input": VALID_INPUT},
        command=f"shopfloor train vision --set mtile --seed {plan.seed} --epochs {plan.epochs} --folds {plan.folds}",
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"), libraries=_libraries())
    return save(card, export_onnx(model, MTILE_SIZE, ["logits", "mask_logits"]), out)
