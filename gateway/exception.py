"""Exception reporting per tag, as PI does it: a deadband, and a maximum time between stored values.

A reading is stored when its tag has no stored reading yet, its quality differs from the last
stored one, it is `max_interval` or more after it, or it moved from it: by `deadband` or more
(absolute, or percent of the last stored value's magnitude), and to a different value (a tag at
0 with a percent deadband is not stored again at 0 on every poll). NaN is a value of its own:
into NaN and out of it are moves, NaN after NaN is not (so a NaN neither freezes a tag nor is
stored on every poll). Bools, strings and None move when they differ.

Two ways in share one state per tag (numpy arrays, one slot per filtered tag): `keep`, one
reading at a time, and `keep_block`, a Modbus poll's float64 column at once; a tag may be seen
by both (its good numeric polls as a block, its bad-quality rows one by one) and each path sees
what the other stored. Numbers are compared as float64 on both paths, as the historian stores them.
"""

from __future__ import annotations

import math

import numpy as np

from gateway.tags import TagConfig
from historian.samples import Quality

_PLANS_MAX = 100_000  # tag tuples remembered for keep_block, should requests ever be remade without end


class ExceptionFilter:
    """Decides which readings are worth storing; remembers the last stored reading of each tag."""

    def __init__(self, tags: list[TagConfig]) -> None:
        filtered = [t for t in tags if t.deadband > 0 or t.max_interval > 0]
        self._index = {t.name: i for i, t in enumerate(filtered)}
        n = len(filtered)
        self._deadband = np.array([t.deadband for t in filtered], dtype=np.float64)
        self._percent = np.array([t.deadband_mode == "percent" for t in filtered], dtype=bool)
        # µs; a tag without max_interval is never overdue (inf keeps the comparison one expression)
        self._max_us = np.array([t.max_interval * 1e6 if t.max_interval > 0 else math.inf for t in filtered],
                                dtype=np.float64)
        self._has = np.zeros(n, dtype=bool)
        self._value = np.full(n, math.nan, dtype=np.float64)
        self._ts = np.zeros(n, dtype=np.int64)
        self._quality = np.zeros(n, dtype=np.int32)
        self._is_object = np.zeros(n, dtype=bool)  # the last stored value is not a number: it is in _objects
        self._objects: dict[int, object] = {}
        # the scalar path reads and writes the same buffers through memoryviews: an item of one is
        # a plain Python float or int, several times cheaper to get and set than a numpy item
        self._m_deadband = memoryview(self._deadband)
        self._m_percent = memoryview(self._percent)
        self._m_max_us = memoryview(self._max_us)
        self._m_has = memoryview(self._has)
        self._m_value = memoryview(self._value)
        self._m_ts = memoryview(self._ts)
        self._m_quality = memoryview(self._quality)
        self._m_is_object = memoryview(self._is_object)
        self._plans: dict[int, _Plan] = {}  # id(tag tuple) -> its plan (the tuple is kept alive in it)

    @property
    def active(self) -> bool:
        """False when no tag has a deadband or a maximum interval: every reading is kept."""
        return bool(self._index)

    def last(self, tag: str) -> tuple[object, int, int] | None:
        """The last stored (value, ts_us, quality) of a filtered tag; None before its first or if not filtered."""
        i = self._index.get(tag)
        if i is None or not self._m_has[i]:
            return None
        value = self._objects[i] if self._m_is_object[i] else self._m_value[i]
        return value, self._m_ts[i], self._m_quality[i]

    def keep(self, tag: str, value: object, ts_us: int, quality: int) -> bool:
        """True when the reading must be stored: outside the deadband, a new quality, or overdue."""
        i = self._index.get(tag)
        if i is None:
            return True
        number = _as_number(value)
        if (not self._m_has[i] or quality != self._m_quality[i] or ts_us - self._m_ts[i] >= self._m_max_us[i]
                or self._moved(i, value, number)):
            self._remember(i, value, number, ts_us, quality)
            return True
        return False

    def keep_block(self, tags: tuple[str, ...], ts_us: int, values: np.ndarray,
                   quality: np.ndarray | None) -> np.ndarray:
        """Which readings of one numeric block to store (a bool mask), as keep would decide them one by one.

        `tags` is the request's tag tuple, kept for life (its plan is cached by id), `values`
        float64, `quality` per value or None for all good. The kept readings become the tags'
        last stored ones.
        """
        plan = self._plan(tags)
        n = len(values)
        if plan.slots is None:  # no tag of the block is filtered
            return np.ones(n, dtype=bool)
        if plan.one_by_one:
            qs = [int(Quality.GOOD)] * n if quality is None else quality.tolist()
            return np.fromiter(map(self.keep, tags, values.tolist(), [ts_us] * n, qs), dtype=bool, count=n)
        at = plan.at
        v = values if plan.positions is None else values[plan.positions]
        if quality is None:
            q: np.ndarray | int = int(Quality.GOOD)
        else:
            q = quality if plan.positions is None else quality[plan.positions]
        keep = self._decide(plan.slots, at, v, q, ts_us, plan.deadband, plan.percent, plan.limit, plan.max_us)
        if plan.positions is None:
            return keep
        mask = np.ones(n, dtype=bool)
        mask[plan.positions] = keep
        return mask

    def keep_points(self, tags: tuple[str, ...], at: np.ndarray, ts_us: np.ndarray, values: np.ndarray,
                    quality: np.ndarray | None) -> np.ndarray:
        """Which of numeric readings with a time each to store (a bool mask), as keep would decide them in order.

        Reading i is of tag tags[at[i]] at ts_us[i] (int64 µs); `tags` is the source's tag tuple,
        kept for life (its plan is cached by id), `values` float64, `quality` per value or None for
        all good. The kept readings become the tags' last stored ones.
        """
        plan = self._plan(tags)
        n = len(values)
        keep = np.ones(n, dtype=bool)
        if plan.slots is None:
            return keep
        slot = plan.slot_of[at]
        mine = np.flatnonzero(slot >= 0)
        if not len(mine):
            return keep
        slots = slot[mine]
        v, ts = values[mine], ts_us[mine]
        q: np.ndarray | int = int(Quality.GOOD) if quality is None else quality[mine]
        if len(np.unique(slots)) != len(slots):
            # a tag twice (a queue size above 1): its later reading depends on the earlier decision
            names = [tags[i] for i in at[mine].tolist()]
            qs = [q] * len(mine) if isinstance(q, int) else q.tolist()
            keep[mine] = list(map(self.keep, names, v.tolist(), ts.tolist(), qs))
            return keep
        deadband = self._deadband[slots]
        percent = self._percent[slots]
        max_us = self._max_us[slots]
        keep[mine] = self._decide(slots, slots, v, q, ts, deadband,
                                  percent if percent.any() and not percent.all() else None,
                                  None if percent.any() else deadband,
                                  max_us if np.isfinite(max_us).any() else None)
        return keep

    def _decide(self, slots: np.ndarray, at: slice | np.ndarray, v: np.ndarray, q: np.ndarray | int,
                ts_us: np.ndarray | int, deadband: np.ndarray, percent: np.ndarray | None,
                limit: np.ndarray | None, max_us: np.ndarray | None) -> np.ndarray:
        """keep's decision for readings of distinct filtered tags (state at `at`: slots, or their slice) at once.

        `percent`: which use a percent deadband, None when all or none do; `limit`: the absolute
        deadbands when none does (a fixed limit); `max_us`: None when no tag has one. The kept
        readings become their tags' last stored ones.
        """
        old = self._value[at]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, a huge value times a percent: decided below
            if limit is None:  # keep's expression, in its order: abs(old) * deadband / 100
                limit = np.abs(old) * deadband / 100.0
                if percent is not None:
                    limit = np.where(percent, limit, deadband)
            keep = ((np.abs(v - old) >= limit) & (v != old)) | (np.isnan(v) != np.isnan(old))
        keep |= ~self._has[at]
        keep |= q != self._quality[at]
        if max_us is not None:
            keep |= (ts_us - self._ts[at]) >= max_us
        objects = self._is_object[at] if self._objects else None
        if objects is not None and objects.any():  # rare: a last stored None, bool or text; decided as keep does
            for k in np.flatnonzero(objects).tolist():
                i = int(slots[k])
                t = ts_us if isinstance(ts_us, int) else int(ts_us[k])
                keep[k] = ((q if isinstance(q, int) else int(q[k])) != self._m_quality[i]
                           or t - self._m_ts[i] >= self._m_max_us[i] or float(v[k]) != self._objects[i])
            for k in np.flatnonzero(objects & keep).tolist():
                i = int(slots[k])
                self._m_is_object[i] = False
                del self._objects[i]
        if isinstance(at, slice):  # consecutive slots: write through views, no index arrays
            np.copyto(self._value[at], v, where=keep)
            np.copyto(self._ts[at], ts_us, where=keep)
            np.copyto(self._quality[at], q, where=keep)
            np.copyto(self._has[at], True, where=keep)
        else:
            stored = at[keep]
            self._value[stored] = v[keep]
            self._ts[stored] = ts_us if isinstance(ts_us, int) else ts_us[keep]
            self._quality[stored] = q if isinstance(q, int) else q[keep]
            self._has[stored] = True
        return keep

    def _moved(self, i: int, value: object, number: float | None) -> bool:
        """True when value moved from tag i's last stored value (see the module's docstring)."""
        if self._m_is_object[i]:
            return (value if number is None else number) != self._objects[i]
        old = self._m_value[i]
        if number is None:
            return value != old
        limit = abs(old) * self._m_deadband[i] / 100.0 if self._m_percent[i] else self._m_deadband[i]
        # the block path computes this same expression on float64 columns
        return (abs(number - old) >= limit and number != old) or ((number != number) != (old != old))

    def _remember(self, i: int, value: object, number: float | None, ts_us: int, quality: int) -> None:
        """Make the reading tag i's last stored one."""
        self._m_has[i] = True
        self._m_ts[i] = ts_us
        self._m_quality[i] = quality
        if number is None:
            self._m_is_object[i] = True
            self._objects[i] = value
        else:
            self._m_value[i] = number
            if self._m_is_object[i]:
                self._m_is_object[i] = False
                del self._objects[i]

    def _plan(self, tags: tuple[str, ...]) -> _Plan:
        """The filter slots of a tag tuple, made on its first block (a request keeps its tuple for life)."""
        plan = self._plans.get(id(tags))
        if plan is None or plan.tags is not tags:
            if len(self._plans) > _PLANS_MAX:
                self._plans.clear()
            plan = self._plans[id(tags)] = _Plan(tags, self)
        return plan


class _Plan:
    """A block's filtered tags: their slots in the filter's arrays, their places in the block, their settings."""

    __slots__ = ("tags", "slots", "slot_of", "at", "positions", "one_by_one", "deadband", "percent", "limit",
                 "max_us")

    def __init__(self, tags: tuple[str, ...], f: ExceptionFilter) -> None:
        self.tags = tags  # kept alive: the plan is found by id(tags)
        found = [(p, f._index[t]) for p, t in enumerate(tags) if t in f._index]
        slots = [s for _, s in found]
        self.slots: np.ndarray | None = np.array(slots, dtype=np.intp) if found else None
        # each tag's slot, -1 where not filtered (keep_points: readings name their tags by position)
        self.slot_of = np.full(len(tags), -1, dtype=np.intp)
        if found:
            self.slot_of[[p for p, _ in found]] = slots
        # the state arrays at those slots: a slice (views, no gather or scatter) when they are consecutive,
        # as a request's tags are when the source's tags are configured in address order
        self.at: slice | np.ndarray | None = (slice(slots[0], slots[-1] + 1) if found and slots == list(
            range(slots[0], slots[-1] + 1)) else self.slots)
        # None: every tag of the block is filtered, in order (no gather or scatter of the block)
        self.positions: np.ndarray | None = (None if len(found) == len(tags)
                                             else np.array([p for p, _ in found], dtype=np.intp))
        # a tag twice in one block: its second reading depends on the first's decision, so keep decides
        self.one_by_one = len(set(tags)) != len(tags)
        # the settings do not change: gathered once here, not per block
        idx = self.slots if self.slots is not None else np.zeros(0, dtype=np.intp)
        self.deadband = f._deadband[idx]
        percent = f._percent[idx]
        self.percent: np.ndarray | None = percent if percent.any() and not percent.all() else None
        self.limit: np.ndarray | None = None if percent.any() else self.deadband  # absolute only: a fixed limit
        max_us = f._max_us[idx]
        self.max_us: np.ndarray | None = max_us if np.isfinite(max_us).any() else None


def _as_number(value: object) -> float | None:
    """The value as the float64 both paths compare, or None for what is compared as it is (bool, text, None)."""
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float64: compared as it is
        return None
