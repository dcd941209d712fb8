"""Forward spooled records to the historian in order, committing the spool as commits are acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable

from gateway.records import decode, to_batch
from gateway.spool import Spool
from historian.writer import HistorianWriter, WriteResult

log = logging.getLogger(__name__)


async def forward(
    spool: Spool,
    writer: HistorianWriter,
    register_unknown: Callable[[set[str]], Awaitable[None]] | None = None,
) -> None:
    """Read the spool from its cursor forever; the writer's bounded queue paces the reading.

    Tags the registry does not know yet (a Sparkplug birth announced them) are first offered to
    register_unknown, which may register them; what stays unknown is dead-lettered by the writer.
    """
    pending: deque[tuple[int, asyncio.Future[WriteResult]]] = deque()
    more = asyncio.Event()

    async def commit_in_order() -> None:
        while True:
            if not pending:
                more.clear()
                await more.wait()
                continue
            seq, future = pending[0]
            await asyncio.shield(future)
            last = seq
            pending.popleft()
            while pending and pending[0][1].done():
                last = pending.popleft()[0]
            spool.commit(last)

    committer = asyncio.create_task(commit_in_order(), name="spool-commit")
    try:
        async for seq, payload in spool.records():
            record = decode(payload)
            if register_unknown is not None:
                unknown = set(record.tags).difference(writer.registry.by_name)
                if unknown:
                    await register_unknown(unknown)
            future = await writer.submit(to_batch(record, writer.registry))
            pending.append((seq, future))
            more.set()
            if committer.done():
                committer.result()  # surface its failure rather than forwarding without committing
    finally:
        committer.cancel()
