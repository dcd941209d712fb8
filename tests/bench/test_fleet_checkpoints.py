"""bench.fleet's checkpoint count and forced checkpoint, against the real servers (PostgreSQL 17's
pg_stat_checkpointer on the TimescaleDB backend, pg_stat_bgwriter on an older plain PostgreSQL)."""

from __future__ import annotations

import psycopg

from bench.fleet import checkpoint_later, checkpoints
from tests.support import wait_until


async def test_a_forced_checkpoint_is_counted(conn: psycopg.AsyncConnection, dsn: str) -> None:
    before = await checkpoints(conn)
    assert before >= 0  # one of the two views answered
    await checkpoint_later(dsn, 0.0)

    async def counted() -> bool:
        return await checkpoints(conn) >= before + 1

    await wait_until(counted, what="the checkpoint in the server's statistics")
