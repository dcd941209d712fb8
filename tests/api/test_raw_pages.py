"""Raw sample pages with a keyset cursor: every row of a range exactly once while rows keep arriving."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from api.app import create_app
from historian import Sample
from historian.writer import HistorianWriter
from tests.api_keys import api_config, auth
from tests.historian.helpers import at, setup_tags

URL = "/api/v1/tags/press1.temperature/samples"
RANGE = {"start": at(0).isoformat(), "end": at(2000).isoformat()}


async def test_paging_returns_every_row_once_while_rows_are_inserted(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write_records([Sample("press1.temperature", at(2 * i), float(2 * i)) for i in range(400)])
        async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as client:
            client.headers.update(auth("viewer"))
            seen: list[str] = []
            cursor, pages = None, 0
            while True:
                params = {**RANGE, "limit": 37} | ({"cursor": cursor} if cursor else {})
                r = await client.get(URL, params=params)
                assert r.status_code == 200, r.text
                body = r.json()
                seen += [p["ts"] for p in body["points"]]
                pages += 1
                # rows arrive meanwhile: behind the page (odd seconds already passed) and ahead of it
                last = 2 * (pages * 37)
                await w.write_records([Sample("press1.temperature", at(s), float(s))
                                       for s in (last - 31, last + 11, 1999 - pages) if 0 <= s < 2000])
                cursor = body["next_cursor"]
                if cursor is None:
                    assert len(body["points"]) < 37
                    break
                assert pages < 100
    assert len(seen) == len(set(seen)), "a row came twice"
    assert seen == sorted(seen)
    originals = {at(2 * i).isoformat().replace("+00:00", "Z") for i in range(400)}
    assert originals <= set(seen), sorted(originals - set(seen))[:5]
    # rows that arrived ahead of the page being read are in later pages too
    stored = await (await conn.execute(
        "SELECT count(*) FROM samples WHERE ts > %s AND ts < %s", (at(2 * 37 * 1), at(2000)))).fetchone()
    assert stored[0] > 0


async def test_a_bad_or_foreign_cursor_is_a_400_naming_cursor(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write_records([Sample("press1.temperature", at(i), float(i)) for i in range(5)])
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as client:
        client.headers.update(auth("viewer"))
        first = (await client.get(URL, params={**RANGE, "limit": 2})).json()
        assert len(first["points"]) == 2 and first["next_cursor"]
        for bad in ("not-a-cursor", "A" * 400, first["next_cursor"][:-3]):
            r = await client.get(URL, params={**RANGE, "cursor": bad})
            body = r.json()
            named = body.get("parameter") or [e.get("key") for e in body.get("extra", [])]
            assert r.status_code == 400 and "cursor" in named, (bad, r.text)
        r = await client.get("/api/v1/tags/press1.count/samples", params={**RANGE, "cursor": first["next_cursor"]})
        assert r.status_code == 400 and "press1.temperature" in r.json()["detail"]
        r = await client.get(URL, params={**RANGE, "bucket": "1m", "cursor": first["next_cursor"]})
        assert r.status_code == 400 and r.json()["parameter"] == "cursor"
