"""The camera folder watcher: each new image a camera (or its FTP drop) writes into a folder is inspected once.

A file is taken when it is complete: not hidden or a temporary name, and the same size and mtime on two scans in a
row. Its inspection row and a (source, file name, sha256) ledger row are written in one transaction, and only then
is the file moved to done/ (or deleted); a restart finds a file it already judged in the ledger and just moves it
on, so nothing is judged twice and nothing is missed. A file that is not an image goes to rejected/ with a .why note.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

from inspection.images import ImageRejected
from inspection.service import UnknownStation, inspect

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
_TEMPORARY = (".part", ".tmp", ".filepart", ".crdownload", "~")


@dataclass(slots=True)
class WatchSettings:
    """One watched folder: its station, what happens to a judged file, and how often it is scanned."""

    source: str
    folder: Path
    station: str
    after: Literal["move", "delete"] = "move"
    poll_interval: float = 0.5
    lot: str | None = None
    operation: str | None = None


@dataclass(slots=True)
class Outcome:
    """What one scan did."""

    inspected: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # judged before a restart; moved on now
    rejected: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # still being written


class FolderWatcher:
    """Scans a folder and inspects each complete new image once."""

    def __init__(self, settings: WatchSettings) -> None:
        self.s = settings
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) at the previous scan
        self.done = settings.folder / "done"
        self.rejected = settings.folder / "rejected"

    def _candidates(self) -> list[os.DirEntry[str]]:
        with os.scandir(self.s.folder) as it:
            entries = [e for e in it if e.is_file(follow_symlinks=False) and not e.name.startswith(".")
                       and not e.name.endswith(_TEMPORARY)]
        return sorted(entries, key=lambda e: (e.stat().st_mtime_ns, e.name))

    async def scan(self, conn: psycopg.AsyncConnection) -> Outcome:
        """One pass over the folder."""
        out = Outcome()
        present = set()
        for entry in self._candidates():
            st = entry.stat()
            present.add(entry.name)
            stamp = (st.st_size, st.st_mtime_ns)
            if self._seen.get(entry.name) != stamp or st.st_size == 0:
                self._seen[entry.name] = stamp  # changed since the last scan (or new): still being written
                out.waiting.append(entry.name)
                continue
            await self._take(conn, Path(entry.path), out)
            self._seen.pop(entry.name, None)
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        return out

    async def _take(self, conn: psycopg.AsyncConnection, path: Path, out: Outcome) -> None:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        cur = await conn.execute("SELECT inspection_id FROM inspection_files WHERE source = %s AND file = %s "
                                 "AND sha256 = %s", (self.s.source, path.name, sha))
        if await cur.fetchone():
            out.already.append(path.name)
            self._finish(path, sha)
            return
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            self._reject(path, f"{path.name}: not an image file name ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.rejected.append(path.name)
            return
        try:
            async with conn.transaction():
                row = await inspect(conn, data, station=self.s.station, lot=self.s.lot, operation=self.s.operation,
                                    source=f"camera:{self.s.source}")
                await conn.execute("INSERT INTO inspection_files (source, file, sha256, inspection_id) "
                                   "VALUES (%s, %s, %s, %s)", (self.s.source, path.name, sha, row["id"]))
        except ImageRejected as e:
            self._reject(path, f"{path.name}: {e}")
            out.rejected.append(path.name)
            return
        except UnknownStation:
            raise
        out.inspected.append(path.name)
        self._finish(path, sha)

    def _finish(self, path: Path, sha: str) -> None:
        if self.s.after == "delete":
            path.unlink(missing_ok=True)
            return
        self.done.mkdir(exist_ok=True)
        target = self.done / path.name
        if target.exists():  # cameras reuse names: keep both
            target = self.done / f"{path.stem}-{sha[:12]}{path.suffix}"
        os.replace(path, target)

    def _reject(self, path: Path, why: str) -> None:
        log.warning("camera file rejected", extra={"action": "camera_reject", "file": path.name, "why": why})
        self.rejected.mkdir(exist_ok=True)
        target = self.rejected / path.name
        os.replace(path, target)
        target.with_name(target.name + ".why").write_text(why + "\n")
