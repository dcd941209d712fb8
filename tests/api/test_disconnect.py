"""Work stops when the client goes: a raw page whose client disconnects mid-request leaves no query running."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn

from api.app import create_app
from historian import Sample
from historian.db import connect
from historian.writer import HistorianWriter
from tests.api_keys import KEYS, api_config
from tests.historian.helpers import at, setup_tags
from tests.support import wait_until

_ACTIVE = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
           "AND application_name = 'shopfloor-api' AND state = 'active' AND query LIKE %s")


@pytest.fixture
def backend() -> str:
    """The server-side cancel is PostgreSQL's, whichever extension stores the samples."""
    return "timescaledb"


async def test_a_client_that_disconnects_mid_query_leaves_no_query_running(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write_records([Sample("press1.temperature", at(i), float(i)) for i in range(10)])
    # statement_timeout far above the wait below: only the disconnect can end the query in time
    server = uvicorn.Server(uvicorn.Config(create_app(dsn, api_config(statement_timeout=120.0), pool_size=2),
                                           host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=15, what="the API server to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    blocker = await connect(dsn)
    try:
        # hold the samples table so the page's query waits in the server, as a long query would run
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE samples IN ACCESS EXCLUSIVE MODE")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /api/v1/tags/press1.temperature/samples?start={at(0).isoformat().replace('+', '%2B')}"
                      f"&end={at(60).isoformat().replace('+', '%2B')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {KEYS['viewer']}\r\n\r\n").encode())
        await writer.drain()

        async def running_queries() -> int:
            return (await (await conn.execute(_ACTIVE, ("%FROM samples%",))).fetchone())[0]  # type: ignore[index]

        await wait_until(running_queries, timeout=15, what="the page's query to run in the server")
        writer.close()  # the client goes away mid-request
        await wait_until(lambda: _gone(conn), timeout=10, what="the query to be cancelled after the disconnect")
        assert await running_queries() == 0  # while the lock is still held: cancelled, not finished
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
        server.should_exit = True
        await serving


async def _gone(conn) -> bool:  # type: ignore[no-untyped-def]
    return (await (await conn.execute(_ACTIVE, ("%FROM samples%",))).fetchone())[0] == 0  # type: ignore[index]


async def test_a_whatif_whose_client_disconnects_stops_its_worker(dsn, monkeypatch):
    import threading

    import api.whatif as route
    from twin.whatif import LimitExceeded

    started, ended = threading.Event(), []

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.set()
        try:
            return real(*args, **kwargs)
        except LimitExceeded as e:
            ended.append(e.limit)
            raise

    real = route.compare
    monkeypatch.setattr(route, "compare", watched)
    server = uvicorn.Server(uvicorn.Config(create_app(dsn, api_config(), pool_size=2),
                                           host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=15, what="the API server to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        body = ('{"horizon_s": 2592000, "machines": [{"name": "m", "nominal_cycle_s": 0.5}], "orders": ['
                + ",".join(f'{{"id": "o{i}", "product": "A", "quantity": 100000, "due_s": 3600}}' for i in range(20)) + "]}")
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST /api/v1/whatif HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {KEYS['viewer']}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        await writer.drain()
        await wait_until(started.is_set, timeout=15, what="the what-if worker to start")
        writer.close()  # the client goes away while the model runs
        await wait_until(lambda: ended, timeout=10, what="the what-if worker to stop")
        assert ended == ["cancelled"]
    finally:
        server.should_exit = True
        await serving
