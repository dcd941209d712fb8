"""Store-and-forward against a real database: outages and crashes lose nothing, duplicate nothing."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from psycopg import conninfo

from gateway.exception import ExceptionFilter
from gateway.forwarder import forward
from gateway.sink import SpoolSink
from gateway.source import Reading, SourceStatus
from gateway.spool import Spool
from historian.config import HistorianConfig
from historian.registry import TagSpec, register
from historian.samples import from_us
from historian.writer import HistorianWriter
from tests.gateway.dbproxy import CuttableProxy
from tests.support import wait_until

TAGS = [TagSpec(f"line.t{i}", "machine") for i in range(20)]
T0_US = 1_795_000_000_000_000  # 2026-11-18, inside the day partitions the writer makes


def via_proxy(dsn: str, proxy: CuttableProxy) -> str:
    params = conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(proxy.port), connect_timeout="2")
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


async def test_database_away_for_10_s_under_load_every_sample_lands_once(conn, dsn, tmp_path: Path):
    await register(conn, TAGS)
    params = conninfo.conninfo_to_dict(dsn)
    proxy = CuttableProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    spool = Spool(tmp_path / "spool")
    status = SourceStatus("test", "synthetic")
    sink = SpoolSink(spool, status, ExceptionFilter([]))
    config = HistorianConfig(flush_interval=0.05, flush_rows=2000, max_pending_rows=4000)
    sent = 0

    async def produce(seconds: float) -> None:
        # 20 tags x 100 readings/s, each with its own device timestamp and value
        nonlocal sent
        for step in range(int(seconds * 100)):
            ts = T0_US + sent // 20 * 10_000
            await sink.publish([Reading(t.name, float(sent + i), from_us(ts)) for i, t in enumerate(TAGS)])
            sent += 20
            await asyncio.sleep(0.01)

    async with HistorianWriter(via_proxy(dsn, proxy), config) as writer:
        forwarder = asyncio.create_task(forward(spool, writer))
        await produce(2)
        await proxy.cut()  # the database is gone; collection goes on into the spool
        await produce(10)
        assert spool.depth > 0
        await proxy.start()
        await produce(2)
        await wait_until(lambda: spool.depth == 0, timeout=60, what="the spool to drain after the outage")
        forwarder.cancel()
    count, distinct, total = await _stats(conn)
    assert count == sent and distinct == sent
    assert total == sent * (sent - 1) / 2  # the values 0..sent-1, each exactly once
    # in order: values rise with the order they were read; one writer connection commits one flush
    # after another, so a row's inserting transaction (xmin) must not fall as the values rise
    cur = await conn.execute("SELECT xmin::text::bigint FROM samples ORDER BY value")
    tx = [x for (x,) in await cur.fetchall()]
    assert len(set(tx)) > 10, "the backlog went in as too few transactions to say anything about order"
    out_of_order = sum(1 for a, b in zip(tx, tx[1:]) if b < a)
    assert out_of_order == 0, f"{out_of_order} samples were committed before older ones"
    await proxy.cut()


async def _stats(conn):
    cur = await conn.execute("SELECT count(*), count(DISTINCT value), sum(value) FROM samples")
    return await cur.fetchone()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.exception import ExceptionFilter
    from gateway.forwarder import forward
    from gateway.sink import SpoolSink
    from gateway.source import Reading, SourceStatus
    from gateway.spool import Spool
    from historian.config import HistorianConfig
    from historian.writer import HistorianWriter

    async def main():
        spool = Spool(Path(sys.argv[2]))
        sink = SpoolSink(spool, SourceStatus("child", "synthetic"), ExceptionFilter([]))
        async with HistorianWriter(sys.argv[1], HistorianConfig(flush_interval=0.02, flush_rows=500)) as w:
            asyncio.create_task(forward(spool, w))
            i = 0
            while True:
                await sink.publish([Reading("line.t0", float(i))])
                print(i, flush=True)  # acknowledged to the device from here on
                i += 1
                await asyncio.sleep(0.0005)

    asyncio.run(main())
    """
)


async def test_gateway_killed_mid_stream_loses_nothing_acknowledged(conn, dsn, tmp_path: Path):
    await register(conn, TAGS)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, dsn, str(tmp_path / "spool")], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # restart: the spool forwards what the dead gateway had not committed
    spool = Spool(tmp_path / "spool")
    async with HistorianWriter(dsn, HistorianConfig(flush_interval=0.02)) as writer:
        forwarder = asyncio.create_task(forward(spool, writer))
        await wait_until(lambda: spool.depth == 0, timeout=30, what="the restarted gateway's spool to drain")
        forwarder.cancel()
    values = await (await conn.execute("SELECT value FROM samples ORDER BY value")).fetchall()
    got = np.array([v for (v,) in values])
    assert len(got) == len(np.unique(got)), "a sample was stored twice"
    assert set(range(acked + 1)) <= set(got.astype(int).tolist())
