"""The outbox between a source and its sink: a pausing source is slowed, never dropped; stamps at receipt."""

from __future__ import annotations

import asyncio
import time

from gateway.outbox import Outbox
from gateway.source import Reading, ReadingColumns, SourceStatus
from gateway.testing import MemorySink
from tests.support import wait_until


class SlowSink(MemorySink):
    """A sink whose every publish takes a while, like an fsync on a busy disk."""

    async def publish(self, readings):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.02)
        await super().publish(readings)


async def test_a_pausing_producer_is_slowed_down_not_dropped():
    sink = SlowSink()
    status = SourceStatus("s", "test")
    outbox = Outbox(sink, status, batch_size=10, batch_interval=0.01, max_pending=50)
    runner = asyncio.create_task(outbox.run())
    sent = 0
    for poll in range(40):  # 400 readings, far more than max_pending, as fast as the outbox lets us
        outbox.put_many(Reading(f"t{i}", poll * 10 + i) for i in range(10))
        sent += 10
        await outbox.wait_for_room()
    runner.cancel()  # as a source's run() does on stop: cancel, then flush what is left (in flight too)
    await asyncio.gather(runner, return_exceptions=True)
    await outbox.flush()
    assert outbox.dropped == 0
    assert [r.value for r in sink.readings] == list(range(sent))  # all of them, in order
    assert status.readings_total == sent


async def test_a_producer_that_cannot_pause_loses_the_oldest_and_it_is_counted():
    sink = MemorySink()
    status = SourceStatus("s", "test")
    outbox = Outbox(sink, status, batch_size=10, batch_interval=1.0, max_pending=30)
    outbox.put_many(Reading("t", i) for i in range(45))
    await outbox.flush()
    assert outbox.dropped == 15
    assert [r.value for r in sink.readings] == list(range(15, 45))
    assert "15 readings dropped" in status.last_error


async def test_readings_without_a_device_time_are_stamped_when_put():
    sink = MemorySink()
    outbox = Outbox(sink, SourceStatus("s", "test"), batch_size=10, batch_interval=1.0, max_pending=30)
    before = time.time_ns() // 1000
    outbox.put(Reading("a", 1))
    outbox.put_many([Reading("b", 2), Reading("c", 3, 123)])
    after_put = time.time_ns() // 1000
    await outbox.flush()
    stamps = {r.tag: r.source_ts for r in sink.readings}
    assert before <= stamps["a"] <= stamps["b"] <= after_put  # stamped when put, not when flushed
    assert stamps["c"] == 123  # the device's own time is kept


async def test_columns_and_single_readings_keep_their_order_and_the_oldest_go_first():
    sink = MemorySink()
    status = SourceStatus("s", "test")
    outbox = Outbox(sink, status, batch_size=10, batch_interval=1.0, max_pending=25)
    outbox.put(Reading("a", 0, 5))
    outbox.put_columns(ReadingColumns([f"t{i}" for i in range(20)], list(range(1, 21)), [7] * 20, [192] * 20))
    outbox.put_many(Reading("b", v, 9) for v in range(21, 31))
    await outbox.flush()
    assert [r.value for r in sink.readings] == list(range(6, 31))  # 31 put, 25 kept: the first six dropped
    assert outbox.dropped == 6 and status.readings_total == 25
    assert {r.source_ts for r in sink.readings if r.tag.startswith("t")} == {7}


async def test_a_fast_source_makes_a_record_per_batch_not_one_per_publish():
    sizes: list[int] = []
    started: list[float] = []
    loop = asyncio.get_running_loop()

    class CountingSink(SlowSink):
        async def publish(self, readings):  # type: ignore[no-untyped-def]
            sizes.append(len(readings))
            started.append(loop.time())
            await super().publish(readings)

    interval = 0.5
    outbox = Outbox(CountingSink(), SourceStatus("s", "test"), batch_size=100, batch_interval=interval,
                    max_pending=10_000)
    runner = asyncio.create_task(outbox.run())
    try:
        outbox.put_many(Reading("t", i) for i in range(100))  # a whole batch: published at once
        await wait_until(lambda: sizes == [100], timeout=5, what="the full batch to be published")
        outbox.put_many(Reading("t", i) for i in range(100, 130))  # arrives while that publish (20 ms) runs
        put_at = loop.time()
        await wait_until(lambda: len(sizes) == 2, timeout=5, what="the 30 to be published")
        assert sizes == [100, 30]  # the 30 waited for a batch's worth or the interval, not a record of their own
        # ...the interval: a lower bound only, so a slow machine cannot fail it
        assert started[1] - put_at >= 0.8 * interval
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
