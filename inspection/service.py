"""Inspecting one image: decode under limits, run the station's model, decide the verdict, store image and row,
count it into the station's p-chart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from inspection import pchart, store
from inspection.images import ImageRejected, decode
from inspection.models import load_model


class UnknownStation(LookupError):
    """No station of that name is configured."""


def _verdict(result: Any, threshold: float, segmenter: bool) -> str:
    # a segmenter's score is P(defect); a classifier of defect types calls every image of a defect class NG
    if segmenter:
        return "ng" if result.score >= threshold else "ok"
    return "ng" if result.defect else "ok"


async def inspect(conn: psycopg.AsyncConnection, data: bytes, *, station: str, machine: str | None = None,
                  lot: str | None = None, operation: str | None = None, captured_at: datetime | None = None,
                  source: str = "api", root: Path | None = None) -> dict[str, Any]:
    """Judge, store and count one image into its station's p-chart; ImageRejected/UnknownStation/ValueError say why."""
    st = await store.station(conn, station)
    if st is None:
        raise UnknownStation(f"station {station!r} is not configured")
    if machine is not None and machine != st.machine:
        raise ValueError(f"machine {machine!r} is not station {station!r}'s machine ({st.machine!r})")
    decoded = decode(data)
    model = load_model(st.model)
    result = await asyncio.to_thread(model.run, decoded.grey)
    segmenter = result.mask is not None
    detail = {"probs": dict(zip(model.classes, map(float, result.probs))), **result.summary}
    ts = captured_at or datetime.now(UTC)
    if lot is None and st.lot_tag is not None:  # the lot the machine ran when the image was taken, if it says
        lot = await store.current_lot(conn, st.lot_tag, ts)
    row = {"ts": ts, "station": station, "machine": st.machine, "lot": lot,
           "operation": operation, "verdict": _verdict(result, st.threshold, segmenter), "class": result.label,
           "score": result.score, "detail": detail, "image_format": decoded.format,
           "width": decoded.grey.shape[1], "height": decoded.grey.shape[0], "model": model.card.name,
           "model_version": model.card.version, "model_sha256": model.card.sha256,
           "latency_ms": result.latency_ms, "source": source}
    async with conn.transaction():  # the row and its count in the station's p-chart: both or neither
        stored = await store.store(conn, root or store.image_root(), data, row)
        await pchart.count(conn, station, stored["ts"], stored["verdict"])
    return stored


__all__ = ["ImageRejected", "UnknownStation", "inspect"]
