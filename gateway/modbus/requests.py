"""Grouping of configured tags into as few read requests as the protocol allows.

Tags of one table are sorted by address and packed into a request while the request stays within
the protocol's size limit (registers, or bits for coils and discrete inputs) and the unused
addresses between two neighbours are at most `merge_gap`. Reading a few unused registers costs far
less than another round trip, but a device may have holes in its map: a merged request that gets
"illegal data address" is split again (see `ReadRequest.split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from gateway.modbus.config import BIT_TABLES, MAX_BITS, MAX_REGISTERS, TABLES, ModbusTag


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of `count` addresses of a table from `address`, and the tags it carries."""

    table: str
    address: int
    count: int
    tags: tuple[ModbusTag, ...]
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The tags' names in request order (each poll's readings carry them)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(t.name for t in self.tags))

    @property
    def end(self) -> int:
        """The first address after the request."""
        return self.address + self.count

    def span(self, tag: ModbusTag) -> slice:
        """Where a tag's registers (or bit) sit in this request's response."""
        start = tag.address - self.address
        return slice(start, start + tag.registers)

    def split(self) -> list[ReadRequest]:
        """Smaller requests for the same tags, to step around a hole in a device's map.

        First the contiguous parts (no unused address read); a request that is contiguous already
        becomes one request per tag, so a single misconfigured tag spoils only itself.
        """
        parts = group(self.tags, max_count=self.count, merge_gap=0)
        if len(parts) > 1 or len(self.tags) == 1:
            return parts
        return [ReadRequest(self.table, t.address, t.registers, (t,)) for t in self.tags]

    def __str__(self) -> str:
        return f"{self.table} {self.address}..{self.end - 1}"


def group(
    tags: Iterable[ModbusTag],
    max_registers: int = MAX_REGISTERS,
    merge_gap: int = 8,
    max_bits: int = MAX_BITS,
    max_count: int | None = None,
) -> list[ReadRequest]:
    """Requests covering every tag, per table in table order, each within the size limit."""
    by_table: dict[str, list[ModbusTag]] = {t: [] for t in TABLES}
    for tag in tags:
        by_table[tag.table].append(tag)
    requests: list[ReadRequest] = []
    for table, members in by_table.items():
        limit = max_count or (max_bits if table in BIT_TABLES else max_registers)
        requests += _pack(table, members, limit, merge_gap)
    return requests


def _pack(table: str, tags: list[ModbusTag], limit: int, merge_gap: int) -> list[ReadRequest]:
    out: list[ReadRequest] = []
    current: list[ModbusTag] = []
    start = end = 0
    # longest first at equal addresses, so an overlapping shorter tag never extends the request
    for tag in sorted(tags, key=lambda t: (t.address, -t.registers)):
        tag_end = tag.address + tag.registers
        if current and tag.address - end <= merge_gap and max(end, tag_end) - start <= limit:
            current.append(tag)
            end = max(end, tag_end)
            continue
        if current:
            out.append(ReadRequest(table, start, end - start, tuple(current)))
        current, start, end = [tag], tag.address, tag_end
    if current:
        out.append(ReadRequest(table, start, end - start, tuple(current)))
    return out
