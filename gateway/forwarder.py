"""Forward spooled records to the historian in order, committing the spool as commits are acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable

from gateway.records import decode, to_batch
from gateway.spool import Spool
from historian.samples import Batch
from historian.writer import HistorianWriter, WriteResult

log = logging.getLogger(__name__)


async def forward(
    spool: Spool,
    writer: HistorianWriter,
    register_unknown: Callable[[set[str]], Awaitable[None]] | None = None,
    tap: Callable[[Batch], None] | None = None,
) -> None:
    """Read the spool from its cursor forever; the writer's bounded queue paces the reading.

    Tags the registry does not know yet (a Sparkplug birth announced them) are first offered to
    register_unknown, which may register them; what stays unknown is dead-lettered by the writer.
    Each batch the historian committed is then handed to tap (the twin's feed), in spool order;
    after a restart a replayed batch may reach it twice, so the tap must ignore what it has seen.
    """
    pending: deque[tuple[int, asyncio.Future[WriteResult], Batch]] = deque()
    more = asyncio.Event()

    async def commit_in_order() -> None:
        while True:
            if not pending:
                more.clear()
                await more.wait()
                continue
            await asyncio.shield(pending[0][1])
            while pending and pending[0][1].done():
                last, future, batch = pending.popleft()
                future.result()  # a failed write must not be committed
                if tap is not None:
                    tap(batch)
            spool.commit(last)

    committer = asyncio.create_task(commit_in_order(), name="spool-commit")
    try:
        async for seq, payload in spool.records():
            record = decode(payload)
            batch = to_batch(record, writer.registry)
            # only a batch with refusals can hold unknown tags: no set of every name on the hot path
            if register_unknown is not None and batch.rejects:
                unknown = record.names().difference(writer.registry.by_name)
                if unknown:
                    await register_unknown(unknown)
                    batch = to_batch(record, writer.registry)
            future = await writer.submit(batch)
            pending.append((seq, future, batch))
            more.set()
            if committer.done():
                committer.result()  # surface its failure rather than forwarding without committing
    finally:
        committer.cancel()
