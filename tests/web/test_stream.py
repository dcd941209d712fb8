"""GET /api/v1/stream on a real server and database: events from the triggers, resume without loss, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import AsyncIterator

import httpx
import psycopg
import pytest

from api.app import create_app
from api.stream import StreamLimits, _Client, StreamEvent
from tests.api_keys import api_config, auth
from tests.support import wait_until
from tests.web.conftest import served


class Sse:
    """A stream client: a task reads events (event, id, data) as they come into a queue; comments skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        event: dict = {}
        async for line in response.aiter_lines():
            if not line:
                if event:
                    self.events.put_nowait(event)
                event = {}
            elif not line.startswith(":") and not line.startswith("retry:"):
                field, _, value = line.partition(": ")
                event[field] = json.loads(value) if field == "data" else value

    async def next(self, timeout: float = 10.0) -> dict:
        """The next event; TimeoutError when none comes in time."""
        return await asyncio.wait_for(self.events.get(), timeout)


@pytest.fixture
async def base(dsn: str, machine: int, conn: psycopg.AsyncConnection) -> AsyncIterator[str]:
    """The API served on a free port, once its stream has passed what the fixtures wrote.

    (A transaction running anywhere on the server holds the log back, by design: so the machine's first
    row may reach the hub after it started. Tests begin after it.)"""
    app = create_app(dsn, api_config(), pool_size=3, stream=StreamLimits(max_clients=3, poll_s=0.2))
    last = (await (await conn.execute("SELECT max(id) FROM stream_events")).fetchone())[0]
    async with served(app) as url:
        await wait_until(lambda: app.state.stream.position and app.state.stream.position[1] >= last,
                         timeout=20, what="the stream to pass the fixtures' events")
        yield url


@pytest.fixture
async def machine(conn: psycopg.AsyncConnection) -> int:
    """A machine with a status row (state idle) and a tag, for state changes and alarms."""
    mid = (await (await conn.execute("INSERT INTO machines (name, line) VALUES ('press9', 'L1') RETURNING id"))
           .fetchone())[0]
    await conn.execute("INSERT INTO tags (name, category, machine_id) VALUES ('press9.temp', 'machine', %s)", (mid,))
    await conn.execute("INSERT INTO machine_status (machine_id, state) VALUES (%s, 'idle')", (mid,))
    return mid


async def set_state(conn: psycopg.AsyncConnection, mid: int, state: str) -> None:
    await conn.execute("UPDATE machine_status SET state = %s, state_since = now() WHERE machine_id = %s", (state, mid))



@contextlib.asynccontextmanager
async def stream(base: str, last_event_id: str | None = None) -> AsyncIterator[Sse]:
    """An open stream as the viewer's key, resuming after last_event_id when given."""
    headers = auth("viewer") | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        async with client.stream("GET", "/api/v1/stream", headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            sse = Sse(response)
            try:
                yield sse
            finally:
                sse.reader.cancel()


async def test_state_changes_alarm_transitions_and_inspections_arrive_with_ids(base, conn, machine):
    async with stream(base) as sse:
        await asyncio.sleep(0)  # the subscription is registered before the response starts
        await set_state(conn, machine, "producing")
        e = await sse.next()
        assert (e["event"], e["data"]["machine"], e["data"]["state"], e["data"]["changed"]) == \
            ("machine", "press9", "producing", "state")
        first = e["id"]
        # counts alone within 5 s of the last event are not published (the twin rewrites status every step)
        await conn.execute("UPDATE machine_status SET good_total = good_total + 1 WHERE machine_id = %s", (machine,))
        aid = (await (await conn.execute(
            "INSERT INTO alarms (machine_id, tag_id, ts, rules, value, last_ts, priority) "
            "SELECT %s, id, now(), '{WE1}', 99, now(), 'high' FROM tags WHERE name = 'press9.temp' RETURNING id",
            (machine,))).fetchone())[0]
        await conn.execute("INSERT INTO alarm_journal (alarm_id, transition, actor) VALUES (%s, 'raised', 'twin')",
                           (aid,))
        e = await sse.next()
        assert (e["event"], e["data"]["alarm"], e["data"]["transition"], e["data"]["state"]) == \
            ("alarm", aid, "raised", "unack_active")
        assert e["id"] > first  # ids compare as <xid>-<id>; here one transaction after the other
        await conn.execute("INSERT INTO inspection_stations (station, machine, model) VALUES ('cam9', 'press9', 'm')")
        await conn.execute(
            "INSERT INTO inspections (ts, station, machine, lot, verdict, class, score, image_sha256, image_format, "
            "width, height, model, model_version, model_sha256, latency_ms) VALUES (now(), 'cam9', 'press9', "
            "'LOT-9', 'ng', 'scratch', 0.9, repeat('a', 64), 'png', 8, 8, 'm', '1', repeat('b', 64), 3)")
        e = await sse.next()
        assert (e["event"], e["data"]["station"], e["data"]["verdict"], e["data"]["lot"]) == \
            ("inspection", "cam9", "ng", "LOT-9")


async def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(base, conn, machine):
    async with stream(base) as sse:
        await asyncio.sleep(0)
        await set_state(conn, machine, "producing")
        seen = await sse.next()
    # while away: three changes
    for state in ("setup", "unplanned_down", "idle"):
        await set_state(conn, machine, state)
    async with stream(base, seen["id"]) as sse:
        missed = [await sse.next() for _ in range(3)]
        assert [e["data"]["state"] for e in missed] == ["setup", "unplanned_down", "idle"]
        await set_state(conn, machine, "producing")  # and then live, no duplicate of the replay
        live = await sse.next()
        assert live["data"]["state"] == "producing" and live["id"] not in {e["id"] for e in missed}


async def test_an_event_of_a_transaction_still_open_is_not_overtaken_by_a_later_one(base, conn, dsn, machine):
    """Ids are taken at insert, commits may come in another order: the stream waits for the older transaction."""
    async with stream(base) as sse, await psycopg.AsyncConnection.connect(dsn) as slow:
        await asyncio.sleep(0)
        await slow.execute("UPDATE machine_status SET state = 'setup' WHERE machine_id = %s", (machine,))  # open
        await conn.execute("INSERT INTO machines (name) VALUES ('lathe9')")
        await conn.execute("INSERT INTO machine_status (machine_id, state) SELECT id, 'producing' FROM machines "
                           "WHERE name = 'lathe9'")  # committed after the open one began
        with pytest.raises(TimeoutError):
            early = await sse.next(timeout=1.0)  # held back: delivering it first would let a resume skip the older one
            raise AssertionError(f"delivered before the older transaction ended: {early}")
        await slow.commit()
        first, second = await sse.next(), await sse.next()
        assert [first["data"]["machine"], second["data"]["machine"]] == ["press9", "lathe9"]
        assert first["id"] < second["id"]


async def test_bad_last_event_id_is_a_400_naming_it_and_clients_are_bounded(base, conn, machine):
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        r = await client.get("/api/v1/stream", headers=auth("viewer") | {"Last-Event-ID": "1; DROP"})
        assert r.status_code == 400 and "Last-Event-ID" in r.text
        r = await client.get("/api/v1/stream")
        assert r.status_code == 401
    async with stream(base) as a, stream(base) as b, stream(base) as c:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            r = await client.get("/api/v1/stream", headers=auth("viewer"))
        assert r.status_code == 503 and r.headers["retry-after"]
        await set_state(conn, machine, "producing")
        assert {(await s.next())["data"]["state"] for s in (a, b, c)} == {"producing"}


def test_a_client_that_falls_behind_is_cut_off_not_grown():
    client = _Client(size=3)
    for i in range(10):
        client.offer(StreamEvent((1, i), "machine", "{}"))
    assert client.behind and client.queue.qsize() == 4  # three events and the mark that ends its stream


async def test_a_stream_after_the_log_was_pruned_is_told_to_reload(base, conn, machine):
    async with stream(base) as sse:
        await asyncio.sleep(0)
        await set_state(conn, machine, "producing")
        seen = await sse.next()
    await conn.execute("DELETE FROM stream_events")  # as retention would after an hour away
    await set_state(conn, machine, "idle")
    async with stream(base, seen["id"]) as sse:
        assert (await sse.next())["event"] == "reset"
