"""GET /api/v1/kpi over the hand-built plant of tests/analytics/test_kpi.py, and its errors."""

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.analytics.test_kpi import build_plant, h
from tests.api_keys import api_config, auth

DAY = {"start": h(0).isoformat(), "end": h(24).isoformat()}


@pytest.fixture
async def client(conn, dsn):
    await build_plant(conn)
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        yield c


async def test_a_machine_over_a_day(client):
    r = await client.get("/api/v1/kpi", params={"machine": "m1", **DAY})
    assert r.status_code == 200, r.text
    (row,) = r.json()
    assert (row["machine"], row["line"], row["shift"]) == ("m1", "L1", None)
    assert (row["bucket_start"], row["bucket_end"]) == ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z")
    # PBT 52200 s, APT 45900 s, PRI*PQ 36000 s, GQ/PQ 1455/1500 (worked out in tests/analytics/test_kpi.py)
    assert (row["pbt_s"], row["apt_s"], row["pq"], row["gq"]) == (52200, 45900, 1500, 1455)
    assert row["availability"] == pytest.approx(45900 / 52200)
    assert row["oee"] == pytest.approx(36000 / 52200 * 1455 / 1500)
    assert row["mtbf_s"] == pytest.approx(45900 / 2)


async def test_a_line_per_shift(client):
    r = await client.get("/api/v1/kpi", params={"line": "L1", "group": "shift", **DAY})
    assert r.status_code == 200, r.text
    early, late = r.json()
    # early: m1 PBT 27000 + m2 28800; late: m1 25200 + m2 28800; m2 has no meter, so no line energy
    assert (early["machine"], early["shift"], early["pbt_s"]) == (None, "early", 27000 + 28800)
    assert (late["shift"], late["pbt_s"], late["energy_per_unit_kwh"]) == ("late", 25200 + 28800, None)


async def test_undefined_kpis_are_null(client):
    r = await client.get("/api/v1/kpi", params={"machine": "m3", "start": h(-10).isoformat(), "end": h(-9).isoformat()})
    (row,) = r.json()
    # no state at all in a planned hour: availability 0 / 3600, the rest divide by zero
    assert row["availability"] == 0 and row["oee"] is None and row["mttr_s"] is None


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"machine": "m1", "line": "L1", **DAY}, "machine"),
        (DAY, "machine"),
        ({"machine": "m1", "start": DAY["end"], "end": DAY["start"]}, "end"),
        ({"machine": "m1", "start": "2026-11-20T00:00:00", "end": DAY["end"]}, "start"),
        ({"machine": "m1", "group": "week", **DAY}, "group"),
        ({"machine": "m1", "grup": "day", **DAY}, "grup"),
    ],
)
async def test_bad_parameters_are_400_naming_them(client, params, parameter):
    r = await client.get("/api/v1/kpi", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter


async def test_missing_or_malformed_times_are_400(client):
    r = await client.get("/api/v1/kpi", params={"machine": "m1", "start": DAY["start"]})
    assert r.status_code == 400 and "end" in r.text
    r = await client.get("/api/v1/kpi", params={"machine": "m1", "start": "yesterday", "end": DAY["end"]})
    assert r.status_code == 400 and "start" in r.text


@pytest.mark.parametrize("params, key", [({"machine": "nope"}, "machine"), ({"line": "L9"}, "line")])
async def test_unknown_machine_or_line_is_404(client, params, key):
    r = await client.get("/api/v1/kpi", params={**params, **DAY})
    assert r.status_code == 404, r.text
    assert r.json()[key] == params[key]
