"""The camera folder: each complete image judged once, across restarts, reused names and files still being written."""

import asyncio
import shutil
from pathlib import Path

import pytest

from gateway.camera.adapter import CameraFolderSource
from gateway.camera.config import CameraFolderSourceConfig
from inspection import store
from inspection.watcher import FolderWatcher, WatchSettings
from tests.inspection.helpers import NEU, neu_image
from tests.support import scalar_of, wait_for_sql


@pytest.fixture
async def cam(conn, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SHOPFLOOR_STATE", str(tmp_path / "state"))
    await store.upsert_station(conn, store.Station("cam-1", "rolling-1", "neu"))
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def _watcher(folder: Path, after: str = "move") -> FolderWatcher:
    return FolderWatcher(WatchSettings("cam-src", folder, "cam-1", after))  # type: ignore[arg-type]


async def _settle(watcher: FolderWatcher, conn):
    """Scan until a scan finds nothing still being written; the outcomes of every scan, merged."""
    total = {"inspected": [], "already": [], "rejected": []}
    for _ in range(10):
        out = await watcher.scan(conn)
        for k in total:
            total[k] += getattr(out, k)
        if not out.waiting:
            return total
    raise AssertionError("files never settled")


async def test_each_image_once_then_moved(conn, cam):
    for name in ("crazing_1.jpg", "patches_1.jpg", "scratches_1.jpg"):
        shutil.copy(NEU / name, cam / name)
    w = _watcher(cam)
    first = await w.scan(conn)
    assert first.inspected == [] and len(first.waiting) == 3  # new files wait one scan: they may be growing
    total = await _settle(w, conn)
    assert sorted(total["inspected"]) == ["crazing_1.jpg", "patches_1.jpg", "scratches_1.jpg"]
    assert sorted(p.name for p in (cam / "done").iterdir()) == sorted(total["inspected"])
    assert await scalar_of(conn, "SELECT count(*) FROM inspections WHERE source = 'camera:cam-src'") == 3
    assert (await _settle(w, conn))["inspected"] == []


async def test_restart_after_judging_before_moving_does_not_judge_again(conn, cam):
    shutil.copy(NEU / "crazing_1.jpg", cam / "a.jpg")
    w = _watcher(cam)
    await _settle(w, conn)
    # a crash after the row was committed but before the move: put the file back, start a new watcher
    shutil.copy(cam / "done" / "a.jpg", cam / "a.jpg")
    (cam / "done" / "a.jpg").unlink()
    again = await _settle(_watcher(cam), conn)
    assert again["already"] == ["a.jpg"] and again["inspected"] == []
    assert await scalar_of(conn, "SELECT count(*) FROM inspections") == 1
    assert (cam / "done" / "a.jpg").exists() and not (cam / "a.jpg").exists()


async def test_a_reused_name_with_new_content_is_judged_and_both_kept(conn, cam):
    w = _watcher(cam)
    shutil.copy(NEU / "crazing_1.jpg", cam / "img.jpg")
    await _settle(w, conn)
    shutil.copy(NEU / "scratches_1.jpg", cam / "img.jpg")
    await _settle(w, conn)
    assert await scalar_of(conn, "SELECT count(*) FROM inspections") == 2
    assert len(list((cam / "done").iterdir())) == 2


async def test_a_file_still_being_written_waits(conn, cam):
    data = neu_image()
    w = _watcher(cam)
    with open(cam / "growing.jpg", "wb") as f:
        f.write(data[:1000])
        f.flush()
        assert (await w.scan(conn)).waiting == ["growing.jpg"]
        f.write(data[1000:3000])
        f.flush()
        out = await w.scan(conn)
        assert out.waiting == ["growing.jpg"] and out.inspected == []  # grew since the last scan
        f.write(data[3000:])
    total = await _settle(w, conn)
    assert total["inspected"] == ["growing.jpg"] and total["rejected"] == []
    # temporary names are never taken
    (cam / "next.jpg.part").write_bytes(data)
    assert (await _settle(w, conn))["inspected"] == [] and (cam / "next.jpg.part").exists()


async def test_not_an_image_goes_to_rejected_with_why(conn, cam):
    (cam / "notes.jpg").write_bytes(b"hello, not a jpeg")
    (cam / "log.txt").write_text("camera log")
    w = _watcher(cam, after="delete")
    total = await _settle(w, conn)
    assert sorted(total["rejected"]) == ["log.txt", "notes.jpg"]
    assert "not a recognised image" in (cam / "rejected" / "notes.jpg.why").read_text()
    assert await scalar_of(conn, "SELECT count(*) FROM inspections") == 0


async def test_the_gateway_source_runs_and_deletes(conn, dsn, cam):
    src = CameraFolderSource(CameraFolderSourceConfig(name="cam-src", folder=str(cam), station="cam-1",
                                                      after="delete", poll_interval=0.05, dsn=dsn))
    task = asyncio.create_task(src.run(sink=None))  # type: ignore[arg-type]  # inspections need no sink
    try:
        shutil.copy(NEU / "inclusion_1.jpg", cam / "x.jpg")
        await wait_for_sql(conn, "SELECT count(*) FROM inspections", 1)
        await wait_for_sql(conn, "SELECT count(*) FROM inspection_files WHERE file = 'x.jpg'", 1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not (cam / "x.jpg").exists() and src.status.readings_total == 1


async def test_a_station_with_a_lot_tag_files_images_under_the_lot_its_machine_runs(conn, cam):
    await store.upsert_station(conn, store.Station("cam-1", "rolling-1", "neu", lot_tag="rolling-1.lot"))
    cur = await conn.execute("INSERT INTO tags (name, category, data_type) VALUES ('rolling-1.lot', 'material', "
                             "'text') RETURNING id")
    tag_id = (await cur.fetchone())[0]
    # day partitions on plain PostgreSQL, as the historian's writer creates them ahead
    await conn.execute("SELECT sf_ensure_partitions('events', (now() - interval '1 day')::date, "
                       "(now() + interval '1 day')::date)")
    await conn.execute("INSERT INTO events (tag_id, ts, value) VALUES (%s, now() - interval '2 h', 'LOT-1'), "
                       "(%s, now() - interval '1 min', 'LOT-2'), (%s, now() + interval '1 h', 'LOT-3')",
                       (tag_id, tag_id, tag_id))
    shutil.copy(NEU / "crazing_1.jpg", cam / "a.jpg")
    await _settle(_watcher(cam), conn)
    assert await scalar_of(conn, "SELECT lot FROM inspections") == "LOT-2"  # the newest value at the image's time
