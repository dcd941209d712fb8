"""Settings of the HTTP API (the `[api]` table of shopfloor.toml)."""

import msgspec


ROLES = ("viewer", "operator", "engineer", "admin")
WRITE_ROLES = ("operator", "engineer", "admin")


class ApiUser(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A caller known by its API key (sent as `Authorization: Bearer <key>` or `X-API-Key`)."""

    name: str
    key: str
    role: str = "viewer"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role: {self.role!r} is not one of {', '.join(ROLES)} (user {self.name!r})")
        if len(self.key) < 16:
            raise ValueError(f"key: API keys need at least 16 characters (user {self.name!r})")


class ApiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the API listens, who may call what, and how long a write-back may take."""

    host: str = "127.0.0.1"
    port: int = 8000
    write_timeout: float = 10.0
    """Seconds to wait for a gateway to carry out a write-back before answering 504."""
    users: list[ApiUser] = []

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.write_timeout <= 0:
            raise ValueError(f"write_timeout must be > 0, got {self.write_timeout}")
        keys = [u.key for u in self.users]
        if len(keys) != len(set(keys)):
            raise ValueError("users: two users share an API key")
