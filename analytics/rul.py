"""Remaining-useful-life models on NASA C-MAPSS: fit, cross-validate on training units, export to ONNX, evaluate.

Protocol (as in the literature): training labels are piecewise-linear RUL capped at 125; a model is scored on
the last cycle of each test unit against the true RUL, by RMSE and the NASA score, and also against the
truth capped at 125 (the convention most papers report). Choices are made by cross-validation on training
units only (GroupKFold by unit, validation units truncated like test units). `train` never opens a test
file: scoring is `evaluate`'s job, which records its result in the card (`--record`) for the committed model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analytics.cmapss import N_CONDITIONS, RUL_CAP, SUBSETS, Unit, fit_conditions, read_rul, read_units, rul_labels, subset_path
from analytics.provenance import libraries
from twin.model_card import MODELS_DIR, ModelCard, load, save
from twin.rul import RulModel
from twin.rul_features import (
    COLUMN_NAMES,
    INFORMATIVE_SENSORS,
    FeatureSpec,
    conditions,
    feature_names,
    normalise,
    sequence_input,
    window_features,
    window_features_every,
    window_tensor,
)

VERSION = "2.0.0"
BOOTSTRAP = 2000
FOLDS = 5
CUTS_PER_UNIT = 5
MIN_HISTORY = 20  # NASA test trajectories are cut after 19-31 cycles at the shortest
WINDOW = 20  # window and long window of the features, chosen by CV on FD001/FD003 training units
LONG_WINDOW = 300
MAX_CUT_RUL = 150  # validation cuts leave a true RUL uniform in [1, MAX_CUT_RUL] (capped by the unit's length)


@dataclass(frozen=True, slots=True)
class XgbParams:
    """Hyperparameters of the gradient-boosted model (chosen by CV on training units)."""

    n_estimators: int = 600
    learning_rate: float = 0.03
    max_depth: int = 5
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    reg_lambda: float = 10.0


@dataclass(frozen=True, slots=True)
class SeqParams:
    """Hyperparameters of the 1D-CNN sequence model (chosen by CV on training units)."""

    channels: int = 24
    kernel: int = 7
    hidden: int = 64
    dropout: float = 0.2
    epochs: int = 30
    batch: int = 256
    lr: float = 2e-3


SENSORS: dict[str, tuple[str, ...]] = {s: INFORMATIVE_SENSORS for s in SUBSETS}
XGB_PARAMS: dict[str, XgbParams] = {s: XgbParams() for s in SUBSETS}
SEQ_PARAMS: dict[str, SeqParams] = {s: SeqParams() for s in SUBSETS}
OPSET_XGB = 15  # the highest onnxmltools converts XGBoost to
OPSET_TORCH = 17
# model kind per subset, chosen by the CV on training units (see the report in each card's metrics.cv_by_kind)
KIND: dict[str, str] = {s: "xgboost" for s in SUBSETS}


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root-mean-square error."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(d**2)))


def nasa_score(pred: np.ndarray, true: np.ndarray) -> float:
    """PHM08 score: late predictions (d = pred - true >= 0) cost exp(d/10)-1, early ones exp(-d/13)-1."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)))


def fit_spec(
    units: Sequence[Unit],
    subset: str,
    window: int = WINDOW,
    long_window: int = LONG_WINDOW,
    seed: int = 0,
    sensors: Sequence[str] | None = None,
) -> FeatureSpec:
    """Operating-condition centres and per-condition sensor mean/std fitted on the given (training) units."""
    sensors = tuple(sensors or SENSORS[subset])
    data = np.concatenate([u.data for u in units])
    k = N_CONDITIONS[subset]
    centres = fit_conditions(data[:, :3], k, seed=seed)
    scale = data[:, :3].std(axis=0) + 1e-12
    cond = conditions(data[:, :3], centres, scale)
    cols = [COLUMN_NAMES.index(s) for s in sensors]
    x = data[:, cols]
    mean = np.array([x[cond == j].mean(axis=0) for j in range(k)])
    std = np.array([x[cond == j].std(axis=0) for j in range(k)])
    std = np.where(std < 1e-8, 1.0, std)
    return FeatureSpec(sensors, centres, scale, mean, std, window=window, long_window=long_window)


def training_set(units: Sequence[Unit], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features as of every cycle of every unit, with capped RUL labels."""
    xs = [window_features_every(u.data, spec) for u in units]
    ys = [rul_labels(len(u.data)) for u in units]
    return np.concatenate(xs), np.concatenate(ys)


def cut_points(units: Sequence[Unit], rng: np.random.Generator, per_unit: int = CUTS_PER_UNIT) -> list[tuple[int, int]]:
    """Test-like truncations (unit index, history length): true RUL uniform in [1, MAX_CUT_RUL], history >= MIN_HISTORY."""
    out = []
    for i, u in enumerate(units):
        n = len(u.data)
        hi = min(MAX_CUT_RUL, n - MIN_HISTORY)
        if hi < 1:
            continue
        for r in rng.integers(1, hi + 1, size=per_unit):
            out.append((i, n - int(r)))
    return out


def fold_of_units(n_units: int, folds: int, seed: int) -> np.ndarray:
    """GroupKFold-style assignment of units to folds (shuffled by seed, sizes within one)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n_units) % folds)


def _xgb(params: XgbParams, seed: int):
    import xgboost as xgb

    return xgb.XGBRegressor(
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        max_depth=params.max_depth,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        reg_lambda=params.reg_lambda,
        tree_method="hist",
        n_jobs=2,
        random_state=seed,
    )


def fit_xgb(units: Sequence[Unit], spec: FeatureSpec, params: XgbParams, seed: int = 0):
    """XGBoost regressor on window features as of every cycle of the given units."""
    x, y = training_set(units, spec)
    model = _xgb(params, seed)
    model.fit(x, y)
    return model


def predict_xgb(model, units: Sequence[Unit], cuts: Sequence[tuple[int, int]], spec: FeatureSpec) -> np.ndarray:
    """XGBoost predictions at the last cycle of each truncated history (clipped to [0, cap] as served)."""
    x = np.stack([window_features(units[i].data[:n], spec) for i, n in cuts])
    return np.clip(model.predict(x), 0.0, RUL_CAP)


def sequence_set(units: Sequence[Unit], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Windows ending at every cycle of every unit (front-padded as served), with capped RUL labels."""
    xs, ys = [], []
    for u in units:
        z = normalise(u.data, spec)
        xs.append(np.stack([window_tensor(z, t, spec.window) for t in range(len(z))]))
        ys.append(rul_labels(len(z)))
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32)


def _cnn(n_sensors: int, window: int, params: SeqParams):
    import torch
    from torch import nn

    class Cnn(nn.Module):
        """1D convolutions over time, then a small dense head; output scaled to RUL cycles."""

        def __init__(self) -> None:
            super().__init__()
            c = params.channels
            self.conv = nn.Sequential(
                nn.Conv1d(n_sensors, c, params.kernel, padding="same"),
                nn.ReLU(),
                nn.Conv1d(c, c, params.kernel, padding="same"),
                nn.ReLU(),
                nn.Conv1d(c, c, params.kernel, padding="same"),
                nn.ReLU(),
            )
            self.head = nn.Sequential(
                nn.Flatten(), nn.Dropout(params.dropout), nn.Linear(c * window, params.hidden), nn.ReLU(), nn.Linear(params.hidden, 1)
            )

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            # input (batch, time, sensors) as served; Conv1d wants channels first
            return self.head(self.conv(window.transpose(1, 2))) * RUL_CAP

    return Cnn()


def fit_cnn(units: Sequence[Unit], spec: FeatureSpec, params: SeqParams, seed: int = 0, progress: bool = False):
    """Small 1D-CNN on the served window tensor, MSE on capped RUL, Adam with a step-down learning rate."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    x, y = sequence_set(units, spec)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y / RUL_CAP)
    model = _cnn(x.shape[2], x.shape[1], params)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(params.epochs * 0.6), int(params.epochs * 0.85)], 0.3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(params.epochs), desc="cnn", disable=not progress, leave=False):
        order = torch.randperm(len(xt), generator=gen)
        for b in range(0, len(order), params.batch):
            idx = order[b : b + params.batch]
            opt.zero_grad()
            loss = torch.mean((model(xt[idx]).squeeze(1) / RUL_CAP - yt[idx]) ** 2)
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def predict_cnn(model, units: Sequence[Unit], cuts: Sequence[tuple[int, int]], spec: FeatureSpec) -> np.ndarray:
    """CNN predictions at the last cycle of each truncated history (clipped to [0, cap] as served)."""
    import torch

    x = np.stack([sequence_input(units[i].data[:n], spec) for i, n in cuts])
    with torch.no_grad():
        out = model(torch.from_numpy(x)).squeeze(1).numpy()
    return np.clip(out, 0.0, RUL_CAP)


def _metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "cv_rmse": rmse(pred, true),
        "cv_rmse_capped_truth": rmse(pred, np.minimum(true, RUL_CAP)),
        "cv_score_per_unit": nasa_score(pred, true) / len(true),
    }


def cross_validate(
    units: Sequence[Unit],
    subset: str,
    kinds: Sequence[str] = ("xgboost",),
    *,
    folds: int = FOLDS,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """GroupKFold by unit; each validation unit cut like a test unit; metrics per model kind (and their mean)."""
    from tqdm import tqdm

    fold = fold_of_units(len(units), folds, seed)
    cuts = cut_points(units, np.random.default_rng(seed + 1))
    true = np.array([len(units[i].data) - n for i, n in cuts], dtype=np.float64)
    pred = {k: np.empty(len(cuts)) for k in kinds}
    for f in tqdm(range(folds), desc=f"CV {subset}", disable=not progress):
        train = [u for u, k in zip(units, fold) if k != f]
        spec = fit_spec(train, subset, seed=seed)
        idx = [j for j, (i, _) in enumerate(cuts) if fold[i] == f]
        fold_cuts = [cuts[j] for j in idx]
        if "xgboost" in kinds:
            pred["xgboost"][idx] = predict_xgb(fit_xgb(train, spec, XGB_PARAMS[subset], seed), units, fold_cuts, spec)
        if "cnn" in kinds:
            pred["cnn"][idx] = predict_cnn(fit_cnn(train, spec, SEQ_PARAMS[subset], seed, progress), units, fold_cuts, spec)
    out = {k: _metrics(p, true) for k, p in pred.items()}
    if len(kinds) > 1:
        out["ensemble"] = _metrics(np.mean([pred[k] for k in kinds], axis=0), true)
    for m in out.values():
        m["cv_n"] = len(cuts)
    return out


def export_xgb(model, n_features: int) -> bytes:
    """The XGBoost regressor as ONNX: input "features" float32 (batch, n_features), output (batch, 1)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    proto = onnxmltools.convert_xgboost(model, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=OPSET_XGB)
    proto.graph.name = "rul_xgboost"  # the converter names graphs by a random uuid; a fixed name keeps retrains byte-equal
    return proto.SerializeToString()


def export_cnn(model, window: int, n_sensors: int) -> bytes:
    """The CNN as ONNX: input "window" float32 (batch, window, n_sensors), output (batch, 1)."""
    import io

    import torch

    buf = io.BytesIO()
    example = torch.zeros(2, window, n_sensors)
    torch.onnx.export(
        model, (example,), buf, input_names=["window"], output_names=["rul"], opset_version=OPSET_TORCH,
        dynamic_axes={"window": {0: "batch"}, "rul": {0: "batch"}}, dynamo=False,
    )
    return buf.getvalue()


def average_onnx(members: Sequence[bytes]) -> bytes:
    """One ONNX graph feeding each member its own inputs and returning the mean of their (batch, 1) outputs."""
    import onnx
    from onnx import compose, helper

    if len(members) == 1:
        return members[0]
    protos = [compose.add_prefix(onnx.load_from_string(b), f"m{i}_", rename_inputs=False) for i, b in enumerate(members)]
    nodes, inits, inputs, outs = [], [], [], []
    opsets: dict[str, int] = {}
    for p in protos:
        nodes += list(p.graph.node)
        inits += list(p.graph.initializer)
        inputs += [i for i in p.graph.input if i.name not in {x.name for x in inputs}]
        outs.append(p.graph.output[0].name)
        for o in p.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    flat = []
    for j, name in enumerate(outs):
        flat.append(f"flat{j}")
        nodes.append(helper.make_node("Reshape", [name, "shape_b1"], [f"flat{j}"]))
    nodes.append(helper.make_node("Sum", flat, ["sum"]))
    nodes.append(helper.make_node("Mul", ["sum", "inv_n"], ["rul"]))
    inits += [
        helper.make_tensor("shape_b1", onnx.TensorProto.INT64, [2], [-1, 1]),
        helper.make_tensor("inv_n", onnx.TensorProto.FLOAT, [], [1.0 / len(protos)]),
    ]
    out = helper.make_tensor_value_info("rul", onnx.TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(nodes, "rul_ensemble", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(p.ir_version for p in protos)
    onnx.checker.check_model(model)
    return model.SerializeToString()


_LIBRARIES = ("numpy", "numba", "xgboost-cpu", "onnxmltools", "onnx", "onnxruntime", "torch")


def valid_ranges(units: Sequence[Unit], spec: FeatureSpec) -> dict[str, list[float]]:
    """[min, max] over every training cycle of the three settings and each sensor the model reads."""
    from twin.validity import ranges_of

    names = ["setting1", "setting2", "setting3", *spec.sensors]
    cols = [0, 1, 2, *spec.columns.tolist()]
    return ranges_of(names, np.concatenate([u.data[:, cols] for u in units]))


def fit_final(units: Sequence[Unit], subset: str, kind: str, seed: int = 0, progress: bool = False) -> tuple[FeatureSpec, bytes]:
    """Fit the chosen kind on all given units; return its feature spec and ONNX bytes."""
    spec = fit_spec(units, subset, seed=seed)
    members = []
    if kind in ("xgboost", "ensemble"):
        members.append(export_xgb(fit_xgb(units, spec, XGB_PARAMS[subset], seed), len(feature_names(spec))))
    if kind in ("cnn", "ensemble"):
        members.append(export_cnn(fit_cnn(units, spec, SEQ_PARAMS[subset], seed, progress), spec.window, len(spec.sensors)))
    return spec, average_onnx(members)


def train(
    subset: str,
    *,
    data_root: Path | None = None,
    out_dir: Path = MODELS_DIR,
    progress: bool = False,
    seed: int = 0,
    compare_cnn: bool = False,
) -> ModelCard:
    """Cross-validate, fit on all training units, export ONNX, save as rul_<subset>. Reads the training file only.

    compare_cnn also cross-validates the 1D-CNN (and the XGBoost+CNN mean) on the same folds and cuts, for the card.
    """
    units = read_units(subset_path(subset, "train", data_root))
    kind = KIND[subset]
    kinds = ("xgboost", "cnn") if kind == "ensemble" or compare_cnn else (kind,)
    cv = cross_validate(units, subset, kinds, seed=seed, progress=progress)
    metrics: dict[str, Any] = dict(cv[kind])
    metrics["cv_by_kind"] = cv
    metrics["cnn_compared"] = "cnn" in cv
    spec, onnx_bytes = fit_final(units, subset, kind, seed, progress)
    kinds = ("xgboost", "cnn") if kind == "ensemble" else (kind,)
    held = subset in ("FD001", "FD003")
    comparison = (
        "the 1D-CNN and the XGBoost+CNN mean were cross-validated on the same folds and cuts: metrics.cv_by_kind"
        if "cnn" in cv
        else "the 1D-CNN was NOT compared for this card (run with --compare-cnn; the FD001 card holds the comparison)"
    )
    card = ModelCard(
        name=f"rul_{subset}",
        kind="rul",
        version=VERSION,
        dataset=f"NASA C-MAPSS {subset} (train_{subset}.txt; Saxena et al., PHM08)",
        split=f"fit on all {len(units)} training units of train_{subset}.txt; training never opens a test file; "
        + (f"test_{subset}.txt / RUL_{subset}.txt scored by `shopfloor evaluate rul --subset {subset} --record` "
           "(metrics.test), never used to choose" if held else "its test set is held back by the data share and never scored here"),
        protocol=f"labels: piecewise-linear RUL capped at {RUL_CAP:g}; CV: {FOLDS}-fold GroupKFold by unit on train, "
        f"{CUTS_PER_UNIT} test-like cuts per validation unit (true RUL uniform in [1, {MAX_CUT_RUL}], history >= {MIN_HISTORY}), "
        "scored at the cut's last cycle against the uncapped true RUL; test: last cycle of each test unit vs the RUL file; "
        "RMSE and NASA score (d = pred - true; exp(-d/13)-1 early, exp(d/10)-1 late); predictions clipped to [0, cap]. "
        f"Selection by the same CV only: windows {WINDOW}/{LONG_WINDOW} and the XGBoost parameters on FD001/FD003 training units "
        "(confirmed on FD002); adding s6/s10/s16 did not improve CV RMSE; " + comparison + ". valid_ranges: each "
        f"setting's and read sensor's [min, max] over the training cycles; min_history {MIN_HISTORY} cycles; outside "
        "either the served model gives no RUL",
        metrics=metrics,
        features=feature_names(spec) if "xgboost" in kinds else [],
        inputs={
            "model": kind,
            "onnx_inputs": (["features"] if "xgboost" in kinds else []) + (["window"] if "cnn" in kinds else []),
            "columns": ["setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22))],
            "rul_cap": RUL_CAP,
            "min_history": MIN_HISTORY,
            "valid_ranges": valid_ranges(units, spec),
            "seed": seed,
            "xgboost_params": asdict(XGB_PARAMS[subset]) if "xgboost" in kinds else None,
            "cnn_params": asdict(SEQ_PARAMS[subset]) if "cnn" in kinds else None,
            **spec.to_dict(),
        },
        command=f"shopfloor train rul --subset {subset}",
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        libraries=libraries(_LIBRARIES),
    )
    save(card, onnx_bytes, out_dir)
    return card


def _bootstrap_rmse(pred: np.ndarray, true: np.ndarray, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    draws = [rmse(pred[i], true[i]) for i in (rng.integers(0, len(true), len(true)) for _ in range(BOOTSTRAP))]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def evaluate(
    subset: str, test_file: Path | None = None, rul_file: Path | None = None, *, models_dir: Path = MODELS_DIR, record: bool = False
) -> dict[str, Any]:
    """Score the stored model for subset on a C-MAPSS-format test file: last cycle of each unit vs the RUL file.

    Files default to the subset's official test_/RUL_ files. record=True writes the result into the card.
    """
    model = RulModel.load(subset, models_dir)
    test_file = Path(test_file) if test_file else subset_path(subset, "test")
    rul_file = Path(rul_file) if rul_file else subset_path(subset, "RUL")
    units = read_units(test_file)
    true = read_rul(rul_file)
    if len(true) != len(units):
        raise ValueError(f"{rul_file}: {len(true)} RUL values for {len(units)} units in {test_file}")
    pred = model.predict_many([u.data for u in units])
    capped = np.minimum(true, model.cap)
    short = sum(len(u.data) < model.min_history for u in units)
    result = {
        "subset": subset,
        "model": model.name,
        "sha256": model.sha256,
        "protocol": "one prediction per unit, at its last cycle, from its whole history; rmse/score against the RUL "
        f"file's true RUL; rmse_capped/score_capped against min(true RUL, cap = the training label cap {model.cap:g}), "
        "the convention most papers report; score = NASA PHM08 (d = pred - true: exp(-d/13)-1 early, exp(d/10)-1 late), "
        f"summed over units; predictions clipped to [0, cap]; rmse 95 % interval by bootstrap over units ({BOOTSTRAP})",
        "rmse": rmse(pred, true),
        "rmse_ci95": _bootstrap_rmse(pred, true),
        "score": nasa_score(pred, true),
        "rmse_capped": rmse(pred, capped),
        "rmse_capped_ci95": _bootstrap_rmse(pred, capped),
        "score_capped": nasa_score(pred, capped),
        "cap": model.cap,
        "n": len(units),
        "units_above_cap": int(np.sum(true > model.cap)),
        "units_shorter_than_min_history": int(short),
        "test_file": str(test_file),
        "rul_file": str(rul_file),
    }
    if record:
        stored = load(model.name, models_dir)
        onnx = stored.onnx_bytes()
        stored.card.metrics["test"] = {k: v for k, v in result.items() if k not in ("subset", "model", "sha256")} | {
            "test_file": test_file.name, "rul_file": rul_file.name}
        save(stored.card, onnx, models_dir)
    return result
