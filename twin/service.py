"""The twin as a running service: fed by the gateway's tap, recording to the historian, resuming from its snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import psycopg

from historian.db import connect
from historian.registry import load_registry
from historian.samples import Batch, SampleBatch, from_us
from twin import store
from twin.config import FAILURE_INPUTS, TwinConfig
from twin.engine import Layout, StepOutput, Twin, build_layout
from twin.validity import STALE_AFTER_S

log = logging.getLogger(__name__)


class TwinService:
    """Consumes committed sample batches (observe) and keeps the twin's tables up to date (run)."""

    def __init__(self, config: TwinConfig, dsn: str, name: str = "default") -> None:
        self.config = config
        self.dsn = dsn
        self.name = name
        self.twin: Twin | None = None
        self.ready = asyncio.Event()
        """Set once the snapshot is restored and the catch-up from the historian is done."""
        self._pending: list[SampleBatch] = []
        self._rul: dict[str, Any] = {}
        self._failure: dict[str, Any] = {}
        self.predictions: dict[int, dict[str, Any]] = {}
        self._tag_names: dict[int, str] = {}
        self.records = 0
        """Records made (tables written in one transaction): progress a caller can wait on."""
        self.record_failures = 0
        """Records the database refused or never got (their findings go with the next one)."""

    def observe(self, batch: Batch) -> None:
        """The gateway's tap: a batch the historian committed. Never blocks; the next tick takes it."""
        if len(batch.samples):
            self._pending.append(batch.samples)

    async def run(self) -> None:
        """Restore, catch up, then tick and record until cancelled."""
        conn = await connect(self.dsn)
        out, ids = StepOutput(), []
        try:
            layout = await self._layout(conn)
            ids = await store.machine_ids(conn, layout.machines)
            twin = Twin(self.config, layout)
            snap = await store.load_snapshot(conn, self.name)
            if snap is not None and snap[0] == layout:
                twin.restore(snap[1])
            elif snap is not None:
                log.warning("twin %s: configuration changed since the snapshot; starting afresh", self.name)
            self._load_models()
            await store.register_models(conn, [m.card for m in [*self._rul.values(), *self._failure.values()]])
            self.twin = twin
            # what the historian got while the twin was away (the tap only brings what comes from now on)
            missed = await store.samples_since(conn, twin.catch_up_from())
            _merge(out, twin.step(missed))
            self.ready.set()
            last_record = time.monotonic()
            while True:
                await asyncio.sleep(self.config.tick_interval)
                batch, self._pending = SampleBatch.concat(self._pending), []
                _merge(out, twin.step(batch))
                if time.monotonic() - last_record >= self.config.record_interval:
                    try:
                        await self._record(conn, twin, ids, out)
                        out = StepOutput()
                        self.records += 1
                    except psycopg.OperationalError as e:
                        self.record_failures += 1
                        # the database went away: keep what was found (it goes with the next record)
                        log.warning("twin %s: cannot record (%s); reconnecting", self.name, e)
                        conn = await self._reconnect(conn)
                    last_record = time.monotonic()
        except asyncio.CancelledError:
            if self.twin is not None and not conn.closed:
                batch, self._pending = SampleBatch.concat(self._pending), []
                _merge(out, self.twin.step(batch))
                try:
                    await asyncio.shield(self._record(conn, self.twin, ids, out))
                except psycopg.OperationalError as e:  # stopping while the database is away
                    log.warning("twin %s: last record lost (%s); the next start catches up", self.name, e)
            raise
        finally:
            await conn.close()

    async def _reconnect(self, old: Any) -> Any:
        """A new connection, retried every record_interval until the database answers."""
        await old.close()
        while True:
            try:
                return await connect(self.dsn)
            except psycopg.OperationalError:
                await asyncio.sleep(self.config.record_interval)

    async def _layout(self, conn: Any) -> Layout:
        """The layout over the registry; waits (logging what is missing) until the gateway registered every tag."""
        warned = False
        while True:
            try:
                registry = await load_registry(conn)
                layout = build_layout(self.config, registry)
                self._tag_names = {info.id: name for name, info in registry.by_name.items()}
                return layout
            except ValueError as e:
                if not warned:
                    log.warning("twin %s: %s; waiting for it to be registered", self.name, e)
                    warned = True
                await asyncio.sleep(1.0)

    def _load_models(self) -> None:
        # onnxruntime loads only when a machine is configured with a model
        from twin.failure import FailureModel
        from twin.rul import RulModel

        for name in sorted({m.failure_model for m in self.config.machines if m.failure_model}):
            try:
                self._failure[name] = FailureModel.load(name)
            except (OSError, ValueError) as e:
                log.error("twin %s: cannot serve the failure model %s: %s", self.name, name, e)
        for subset in sorted({m.rul_model for m in self.config.machines if m.rul_model}):
            try:
                self._rul[subset] = RulModel.load(subset)
            except (OSError, ValueError) as e:  # the twin still mirrors the machines, without this model
                log.error("twin %s: cannot serve the RUL model for %s: %s", self.name, subset, e)

    async def _record(self, conn: Any, twin: Twin, ids: list[int], out: StepOutput) -> None:
        # a machine with no cycle yet still gets its RUL answer: null, with the reason
        unseen = {m for m, mc in enumerate(self.config.machines) if mc.rul_model and "rul" not in self.predictions.get(m, {})}
        for m in sorted(out.rul_rows | unseen):
            self._predict(twin, m)
        self._failure_probabilities(twin)
        names = self._tag_names
        status = []
        for m in range(len(ids)):
            view = twin.machine_view(m)
            view["sensors"] = {names.get(int(tid), tid): s for tid, s in view["sensors"].items()}
            view["predictions"] = self.predictions.get(m, {})
            status.append(view)
        await store.record(conn, self.name, twin.layout, ids, out, status, twin.snapshot())

    def _failure_probabilities(self, twin: Twin) -> None:
        """The failure model on each configured machine's latest process readings."""
        for m, mc in enumerate(self.config.machines):
            if not mc.failure_model:
                continue
            model = self._failure.get(mc.failure_model)
            if model is None:
                self.predictions.setdefault(m, {})["failure"] = {"error": f"model {mc.failure_model} not loaded"}
                continue
            x = twin.failure_inputs[m]
            # a missing, stale or out-of-range input gives {"valid": false, "reason": ...} and no probability
            record = {"type": mc.product_type} | {k: None if np.isnan(v) else v for k, v in zip(FAILURE_INPUTS, x.tolist())}
            now = twin.last_ts_max()
            ages = {FAILURE_INPUTS[j]: (now - twin.last_ts.get(tid, 0)) / 1e6
                    for tid, role, mm, j in twin.layout.roles if role == "failure" and mm == m}
            verdict = model.assess(record, ages_s=ages, max_age_s=STALE_AFTER_S)
            p = verdict.value
            self.predictions.setdefault(m, {})["failure"] = {
                "valid": verdict.valid,
                "reason": verdict.reason,
                "probability": None if p is None else round(p, 4),
                "flagged": verdict.detail.get("flagged"),
                "threshold": round(model.threshold, 4),
                "inputs": record,
                "model": model.name,
                "version": model.card.version,
                "sha256": model.sha256,
            }

    def _predict(self, twin: Twin, m: int) -> None:
        subset = self.config.machines[m].rul_model
        history = twin.rul_history[m]
        if not subset:
            return
        model = self._rul.get(subset)
        if model is None:
            self.predictions.setdefault(m, {})["rul"] = {"error": f"no RUL model for {subset} could be loaded"}
            return
        verdict = model.assess(list(history))  # null with a reason until enough in-range history exists
        self.predictions.setdefault(m, {})["rul"] = {
            "valid": verdict.valid,
            "reason": verdict.reason,
            "value": None if verdict.value is None else round(verdict.value, 2),
            "unit": "cycles (parts)",
            "cycles_seen": len(history),
            "model": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "at": from_us(twin.last_ts_max()).isoformat() if twin.last_ts else None,
        }


def _merge(into: StepOutput, more: StepOutput) -> None:
    into.intervals += more.intervals
    into.counts += more.counts
    into.alarms += more.alarms
    into.rul_rows |= more.rul_rows
