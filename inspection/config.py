"""`[[inspection.stations]]` in shopfloor.toml: each camera station's machine, model, NG threshold and retention."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import psycopg

from inspection.store import Station, upsert_station


class StationConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One camera station."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    machine: str
    model: Annotated[str, msgspec.Meta(pattern=r"^(neu|mtile)$")] = "neu"
    """A committed model in inspection/models: neu (steel strip defect class) or mtile (tile defect + mask)."""
    threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.5
    """mtile: NG when P(defect) >= threshold. neu: every defect class is NG."""
    retention_days: Annotated[int, msgspec.Meta(gt=0)] = 90
    pchart_n: Annotated[int, msgspec.Meta(ge=2, le=10000)] = 25
    """Inspections per subgroup of the station's p-chart (inspection/pchart.py)."""
    pchart_baseline: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 20
    """Subgroups the chart learns p̄ from before it judges (and may raise alarms)."""
    pchart_rules: Literal["we", "nelson", "all"] = "we"
    """Rules the p-chart judges with: Western Electric 1-4 (fewer false alarms on attribute data), Nelson 1-8, all."""
    lot_tag: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    """Text tag with the lot the machine runs (e.g. press1.lot): fills the lot of inspections that come without one."""


class InspectionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The camera stations."""

    stations: list[StationConfig] = []

    def __post_init__(self) -> None:
        names = [s.name for s in self.stations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stations: names must be unique, repeated: {', '.join(dupes)}")


async def sync_stations(conn: psycopg.AsyncConnection, config: InspectionConfig) -> None:
    """Write the configured stations into inspection_stations (stations no longer configured are kept: rows
    refer to them)."""
    for s in config.stations:
        await upsert_station(conn, Station(s.name, s.machine, s.model, s.threshold, s.retention_days,
                                                 s.pchart_n, s.pchart_baseline, s.lot_tag,
                                                 s.pchart_rules))
