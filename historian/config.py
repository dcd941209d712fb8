"""Settings of the historian (the `[historian]` table of shopfloor.toml)."""

import msgspec


class HistorianConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the historian lives and how its writer batches."""

    dsn: str = ""
    """PostgreSQL/TimescaleDB URI; empty runs an embedded PostgreSQL (the demo default)."""
    embedded_port: int = 55434
    flush_rows: int = 50_000
    """A flush starts when this many samples are queued..."""
    flush_interval: float = 0.25
    """...or when the oldest queued sample has waited this many seconds."""
    max_pending_rows: int = 1_000_000
    """Queued samples beyond which submit() waits: memory never grows without bound."""
    max_future: float = 300.0
    """Samples stamped more than this many seconds ahead of the clock are dead-lettered."""
    refresh_interval: float = 10.0
    """Seconds between incremental rollup refreshes."""
    retention_interval: float = 3600.0
    """Seconds between retention runs."""

    def __post_init__(self) -> None:
        for name in ("flush_rows", "max_pending_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("flush_interval", "max_future", "refresh_interval", "retention_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_pending_rows < self.flush_rows:
            raise ValueError(
                f"max_pending_rows ({self.max_pending_rows}) must be >= flush_rows ({self.flush_rows})"
            )
        if not 1 <= self.embedded_port <= 65535:
            raise ValueError(f"embedded_port must be 1..65535, got {self.embedded_port}")
