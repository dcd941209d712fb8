"""Training the inspection models on CPU: cross-validation on stratified folds, a final fit, ONNX export and the card.

Deterministic under a seed (torch and numpy seeded, deterministic algorithms, fixed thread count); a progress bar
per epoch. Images are decoded once into arrays at the model's input size.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

# OpenMP threads that spin while waiting lose most of their time when another process holds a core (measured on the
# shared 2-core host: 1.57 s per tile batch on 2 spinning threads, 0.49 s passive, 0.52 s on one thread); set before
# torch loads its OpenMP runtime
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch import nn
from tqdm import tqdm

from inspection import metrics
from inspection.images import decode, resize, resize_mask
from inspection.nets import SmallCnn, TileUnet, TinyVit
from inspection.sets import MTILE_CLASSES, NEU_CLASSES, Sample, mtile_samples, neu_samples, stratified_folds
from twin.model_card import ModelCard, StoredModel, save

M = TypeVar("M", bound=nn.Module)

MODELS_DIR = Path(__file__).resolve().parent / "models"
NEU_SIZE = 128
MTILE_SIZE = 192
MTILE_CROP = 128
MTILE_EPOCHS = 40
MTILE_WHOLE_EPOCHS = 6  # of MTILE_EPOCHS, the last ones on whole images
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
    size: int = 0  # input size (0: the set's default)
    crop: int = 0  # tile model: train on random crops of this size (0: whole images); scored on whole images
    width: int = 16  # tile model: channels of the U-Net's first level
    top: int = 16  # tile model: mask pixels (at half size) whose mean logit is the image's defect logit
    pos_weight: float = 4.0  # tile model: weight of defect pixels in the mask's BCE
    on_defect: float = 0.7  # tile model: chance that a defective image's crop is centred near a defect pixel
    whole_epochs: int = 0  # tile model: the last epochs train on whole images, as they are scored and served
    jitter: float = 0.0  # classifier: random contrast x(1 +- jitter) about the image mean and brightness +- jitter / 2
    mirror: bool = True  # scored and served as the mean over the image and its left-right mirror (NEU and tiles)


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
    """Random horizontal and vertical flips, the same on image and mask. No 90-degree turns: tile defects have an
    orientation (uneven bands along the top or bottom edge, cracks and grinding marks run vertically), and turning
    them cut the tile model's one-fold AUROC from 0.94 to 0.74."""
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


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, plan: Plan, label: str = "") -> nn.Module:
    """Train a classifier on (x, y) with AdamW and a one-cycle schedule; class-weighted cross-entropy."""
    _seed(plan.seed, plan.threads)
    gen = torch.Generator().manual_seed(plan.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    counts = np.maximum(np.bincount(y, minlength=int(y.max()) + 1).astype(np.float32), 1)
    # balanced: half the correction from sampling, half from the loss, so rare classes are neither drowned nor
    # repeated a dozen times per epoch
    power = 0.5 if plan.balanced else 1.0
    weight = torch.from_numpy(counts.sum() / counts ** power / (counts.sum() / counts ** power).mean())
    draw = torch.from_numpy((1 / np.sqrt(counts))[y].astype(np.float64))
    ce = nn.CrossEntropyLoss(weight=weight.float())

    def order(_: int) -> Any:
        return torch.multinomial(draw, len(x), replacement=True, generator=gen) if plan.balanced \
            else torch.randperm(len(x), generator=gen)

    def batch_loss(_: int, idx: Any) -> torch.Tensor:
        xb, _ = _augment(xt[idx], gen)
        if plan.jitter:
            u = torch.rand(2, len(xb), 1, 1, 1, generator=gen) * 2 - 1
            mean = xb.mean(dim=(1, 2, 3), keepdim=True)
            xb = ((xb - mean) * (1 + plan.jitter * u[0]) + mean + plan.jitter / 2 * u[1]).clamp(0, 1)
        return ce(model(xb), yt[idx])

    return _train_epochs(model, len(x), plan, label, order, batch_loss)


def _train_epochs(model: M, n: int, plan: Plan, label: str, order: Callable[[int], Any],
                  batch_loss: Callable[[int, Any], torch.Tensor]) -> M:
    """AdamW with a one-cycle schedule over plan.epochs epochs of n samples, drawn per epoch by order(epoch) and
    batched; batch_loss(epoch, indices) is minimised; a progress bar per epoch, its mean loss on stderr."""
    steps = math.ceil(n / plan.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, plan.lr, total_steps=steps * plan.epochs)
    model.train()
    for epoch in range(plan.epochs):
        drawn = order(epoch)
        total = 0.0
        bar = tqdm(range(steps), desc=f"{label} epoch {epoch + 1}/{plan.epochs}", unit="batch", leave=False)
        for b in bar:
            loss = batch_loss(epoch, drawn[b * plan.batch:(b + 1) * plan.batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (b + 1):.3f}")
        tqdm.write(f"{label} epoch {epoch + 1}/{plan.epochs} loss {total / steps:.4f}", file=sys.stderr)
    model.eval()
    return model


def _crops(x: np.ndarray, m: np.ndarray, idx: np.ndarray, plan: Plan, positives: list[np.ndarray],
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of plan.crop pixels of images idx and their masks; a defective image's crop is centred near one of its
    defect pixels with chance plan.on_defect (else anywhere), so small defects are seen often."""
    size, c = x.shape[-1], plan.crop
    xb = np.empty((len(idx), 1, c, c), np.float32)
    mb = np.empty_like(xb)
    for j, i in enumerate(idx):
        pos = positives[i]
        if len(pos) and rng.random() < plan.on_defect:
            py, px = divmod(int(pos[rng.integers(len(pos))]), size)
            jitter = rng.integers(-c // 4, c // 4 + 1, 2)
            top, left = np.clip([py - c // 2 + jitter[0], px - c // 2 + jitter[1]], 0, size - c)
        else:
            top, left = rng.integers(0, size - c + 1, 2)
        xb[j] = x[i, :, top:top + c, left:left + c]
        mb[j] = m[i, :, top:top + c, left:left + c]
    return torch.from_numpy(xb), torch.from_numpy(mb)


def tile_model(plan: Plan) -> TileUnet:
    """A freshly initialised tile U-Net, its weights drawn under plan.seed (so every fold and the refit start alike)."""
    _seed(plan.seed, plan.threads)
    return TileUnet(len(MTILE_CLASSES), plan.width, plan.top, plan.mirror)


def fit_tile(model: TileUnet, x: np.ndarray, y: np.ndarray, m: np.ndarray, plan: Plan,
             label: str = "") -> TileUnet:
    """Train the tile U-Net on crops: mask BCE + Dice, the image's defect logit, the type of a defect crop."""
    _seed(plan.seed, plan.threads)
    gen = torch.Generator().manual_seed(plan.seed)
    rng = np.random.default_rng(plan.seed)
    positives = [np.flatnonzero(mi[0] > 0.5) for mi in m]
    counts = np.maximum(np.bincount(y, minlength=model.types.out_features + 1).astype(np.float32), 1)
    # class-balanced in two halves: batches drawn with weights count^-1/2 and the type loss weighted count^-1/2
    draw = torch.from_numpy((1 / np.sqrt(counts))[y].astype(np.float64))
    tw = 1 / np.sqrt(counts[1:])
    type_ce = nn.CrossEntropyLoss(weight=torch.from_numpy(tw / tw.mean()).float())
    yt = torch.from_numpy(y).long()
    pos_weight = torch.tensor([plan.pos_weight])

    def order(_: int) -> Any:
        return torch.multinomial(draw, len(x), replacement=True, generator=gen).numpy()

    def batch_loss(epoch: int, idx: Any) -> torch.Tensor:
        if plan.crop and epoch < plan.epochs - plan.whole_epochs:
            xb, mb = _crops(x, m, idx, plan, positives, rng)
        else:
            xb, mb = torch.from_numpy(x[idx]), torch.from_numpy(m[idx])
        xb, mb = _augment(xb, gen, mb)
        assert mb is not None
        defect, types, half = model.parts(xb)
        mlogits = nn.functional.interpolate(half, scale_factor=2.0, mode="bilinear", align_corners=False)
        # a crop's labels come from its mask: a crop that misses the defect is a defect-free crop
        has = mb.amax(dim=(1, 2, 3))
        loss = nn.functional.binary_cross_entropy_with_logits(mlogits, mb, pos_weight=pos_weight) \
            + nn.functional.binary_cross_entropy_with_logits(defect, has)
        sel = has > 0
        if sel.any():
            loss = loss + _dice_loss(mlogits[sel], mb[sel]) + type_ce(types[sel], yt[idx][sel] - 1)
        return loss

    return _train_epochs(model, len(x), plan, label, order, batch_loss)


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
    size = plan.size or NEU_SIZE
    samples = neu_samples(folder)
    y = np.array([s.label for s in samples])
    x, _ = load_images(samples, size)
    folds = stratified_folds(y, plan.folds, plan.seed)
    makers: dict[str, Callable[[], nn.Module]] = {
        "cnn": lambda: SmallCnn(len(NEU_CLASSES), mirror=plan.mirror),
        "vit": lambda: TinyVit(len(NEU_CLASSES), size, mirror=plan.mirror),
    }
    cv: dict[str, Any] = {}
    for name, make in makers.items():
        pred, one_view = np.empty(len(y), int), np.empty(len(y), int)
        started = time.monotonic()
        load = [round(v, 2) for v in os.getloadavg()]
        for k, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(y)), test)
            model = fit(make(), x[train], y[train], plan, label=f"neu {name} fold {k + 1}/{plan.folds}")
            pred[test] = predict(model, x[test]).argmax(1)
            model.mirror = False  # the same fold model on the image alone: what the mirror adds, at no extra fit
            one_view[test] = predict(model, x[test]).argmax(1)
            tqdm.write(f"neu {name} fold {k + 1} accuracy {(pred[test] == y[test]).mean():.4f} "
                       f"(one view {(one_view[test] == y[test]).mean():.4f})", file=sys.stderr)
        cv[name] = metrics.classification(y, pred, NEU_CLASSES)
        if plan.mirror:
            right = int((one_view == y).sum())
            cv[name]["one_view"] = {"accuracy": right / len(y), "accuracy_ci95": metrics.wilson(right, len(y))}
        cv[name]["params"] = sum(p.numel() for p in make().parameters())
        cv[name]["cv_seconds"] = round(time.monotonic() - started, 1)
        cv[name]["fold_accuracy"] = metrics.fold_mean([float((pred[f] == y[f]).mean()) for f in folds])
        cv[name]["load_before"], cv[name]["load_after"] = load, [round(v, 2) for v in os.getloadavg()]
        _note_cv("neu", cv)
    best = max(cv, key=lambda n: cv[n]["accuracy"])
    t0 = time.monotonic()
    model = fit(makers[best](), x, y, plan, label=f"neu {best} final")
    refit = {"seconds": round(time.monotonic() - t0, 1), "threads": plan.threads,
             "load_after": [round(v, 2) for v in os.getloadavg()]}
    jittered = f", contrast x(1 +- {plan.jitter:g}) about the image mean, brightness +- {plan.jitter / 2:g}" \
        if plan.jitter else ""
    mirrored = "; scored and served as the mean of the logits over the image and its left-right mirror (the " \
               "one-view accuracy of the same fold models is recorded beside it)" if plan.mirror else ""
    card = ModelCard(
        name="neu", kind="vision-classifier", version="2.0.0",
        dataset=f"NEU surface defect (NEU-DET), {len(y)} images of the developers' part ({folder})",
        split=f"{plan.folds}-fold stratified CV (seed {plan.seed}) on every image held here; the served model is "
              f"refitted on all of them; the held-back fifth was never read",
        protocol=f"grey image resized to {size}x{size} (bilinear), pixels/255; augmentation: random h/v "
                 f"flips (so also 180-degree turns){jittered}; AdamW, one-cycle lr {plan.lr}, {plan.epochs} epochs, batch "
                 f"{plan.batch}, {plan.threads} threads; class-weighted cross-entropy{mirrored}. Both architectures "
                 f"scored on the same folds; out-of-fold predictions pooled; 95 % Wilson intervals. Served: {best}",
        metrics={"cv": cv, "served": best, "refit": refit},
        features=["image"],
        inputs={"size": size, "channels": 1, "scale": "pixel/255", "classes": NEU_CLASSES, "output": "logits",
                "architecture": best, "mirror": plan.mirror, "valid_input": VALID_INPUT},
        command=f"shopfloor train vision --set neu --seed {plan.seed} --epochs {plan.epochs} --folds {plan.folds}",
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"), libraries=_libraries())
    return save(card, export_onnx(model, size, ["logits"]), out)


def _tile_scores(y: np.ndarray, probs: np.ndarray, mask_logits: np.ndarray, m: np.ndarray,
                 folds: list[np.ndarray]) -> dict[str, Any]:
    """The tile model's out-of-fold scores: pooled (with intervals), per fold, per defect type, other defect scores
    and the share of images a station threshold calls NG."""
    from inspection.cli import THRESHOLDS

    cv = metrics.tile(y, probs, mask_logits > 0, m > 0.5, MTILE_CLASSES)
    cv["folds"] = {key: metrics.fold_mean([metrics.tile(y[f], probs[f], mask_logits[f] > 0, m[f] > 0.5,
                                                        MTILE_CLASSES)[key] for f in folds])
                   for key in ("auroc", "type_accuracy", "pixel_iou", "dice")}
    defect, score = y != 0, 1 - probs[:, 0]
    free = y == 0
    cv["auroc_by_type"] = {name: metrics.auroc(np.r_[np.zeros(free.sum(), bool), np.ones((y == c).sum(), bool)],
                                               np.r_[score[free], score[y == c]])
                           for c, name in enumerate(MTILE_CLASSES) if c}
    flat = mask_logits.reshape(len(y), -1)
    cv["auroc_other_scores"] = {"mask_peak_logit": metrics.auroc(defect, flat.max(1)),
                                "mask_area": metrics.auroc(defect, (flat > 0).mean(1))}
    cv["ng_share_at_threshold"] = {f"{t:g}": {"free": float((score[free] >= t).mean()),
                                              "defect": float((score[defect] >= t).mean())} for t in THRESHOLDS}
    return cv


def train_mtile(folder: Path, plan: Plan = Plan(), out: Path = MODELS_DIR) -> StoredModel:
    """CV of the tile U-Net (mask, defect score from the mask, type head) on crops, then a refit on all and export."""
    size, crop = plan.size or MTILE_SIZE, plan.crop or 0
    samples = mtile_samples(folder)
    y = np.array([s.label for s in samples])
    x, m = load_images(samples, size, masks=True)
    assert m is not None
    folds = stratified_folds(y, plan.folds, plan.seed)
    probs = np.empty((len(y), len(MTILE_CLASSES)), np.float32)
    mask_logits = np.empty_like(m)
    load = [round(v, 2) for v in os.getloadavg()]
    started = time.monotonic()
    fold_seconds = []
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        t0 = time.monotonic()
        model = fit_tile(tile_model(plan), x[train], y[train], m[train], plan,
                         label=f"mtile fold {k + 1}/{plan.folds}")
        fold_seconds.append(round(time.monotonic() - t0, 1))
        logits, ml = predict(model, x[test], batch=64)
        probs[test] = metrics.softmax(logits)
        mask_logits[test] = ml
        fold_cv = metrics.tile(y[test], probs[test], ml > 0, m[test] > 0.5, MTILE_CLASSES)
        tqdm.write(f"mtile fold {k + 1} auroc {fold_cv['auroc']:.4f} type {fold_cv['type_accuracy']:.4f} "
                   f"iou {fold_cv['pixel_iou']} fit {fold_seconds[-1]} s", file=sys.stderr)
    cv = _tile_scores(y, probs, mask_logits, m, folds)
    cv["cv_seconds"] = round(time.monotonic() - started, 1)
    cv["fit_seconds_by_fold"] = fold_seconds
    cv["load_before"] = load
    cv["load_after"] = [round(v, 2) for v in os.getloadavg()]
    _note_cv("mtile", cv)
    t0 = time.monotonic()
    model = fit_tile(tile_model(plan), x, y, m, plan, label="mtile final")
    refit = {"seconds": round(time.monotonic() - t0, 1), "threads": plan.threads,
             "load_after": [round(v, 2) for v in os.getloadavg()]}
    where = f"random {crop}x{crop} crops (a defective image's crop centred near a defect pixel with chance " \
            f"{plan.on_defect}; a crop's labels come from its mask, so a crop missing the defect is defect-free)" \
        if crop else "whole images"
    if crop and plan.whole_epochs:
        where += f", the last {plan.whole_epochs} epochs on whole images"
    mirrored = " as the mean over the image and its left-right mirror (so served)" if plan.mirror else ""
    card = ModelCard(
        name="mtile", kind="vision-segmenter", version="2.0.0",
        dataset=f"Magnetic-tile surface defects (Huang et al.), {len(y)} image/mask pairs of the developers' part "
                f"({folder})",
        split=f"{plan.folds}-fold stratified CV by class (seed {plan.seed}); the served model is refitted on all "
              f"pairs held here; the held-back fifth was never read",
        protocol=f"grey ROI resized to {size}x{size} (aspect not kept), masks thresholded >127 and resized nearest; "
                 f"4-level U-Net (stride-2 stem, width {plan.width}, BatchNorm; mask at half size, upsampled "
                 f"bilinearly); trained on {where}; augmentation: random h/v flips on image and mask; batches drawn "
                 f"with class weights count^-1/2, type cross-entropy weighted count^-1/2; loss = mask BCE (defect "
                 f"pixels weighted {plan.pos_weight:g}) + mask Dice (defective crops) + BCE of the image's defect "
                 f"logit (mean of the {plan.top} highest half-size mask logits) + type cross-entropy (defective "
                 f"crops; features pooled under the predicted mask + pooled bottleneck); AdamW one-cycle lr "
                 f"{plan.lr}, {plan.epochs} epochs, batch {plan.batch}, {plan.threads} threads. Scored on whole "
                 f"images{mirrored}: defect score s = sigmoid(defect logit) = 1 - P(Free); AUROC with a 95 % bootstrap "
                 f"interval (1000 resamples); type accuracy over defective images (argmax over the 5 types); pixel "
                 f"IoU and Dice pooled over defective images at {size} px, mask logit > 0; out-of-fold predictions "
                 f"pooled",
        metrics={"cv": cv, "refit": refit},
        features=["image"],
        inputs={"size": size, "channels": 1, "scale": "pixel/255", "classes": MTILE_CLASSES,
                "output": ["logits", "mask_logits"], "free_class": "Free", "valid_input": VALID_INPUT,
                "architecture": {"net": "TileUnet", "width": plan.width, "top": plan.top, "mirror": plan.mirror}},
        command=f"shopfloor train vision --set mtile --seed {plan.seed} --epochs {plan.epochs} --folds {plan.folds}",
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"), libraries=_libraries())
    return save(card, export_onnx(model, size, ["logits", "mask_logits"]), out)
