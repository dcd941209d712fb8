"""The inspection store: images content-addressed by sha256 under the state folder, results in `inspections`.

An image file is written (atomically, once per content) before its row; if the row cannot be written the file is
removed again unless another row holds it, so there is never a row without its image nor an image without a row.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from historian.embedded import default_state_dir


def image_root() -> Path:
    """Where images are kept: <state folder>/inspection/images."""
    return default_state_dir() / "inspection" / "images"


@dataclass(frozen=True, slots=True)
class Station:
    """A camera station: the machine it watches, its model, the NG threshold and how long its images are kept."""

    station: str
    machine: str
    model: str
    threshold: float = 0.5
    retention_days: int = 90
    pchart_n: int = 25
    pchart_baseline: int = 20
    lot_tag: str | None = None
    pchart_rules: str = "we"


def image_path(root: Path, sha256: str) -> Path:
    """The file of an image by its sha256 (two-level fan-out keeps folders small)."""
    return root / sha256[:2] / sha256


def put_image(root: Path, data: bytes) -> tuple[str, bool]:
    """Store data once by content; (sha256, whether this call created the file)."""
    sha = hashlib.sha256(data).hexdigest()
    path = image_path(root, sha)
    if path.exists():
        return sha, False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: a reader sees the whole image or none
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha, True


async def upsert_station(conn: psycopg.AsyncConnection, s: Station) -> None:
    """Create or update a station's configuration."""
    await conn.execute(
        "INSERT INTO inspection_stations (station, machine, model, threshold, retention_days, pchart_n, "
        "pchart_baseline, lot_tag, pchart_rules) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (station) DO UPDATE SET machine = EXCLUDED.machine, model = EXCLUDED.model, "
        "threshold = EXCLUDED.threshold, retention_days = EXCLUDED.retention_days, pchart_n = EXCLUDED.pchart_n, "
        "pchart_baseline = EXCLUDED.pchart_baseline, lot_tag = EXCLUDED.lot_tag, pchart_rules = EXCLUDED.pchart_rules",
        (s.station, s.machine, s.model, s.threshold, s.retention_days, s.pchart_n, s.pchart_baseline, s.lot_tag,
         s.pchart_rules))


async def current_lot(conn: psycopg.AsyncConnection, lot_tag: str, at: datetime) -> str | None:
    """The newest value of a lot tag at or before `at` (None when it has none, or it is empty)."""
    cur = await conn.execute("SELECT e.value FROM events e JOIN tags t ON t.id = e.tag_id WHERE t.name = %s "
                             "AND e.ts <= %s ORDER BY e.ts DESC LIMIT 1", (lot_tag, at))
    row = await cur.fetchone()
    return row[0] if row and row[0] else None


async def station(conn: psycopg.AsyncConnection, name: str) -> Station | None:
    """The configured station called name, or None."""
    cur = await conn.execute("SELECT station, machine, model, threshold, retention_days, pchart_n, pchart_baseline, "
                             "lot_tag, pchart_rules "
                             "FROM inspection_stations "
                             "WHERE station = %s", (name,))
    row = await cur.fetchone()
    return Station(*row) if row else None


COLUMNS = ("id, ts, station, machine, lot, operation, verdict, class, score, detail, image_sha256, image_format, "
           "width, height, model, model_version, model_sha256, latency_ms, source")


async def insert(conn: psycopg.AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
    """Write one inspection row; the stored row (with id)."""
    cols = [c for c in COLUMNS.split(", ") if c != "id"]
    values = [Jsonb(row[c]) if c == "detail" else row[c] for c in cols]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"INSERT INTO inspections ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                          f"RETURNING {COLUMNS}", values)
        out = await cur.fetchone()
    assert out is not None
    return out


async def store(conn: psycopg.AsyncConnection, root: Path, data: bytes, row: dict[str, Any]) -> dict[str, Any]:
    """Store the image and its row together: the file first, removed again if the row fails."""
    sha, created = put_image(root, data)
    row = {**row, "image_sha256": sha}
    try:
        return await insert(conn, row)
    except BaseException:
        if created:
            image_path(root, sha).unlink(missing_ok=True)
        raise


async def get(conn: psycopg.AsyncConnection, inspection_id: int) -> dict[str, Any] | None:
    """One inspection row by id, or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM inspections WHERE id = %s", (inspection_id,))
        return await cur.fetchone()


def in_range(where: list[str], args: list[Any], start: datetime | None, end: datetime | None) -> None:
    """Add the conditions ts >= start and ts < end (those given) to a WHERE list and its arguments."""
    if start is not None:
        where.append("ts >= %s")
        args.append(start)
    if end is not None:
        where.append("ts < %s")
        args.append(end)


async def find(conn: psycopg.AsyncConnection, *, station: str | None = None, machine: str | None = None,
               lot: str | None = None, verdict: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Inspections matching every given filter, newest first, one page."""
    where: list[str] = []
    args: list[Any] = []
    for col, val in (("station", station), ("machine", machine), ("lot", lot), ("verdict", verdict)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    in_range(where, args, start, end)
    sql = f"SELECT {COLUMNS} FROM inspections {'WHERE ' + ' AND '.join(where) if where else ''} " \
          f"ORDER BY ts DESC, id DESC LIMIT %s OFFSET %s"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, [*args, limit, offset])
        return await cur.fetchall()


async def sweep(conn: psycopg.AsyncConnection, root: Path) -> int:
    """Apply each station's retention: delete old rows, then the images no row holds any more; rows deleted."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM inspections i USING inspection_stations s WHERE s.station = i.station "
            "AND i.ts < now() - make_interval(days => s.retention_days) RETURNING i.image_sha256")
        gone = {r[0] for r in await cur.fetchall()}
    for sha in gone:
        cur = await conn.execute("SELECT EXISTS (SELECT FROM inspections WHERE image_sha256 = %s)", (sha,))
        row = await cur.fetchone()
        if row and not row[0]:
            image_path(root, sha).unlink(missing_ok=True)
    return len(gone)
