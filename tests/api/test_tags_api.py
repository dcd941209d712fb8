"""The HTTP API over a real historian: tags, samples, aggregates, value-at, errors, health, metrics."""

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from historian import Quality, Sample
from historian.writer import HistorianWriter
from tests.historian.helpers import at, setup_tags
from tests.api_keys import api_config, auth

RANGE = {"start": at(0).isoformat(), "end": at(3600).isoformat()}


@pytest.fixture
async def client(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write_records(
            [Sample("press1.temperature", at(i), float(i)) for i in range(120)]
            + [Sample("press1.temperature", at(120), float("nan"), Quality.BAD_COMM_FAILURE)]
            + [Sample("press1.lot", at(0), "LOT-1")]
        )
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        yield c


async def test_tags_list(client):
    r = await client.get("/api/v1/tags")
    assert r.status_code == 200
    by_name = {t["name"]: t for t in r.json()}
    assert by_name["press1.temperature"]["unit"] == "degC"
    assert by_name["press1.temperature"]["machine"] == "press1"
    assert by_name["press1.lot"]["category"] == "material"


async def test_raw_samples_with_bad_value_as_null(client):
    r = await client.get("/api/v1/tags/press1.temperature/samples", params=RANGE)
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "samples" and len(body["points"]) == 121
    assert body["points"][1] == {"ts": "2026-11-20T08:00:01Z", "value": 1.0, "quality": "good", "quality_code": 192}
    assert body["points"][-1]["value"] is None and body["points"][-1]["quality"] == "bad"


async def test_bucketed_aggregates_come_from_rollups(client):
    r = await client.get("/api/v1/tags/press1.temperature/samples", params={**RANGE, "bucket": "1m", "agg": "max"})
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "rollup_1m"
    assert [(p["value"], p["count"]) for p in body["buckets"]] == [(59.0, 60), (119.0, 60)]
    r = await client.get("/api/v1/tags/press1.temperature/samples", params={**RANGE, "bucket": "30s"})
    assert r.json()["source"] == "samples"
    assert [p["value"] for p in r.json()["buckets"]] == [14.5, 44.5, 74.5, 104.5]


async def test_value_at_and_latest(client):
    r = await client.get("/api/v1/tags/press1.temperature/value", params={"at": at(10.5).isoformat(), "mode": "linear"})
    assert r.status_code == 200 and r.json()["value"] == pytest.approx(10.5)
    r = await client.get("/api/v1/tags/latest", params={"tag": ["press1.lot"]})
    assert r.json() == [{"tag": "press1.lot", "unit": "", "ts": "2026-11-20T08:00:00Z", "value": "LOT-1", "quality": "good"}]


@pytest.mark.parametrize(
    "path, params, status, parameter",
    [
        ("/api/v1/tags/nope/samples", RANGE, 404, None),
        ("/api/v1/tags/press1.temperature/samples", {"start": RANGE["end"], "end": RANGE["start"]}, 400, "end"),
        ("/api/v1/tags/press1.temperature/samples", {**RANGE, "bucket": "soon"}, 400, "bucket"),
        ("/api/v1/tags/press1.temperature/samples", {**RANGE, "bucket": "1m", "agg": "mode"}, 400, "agg"),
        ("/api/v1/tags/press1.temperature/samples", {**RANGE, "agg": "max"}, 400, "agg"),
        ("/api/v1/tags/press1.temperature/samples", {"start": "2026-11-20T08:00:00", "end": RANGE["end"]}, 400, "start"),
        ("/api/v1/tags/press1.temperature/value", {"at": at(1).isoformat(), "mode": "spline"}, 400, "mode"),
        ("/api/v1/tags/nope/value", {"at": at(1).isoformat()}, 404, None),
    ],
)
async def test_errors(client, path, params, status, parameter):
    r = await client.get(path, params=params)
    assert r.status_code == status, r.text
    if parameter:
        assert r.json()["parameter"] == parameter
    else:
        assert r.json()["tag"] == "nope"


async def test_malformed_time_names_the_parameter(client):
    r = await client.get("/api/v1/tags/press1.temperature/samples", params={"start": "yesterday", "end": RANGE["end"]})
    assert r.status_code == 400
    assert r.json()["extra"][0]["key"] == "start"
    r = await client.get("/api/v1/tags/press1.temperature/samples", params={"start": RANGE["start"]})
    assert r.status_code == 400
    assert "end" in r.text


async def test_health_metrics_and_openapi(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["database"] in ("timescaledb", "postgresql")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE shopfloor_historian_rows_written_total counter" in r.text
    assert 'shopfloor_http_responses_total{method="GET",route="/health",status="200"}' in r.text
    r = await client.get("/schema/openapi.json")
    paths = r.json()["paths"]
    assert "/api/v1/tags/{name}/samples" in paths and "/health" in paths


async def test_health_reports_an_unreachable_database():
    app = create_app("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1", pool_size=1)
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["database"] == "unreachable"
