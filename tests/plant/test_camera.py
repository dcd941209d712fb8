"""The plant's camera: an image per part made, written atomically, that a camera_folder watcher judges into rows."""

from pathlib import Path

from inspection import store
from inspection.watcher import FolderWatcher, WatchSettings
from plant.camera import Camera, tile_images
from plant.line import MachineState
from tests.support import scalar_of


def _made(m: MachineState, good: int, scrap: int) -> MachineState:
    m.good_count += good
    m.scrap_count += scrap
    return m


def test_one_image_per_part_good_from_free_scrap_from_defects(tmp_path):
    good, bad = tile_images()
    cam = Camera(tmp_path / "drop", "press1")
    m = MachineState("press1", good_count=40, scrap_count=2, current_lot="LOT-00007")
    assert cam.look(m) == []  # parts made before the camera started are not photographed
    files = cam.look(_made(m, 3, 1))
    assert [f.name for f in files] == [f"press1-LOT-00007-{i:07d}.jpg" for i in range(1, 5)]
    assert [f.read_bytes() for f in files] == [p.read_bytes() for p in good[:3]] + [bad[0].read_bytes()]
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == [f.name for f in files]  # no temporary left
    assert cam.look(m) == []


def test_every_nth_part(tmp_path):
    cam = Camera(tmp_path, "press2", every=3)
    m = MachineState("press2")
    cam.look(m)
    assert len(cam.look(_made(m, 7, 0))) == 2 and len(cam.look(_made(m, 2, 0))) == 1


async def test_the_watcher_judges_the_cameras_images(conn, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFLOOR_STATE", str(tmp_path / "state"))
    await store.upsert_station(conn, store.Station("cam-press1", "press1", "mtile"))
    folder = tmp_path / "drop"
    cam = Camera(folder, "press1")
    m = MachineState("press1")
    cam.look(m)
    cam.look(_made(m, 4, 2))
    watcher = FolderWatcher(WatchSettings("press1-camera", Path(folder), "cam-press1", "delete"))
    inspected: list[str] = []
    for _ in range(3):  # a new file waits one scan (it may still grow), then is judged
        inspected += (await watcher.scan(conn)).inspected
    assert len(inspected) == 6 and list(folder.iterdir()) == []
    cur = await conn.execute("SELECT count(*), min(model), max(model) FROM inspections "
                             "WHERE station = 'cam-press1' AND source = 'camera:press1-camera'")
    assert await cur.fetchone() == (6, "mtile", "mtile")
    assert await scalar_of(conn, "SELECT open_n FROM inspection_pchart WHERE station = 'cam-press1'") == 6
