"""Exception reporting per tag, as PI does it: a deadband, and a maximum time between stored values."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.tags import TagConfig


@dataclass(slots=True)
class _Last:
    value: object
    ts_us: int
    quality: int


class ExceptionFilter:
    """Decides which readings are worth storing; remembers the last stored reading of each tag."""

    def __init__(self, tags: list[TagConfig]) -> None:
        self._tags = {t.name: t for t in tags if t.deadband > 0 or t.max_interval > 0}
        self._last: dict[str, _Last] = {}

    @property
    def active(self) -> bool:
        """False when no tag has a deadband or a maximum interval: every reading is kept."""
        return bool(self._tags)

    def keep(self, tag: str, value: object, ts_us: int, quality: int) -> bool:
        """True when the reading must be stored: outside the deadband, a new quality, or overdue."""
        cfg = self._tags.get(tag)
        if cfg is None:
            return True
        last = self._last.get(tag)
        if last is None or quality != last.quality or self._moved(cfg, last.value, value) or (
            cfg.max_interval > 0 and ts_us - last.ts_us >= cfg.max_interval * 1e6
        ):
            self._last[tag] = _Last(value, ts_us, quality)
            return True
        return False

    @staticmethod
    def _moved(cfg: TagConfig, old: object, new: object) -> bool:
        if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, (int, float)) \
                or not isinstance(new, (int, float)):
            return new != old
        if cfg.deadband == 0:
            return new != old
        limit = cfg.deadband if cfg.deadband_mode == "absolute" else abs(old) * cfg.deadband / 100.0
        return abs(new - old) >= limit
