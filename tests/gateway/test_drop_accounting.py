"""Durable or counted: with a tiny spool and the database cut, committed + dropped == sent, exactly.

Only readings the forwarder has not yet read are dropped; those already handed to the historian
writer keep their spool segment until they commit, so the counter neither over- nor under-counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import conninfo

from gateway.exception import ExceptionFilter
from gateway.forwarder import forward
from gateway.records import count_samples
from gateway.sink import SpoolSink
from gateway.source import Reading, SourceStatus
from gateway.spool import Spool
from historian.config import HistorianConfig
from historian.registry import TagSpec, register
from historian.samples import from_us
from historian.writer import HistorianWriter
from tests.gateway.dbproxy import CuttableProxy
from tests.support import running, scalar_of, wait_until

TAGS = [TagSpec(f"acct.t{i}", "machine") for i in range(10)]
T0_US = 1_795_000_000_000_000


def via_proxy(dsn: str, proxy: CuttableProxy) -> str:
    """The DSN through the proxy."""
    params = conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(proxy.port), connect_timeout="2")
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize("writer_rows", [1_000])
async def test_committed_plus_dropped_equals_sent_under_a_tiny_spool(conn, dsn, tmp_path: Path,
                                                                     writer_rows: int) -> None:
    await register(conn, TAGS)
    params = conninfo.conninfo_to_dict(dsn)
    proxy = CuttableProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    spool = Spool(tmp_path / "spool", max_bytes=64 << 10, segment_bytes=8 << 10, fsync=False,
                  count_samples=count_samples)
    sink = SpoolSink(spool, SourceStatus("acct", "synthetic"), ExceptionFilter([]))
    config = HistorianConfig(flush_interval=0.05, flush_rows=500, max_pending_rows=writer_rows)
    sent = 0

    async def produce(batches: int) -> None:
        nonlocal sent
        for _ in range(batches):
            ts = T0_US + sent // len(TAGS) * 1000
            await sink.publish([Reading(t.name, float(sent + i), from_us(ts)) for i, t in enumerate(TAGS)])
            sent += len(TAGS)

    async with HistorianWriter(via_proxy(dsn, proxy), config) as writer:
        async with running(forward(spool, writer)):
            await produce(50)
            await wait_until(lambda: spool.depth == 0, timeout=30, what="the first readings committed")
            await proxy.cut()
            await produce(3000)  # 30,000 readings: far more than 64 KiB of spool holds
            assert spool.dropped_samples > 0
            await proxy.start()
            await produce(50)
            await wait_until(lambda: spool.depth == 0, timeout=60, what="the spool to drain")
            await writer.flush()
    committed = await scalar_of(conn, "SELECT count(*) FROM samples")
    assert committed + spool.dropped_samples == sent, (committed, spool.dropped_samples, sent)
    # what was lost is what the spool dropped, not random rows: values are unique, none twice
    assert await scalar_of(conn, "SELECT count(DISTINCT value) FROM samples") == committed
    await proxy.cut()
