"""Settings of the HTTP API (the `[api]` table of shopfloor.toml)."""

import msgspec


class ApiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the API listens."""

    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
