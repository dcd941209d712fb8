"""The p-chart per camera station: subgroups of n inspections, p̄ learned then frozen, the twin's rules, and one
alarm per out-of-control episode through the twin's alarm path; read over the API. Real database, real rows."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from analytics.spc.charts import Counts, Limits, Options, chart, rule_names
from api.app import create_app
from inspection import pchart, store
from inspection.service import inspect
from tests.api_keys import api_config, auth
from tests.inspection.helpers import neu_image, stored_verdict
from tests.support import scalar_of

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
N, BASELINE = 10, 5
CALM = [1, 2, 1, 0]  # NG per subgroup of 10 around p̄ = 0.1 that breaks no rule


@pytest.fixture
async def station(conn, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SHOPFLOOR_STATE", str(tmp_path))
    await store.upsert_station(conn, store.Station("cam-p", "press-9", "neu", pchart_n=N, pchart_baseline=BASELINE,
                                                   pchart_rules="all"))
    return tmp_path / "images"


class Feed:
    """Writes inspection rows through the store and counts each into the chart, as the service does."""

    def __init__(self, conn, root: Path) -> None:
        self.conn, self.root, self.i = conn, root, 0

    async def subgroup(self, ng: int) -> pchart.Closed:
        closed = None
        for k in range(N):
            ts = T0 + timedelta(seconds=self.i)
            self.i += 1
            verdict = "ng" if k < ng else "ok"
            row = await stored_verdict(self.conn, self.root, ts=ts, verdict=verdict, station="cam-p",
                                       machine="press-9", key=str(self.i))
            closed = await pchart.count(self.conn, "cam-p", row["ts"], verdict)
            assert (closed is None) == (k < N - 1)  # a subgroup closes with its n-th inspection, not before
        assert closed is not None
        return closed


async def _alarms(conn) -> list[tuple]:
    cur = await conn.execute("SELECT id, machine, tag, rule, priority, active, points FROM alarms_named ORDER BY id")
    return await cur.fetchall()


async def test_learns_then_one_alarm_per_episode_through_the_twin_path(conn, station):
    feed = Feed(conn, station)
    for ng in [1, 2, 1, 1, 0]:  # the baseline: 5 NG in 50 parts
        closed = await feed.subgroup(ng)
        assert not closed.judged and closed.rules == [] and closed.alarms == []
    assert await scalar_of(conn, "SELECT p_bar FROM inspection_pchart WHERE station = 'cam-p'") == pytest.approx(0.1)

    for ng in CALM * 2:
        closed = await feed.subgroup(ng)
        assert closed.judged and closed.rules == [] and closed.alarms == []
    assert await _alarms(conn) == []

    shift = await feed.subgroup(6)  # p = 0.6 > UCL 0.385
    assert shift.rules == ["WE1", "N1"] and shift.alarms == ["raised"]
    assert (await feed.subgroup(5)).alarms == ["updated"]  # the same episode: folded into the one alarm
    after = await feed.subgroup(1)  # back near p̄, but 2 of the last 3 beyond 2 sigma: still breaking
    assert after.rules == ["WE2", "N5"] and after.alarms == ["updated"]
    [alarm] = await _alarms(conn)
    assert alarm[1:] == ("press-9", "cam-p.ng_fraction", "spc", "high", True, 3)

    transitions = []
    for ng in (CALM * 4)[:15]:  # 15 in-control subgroups clear it, the 15th does
        transitions.append((await feed.subgroup(ng)).alarms)
    assert transitions == [[]] * 14 + [["cleared"]]
    cur = await conn.execute("SELECT transition, actor FROM alarm_journal_named WHERE alarm_id = %s ORDER BY id",
                             (alarm[0],))
    assert await cur.fetchall() == [("raised", "twin"), ("cleared", "twin")]

    again = await feed.subgroup(7)
    assert again.alarms == ["raised"]
    alarms = await _alarms(conn)
    assert [a[5] for a in alarms] == [False, True]  # a new episode is a new alarm

    # the stored judgement is what analytics.spc's p chart gives on the same subgroups at the frozen p̄
    cur = await conn.execute("SELECT ts, ng, n, rules FROM inspection_pchart_points WHERE station = 'cam-p' "
                             "AND cl IS NOT NULL ORDER BY seq")
    rows = await cur.fetchall()
    ts = np.array([int(r[0].timestamp() * 1e6) for r in rows], dtype=np.int64)
    c = chart("p", Counts(ts, np.array([r[1] for r in rows], float), np.array([r[2] for r in rows], float)),
              Limits(0.1, float(np.sqrt(0.1 * 0.9))), Options())
    assert [rule_names(int(f)) for f in c.flags] == [list(r[3]) for r in rows]


async def test_a_station_judges_with_western_electric_unless_told_otherwise(conn, station):
    await store.upsert_station(conn, store.Station("cam-p", "press-9", "neu", pchart_n=N, pchart_baseline=BASELINE))
    feed = Feed(conn, station)
    for ng in [1, 2, 1, 1, 0] + CALM * 2:
        await feed.subgroup(ng)
    assert (await feed.subgroup(6)).rules == ["WE1"] and (await feed.subgroup(5)).rules == ["WE1", "WE2"]
    assert (await feed.subgroup(1)).rules == ["WE2"]  # N5, the same 2-of-3 test, is not in the station's set
    [alarm] = await _alarms(conn)
    assert alarm[4:] == ("high", True, 3)


async def test_a_baseline_without_ng_keeps_learning(conn, station):
    feed = Feed(conn, station)
    for _ in range(BASELINE + 1):
        assert not (await feed.subgroup(0)).judged
    assert await scalar_of(conn, "SELECT p_bar FROM inspection_pchart WHERE station = 'cam-p'") is None
    await feed.subgroup(3)  # the first NG: p̄ = 3 / 70 from all learning subgroups
    assert await scalar_of(conn, "SELECT p_bar FROM inspection_pchart WHERE station = 'cam-p'") == pytest.approx(3 / 70)


async def test_a_changed_subgroup_starts_a_new_chart(conn, station):
    feed = Feed(conn, station)
    for ng in [1, 2, 1, 1, 0]:
        await feed.subgroup(ng)
    await store.upsert_station(conn, store.Station("cam-p", "press-9", "neu", pchart_n=4, pchart_baseline=BASELINE,
                                                   pchart_rules="all"))
    row = await stored_verdict(conn, station, ts=T0 + timedelta(hours=1), verdict="ok", station="cam-p",
                               machine="press-9", key="x")
    assert await pchart.count(conn, "cam-p", row["ts"], "ok") is None
    cur = await conn.execute("SELECT n, p_bar, start_seq, open_n FROM inspection_pchart WHERE station = 'cam-p'")
    assert await cur.fetchone() == (4, None, 5, 1)


async def test_the_service_counts_every_judged_image(conn, station):
    await store.upsert_station(conn, store.Station("cam-2", "rolling-1", "neu", pchart_n=2, pchart_baseline=2))
    for name in ("scratches_1.jpg", "crazing_1.jpg", "patches_1.jpg"):
        await inspect(conn, neu_image(name), station="cam-2")
    cur = await conn.execute("SELECT n, ng FROM inspection_pchart_points WHERE station = 'cam-2'")
    assert await cur.fetchall() == [(2, 2)]  # every NEU class is a defect: NG; the third image waits in the open one
    assert await scalar_of(conn, "SELECT open_n FROM inspection_pchart WHERE station = 'cam-2'") == 1


@pytest.fixture
async def client(conn, dsn, station):
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("viewer"))
        yield c


async def test_api_reads_the_chart_and_its_alarm(client, conn, station):
    r = await client.get("/api/v1/inspections/pchart", params={"station": "cam-p"})
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == "learning" and r.json()["panel"]["points"] == [] and r.json()["alarm"] is None
    feed = Feed(conn, station)
    for ng in [1, 2, 1, 1, 0] + CALM + [6]:
        await feed.subgroup(ng)
    r = await client.get("/api/v1/inspections/pchart", params={"station": "cam-p"})
    body = r.json()
    assert (body["limits"], body["p_bar"], body["subgroup_n"], body["machine"], body["rules"]) == (
        "frozen", pytest.approx(0.1), 10, "press-9", "all")
    points = body["panel"]["points"]
    assert len(points) == 10 and points[-1]["value"] == 0.6 and points[-1]["rules"] == ["WE1", "N1"]
    assert "cl" not in points[0] and points[5]["ucl"] == pytest.approx(0.1 + 3 * np.sqrt(0.009))
    assert [v["value"] for v in body["violations"]] == [0.6]
    assert body["alarm"]["priority"] == "high" and body["alarm"]["state"] == "unack_active"
    latest = await client.get("/api/v1/inspections/pchart", params={"station": "cam-p", "limit": 2})
    assert [p["value"] for p in latest.json()["panel"]["points"]] == [0.0, 0.6]


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"station": "no such/station"}, 400, "station"),
    ({}, 400, "station"),
    ({"station": "cam-p", "limit": "0"}, 400, "limit"),
    ({"station": "cam-p", "limit": "100001"}, 400, "limit"),
    ({"station": "cam-p", "start": "2026-12-06T08:00:00"}, 400, "start"),
    ({"station": "cam-p", "start": "2026-12-06T08:00:00Z", "end": "2026-12-06T07:00:00Z"}, 400, "end"),
    ({"station": "cam-nowhere"}, 404, "cam-nowhere"),
])
async def test_api_refuses_bad_input_naming_it(client, params, status, field):
    r = await client.get("/api/v1/inspections/pchart", params=params)
    assert r.status_code == status and field in r.text, r.text


async def test_api_needs_a_key(client):
    r = await client.get("/api/v1/inspections/pchart", params={"station": "cam-p"}, headers={"Authorization": ""})
    assert r.status_code == 401
