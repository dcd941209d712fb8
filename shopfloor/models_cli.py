"""`shopfloor train` and `shopfloor evaluate`: fit the models from the public data sets, score them on held-out data.

Every command prints one JSON line; bad input (a missing file, a malformed line, a non-finite value, a RUL file
of the wrong length, a damaged .mat, a too-short signal) ends with one line naming the file and the problem
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from shopfloor.config import Config

SUBSETS = ["FD001", "FD002", "FD003", "FD004"]


def _finite(value: Any) -> Any:
    """value with every non-finite float replaced by None, so the JSON line is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _refused(command: str, error: Exception) -> int:
    """One line on stderr naming what was wrong; exit status 2."""
    print(f"shopfloor {command}: {error}", file=sys.stderr)
    return 2


def _register(args: argparse.Namespace, config: Config, cards: list) -> None:  # type: ignore[type-arg]
    """Record trained models in the historian's model registry when a database is configured."""
    dsn = args.dsn or os.environ.get("SHOPFLOOR_DSN") or config.historian.dsn
    if not dsn:
        print("(no database configured: the model cards in twin/models are the record; the twin registers "
              "models when it serves them)", file=sys.stderr)
        return
    from historian.db import connect
    from twin.store import register_models

    async def go() -> None:
        conn = await connect(dsn)
        try:
            await register_models(conn, cards)
        finally:
            await conn.close()

    asyncio.run(go())


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    """Train a model from the public data sets, export it to ONNX and write its card to twin/models."""
    try:
        if args.model == "rul":
            from analytics import rul

            subsets = SUBSETS if args.subset == "all" else [args.subset]
            cards = [rul.train(s, progress=True, seed=args.seed, compare_cnn=args.compare_cnn) for s in subsets]
        elif args.model == "bearing":
            from analytics import bearing

            cards = [bearing.train(progress=True, seed=args.seed)]
        else:
            from analytics import failure

            cards = [failure.train(progress=True, seed=args.seed)]
    except (OSError, ValueError) as e:
        return _refused(f"train {args.model}", e)
    for card in cards:
        print(json.dumps(_finite({"model": card.name, "sha256": card.sha256, "split": card.split,
                                  "protocol": card.protocol, "metrics": card.metrics})))
    _register(args, config, cards)
    return 0


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    """Score a stored model on held-out data; prints one JSON line of metrics with the protocol they follow."""
    try:
        if args.model == "rul":
            from analytics import rul

            if (args.test_file is None) != (args.rul_file is None):
                raise ValueError("--test-file and --rul-file go together (or neither, for the subset's official test set)")
            result = rul.evaluate(args.subset, args.test_file, args.rul_file, record=args.record)
        elif args.model == "bearing":
            from analytics import bearing

            result = bearing.evaluate(args.files, whole=args.whole)
        else:
            from analytics import failure

            result = failure.evaluate(args.csv, rows=args.rows)
    except (OSError, ValueError) as e:
        return _refused(f"evaluate {args.model}", e)
    print(json.dumps(_finite(result)))
    return 0


def add_commands(sub: Any) -> None:
    """Register `train` and `evaluate` on the CLI's subparsers."""
    train = sub.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("model", choices=["rul", "bearing", "failure"])
    train.add_argument("--subset", default="all", choices=[*SUBSETS, "all"], help="C-MAPSS subset for rul (default: all four)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--compare-cnn", action="store_true",
                       help="rul: also cross-validate the 1D-CNN on the same folds and record the comparison in the card")
    train.set_defaults(func=cmd_train)
    evaluate = sub.add_parser("evaluate", help=cmd_evaluate.__doc__).add_subparsers(dest="model", required=True)
    ev_rul = evaluate.add_parser("rul", help="RMSE and NASA score (true and capped RUL) at the last cycle of each test unit")
    ev_rul.add_argument("--subset", required=True, choices=SUBSETS)
    ev_rul.add_argument("--test-file", type=Path, help="C-MAPSS-format test file (default: the subset's test_FD00x.txt)")
    ev_rul.add_argument("--rul-file", type=Path, help="true RUL per unit (default: the subset's RUL_FD00x.txt)")
    ev_rul.add_argument("--record", action="store_true", help="write the result into the model's card (metrics.test)")
    ev_rul.set_defaults(func=cmd_evaluate)
    ev_bearing = evaluate.add_parser("bearing", help="accuracy, per-class recall and confusion matrix on CWRU .mat files")
    ev_bearing.add_argument("files", nargs="+", type=Path, help="e.g. IR007_2.mat OR021@6_1.mat Normal_0.mat")
    ev_bearing.add_argument("--whole", action="store_true",
                            help="score recordings the model trained on end to end too (default: their held-out tail only)")
    ev_bearing.set_defaults(func=cmd_evaluate)
    ev_failure = evaluate.add_parser("failure", help="F1, ROC-AUC, PR-AUC on the AI4I test split the model never saw")
    ev_failure.add_argument("--csv", type=Path, help="AI4I 2020 CSV (default: the full set's ai4i2020.csv)")
    ev_failure.add_argument("--rows", choices=["test", "all"], default="test",
                            help="test: the card's untouched stratified test split (default); all: every row")
    ev_failure.set_defaults(func=cmd_evaluate)
