"""GET /api/v1/stream: machine state changes, alarm transitions, new inspections and schedule versions as
server-sent events, resumable from Last-Event-ID without missing one.

Database triggers (sql/0016) append every event to `stream_events` and NOTIFY `shopfloor_stream`. One hub
per server LISTENs, reads the log in (xid, id) order, and only rows of transactions older than every
running one: a row can then never appear before a row already read, so "everything after (xid, id)" is
exact however concurrent writers commit. The hub fans each event out to bounded per-client queues; a
client that falls behind is disconnected and, reconnecting with Last-Event-ID, is replayed from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, AsyncIterator

import psycopg
from litestar import Controller, Request, get
from litestar.exceptions import HTTPException
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import requires
from historian.errors import InvalidParameterError

log = logging.getLogger(__name__)

CHANNEL = "shopfloor_stream"
Position = tuple[int, int]
"""(xid, id) of an event: the order events are delivered in; its SSE id reads `<xid>-<id>`."""
_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_READ = """SELECT xid::text::bigint, id, kind, body, at FROM stream_events
           WHERE (xid, id) > (%s::text::xid8, %s) AND xid < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY xid, id LIMIT %s"""


@dataclass(frozen=True)
class StreamLimits:
    """How much one server's stream may hold: clients, queued events per client, heartbeat, log retention."""

    max_clients: int = 500
    queue: int = 2000
    """Events waiting for one client; a client further behind is disconnected (it resumes from the log)."""
    heartbeat_s: float = 15.0
    retention_s: float = 3600.0
    """How long events stay in the log to be replayed to reconnecting clients."""
    replay: int = 10_000
    """Events replayed at most to one reconnecting client; further behind it is told to reload ('reset')."""
    poll_s: float = 0.5
    """How often the hub reads the log without a notification (events held back by a running transaction)."""


@dataclass(frozen=True, order=True)
class StreamEvent:
    """One event of the log: position, kind (machine, alarm, inspection, schedule) and its JSON data."""

    position: Position
    kind: str = field(compare=False)
    data: str = field(compare=False)

    def message(self) -> ServerSentEventMessage:
        """The event as an SSE message."""
        return ServerSentEventMessage(data=self.data, event=self.kind, id=f"{self.position[0]}-{self.position[1]}")


def event_position(event_id: str) -> Position:
    """The position of an SSE id `<xid>-<id>`; InvalidParameterError (400) naming Last-Event-ID otherwise."""
    m = _EVENT_ID.match(event_id.strip())
    if not m:
        raise InvalidParameterError("Last-Event-ID", f"{event_id[:60]!r} is not an id this stream sent (<xid>-<id>)")
    return int(m.group(1)), int(m.group(2))


async def read_after(conn: psycopg.AsyncConnection, after: Position, limit: int) -> list[StreamEvent]:
    """Events after `after` in stream order, from transactions that have all ended."""
    cur = await conn.execute(_READ, (str(after[0]), after[1], limit))
    return [StreamEvent((xid, id_), kind, json.dumps({**body, "at": at.isoformat()}))
            for xid, id_, kind, body, at in await cur.fetchall()]


_OVERFLOW = StreamEvent((-1, -1), "", "")


class _Client:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue(size + 1)  # +1: room for the overflow mark
        self.size = size
        self.behind = False

    def offer(self, event: StreamEvent) -> None:
        if self.behind:
            return
        if self.queue.qsize() >= self.size:
            self.behind = True
            self.queue.put_nowait(_OVERFLOW)
        else:
            self.queue.put_nowait(event)


class TooManyClients(HTTPException):
    """503: this server streams to as many clients as it may."""

    status_code = 503


class StreamHub:
    """Reads the event log as it grows and hands each event to every connected client."""

    def __init__(self, dsn: str, limits: StreamLimits | None = None) -> None:
        self.dsn = dsn
        self.limits = limits or StreamLimits()
        self.position: Position | None = None
        """The last event handed out; None until the hub has read the log once."""
        self._clients: set[_Client] = set()
        self.ready = asyncio.Event()
        self.delivered = 0

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    async def run(self) -> None:
        """Follow the log until cancelled; a lost database connection is retried with back-off."""
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, application_name="shopfloor-stream") as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if self.position is None:
                        cur = await conn.execute(
                            "SELECT coalesce(max(xid)::text::bigint, 0), coalesce(max(id), 0) FROM stream_events "
                            "WHERE xid = (SELECT max(xid) FROM stream_events "
                            "             WHERE xid < pg_snapshot_xmin(pg_current_snapshot()))")
                        row = await cur.fetchone()
                        self.position = (row[0], row[1]) if row else (0, 0)
                    self.ready.set()
                    backoff = 0.5
                    await self._follow(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                log.warning("stream: database connection lost (%s); retrying in %.1f s", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _follow(self, conn: psycopg.AsyncConnection) -> None:
        loop = asyncio.get_running_loop()
        pruned = 0.0
        while True:
            assert self.position is not None
            events = await read_after(conn, self.position, 1000)
            for event in events:
                self._publish(event)
            if len(events) == 1000:
                continue  # more are waiting
            if loop.time() - pruned > 60:
                pruned = loop.time()
                await conn.execute("DELETE FROM stream_events WHERE at < now() - make_interval(secs => %s)",
                                   (self.limits.retention_s,))
            async for _ in conn.notifies(timeout=self.limits.poll_s, stop_after=1):
                pass

    def _publish(self, event: StreamEvent) -> None:
        self.position = event.position
        for client in self._clients:
            client.offer(event)
        self.delivered += len(self._clients)

    async def events(self, request: Request, after: Position | None) -> AsyncIterator[ServerSentEventMessage]:  # type: ignore[type-arg]
        """The messages of one client: a replay after `after` from the log, then live events and heartbeats."""
        if len(self._clients) >= self.limits.max_clients:
            raise TooManyClients(detail=f"this server streams to {self.limits.max_clients} clients; retry later",
                                 headers={"Retry-After": "5"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5.0)
        if self.position is None:
            raise TooManyClients(detail="the event log is not reachable yet; retry later", headers={"Retry-After": "2"})
        client = _Client(self.limits.queue)
        self._clients.add(client)  # before the replay: what arrives meanwhile is queued, duplicates skipped below
        return self._messages(request, client, after if after is not None else self.position, after is not None)

    async def _messages(self, request: Request, client: _Client, last: Position,  # type: ignore[type-arg]
                        replay: bool) -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(data=None, comment="shopfloor stream", retry=2000)
            if replay:
                async with request.app.state.pool.connection() as conn:
                    kept = await (await conn.execute(
                        "SELECT 1 FROM stream_events WHERE xid = %s::text::xid8 AND id = %s",
                        (str(last[0]), last[1]))).fetchone()
                    backlog = await read_after(conn, last, self.limits.replay + 1)
                if kept is None or len(backlog) > self.limits.replay:
                    # its last event left the log (older than retention) or it is too far behind: events may be
                    # missing, so the client is told to reload instead of being handed a stream with a hole
                    yield ServerSentEventMessage(event="reset", data='{"reason": "away too long; reload"}')
                    backlog = []
                for event in backlog:
                    yield event.message()
                    last = event.position
            while True:
                try:
                    event = await asyncio.wait_for(client.queue.get(), self.limits.heartbeat_s)
                except TimeoutError:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                if event is _OVERFLOW:
                    log.info("stream: a client fell %d events behind; disconnected (it resumes from the log)",
                             self.limits.queue)
                    return
                if event.position > last:
                    yield event.message()
                    last = event.position
        finally:
            self._clients.discard(client)


class StreamController(Controller):
    """The live event stream the pages and an MES subscribe to."""

    path = "/api/v1/stream"
    tags = ["stream"]
    guards = [requires("viewer")]

    @get("/", summary="Live events (text/event-stream), resumable with Last-Event-ID")
    async def stream(
        self, request: Request,  # type: ignore[type-arg]
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", max_length=60,
                                                       description="resume after this event id")] = None,
        after: Annotated[str | None, QueryParameter(name="after", max_length=60,
                                               description="resume after this event id (for clients that "
                                                           "cannot set Last-Event-ID)")] = None,
    ) -> ServerSentEvent:
        """Events `machine` (state change; counts at most every 5 s), `alarm` (every transition), `inspection`
        and `schedule` (a new version); each carries `id: <xid>-<id>` and JSON data with `at`, when it was logged.
        A comment line every heartbeat keeps proxies from closing an idle stream; `reset` asks a client that
        was away longer than the log keeps to reload."""
        resume = last_event_id or after
        hub: StreamHub = request.app.state.stream
        messages = await hub.events(request, event_position(resume) if resume else None)
        return ServerSentEvent(messages, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
