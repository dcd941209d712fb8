"""A durable on-disk spool between the adapters and the historian (store-and-forward).

Records are appended to segment files `<first seq>.seg`, each framed as
`[u32 length][u32 crc32][u64 seq][payload]`, and an append returns only after the bytes are
fsync'ed (appends that arrive together, or within sync_interval, share one fsync). The forwarder reads records in order
and commits the highest sequence number the historian acknowledged; the commit is kept in
`cursor` (written to a temporary file and renamed, so it is never half-written), and segments
wholly below it are deleted. After a crash, a torn record at the end of the last segment is cut
off and reading resumes after the committed cursor: at worst a few committed records are sent
twice, which the historian's idempotent writer absorbs. When the spool outgrows its size limit
the oldest segments the forwarder has not yet read are dropped, and every record and sample so
lost is counted. A segment holding a record already handed to the historian writer is kept until
that record commits (the spool may then exceed its limit by what the writer holds, which its own
max_pending_rows bounds): so each reading is either committed or counted as dropped, exactly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
_SUFFIX = ".seg"


class SpoolCorruptError(Exception):
    """A spool file that cannot be read; the message names the file to move away."""


@dataclass
class SpoolStats:
    """Depth and losses of a spool, for metrics and /api/v1/sources."""

    records: int
    bytes: int
    dropped_records: int
    dropped_samples: int


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SUFFIX}"


class Spool:
    """An append-only, fsync'ed, size-capped queue of byte records on disk."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
        count_samples: Callable[[bytes], int] | None = None,
        sync_interval: float = 0.0,
    ) -> None:
        if max_bytes < 2 * segment_bytes:
            raise ValueError(f"max_bytes ({max_bytes}) must hold at least two segments of {segment_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        self._sync_interval = sync_interval
        """Seconds an fsync waits for more appends to share it (group commit across every source)."""
        self._count_samples = count_samples or (lambda _: 0)
        self._lock = asyncio.Lock()
        self._new_data = asyncio.Event()
        self._segments: list[int] = []  # first seq of each segment, oldest first
        self._sizes: dict[int, int] = {}
        self._file = None
        self._next_seq = 1
        self._written_seq = 0
        self._synced_seq = 0
        self._sync_task: asyncio.Task[None] | None = None
        self.committed = 0
        self.handed_over = 0
        """The highest sequence number the reader has yielded (in the forwarder's or writer's hands)."""
        self.dropped_records = 0
        self.dropped_samples = 0
        self._open()

    # -- opening and recovery -----------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cursor = self.directory / "cursor"
        if cursor.exists():
            text = cursor.read_text().strip()
            try:
                self.committed = int(text)
            except ValueError:
                raise SpoolCorruptError(f"{cursor} holds {text!r}, not a sequence number; move it away") from None
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                first = int(path.stem)
            except ValueError:
                raise SpoolCorruptError(f"{path} is not a spool segment; move it out of {self.directory}") from None
            self._segments.append(first)
            self._sizes[first] = path.stat().st_size
        if self._segments:
            last = self._segments[-1]
            self._next_seq = self._recover_tail(last)
        else:
            self._next_seq = self.committed + 1
        self._written_seq = self._synced_seq = self._next_seq - 1
        self._delete_committed_segments()

    def _recover_tail(self, first: int) -> int:
        """Scan the newest segment, cut a torn record off its end; returns the next sequence number."""
        path = self.directory / _segment_name(first)
        seq = first - 1
        good = 0
        with open(path, "rb") as f:
            data = f.read()
        while good + _HEADER.size <= len(data):
            length, crc, rseq = _HEADER.unpack_from(data, good)
            end = good + _HEADER.size + length
            if end > len(data) or zlib.crc32(data[good + _HEADER.size:end]) != crc or rseq != seq + 1:
                break
            seq = rseq
            good = end
        if good < len(data):
            log.warning("cut a torn record off the spool", extra={"action": "spool_recover", "file": str(path),
                                                                  "bytes": len(data) - good})
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
            self._sizes[first] = good
        return seq + 1

    # -- appending ----------------------------------------------------------------------------

    async def append(self, payload: bytes) -> int:
        """Append one record; returns its sequence number once it is on disk."""
        async with self._lock:
            seq = self._next_seq
            if self._file is None or self._sizes[self._segments[-1]] >= self.segment_bytes:
                self._rotate(seq)
            frame = _HEADER.pack(len(payload), zlib.crc32(payload), seq) + payload
            assert self._file is not None
            self._file.write(frame)
            self._sizes[self._segments[-1]] += len(frame)
            self._next_seq = seq + 1
            self._written_seq = seq
            self._enforce_limit()
        await self._sync_to(seq)
        return seq

    def _rotate(self, seq: int) -> None:
        if self._file is not None:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        if not (self._segments and self._sizes[self._segments[-1]] == 0):
            self._segments.append(seq)
            self._sizes[seq] = 0
        # an empty newest segment (left by a crash right after rotating) is reused as it is
        self._file = open(self.directory / _segment_name(self._segments[-1]), "ab")
        if self._fsync:
            _fsync_dir(self.directory)

    async def _sync_to(self, seq: int) -> None:
        # group commit: one fsync covers every append written before it started
        while self._synced_seq < seq:
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(self._sync_once())
            await asyncio.shield(self._sync_task)

    async def _sync_once(self) -> None:
        if self._sync_interval > 0:
            # group commit: the appends of every source in this interval share one fsync (and one
            # thread hop); each still returns only once its record is on disk
            await asyncio.sleep(self._sync_interval)
        async with self._lock:
            target = self._written_seq
            f = self._file
            if f is None:
                self._synced_seq = target
                return
            f.flush()
            fd = f.fileno()
        if self._fsync:
            await asyncio.to_thread(os.fdatasync, fd)
        self._synced_seq = max(self._synced_seq, target)
        # wake readers here, not in append(): an append cancelled while waiting for this fsync
        # must not leave its record on disk but unseen by the forwarder
        self._new_data.set()

    def _enforce_limit(self) -> None:
        while self.bytes > self.max_bytes:
            # the oldest segment nothing of which was read yet; never the one being written
            taken = max(self.handed_over, self.committed)
            first = next((f for f in self._segments[:-1] if f > taken), None)
            if first is None:
                return  # what is left is in flight to the historian: kept until it commits
            index = self._segments.index(first)
            self._segments.pop(index)
            path = self.directory / _segment_name(first)
            records, samples = self._count(path, first)
            lost = [r for r in records if r > taken]
            self.dropped_records += len(lost)
            self.dropped_samples += sum(samples[i] for i, r in enumerate(records) if r > taken)
            path.unlink()
            del self._sizes[first]
            if index == 0:
                self.committed = max(self.committed, self._segments[0] - 1)
            log.warning(
                "spool full: dropped its oldest segment",
                extra={"action": "spool_drop", "records": len(lost), "file": str(path)},
            )

    def _count(self, path: Path, first: int) -> tuple[list[int], list[int]]:
        seqs: list[int] = []
        samples: list[int] = []
        for seq, payload in _read_frames(path.read_bytes()):
            seqs.append(seq)
            samples.append(self._count_samples(payload))
        return seqs, samples

    # -- reading and committing ---------------------------------------------------------------

    async def records(self, after: int | None = None) -> AsyncIterator[tuple[int, bytes]]:
        """Yield (seq, payload) from after the committed cursor, in order, waiting for new ones."""
        seq = self.committed if after is None else after
        current: int | None = None
        offset = 0
        while True:
            if seq >= self._synced_seq:
                self._new_data.clear()
                if seq >= self._synced_seq:
                    await self._new_data.wait()
                continue
            if self._segments and seq + 1 < self._segments[0]:
                seq = self._segments[0] - 1  # dropped while the spool was full
            first = max(s for s in self._segments if s <= seq + 1)
            if first != current:
                current, offset = first, 0
            path = self.directory / _segment_name(first)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                current = None
                continue
            pos = 0
            yielded = False
            while pos + _HEADER.size <= len(data):
                length, crc, rseq = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if end > len(data) or rseq > self._synced_seq:
                    break
                payload = data[pos + _HEADER.size:end]
                if zlib.crc32(payload) != crc:
                    raise SpoolCorruptError(f"{path}: bad checksum at byte {offset + pos}; move the file away")
                pos = end
                if rseq > seq:
                    seq = rseq
                    yielded = True
                    self.handed_over = max(self.handed_over, rseq)
                    yield rseq, payload
            offset += pos
            if not yielded:
                later = [s for s in self._segments if s > first]
                if later and pos == len(data):
                    seq = max(seq, later[0] - 1)  # the segments in between were dropped while full
                    continue
                await asyncio.sleep(0.001)  # the next record is in a segment being rotated in

    def commit(self, seq: int) -> None:
        """Record that every record up to seq is safely in the historian; frees whole segments."""
        if seq <= self.committed:
            return
        self.committed = seq
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(str(seq))
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")
        self._delete_committed_segments()

    def _delete_committed_segments(self) -> None:
        while len(self._segments) > 1 and self._segments[1] - 1 <= self.committed:
            first = self._segments.pop(0)
            (self.directory / _segment_name(first)).unlink(missing_ok=True)
            del self._sizes[first]

    @property
    def bytes(self) -> int:
        """Bytes on disk in segments."""
        return sum(self._sizes.values())

    @property
    def full(self) -> bool:
        """Less than a segment of room left: polled sources skip polls rather than make it drop its oldest."""
        return self.bytes + self.segment_bytes > self.max_bytes

    @property
    def depth(self) -> int:
        """Records appended and not yet committed."""
        return self._next_seq - 1 - self.committed

    def stats(self) -> SpoolStats:
        """Depth, size and losses."""
        return SpoolStats(self.depth, self.bytes, self.dropped_records, self.dropped_samples)

    def close(self) -> None:
        """Flush and close the open segment."""
        if self._file is not None:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def _read_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc, seq = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[pos + _HEADER.size:end]) != crc:
            break
        frames.append((seq, data[pos + _HEADER.size:end]))
        pos = end
    return frames


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
