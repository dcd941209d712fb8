"""The 4M1E tag registry: declaring tags and machines, and turning records into writer batches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import psycopg

from historian.errors import UnknownTagError
from historian.samples import Batch, DeadLetter, Event, Sample, SampleBatch, from_us, to_us

CATEGORIES = ("man", "machine", "material", "method", "energy")
DATA_TYPES = ("float", "int", "bool", "text")


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """A machine as configured: its name, line and description."""

    name: str
    line: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class TagSpec:
    """A tag as configured; validated on construction with errors naming the field."""

    name: str
    category: str
    unit: str = ""
    description: str = ""
    machine: str | None = None
    data_type: str = "float"
    deadband: float = 0.0
    source: str = ""
    retention_class: str = "default"
    allow_nan: bool = False
    timestamp_source: str = "device"
    writable: bool = False
    write_role: str = "engineer"
    """The lowest API role that may write this tag when writable: operator, engineer or admin."""

    def __post_init__(self) -> None:
        if self.write_role not in ("operator", "engineer", "admin"):
            raise ValueError(f"write_role: {self.write_role!r} is not operator, engineer or admin (tag {self.name!r})")
        if self.timestamp_source not in ("device", "gateway"):
            raise ValueError(f"timestamp_source: {self.timestamp_source!r} is not device or gateway")
        if not self.name:
            raise ValueError("name: a tag needs a non-empty name")
        if self.category not in CATEGORIES:
            raise ValueError(f"category: {self.category!r} is not one of {', '.join(CATEGORIES)} (tag {self.name!r})")
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"data_type: {self.data_type!r} is not one of {', '.join(DATA_TYPES)} (tag {self.name!r})")
        if not (self.deadband >= 0 and math.isfinite(self.deadband)):
            raise ValueError(f"deadband: must be a finite number >= 0, got {self.deadband!r} (tag {self.name!r})")


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A registered tag as the writer and queries need it."""

    id: int
    name: str
    data_type: str
    unit: str
    category: str
    allow_nan: bool


class TagRegistry:
    """Tags by name and, as numpy lookup tables by id, what the writer checks per sample."""

    def __init__(self, tags: Iterable[TagInfo]) -> None:
        self.by_name: dict[str, TagInfo] = {t.name: t for t in tags}
        self.by_id: dict[int, TagInfo] = {t.id: t for t in self.by_name.values()}
        size = max(self.by_id, default=0) + 1
        self.numeric = np.zeros(size, dtype=bool)
        self.integral = np.zeros(size, dtype=bool)
        self.boolean = np.zeros(size, dtype=bool)
        self.allow_nan = np.zeros(size, dtype=bool)
        for t in self.by_id.values():
            self.numeric[t.id] = t.data_type != "text"
            self.integral[t.id] = t.data_type in ("int", "bool")
            self.boolean[t.id] = t.data_type == "bool"
            self.allow_nan[t.id] = t.allow_nan
        self.numeric_ids: dict[str, int] = {t.name: t.id for t in self.by_id.values() if t.data_type != "text"}

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> TagInfo:
        """The registered tag of this name, or UnknownTagError."""
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownTagError(name) from None

    def ids(self, names: Sequence[str]) -> np.ndarray:
        """Tag ids of these names as int32, or UnknownTagError for the first unknown one."""
        return np.fromiter((self.get(n).id for n in names), dtype=np.int32, count=len(names))

    def to_batch(self, records: Iterable[Sample], source: str = "") -> Batch:
        """Split records into numeric samples, text events and refusals (unknown tag, wrong type)."""
        return self.batch_from_rows(((r.tag, to_us(r.ts), r.value, int(r.quality)) for r in records), source)

    def batch_from_columns(
        self, tags: list[str], ts_us: list[int], values: list[Any], quality: list[int], source: str = ""
    ) -> Batch:
        """Like batch_from_rows, from equal-length columns; all-numeric columns take a vectorised path."""
        samples = self.numeric_columns(tags, ts_us, values, quality)
        if samples is not None:
            return Batch(samples, source=source)
        return self.batch_from_rows(zip(tags, ts_us, values, quality), source)

    def numeric_columns(
        self, tags: list[str], ts_us: list[int], values: list[Any], quality: list[int]
    ) -> SampleBatch | None:
        """The samples of all-numeric columns of known numeric tags; None when a row needs the row path."""
        ids = list(map(self.numeric_ids.get, tags))
        if None in ids:
            return None
        try:
            v = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):  # a text value in a numeric tag: refused row by row
            return None
        q = np.array(quality, dtype=np.int16)
        # numpy reads None as NaN: the row path decides whether a None is a bad reading or a refusal
        if v.ndim != 1 or (np.isnan(v) & (q >= 64)).any():
            return None
        return SampleBatch.from_columns(ids, ts_us, v, q)

    def batch_from_rows(self, rows: Iterable[tuple[str, int, Any, int]], source: str = "") -> Batch:
        """Like to_batch, from (tag name, µs since the epoch, value, quality) tuples."""
        tag_ids: list[int] = []
        ts: list[int] = []
        values: list[float] = []
        quality: list[int] = []
        events: list[Event] = []
        rejects: list[DeadLetter] = []
        by_name = self.by_name
        for tag, ts_us, value, q in rows:
            info = by_name.get(tag)
            if info is None:
                rejects.append(DeadLetter(f"unknown tag {tag!r}", _row_payload(tag, ts_us, value, q), source))
            elif info.data_type == "text":
                if isinstance(value, str):
                    events.append(Event(info.id, ts_us, value, q))
                elif value is None and q < 64:
                    events.append(Event(info.id, ts_us, "", q))  # a bad text reading: no value
                else:
                    rejects.append(DeadLetter(f"wrong type: tag {tag!r} is text, got {type(value).__name__}",
                                              _row_payload(tag, ts_us, value, q), source))
            elif value is None and q < 64:
                tag_ids.append(info.id)
                ts.append(ts_us)
                values.append(math.nan)
                quality.append(q)
            elif isinstance(value, (int, float)) and not isinstance(value, str):
                tag_ids.append(info.id)
                ts.append(ts_us)
                values.append(float(value))
                quality.append(q)
            else:
                rejects.append(DeadLetter(f"wrong type: tag {tag!r} is {info.data_type}, got {type(value).__name__}",
                                          _row_payload(tag, ts_us, value, q), source))
        return Batch(SampleBatch.from_columns(tag_ids, ts, values, quality), events, rejects, source)


def _row_payload(tag: str, ts_us: int, value: Any, quality: int) -> dict:
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        value = repr(value)
    return {"tag": tag, "ts": from_us(ts_us).isoformat(), "value": value, "quality": quality}


async def load_registry(conn: psycopg.AsyncConnection) -> TagRegistry:
    """Read every registered tag."""
    cur = await conn.execute("SELECT id, name, data_type, unit, category, allow_nan FROM tags")
    return TagRegistry(TagInfo(*row) for row in await cur.fetchall())


async def register(
    conn: psycopg.AsyncConnection, tags: Sequence[TagSpec], machines: Sequence[MachineSpec] = ()
) -> TagRegistry:
    """Create or update machines and tags (by name) in one transaction; returns the new registry."""
    wanted_machines = {m.name: m for m in machines}
    for t in tags:
        if t.machine and t.machine not in wanted_machines:
            wanted_machines[t.machine] = MachineSpec(t.machine)
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.executemany(
                """INSERT INTO machines (name, line, description) VALUES (%s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET
                     line = CASE WHEN EXCLUDED.line <> '' THEN EXCLUDED.line ELSE machines.line END,
                     description = CASE WHEN EXCLUDED.description <> '' THEN EXCLUDED.description
                                        ELSE machines.description END""",
                [(m.name, m.line, m.description) for m in wanted_machines.values()],
            )
            await cur.executemany(
                """INSERT INTO tags (name, unit, description, category, machine_id, data_type, deadband,
                                     source, retention_class, allow_nan, timestamp_source, writable, write_role)
                   VALUES (%s, %s, %s, %s, (SELECT id FROM machines WHERE name = %s), %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET
                     unit = EXCLUDED.unit, description = EXCLUDED.description, category = EXCLUDED.category,
                     machine_id = EXCLUDED.machine_id, data_type = EXCLUDED.data_type,
                     deadband = EXCLUDED.deadband, source = EXCLUDED.source,
                     retention_class = EXCLUDED.retention_class, allow_nan = EXCLUDED.allow_nan,
                     timestamp_source = EXCLUDED.timestamp_source, writable = EXCLUDED.writable,
                     write_role = EXCLUDED.write_role""",
                [
                    (t.name, t.unit, t.description, t.category, t.machine, t.data_type, t.deadband,
                     t.source, t.retention_class, t.allow_nan, t.timestamp_source, t.writable, t.write_role)
                    for t in tags
                ],
            )
    return await load_registry(conn)
