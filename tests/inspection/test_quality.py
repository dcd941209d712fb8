"""Camera NG verdicts become scrap in the ISO 22400 KPIs, without counting twice what people reported as scrap.

The plant is tests/analytics/test_kpi.py's hand-built one (m1 on line L1: operation A = WO1/1 reported 25 scrap at
11.5 h, B = WO1/2 reported 20 scrap at 20.5 h); camera station cam-1 watches m1.
"""

from __future__ import annotations

import pytest

from analytics.kpi import kpis
from inspection import store
from tests.analytics.test_kpi import build_plant, h
from tests.inspection.helpers import stored_verdict


@pytest.fixture
async def plant(conn):
    await build_plant(conn)
    await store.upsert_station(conn, store.Station("cam-1", "m1", "neu"))
    return conn


async def _op_id(conn, work_order: str, seq: int) -> str:
    cur = await conn.execute("SELECT id FROM operations WHERE work_order_id = %s AND seq = %s", (work_order, seq))
    return str((await cur.fetchone())[0])


async def _verdicts(conn, root, n: int, at: float, verdict: str, lot: str | None, operation: str | None) -> None:
    for k in range(n):
        await stored_verdict(conn, root, ts=h(at), verdict=verdict, lot=lot, operation=operation, key=str(k))


async def test_ng_beyond_reported_scrap_moves_from_good_to_scrap(plant, tmp_path):
    (before,) = await kpis(plant, machine="m1", start=h(0), end=h(24))
    op_a = await _op_id(plant, "WO1", 1)
    await _verdicts(plant, tmp_path, 30, 9.0, "ng", "LOT-A", op_a)  # A reported 25 scrap: 5 more
    await _verdicts(plant, tmp_path, 12, 9.0, "ok", "LOT-A", op_a)  # OK parts change nothing
    await _verdicts(plant, tmp_path, 2, 19.0, "ng", "LOT-B", "WO1/2")  # B reported 20: already counted
    await _verdicts(plant, tmp_path, 3, 19.5, "ng", "LOT-X", None)  # no operation, no report to meet: 3
    await _verdicts(plant, tmp_path, 1, 33.0, "ng", "LOT-X", None)  # day 2
    (after,) = await kpis(plant, machine="m1", start=h(0), end=h(24))
    assert (after.gq, after.sq) == (before.gq - 8, before.sq + 8)
    assert after.pq == before.pq  # the camera judges parts already made: production unchanged
    assert after.quality_rate == pytest.approx(after.gq / after.pq)
    days = await kpis(plant, machine="m1", start=h(0), end=h(48), group="day")
    assert [d.sq for d in days] == [before.sq + 8, 0 + 1]
    (line,) = await kpis(plant, line="L1", start=h(0), end=h(24))  # m2 has no camera: the line gets m1's 8
    (m2,) = await kpis(plant, machine="m2", start=h(0), end=h(24))
    assert line.sq == after.sq + m2.sq


async def test_never_more_scrap_than_the_machine_counted_good(plant, tmp_path):
    # day 2 on m1 counted 500 good; 600 NG images (a camera re-judging the same parts) move at most those 500
    for k in range(6):
        await plant.execute(
            "INSERT INTO inspections (ts, station, machine, verdict, class, score, image_sha256, image_format, width, "
            "height, model, model_version, model_sha256, latency_ms) SELECT %s, 'cam-1', 'm1', 'ng', 'scratches', "
            "0.9, repeat('a', 64), 'JPEG', 1, 1, 'neu', '1', repeat('0', 64), 1 FROM generate_series(1, 100)",
            (h(32 + k),))
    (row,) = await kpis(plant, machine="m1", start=h(24), end=h(48))
    assert (row.gq, row.sq, row.quality_rate) == (0, 500, 0.0)
