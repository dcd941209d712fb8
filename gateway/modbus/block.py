"""Decoding every numeric tag of one response at once with numpy, as codec.decode does one tag at a time.

A response of 100 registers used to cost ~5 µs per tag in struct/bytes juggling; gathered by
(type, order) into numpy index arrays, built once per request, it costs a fraction of that. The
layouts are codec's (see its table); bools and strings still go through codec one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gateway.modbus import codec
from gateway.modbus.config import ModbusTag
from gateway.values import round_scaled, shortest_float32

_DTYPE = {"int16": ">i2", "uint16": ">u2", "int32": ">i4", "uint32": ">u4", "int64": ">i8", "uint64": ">u8",
          "float32": ">f4", "float64": ">f8"}


@dataclass(frozen=True, slots=True)
class _Group:
    """Tags of one type and order in a response: where their bytes are, and how to scale them."""

    dtype: np.dtype
    byte_index: np.ndarray  # (tags, bytes per value) into the response's wire bytes
    slots: list[int]  # each tag's place in the request's tag order
    scale: np.ndarray | None  # None: published as decoded (integers stay integers)
    offset: np.ndarray | None
    decimals: np.ndarray | None  # what a scaled value is rounded to (-1: 15 significant digits)
    in_order: bool  # slots are 0..n-1 of an n-tag request


class BlockDecoder:
    """The numeric tags of one read request, decoded together; `rest` are the tags codec must do."""

    def __init__(self, address: int, tags: Sequence[ModbusTag]) -> None:
        self.rest: list[tuple[int, ModbusTag]] = []
        buckets: dict[tuple[str, str, bool], list[tuple[int, ModbusTag]]] = {}
        for slot, tag in enumerate(tags):
            if tag.type not in _DTYPE:
                self.rest.append((slot, tag))
                continue
            scaled = tag.scale != 1.0 or tag.offset != 0.0
            buckets.setdefault((tag.type, tag.byte_order, scaled), []).append((slot, tag))
        self.groups: list[_Group] = []
        for (type_, order, scaled), members in buckets.items():
            dtype = np.dtype(_DTYPE[type_])
            positions = np.array(codec.byte_layout(dtype.itemsize, order), dtype=np.intp)
            starts = np.array([(t.address - address) * 2 for _, t in members], dtype=np.intp)
            slots = [slot for slot, _ in members]
            self.groups.append(_Group(
                dtype,
                starts[:, None] + positions[None, :],
                slots,
                np.array([t.scale for _, t in members]) if scaled else None,
                np.array([t.offset for _, t in members]) if scaled else None,
                np.array([t.decimals for _, t in members]) if scaled else None,
                slots == list(range(len(tags))),
            ))

    def decode(self, registers: Sequence[int], values: list[object]) -> list[int]:
        """Put each numeric tag's published value into values[slot] (the request's tag order).

        Returns the slots whose value is NaN or infinite (a float device's "no value").
        """
        wire = np.asarray(registers, dtype=">u2").view(np.uint8)
        not_finite: list[int] = []
        for g in self.groups:
            raw = wire[g.byte_index].reshape(-1).view(g.dtype)
            if raw.dtype.itemsize == 4 and raw.dtype.kind == "f":
                raw = shortest_float32(raw)  # the value policy: 123.456, not 123.45600128173828
            if g.scale is not None:
                out = round_scaled(raw.astype(np.float64) * g.scale + g.offset, g.decimals)
            else:
                out = raw
            if out.dtype.kind == "f" and not (finite := np.isfinite(out)).all():
                not_finite.extend(g.slots[i] for i in np.flatnonzero(~finite))
            if g.in_order:  # the group is the whole request, in order: no scatter needed
                values[:] = out.tolist()
                continue
            for slot, v in zip(g.slots, out.tolist()):
                values[slot] = v
        return not_finite
