"""An in-memory Sink for adapter tests: the real interface, kept in lists instead of a spool."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from gateway.source import Reading, ReadingColumns


class MemorySink:
    """Collects readings and dead letters; tests await until what they expect has arrived."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.dead_letters: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Keep the readings."""
        self.readings.extend(readings)
        self._changed.set()

    async def publish_columns(self, columns: ReadingColumns) -> None:
        """Keep the readings, as Readings."""
        await self.publish(columns.readings())

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Keep the dead letter."""
        self.dead_letters.append((reason, payload))
        self._changed.set()

    def values(self, tag: str) -> list[Any]:
        """Every value read for a tag, in order."""
        return [r.value for r in self.readings if r.tag == tag]

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        """Wait until predicate(self) is true, or fail with TimeoutError."""
        async def loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)
