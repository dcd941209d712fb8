"""What every configured tag has, whatever its protocol: historian metadata and exception reporting."""

from __future__ import annotations

import msgspec

from historian.registry import CATEGORIES, DATA_TYPES, TagSpec


class TagConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields shared by the tags of every source; each adapter's tag struct extends this one."""

    name: str
    category: str = "machine"
    unit: str = ""
    description: str = ""
    machine: str | None = None
    data_type: str = "float"
    deadband: float = 0.0
    """Store a value only when it moved at least this much from the last stored one (0: every change)."""
    deadband_mode: str = "absolute"
    """'absolute' (in the tag's unit) or 'percent' (of the last stored value's magnitude)."""
    max_interval: float = 0.0
    """Store a value at least this often (seconds) even inside the deadband, as PI does; 0: never forced."""
    writable: bool = False
    write_role: str = "engineer"
    """Who may write it over the API when writable: operator, engineer (default) or admin."""

    def __post_init__(self) -> None:
        if self.write_role not in ("operator", "engineer", "admin"):
            raise ValueError(f"write_role: {self.write_role!r} is not operator, engineer or admin")
        if not self.name:
            raise ValueError("name: a tag needs a non-empty name")
        if self.category not in CATEGORIES:
            raise ValueError(f"category: {self.category!r} is not one of {', '.join(CATEGORIES)}")
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"data_type: {self.data_type!r} is not one of {', '.join(DATA_TYPES)}")
        if self.deadband < 0:
            raise ValueError(f"deadband: must be >= 0, got {self.deadband}")
        if self.deadband_mode not in ("absolute", "percent"):
            raise ValueError(f"deadband_mode: {self.deadband_mode!r} is not absolute or percent")
        if self.max_interval < 0:
            raise ValueError(f"max_interval: must be >= 0, got {self.max_interval}")

    def spec(self, source: str, timestamp_source: str = "device") -> TagSpec:
        """The historian registry entry of this tag; Modbus and others without device time say 'gateway'."""
        return TagSpec(
            self.name,
            self.category,
            unit=self.unit,
            description=self.description,
            machine=self.machine,
            data_type=self.data_type,
            deadband=self.deadband,
            source=source,
            timestamp_source=timestamp_source,
            writable=self.writable,
            write_role=self.write_role,
        )
