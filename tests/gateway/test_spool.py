"""The spool: durable appends, ordered reads, commits, torn tails, size limit, and kill -9."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.spool import Spool
from tests.support import wait_until


async def take(spool: Spool, n: int, after: int | None = None) -> list[tuple[int, bytes]]:
    out = []
    async for item in spool.records(after):
        out.append(item)
        if len(out) == n:
            return out
    return out


async def test_records_come_back_in_order_across_segments(tmp_path: Path):
    spool = Spool(tmp_path, segment_bytes=1000, max_bytes=1 << 20)
    payloads = [f"record {i}".encode() * (i % 7 + 1) for i in range(300)]
    seqs = [await spool.append(p) for p in payloads]
    assert seqs == list(range(1, 301))
    assert len(list(tmp_path.glob("*.seg"))) > 5
    got = await asyncio.wait_for(take(spool, 300), 5)
    assert [p for _, p in got] == payloads


async def test_reader_waits_for_new_records(tmp_path: Path):
    spool = Spool(tmp_path)
    reader = asyncio.create_task(take(spool, 2))
    # the reader has read to the end and waits for new data (rather than returning, or spinning)
    await wait_until(lambda: bool(spool._new_data._waiters), timeout=5,  # noqa: SLF001
                     what="the reader to wait for new records")
    assert not reader.done()
    await spool.append(b"a")
    await spool.append(b"b")
    assert await asyncio.wait_for(reader, 5) == [(1, b"a"), (2, b"b")]


async def test_commit_frees_segments_and_survives_reopening(tmp_path: Path):
    spool = Spool(tmp_path, segment_bytes=500, max_bytes=1 << 20)
    for i in range(100):
        await spool.append(b"x" * 40 + str(i).encode())
    before = len(list(tmp_path.glob("*.seg")))
    spool.commit(60)
    assert len(list(tmp_path.glob("*.seg"))) < before
    assert spool.depth == 40
    spool.close()
    again = Spool(tmp_path, segment_bytes=500, max_bytes=1 << 20)
    got = await asyncio.wait_for(take(again, 40), 5)
    assert [s for s, _ in got] == list(range(61, 101))
    assert got[0][1].endswith(b"60")
    assert await again.append(b"next") == 101


async def test_torn_tail_is_cut_and_appends_continue(tmp_path: Path):
    spool = Spool(tmp_path)
    for i in range(5):
        await spool.append(f"r{i}".encode())
    spool.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")  # a header cut short by a crash
    again = Spool(tmp_path)
    assert await again.append(b"r5") == 6
    got = await asyncio.wait_for(take(again, 6), 5)
    assert [p for _, p in got] == [b"r0", b"r1", b"r2", b"r3", b"r4", b"r5"]


async def test_full_spool_drops_oldest_and_counts(tmp_path: Path):
    spool = Spool(tmp_path, segment_bytes=1000, max_bytes=3000, count_samples=lambda p: 10)
    for _ in range(100):
        await spool.append(b"y" * 84)  # 100 bytes a frame with the header
    assert spool.bytes <= 3000 + 1000
    assert spool.dropped_records > 0
    assert spool.dropped_samples == spool.dropped_records * 10
    got = await asyncio.wait_for(take(spool, spool.depth), 5)
    assert got[-1][0] == 100 and len(got) == spool.depth
    assert [s for s, _ in got] == list(range(got[0][0], 101))


def test_config_refuses_a_limit_smaller_than_two_segments(tmp_path: Path):
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, segment_bytes=1000, max_bytes=1500)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.spool import Spool

    async def main():
        spool = Spool(Path(sys.argv[1]), segment_bytes=20000)
        i = 0
        while True:
            seq = await spool.append(f"payload-{i}".encode() * 10)
            print(seq, flush=True)  # acknowledged: the parent may rely on it now
            i += 1

    asyncio.run(main())
    """
)


async def test_kill_9_loses_nothing_acknowledged(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    acked = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        acked = int(line)
        if acked >= 2000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    spool = Spool(tmp_path, segment_bytes=20000)
    got = await asyncio.wait_for(take(spool, acked), 10)
    assert [s for s, _ in got] == list(range(1, acked + 1))
    assert all(p == f"payload-{s - 1}".encode() * 10 for s, p in got)


async def test_an_append_cancelled_during_its_fsync_is_still_forwarded(tmp_path: Path):
    spool = Spool(tmp_path)
    reader = asyncio.create_task(take(spool, 1))
    append = asyncio.create_task(spool.append(b"written, then cancelled"))
    while spool._written_seq < 1:  # noqa: SLF001 - the moment between write and fsync is the point
        await asyncio.sleep(0)
    append.cancel()
    assert await asyncio.wait_for(reader, 5) == [(1, b"written, then cancelled")]
