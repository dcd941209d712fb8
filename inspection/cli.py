"""`shopfloor train vision` and `shopfloor evaluate vision`: fit the camera models, score them on a folder of images.

Both print one JSON line; bad input ends with one line on stderr naming the file and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = (0.5, 0.8, 0.9, 0.95)
"""Station thresholds `evaluate vision --set mtile` reports the NG share of free and defect images at."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def train(data_set: str, seed: int, epochs: int | None, folds: int | None, out: Path | None = None) -> int:
    """Train the set's model from the full data set and write it with its card to inspection/models."""
    from datasets import dataset_dir
    from inspection.train import (MODELS_DIR, MTILE_CROP, MTILE_EPOCHS, MTILE_SIZE, MTILE_WHOLE_EPOCHS, Plan,
                                  train_mtile, train_neu)

    if data_set == "neu":
        plan = Plan(seed=seed, epochs=epochs or 30, folds=folds or 5, threads=2, jitter=0.1)
    else:  # crops at 192 px on 2 threads: CV and refit fit the time budget (inspection/README.md)
        plan = Plan(seed=seed, epochs=epochs or MTILE_EPOCHS, folds=folds or 5, balanced=True, threads=2,
                    size=MTILE_SIZE, crop=MTILE_CROP, whole_epochs=MTILE_WHOLE_EPOCHS)
    try:
        if data_set == "neu":
            stored = train_neu(dataset_dir("neu-surface-defect", full=True), plan, out or MODELS_DIR)
        else:
            stored = train_mtile(dataset_dir("magnetic-tile-defect", full=True), plan, out or MODELS_DIR)
    except (OSError, ValueError) as e:
        print(f"shopfloor train vision: {e}", file=sys.stderr)
        return 2
    print(json.dumps(_clean({"model": stored.card.name, "sha256": stored.card.sha256, "split": stored.card.split,
                             "metrics": stored.card.metrics})))
    return 0


def evaluate(data_set: str, folder: Path) -> int:
    """Score the served model on a folder laid out like the data set; one JSON line."""
    from inspection import metrics
    from inspection.images import ImageRejected, decode
    from inspection.models import load_model
    from inspection.sets import MTILE_CLASSES, NEU_CLASSES, mtile_samples, neu_samples

    if not folder.is_dir():
        print(f"shopfloor evaluate vision: {folder}: not a folder", file=sys.stderr)
        return 2
    try:
        samples = neu_samples(folder) if data_set == "neu" else mtile_samples(folder)
    except ValueError as e:
        print(f"shopfloor evaluate vision: {e}", file=sys.stderr)
        return 2
    if not samples:
        print(f"shopfloor evaluate vision: {folder}: no images laid out as the {data_set} set", file=sys.stderr)
        return 2
    try:
        model = load_model(data_set)
    except (OSError, ValueError) as e:  # missing model, or its file does not match its card's sha256
        print(f"shopfloor evaluate vision: {e}", file=sys.stderr)
        return 2
    bad: list[str] = []
    y, outs, masks = [], [], []
    for s in samples:
        try:
            grey = decode(s.path.read_bytes()).grey
            true_mask = decode(s.mask.read_bytes()).grey if s.mask is not None else None
        except (OSError, ImageRejected) as e:
            bad.append(f"{s.path.name}: {e}")
            continue
        if true_mask is not None and true_mask.shape != grey.shape:
            bad.append(f"{s.mask.name if s.mask else ''}: mask is {true_mask.shape[::-1]}, image {grey.shape[::-1]}")
            continue
        result = model.run(grey)
        y.append(s.label)
        outs.append(result)
        if true_mask is not None:
            masks.append((result.mask, true_mask))
    if bad:
        print("shopfloor evaluate vision: skipped " + "; ".join(bad), file=sys.stderr)
    if not y:
        return 2
    ya = np.array(y)
    if data_set == "neu":
        pred = np.array([NEU_CLASSES.index(o.label) for o in outs])
        scores = metrics.classification(ya, pred, NEU_CLASSES)
    else:
        probs = np.stack([o.probs for o in outs])
        scores = metrics.tile(ya, probs, np.zeros((len(ya), 1), bool), np.zeros((len(ya), 1), bool), MTILE_CLASSES)
        # pixel scores pooled over the defective images, at each image's own size (the model's mask resized up)
        inter = union = total = 0.0
        for label, (pred_mask, true_mask) in zip(y, masks):
            if label == 0:
                continue
            p, t = pred_mask > 0, true_mask > 127
            inter += float(np.logical_and(p, t).sum())
            union += float(np.logical_or(p, t).sum())
            total += float(p.sum() + t.sum())
        scores["pixel_iou"] = inter / union if union else None
        scores["dice"] = 2 * inter / total if total else None
        # what a station's threshold does: the share of defect-free and of defect images it calls NG
        defect = 1 - probs[:, 0]
        scores["ng_share_at_threshold"] = {
            f"{t:g}": {"free": float((defect[ya == 0] >= t).mean()) if (ya == 0).any() else None,
                       "defect": float((defect[ya != 0] >= t).mean()) if (ya != 0).any() else None}
            for t in THRESHOLDS}
    print(json.dumps(_clean({"set": data_set, "model": model.card.name, "version": model.card.version,
                             "sha256": model.card.sha256, "skipped": len(bad), **scores})))
    return 0


def quantize(data_set: str, data: Path | None, models: Path | None, calib_per_class: int, max_drop: float) -> int:
    """Quantise the served model to int8, compare on a folder (default the full set), record it in the card and
    serve int8 only below the accuracy-drop bound; one JSON line."""
    from datasets import dataset_dir
    from inspection import quantize as q

    if not 1 <= calib_per_class <= 1000:
        print(f"shopfloor quantize vision: --calib-per-class must be 1..1000, got {calib_per_class}", file=sys.stderr)
        return 2
    if not 0 <= max_drop <= 100:  # 0: never serve int8 unless it is more accurate
        print(f"shopfloor quantize vision: --max-drop must be 0..100 points, got {max_drop}", file=sys.stderr)
        return 2
    try:
        folder = data if data is not None else dataset_dir(
            "neu-surface-defect" if data_set == "neu" else "magnetic-tile-defect", full=True)
        result = q.run(folder.resolve(), data_set, models or q.MODELS_DIR, calib_per_class,
                       max_drop_points=max_drop)
    except (OSError, ValueError) as e:
        print(f"shopfloor quantize vision: {e}", file=sys.stderr)
        return 2
    print(json.dumps(_clean({"model": data_set, **result})))
    return 0


def sync(dsn: str, config: Any) -> None:
    """Write shopfloor.toml's camera stations into the database before serving."""
    import asyncio

    from historian.db import connect
    from inspection.config import sync_stations

    async def go() -> None:
        conn = await connect(dsn)
        try:
            await sync_stations(conn, config)
        finally:
            await conn.close()

    asyncio.run(go())


def cmd_train(args: argparse.Namespace) -> int:
    """Dispatch `shopfloor train vision`."""
    return train(args.set, args.seed, args.epochs, args.folds, getattr(args, "out", None))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Dispatch `shopfloor evaluate vision`."""
    return evaluate(args.set, args.folder)


def add_commands(sub: Any) -> None:
    """Add `vision` to the CLI's `train` and `evaluate` commands (registered there by shopfloor.models_cli)."""
    train_parser = sub.choices["train"]
    for action in train_parser._actions:  # argparse keeps no public handle on a positional's choices
        if action.dest == "model" and action.choices is not None:
            action.choices = [*action.choices, "vision"]
    train_parser.add_argument("--set", choices=["neu", "mtile"], help="vision: which image set")
    train_parser.add_argument("--epochs", type=int, help="vision: epochs per fit (default 30 neu, 40 mtile)")
    train_parser.add_argument("--folds", type=int, help="vision: CV folds (default 5)")
    others = train_parser.get_default("func")

    def train_any(args: argparse.Namespace, config: Any) -> int:
        if args.model != "vision":
            return int(others(args, config))
        if args.set is None:
            print("shopfloor train vision: --set neu|mtile is required", file=sys.stderr)
            return 2
        return cmd_train(args)

    train_parser.set_defaults(func=train_any)
    evaluate_sub = next(a for a in sub.choices["evaluate"]._actions if isinstance(a, argparse._SubParsersAction))
    ev = evaluate_sub.add_parser("vision", help="accuracy/recall/confusion (neu) or auroc/type accuracy/IoU/Dice "
                                              "(mtile) of the served model on a folder laid out like the set")
    ev.add_argument("--set", required=True, choices=["neu", "mtile"])
    ev.add_argument("folder", type=Path)
    ev.set_defaults(func=lambda args, config: cmd_evaluate(args))
    _quantize_parser(sub.add_parser("quantize", help="int8 versions of the camera models").add_subparsers(
        dest="model", required=True).add_parser("vision", help=quantize.__doc__.split(";")[0]))


def _quantize_parser(p: argparse.ArgumentParser) -> None:
    """The options of `quantize vision`."""
    p.add_argument("--set", required=True, choices=["neu", "mtile"])
    p.add_argument("--data", type=Path, help="folder laid out like the set (default: the full set)")
    p.add_argument("--models", type=Path, help="folder of the model and card (default inspection/models)")
    p.add_argument("--calib-per-class", type=int, default=20, help="calibration images per class (default 20)")
    p.add_argument("--max-drop", type=float, default=0.5, help="serve int8 only if accuracy (neu), or AUROC and type "
                                                                "accuracy (mtile), drop less than this many points "
                                                                "(default 0.5)")
    p.set_defaults(func=lambda args, config=None: quantize(args.set, args.data, args.models, args.calib_per_class,
                                                           args.max_drop))


def main(argv: list[str] | None = None) -> int:
    """`python -m inspection.cli train|evaluate|quantize ...` (the same commands as `shopfloor ... vision`)."""
    parser = argparse.ArgumentParser(prog="inspection")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--set", required=True, choices=["neu", "mtile"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int)
    t.add_argument("--folds", type=int)
    t.add_argument("--out", type=Path, help="folder for the model and card (default inspection/models)")
    e = sub.add_parser("evaluate")
    e.add_argument("--set", required=True, choices=["neu", "mtile"])
    e.add_argument("folder", type=Path)
    _quantize_parser(sub.add_parser("quantize"))
    args = parser.parse_args(argv)
    if args.command == "quantize":
        return int(args.func(args))
    return cmd_train(args) if args.command == "train" else cmd_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
