"""A commit that succeeds while its acknowledgement is lost: the writer retries, and nothing is stored twice."""

from __future__ import annotations

import asyncio

from psycopg import conninfo

from historian import Sample
from historian.config import HistorianConfig
from historian.maintenance import ensure_partitions
from historian.writer import HistorianWriter
from tests.historian.helpers import T0, at, scalar, setup_tags
from tests.historian.test_writer import table_digest
from tests.support import wait_until


class AckDroppingProxy:
    """A TCP proxy to the database that, once armed, lets the next COMMIT through and swallows the reply.

    The server receives and executes the COMMIT; the client never hears back, and its connection
    is then cut: from the client's side, a commit whose outcome is unknown.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.armed = False
        self.commit_seen = asyncio.Event()
        self.dropped = 0
        self._server: asyncio.base_events.Server | None = None
        self._victims: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop what is still connected."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut_victims()

    def cut_victims(self) -> None:
        """Abort the connections whose COMMIT went through unanswered."""
        for client, upstream in self._victims:
            client.transport.abort()
            upstream.transport.abort()
        self._victims.clear()

    def dsn(self, dsn: str) -> str:
        """The DSN through this proxy."""
        params = conninfo.conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port), connect_timeout="2")
        return conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        muted = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                # a simple-protocol Query message carrying COMMIT (psycopg's transaction block ends so)
                if self.armed and b"Q" in data and b"COMMIT" in data:
                    self.armed = False
                    muted.set()
                    self._victims.append((writer, up_writer))
                    self.commit_seen.set()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if muted.is_set():
                    self.dropped += len(data)  # the server's reply to COMMIT: lost
                    continue
                writer.write(data)
                await writer.drain()

        await asyncio.gather(to_server(), to_client(), return_exceptions=True)
        writer.transport.abort()
        up_writer.transport.abort()


async def test_commit_with_lost_acknowledgement_is_retried_and_stores_nothing_twice(conn, dsn):
    await setup_tags(conn)
    await ensure_partitions(conn, T0.date(), T0.date())
    params = conninfo.conninfo_to_dict(dsn)
    proxy = AckDroppingProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    records = [Sample("press1.temperature", at(i), 20.0 + i) for i in range(500)]
    records += [Sample("press1.lot", at(0), "LOT-1"), Sample("no.such.tag", at(0), 1.0)]  # an event, a refusal
    try:
        async with HistorianWriter(proxy.dsn(dsn), HistorianConfig(dsn=dsn, flush_interval=0.01)) as w:
            await w.reload_registry()
            proxy.armed = True
            result = asyncio.create_task(w.write_records(records, source="test"))
            await asyncio.wait_for(proxy.commit_seen.wait(), 15)
            # the commit happened on the server...
            await wait_until(lambda: scalar(conn, "SELECT count(*) = 500 FROM samples"), timeout=15,
                             what="the unacknowledged commit to be visible")
            assert not result.done(), "the writer was acknowledged although the reply was dropped"
            await conn.execute("SELECT refresh_rollups()")
            committed = await table_digest(conn)
            proxy.cut_victims()  # ...and the client learns only that its connection died
            r = await asyncio.wait_for(result, 30)
    finally:
        await proxy.close()
    assert proxy.dropped > 0
    # the retry found every row already there: reported as duplicates, none added, one dead letter
    assert (r.written, r.duplicates) == (0, 501)
    assert await scalar(conn, "SELECT count(*) FROM samples") == 500
    assert await scalar(conn, "SELECT count(*) FROM events") == 1
    assert await scalar(conn, "SELECT count(*) FROM dead_letters") == 1
    await conn.execute("SELECT refresh_rollups()")
    after = await table_digest(conn)
    changed = sorted(t for t in after if after[t] != committed[t])
    assert changed == [], f"the retry changed {changed}"
