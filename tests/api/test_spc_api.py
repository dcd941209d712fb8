"""/api/v1/spc over a real historian: charts as JSON with limits worked out by hand, capability against the
spec, limits frozen from a baseline and used after new data arrives (until recomputed), p charts over part
counts, PNG and SVG drawings with the violations marked, and the errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from historian import Sample
from historian.registry import MachineSpec, TagSpec, register
from historian.writer import HistorianWriter
from tests.historian.helpers import at
from tests.api_keys import api_config, auth

HOUR = 3600
TAGS = [
    TagSpec("press1.diameter", "material", unit="mm", machine="press1"),
    TagSpec("press1.defects", "material", data_type="int", machine="press1"),
    TagSpec("press1.lot", "material", data_type="text", machine="press1"),
]
# subgroups of 3: (1, 2, 3), (2, 4, 6), (3, 3, 3): X̿ = 3, R̄ = 2, sigma within = R̄ / d2(3) = 2 / 1.693
XBAR = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 3.0, 3.0, 3.0]
# baseline hour: 9, 11, 9, 11... x̄ = 10, MR̄ = 2, sigma = 2 / 1.128 = 1.773050; I limits 10 ± 5.319149
BASELINE = [9.0, 11.0] * 10
SHIFTED = [30.0, 31.0] * 10  # the hour after: far above the baseline's limits


def span(h0: float, h1: float) -> dict[str, str]:
    """start and end params for hours h0..h1 after T0."""
    return {"start": at(h0 * HOUR).isoformat(), "end": at(h1 * HOUR).isoformat()}


@pytest.fixture
async def client(conn, dsn):
    """An API over the tags above, their samples, and press1's part counts."""
    await register(conn, TAGS, [MachineSpec("press1", line="L1")])
    async with HistorianWriter(dsn) as w:
        await w.write_records(
            [Sample("press1.diameter", at(i), v) for i, v in enumerate(XBAR)]
            + [Sample("press1.diameter", at(HOUR + 60 * i), v) for i, v in enumerate(BASELINE)]
            + [Sample("press1.diameter", at(2 * HOUR + 60 * i), v) for i, v in enumerate(SHIFTED)]
            + [Sample("press1.defects", at(60 * i), v) for i, v in enumerate([4.0, 6.0, 5.0, 5.0])]
            + [Sample("press1.lot", at(0), "LOT-1")]
        )
    # part counts per hour (good, scrap): (90, 10), (180, 20), (95, 5), (60, 40), in two rows per hour
    for hour, (good, scrap) in enumerate([(90, 10), (180, 20), (95, 5), (60, 40)]):
        for half, (g, s) in enumerate([(good // 2, scrap // 2), (good - good // 2, scrap - scrap // 2)]):
            await conn.execute(
                "INSERT INTO part_counts (machine_id, ts, good, scrap) "
                "SELECT id, %s, %s, %s FROM machines WHERE name = 'press1'",
                (at(hour * HOUR + half * 1800), g, s),
            )
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        yield c


async def test_xbar_r_chart_as_json(client):
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "xbar_r", "subgroup": "3", **span(0, 0.5)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["chart"], body["subgroup"], body["unit"], body["limits"]) == ("xbar_r", "3", "mm", "estimated")
    assert body["frozen"] is None and body["capability"] is None  # no spec limits yet
    xbar, rng = body["panels"]
    assert xbar["stat"] == "xbar" and not xbar["varying"]
    assert xbar["cl"] == pytest.approx(3.0)
    assert xbar["ucl"] == pytest.approx(5.046) and xbar["lcl"] == pytest.approx(0.954)  # 3 ± A2(3) R̄ = 3 ± 1.023 * 2
    assert rng["ucl"] == pytest.approx(5.148)  # D4(3) R̄ = 2.574 * 2
    # each point at its subgroup's first sample, with its mean and size
    assert [(p["ts"], p["value"], p["n"]) for p in xbar["points"]] == [
        ("2026-11-20T08:00:00Z", 2.0, 3), ("2026-11-20T08:00:03Z", 4.0, 3), ("2026-11-20T08:00:06Z", 3.0, 3)]
    assert body["violations"] == []


async def test_capability_against_the_spec(client):
    r = await client.put("/api/v1/spc/press1.diameter/spec", json={"lsl": 0.0, "usl": 9.0})
    assert r.status_code == 200, r.text
    assert (r.json()["lsl"], r.json()["usl"], r.json()["target"]) == (0.0, 9.0, None)
    assert (await client.get("/api/v1/spc/press1.diameter/spec")).json()["usl"] == 9.0
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "xbar_r", "subgroup": "3", **span(0, 0.5)})
    cap = r.json()["capability"]
    # sigma within 2 / 1.693 = 1.181335, overall sqrt(16 / 8) = 1.414214, mean 3
    assert cap["cp"] == pytest.approx(1.269750, abs=1e-6)  # 9 / (6 * 2 / 1.693) = 9 * 1.693 / 12
    assert cap["cpk"] == pytest.approx(0.846500, abs=1e-6)  # min(6, 3) / (3 * 2 / 1.693) = 1.693 / 2
    assert cap["pp"] == pytest.approx(1.060660, abs=1e-6)  # 9 / (6 * 1.414214)
    assert cap["ppk"] == pytest.approx(0.707107, abs=1e-6)  # 3 / (3 * 1.414214)


async def test_frozen_limits_hold_after_new_data_until_recomputed(client):
    r = await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "imr", "subgroup": "1", **span(1, 2)})
    assert r.status_code == 201, r.text
    frozen = r.json()
    assert frozen["cl"] == pytest.approx(10.0) and frozen["sigma"] == pytest.approx(2 / 1.128)
    assert frozen["ucl"] == pytest.approx(10 + 3 * 2 / 1.128)  # 15.319149
    # the shifted hour, charted later: the baseline's limits, so every point is out
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "imr", **span(2, 3)})
    body = r.json()
    assert body["limits"] == "frozen" and body["subgroup"] == "1"
    assert body["frozen"]["baseline_start"] == "2026-11-20T09:00:00Z"
    i_panel = body["panels"][0]
    assert i_panel["cl"] == pytest.approx(10.0) and i_panel["ucl"] == pytest.approx(15.319149, abs=1e-6)
    assert all("WE1" in p["rules"] for p in i_panel["points"]) and len(i_panel["points"]) == 20
    # recomputed over the shifted hour: x̄ = 30.5, MR̄ = 1
    r = await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "imr", **span(2, 3)})
    assert r.json()["cl"] == pytest.approx(30.5)
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "imr", **span(2, 3)})
    assert r.json()["panels"][0]["ucl"] == pytest.approx(30.5 + 3 / 1.128)  # 33.159574
    # nothing beyond the new limits (the alternation 30, 31, 30... still breaks N4, and N7 at 15 points within)
    assert {name for v in r.json()["violations"] for name in v["rules"]} == {"N4", "N7"}


async def test_p_chart_over_part_counts_with_limits_per_hour(client):
    params = {"chart": "p", "machine": "press1", "subgroup": "1h", **span(0, 4)}
    r = await client.get("/api/v1/spc/press1.diameter", params=params)
    assert r.status_code == 200, r.text
    (p,) = r.json()["panels"]
    assert p["varying"] and p["cl"] is None
    assert [pt["value"] for pt in p["points"]] == pytest.approx([0.1, 0.1, 0.05, 0.4])
    assert [pt["n"] for pt in p["points"]] == [100, 200, 100, 100]
    # p̄ = 75 / 500 = 0.15; n=100: 0.15 ± 3 sqrt(0.1275 / 100) = 0.15 ± 0.107121; n=200: 0.15 ± 0.075746
    assert p["points"][0]["ucl"] == pytest.approx(0.257121, abs=1e-6)
    assert p["points"][1]["ucl"] == pytest.approx(0.225746, abs=1e-6)
    assert p["points"][1]["lcl"] == pytest.approx(0.074254, abs=1e-6)
    # only the last hour's 0.4 is out: 0.05 is above 0.042879
    assert [(v["ts"], v["rules"]) for v in r.json()["violations"]] == [("2026-11-20T11:00:00Z", ["WE1", "N1"])]


async def test_c_chart_over_a_tag_of_counts(client):
    r = await client.get("/api/v1/spc/press1.defects", params={"chart": "c", **span(0, 1)})
    (c,) = r.json()["panels"]
    # c̄ = 20 / 4 = 5; UCL = 5 + 3 sqrt(5) = 11.708204; LCL cut at 0
    assert (c["cl"], c["ucl"], c["lcl"]) == pytest.approx((5.0, 11.708204, 0.0))


async def test_png_starts_with_the_png_signature(client):
    params = {"chart": "imr", "format": "png", **span(1, 3)}
    r = await client.get("/api/v1/spc/press1.diameter", params=params)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_svg_is_xml_with_the_violations_marked(client):
    await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "imr", **span(1, 2)})
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "imr", "format": "svg", **span(2, 3)})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    ns = "{http://www.w3.org/2000/svg}"
    (group,) = [e for e in root.iter() if e.get("id") == "violations-i"]
    # the 20 shifted points are beyond the baseline's limits; each marker is one <use> of the marker path
    assert len(list(group.iter(f"{ns}use"))) == 20
    texts = [t.text or "" for t in root.iter(f"{ns}text")]
    assert any("WE1" in t for t in texts)


@pytest.mark.parametrize(
    "params, status, parameter",
    [
        ({"chart": "imr", **span(0, 1)}, 200, None),  # the baseline case the others break
        ({"chart": "pareto", **span(0, 1)}, 400, "chart"),
        ({"chart": "xbar_r", "subgroup": "soon", **span(0, 1)}, 400, "subgroup"),
        ({"chart": "xbar_r", "subgroup": "30", **span(0, 1)}, 400, "subgroup"),
        ({"chart": "imr", "subgroup": "5", **span(0, 1)}, 400, "subgroup"),
        ({"chart": "imr", **span(1, 0)}, 400, "end"),
        ({"chart": "imr", "format": "gif", **span(0, 1)}, 400, "format"),
        ({"chart": "ewma", "lam": 1.5, **span(0, 1)}, 400, "lam"),
        ({"chart": "p", **span(0, 1)}, 400, "n"),
        ({"chart": "xbar_r", "machine": "press1", **span(0, 1)}, 400, "machine"),
    ],
)
async def test_chart_parameter_errors_name_the_parameter(client, params, status, parameter):
    r = await client.get("/api/v1/spc/press1.diameter", params=params)
    assert r.status_code == status, r.text
    if parameter:
        assert r.json()["parameter"] == parameter


async def test_not_found_and_too_little_data(client):
    r = await client.get("/api/v1/spc/nope", params={"chart": "imr", **span(0, 1)})
    assert r.status_code == 404 and r.json()["tag"] == "nope"
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "p", "machine": "m9", **span(0, 1)})
    assert r.status_code == 404 and r.json()["machine"] == "m9"
    # 9 samples in the first hour make one subgroup of 5 (the rest incomplete): limits need 2
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "xbar_r", **span(0, 1)})
    assert r.status_code == 422 and (r.json()["needed"], r.json()["got"]) == (2, 1)
    assert "at least 2 subgroups" in r.json()["detail"]
    r = await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "imr", **span(5, 6)})
    assert r.status_code == 422 and r.json()["got"] == 0
    r = await client.get("/api/v1/spc/press1.lot", params={"chart": "imr", **span(0, 1)})
    assert r.status_code == 400 and r.json()["parameter"] == "tag"


async def test_spec_and_limits_bodies_are_checked(client):
    r = await client.put("/api/v1/spc/press1.diameter/spec", json={"lsl": 5.0, "usl": 1.0})
    assert r.status_code == 400 and r.json()["parameter"] == "usl"
    r = await client.put("/api/v1/spc/press1.diameter/spec", json={"target": 1.0})
    assert r.status_code == 400 and r.json()["parameter"] == "usl"
    r = await client.put("/api/v1/spc/press1.diameter/spec", json={"lsl": 0.0, "usll": 9.0})
    assert r.status_code == 400 and "usll" in r.text
    r = await client.put("/api/v1/spc/nope/spec", json={"lsl": 0.0})
    assert r.status_code == 404
    r = await client.get("/api/v1/spc/press1.diameter/spec")
    assert r.status_code == 404  # none set
    r = await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "xbar", **span(0, 1)})
    assert r.status_code == 400 and r.json()["parameter"] == "chart"


async def test_frozen_ewma_keeps_its_weight_and_cusum_has_two_sides(client):
    r = await client.post("/api/v1/spc/press1.diameter/limits", json={"chart": "ewma", "lam": 0.5, **span(1, 2)})
    assert r.status_code == 201 and r.json()["options"]["lam"] == 0.5
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "ewma", **span(2, 3)})
    body = r.json()
    assert body["options"]["lam"] == 0.5  # from the frozen limits, not the default 0.2
    (ewma,) = body["panels"]
    first = ewma["points"][0]
    # z1 = 0.5 * 30 + 0.5 * 10 = 20; UCL1 = 10 + 3 (2 / 1.128) sqrt(0.5 / 1.5 * (1 - 0.25)) = 10 + 3 * 1.773050 * 0.5
    assert first["value"] == pytest.approx(20.0) and first["ucl"] == pytest.approx(12.659574, abs=1e-6)
    assert first["rules"] == ["EWMA"]
    r = await client.get("/api/v1/spc/press1.diameter", params={"chart": "cusum", "h": 4, **span(1, 2)})
    hi, lo = r.json()["panels"]
    assert (hi["stat"], lo["stat"]) == ("cusum+", "cusum-") and hi["lcl"] is None
    # estimated from the baseline itself: mu 10, sigma 1.773050; H = 4 sigma = 7.092199
    assert hi["ucl"] == pytest.approx(4 * 2 / 1.128)
