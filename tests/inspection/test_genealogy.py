"""NG verdicts on a lot show up in genealogy: lot_trace()'s inspected/ng columns and the inspection_ng_by_lot view."""

from datetime import UTC, datetime

from inspection import store
from tests.inspection.helpers import stored_verdict


async def _inspection(conn, tmp_path, lot: str, verdict: str, n: int) -> None:
    await stored_verdict(conn, tmp_path, ts=datetime(2026, 12, 5, 10, n, tzinfo=UTC), verdict=verdict, lot=lot,
                         operation="20")


async def test_ng_on_a_component_lot_is_seen_from_the_raw_lot(conn, tmp_path):
    await store.upsert_station(conn, store.Station("cam-1", "m1", "neu"))
    await conn.execute("INSERT INTO items (code) VALUES ('steel'), ('strip'), ('bracket')")
    await conn.execute("INSERT INTO lots (id, item_id, quantity) SELECT x.lot, i.id, 10 FROM (VALUES "
                       "('RAW-1', 'steel'), ('STRIP-1', 'strip'), ('BR-1', 'bracket')) x(lot, code) "
                       "JOIN items i ON i.code = x.code")
    await conn.execute("INSERT INTO lot_consumption (produced, consumed, quantity) VALUES "
                       "('STRIP-1', 'RAW-1', 5), ('BR-1', 'STRIP-1', 5)")
    await _inspection(conn, tmp_path, "STRIP-1", "ng", 1)
    await _inspection(conn, tmp_path, "STRIP-1", "ok", 2)
    await _inspection(conn, tmp_path, "BR-1", "ok", 3)
    cur = await conn.execute("SELECT lot, depth, inspected, ng FROM lot_trace('RAW-1', 'up')")
    assert await cur.fetchall() == [("STRIP-1", 1, 2, 1), ("BR-1", 2, 1, 0)]
    cur = await conn.execute("SELECT lot, inspected, ng FROM lot_trace('BR-1', 'down')")
    assert await cur.fetchall() == [("STRIP-1", 2, 1), ("RAW-1", 0, 0)]
    cur = await conn.execute("SELECT lot, operation, ng, inspected FROM inspection_ng_by_lot ORDER BY lot")
    assert await cur.fetchall() == [("BR-1", "20", 0, 1), ("STRIP-1", "20", 1, 2)]


async def test_a_row_that_cannot_be_written_leaves_no_image(conn, tmp_path):
    # no station cam-1 configured: the row's foreign key fails, and the image written first is removed again
    try:
        await _inspection(conn, tmp_path, "L", "ng", 1)
    except Exception as e:  # psycopg.errors.ForeignKeyViolation
        assert "inspection_stations" in str(e)
    else:
        raise AssertionError("the row was written without its station")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_retention_deletes_old_rows_and_images_no_row_holds(conn, tmp_path):
    await store.upsert_station(conn, store.Station("cam-1", "m1", "neu", retention_days=1))
    old = {"station": "cam-1", "machine": "m1", "lot": None, "operation": None, "verdict": "ok", "class": "Free",
           "score": 0.1, "detail": {}, "image_format": "JPEG", "width": 1, "height": 1, "model": "neu",
           "model_version": "1", "model_sha256": "0" * 64, "latency_ms": 1.0, "source": "api"}
    now = datetime.now(UTC)
    gone = await store.store(conn, tmp_path, b"only-old", {**old, "ts": datetime(2020, 1, 1, tzinfo=UTC)})
    shared_old = await store.store(conn, tmp_path, b"shared", {**old, "ts": datetime(2020, 1, 2, tzinfo=UTC)})
    shared_new = await store.store(conn, tmp_path, b"shared", {**old, "ts": now})
    assert await store.sweep(conn, tmp_path) == 2
    assert await store.get(conn, gone["id"]) is None and await store.get(conn, shared_old["id"]) is None
    assert await store.get(conn, shared_new["id"]) is not None
    assert not store.image_path(tmp_path, gone["image_sha256"]).exists()
    assert store.image_path(tmp_path, shared_new["image_sha256"]).exists()
