"""/api/v1/inspections over a real database and real ONNX sessions: every route, roles, bad input stores nothing."""

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from inspection import store
from tests.api_keys import api_config, auth
from tests.inspection.helpers import bomb_png, neu_image, tile_image, truncated_jpeg


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SHOPFLOOR_STATE", str(tmp_path))
    return tmp_path / "inspection" / "images"


@pytest.fixture
async def client(conn, dsn, state):
    await store.upsert_station(conn, store.Station("cam-steel", "rolling-1", "neu"))
    await store.upsert_station(conn, store.Station("cam-tile", "press-2", "mtile", threshold=0.5))
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("operator"))
        yield c


def _post(client, data: bytes, name: str = "part.jpg", **fields):
    form = {"station": "cam-steel", **fields}
    return client.post("/api/v1/inspections", files={"image": (name, data, "image/jpeg")}, data=form)


async def _count(conn) -> int:
    cur = await conn.execute("SELECT count(*) FROM inspections")
    return (await cur.fetchone())[0]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_post_judges_stores_and_reads_back(client, conn, state):
    r = await _post(client, neu_image("scratches_1.jpg"), machine="rolling-1", lot="L-1", operation="10",
                    captured_at="2026-12-05T10:00:00Z")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["verdict"] == "ng" and body["class"] == "scratches" and 0 < body["score"] <= 1
    assert body["model"]["name"] == "neu" and len(body["model"]["sha256"]) == 64 and body["latency_ms"] > 0
    assert (body["lot"], body["operation"], body["machine"]) == ("L-1", "10", "rolling-1")
    assert len(_files(state)) == 1

    one = await client.get(f"/api/v1/inspections/{body['id']}", headers=auth("viewer"))
    assert one.json()["id"] == body["id"] and one.json()["ts"] == "2026-12-05T10:00:00Z"
    image = await client.get(f"/api/v1/inspections/{body['id']}/image", headers=auth("viewer"))
    assert image.content == neu_image("scratches_1.jpg") and image.headers["content-type"] == "image/jpeg"
    overlay = await client.get(f"/api/v1/inspections/{body['id']}/overlay.png", headers=auth("viewer"))
    assert overlay.status_code == 200 and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"

    cur = await conn.execute("SELECT verdict, class, lot FROM inspection_results WHERE id = %s", (body["id"],))
    assert await cur.fetchone() == ("ng", "scratches", "L-1")


async def test_the_same_image_twice_is_stored_once(client, state):
    a = await _post(client, neu_image())
    b = await _post(client, neu_image())
    assert a.status_code == b.status_code == 201
    assert a.json()["image_sha256"] == b.json()["image_sha256"] and a.json()["id"] != b.json()["id"]
    assert len(_files(state)) == 1


async def test_a_tile_station_answers_a_mask_summary(client):
    _, data = tile_image("Blowhole")
    r = await _post(client, data, station="cam-tile")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body["mask"]) == {"area_px", "area_fraction", "bbox"} and body["model"]["name"] == "mtile"
    assert body["verdict"] == ("ng" if body["score"] >= 0.5 else "ok")
    overlay = await client.get(f"/api/v1/inspections/{body['id']}/overlay.png")
    assert overlay.content[:4] == b"\x89PNG"


async def test_list_filters_and_pages(client):
    for lot in ("A", "A", "B"):
        assert (await _post(client, neu_image("crazing_1.jpg"), lot=lot)).status_code == 201
    r = await client.get("/api/v1/inspections", params={"lot": "A", "station": "cam-steel"})
    assert [x["lot"] for x in r.json()] == ["A", "A"]
    page = await client.get("/api/v1/inspections", params={"limit": 1, "offset": 1})
    assert len(page.json()) == 1
    assert (await client.get("/api/v1/inspections", params={"verdict": "ok"})).json() == []
    assert (await client.get("/api/v1/inspections", params={"limit": 5000})).status_code == 400
    assert (await client.get("/api/v1/inspections", params={"verdict": "maybe"})).status_code == 400


@pytest.mark.parametrize("data, fields, status, needle", [
    (b"%PDF-1.4 hello", {}, 400, "not a recognised image"),
    (truncated_jpeg(), {}, 400, "truncated"),
    (bomb_png(), {}, 400, "pixel limit"),
    (neu_image(), {"station": "cam-nowhere"}, 404, "cam-nowhere"),
    (neu_image(), {"machine": "press-2"}, 400, "machine"),
    (neu_image(), {"captured_at": "yesterday"}, 400, "captured_at"),
    (neu_image(), {"station": ""}, 400, "station"),
])
async def test_bad_input_is_refused_and_stores_nothing(client, conn, state, data, fields, status, needle):
    r = await _post(client, data, **fields)
    assert r.status_code == status, r.text
    assert needle in r.text
    assert await _count(conn) == 0 and _files(state) == []


async def test_an_oversized_upload_is_refused(client, conn, state):
    r = await _post(client, b"\xff\xd8" + b"\0" * (21 * 1024 * 1024))
    assert 400 <= r.status_code < 500
    assert await _count(conn) == 0 and _files(state) == []


async def test_a_missing_image_part_is_named(client):
    r = await client.post("/api/v1/inspections", data={"station": "cam-steel"})
    assert r.status_code == 400 and "image" in r.text


async def test_roles(client):
    assert (await _post(client, neu_image(), )).status_code == 201
    viewer = await client.post("/api/v1/inspections", files={"image": ("a.jpg", neu_image(), "image/jpeg")},
                               data={"station": "cam-steel"}, headers=auth("viewer"))
    assert viewer.status_code == 403
    anonymous = await client.get("/api/v1/inspections", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert (await client.get("/api/v1/inspections/999999", headers=auth("viewer"))).status_code == 404
