"""`[[gateway.sources]] type = "camera_folder"`: which folder, which station judges it, what happens afterwards."""

from __future__ import annotations

from typing import Literal

import msgspec


class CameraFolderSourceConfig(msgspec.Struct, tag="camera_folder", tag_field="type", kw_only=True,
                               forbid_unknown_fields=True):
    """One watched folder whose new images are inspected by a configured station."""

    name: str
    folder: str
    station: str
    after: Literal["move", "delete"] = "move"
    """move: judged files go to <folder>/done/ (a reused name gets its content hash appended); delete: removed."""
    poll_interval: float = 0.5
    """Seconds between scans; a file is taken when two scans in a row see the same size and mtime."""
    dsn: str = ""
    """The historian the inspections go to; empty: SHOPFLOOR_DSN."""
    lot: str | None = None
    operation: str | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.poll_interval <= 3600:
            raise ValueError(f"{self.name}: poll_interval must be between 0.05 and 3600 s, got {self.poll_interval}")
        if not self.folder:
            raise ValueError(f"{self.name}: folder is required")
