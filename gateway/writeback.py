"""Carry out write-back requests the API queued in write_requests, for the tags this gateway serves.

The API and the gateway may be different processes, so they meet in the database: the API
inserts a request and NOTIFYs `shopfloor_write`; the gateway claims pending requests for its
tags (FOR UPDATE SKIP LOCKED, so two gateways never take the same one), writes the device, and
records the outcome, which the API is waiting for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

import psycopg

from gateway.cancel import honour_cancellation
from gateway.source import InvalidValueError, NotWritableError, Source, WriteError
from historian.db import connect

log = logging.getLogger(__name__)
CHANNEL = "shopfloor_write"


async def serve_writes(dsn: str, owners: Mapping[str, Source], *, poll: float = 1.0) -> None:
    """Claim and carry out pending write requests for the tags in owners, until cancelled."""
    conn: psycopg.AsyncConnection | None = None
    listener: psycopg.AsyncConnection | None = None
    while True:
        try:
            if conn is None or conn.closed:
                conn = await connect(dsn)
            if listener is None or listener.closed:
                listener = await connect(dsn)
                await listener.execute(f"LISTEN {CHANNEL}")
            while await _serve_one(conn, owners):
                honour_cancellation()  # a device write may have swallowed a cancellation
            honour_cancellation()
            # sleep until notified, or poll now and then in case a notification was missed
            try:
                async with asyncio.timeout(poll):
                    async for _ in listener.notifies():
                        break
            except TimeoutError:
                pass
        except (psycopg.OperationalError, OSError) as e:
            log.warning("write-back loop lost the database", extra={"action": "writeback", "error": str(e)})
            for c in (conn, listener):
                if c is not None:
                    await c.close()
            conn = listener = None
            await asyncio.sleep(poll)


async def _serve_one(conn: psycopg.AsyncConnection, owners: Mapping[str, Source]) -> bool:
    """Carry out one pending request for our tags; False when there is none."""
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT w.id, t.name, w.value FROM write_requests w JOIN tags t ON t.id = w.tag_id
               WHERE w.status = 'pending' AND t.name = ANY(%s)
               ORDER BY w.id LIMIT 1 FOR UPDATE OF w SKIP LOCKED""",
            (list(owners),),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        request_id, tag, value = row
        try:
            await owners[tag].write(tag, value)
            status, detail = "done", ""
        except NotWritableError as e:
            status, detail = "refused", str(e)
        except InvalidValueError as e:
            status, detail = "invalid", str(e)
        except WriteError as e:
            status, detail = "failed", str(e)
        await conn.execute(
            "UPDATE write_requests SET status = %s, detail = %s, done_at = now() WHERE id = %s",
            (status, detail, request_id),
        )
        log.info("write-back", extra={"action": "writeback", "tag": tag, "status": status})
        return True
