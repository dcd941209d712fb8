"""Group commit: appends of many sources within the spool's sync_interval share one fdatasync, and stay durable."""

import asyncio
import os
from pathlib import Path

import pytest

from gateway.config import SpoolConfig
from gateway.spool import Spool


async def test_appends_within_the_interval_share_one_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    syncs = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        syncs.append(fd)
        real(fd)  # the real fsync still happens: only counted

    monkeypatch.setattr(os, "fdatasync", counted)
    spool = Spool(tmp_path, sync_interval=0.05)
    seqs = await asyncio.gather(*(spool.append(f"source {i}".encode()) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    assert len(syncs) == 1  # 200 sources' records, one fsync
    spool.close()
    # what append acknowledged is on disk: a new spool (a restart) reads all of it back
    again = Spool(tmp_path)
    got = []
    async for seq, payload in again.records():
        got.append(payload)
        if len(got) == 200:
            break
    assert sorted(got) == sorted(f"source {i}".encode() for i in range(200))
    again.close()


async def test_an_append_returns_only_after_its_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (real(fd), synced.append(True)))
    spool = Spool(tmp_path, sync_interval=0.05)
    await spool.append(b"x")
    assert synced  # acknowledged after, not before, the fsync
    spool.close()


def test_flush_interval_is_bounded():
    with pytest.raises(ValueError, match="flush_interval: must be 0..1 seconds, got 5"):
        SpoolConfig(flush_interval=5)
