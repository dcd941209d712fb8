"""Settings of the HTTP API (the `[api]` table of shopfloor.toml)."""

from __future__ import annotations

import re

import msgspec

ROLES = ("viewer", "operator", "engineer", "admin")
WRITE_ROLES = ("operator", "engineer", "admin")
_CONFIG_KEY_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # digits alone name database keys


class ApiUser(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A caller known by its API key (sent as `Authorization: Bearer <key>` or `X-API-Key`).

    In shopfloor.toml give `key_id` and `key_hash` (argon2id), both printed by `shopfloor keys hash` for a key
    `sf_<key_id>_<secret>`: the id picks the one hash a presented key is verified against. A `key_hash`
    without `key_id` (a key of any other form) still works, at one verification per such user for every
    key without an id. A plaintext `key` is accepted for programs that build their settings in code.
    """

    name: str
    key: str = ""
    key_hash: str = ""
    key_id: str = ""
    role: str = "viewer"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role: {self.role!r} is not one of {', '.join(ROLES)} (user {self.name!r})")
        if bool(self.key) == bool(self.key_hash):
            raise ValueError(f"key_hash: give exactly one of key_hash and key (user {self.name!r})")
        if self.key and len(self.key) < 16:
            raise ValueError(f"key: API keys need at least 16 characters (user {self.name!r})")
        if self.key_hash and not self.key_hash.startswith("$argon2id$"):
            raise ValueError(f"key_hash: not an argon2id hash (user {self.name!r}); make one with `shopfloor keys hash`")
        if self.key_id and not _CONFIG_KEY_ID.match(self.key_id):
            raise ValueError(f"key_id: {self.key_id!r} must be 1..32 lowercase letters, digits or '-' starting "
                             f"with a letter (user {self.name!r})")
        if self.key_id and self.key:
            raise ValueError(f"key_id: only with key_hash; a plaintext key is compared as it is (user {self.name!r})")


class ApiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the API listens, who may call what, and how much work one request may cause."""

    host: str = "127.0.0.1"
    port: int = 8000
    write_timeout: float = 10.0
    """Seconds to wait for a gateway to carry out a write-back before answering 504."""
    users: list[ApiUser] = []
    statement_timeout: float = 5.0
    """Seconds one SQL statement of a request may run before the request is answered 503."""
    pool_size: int = 8
    pool_timeout: float = 2.0
    """Seconds a request waits for a free database connection before 503 with Retry-After."""
    metrics_public: bool = False
    """true: /metrics needs no key (for a Prometheus scraper on a trusted network)."""
    cors_origins: list[str] = []
    """Browser origins allowed to call the API; none by default."""
    trusted_hosts: list[str] = []
    """Host headers accepted (e.g. "mes.plant.local", "*.plant.local"); empty: any."""
    certfile: str = ""
    keyfile: str = ""
    """Both set: `shopfloor serve` speaks HTTPS only."""
    max_body: int = 1_048_576
    """Bytes a request body may have."""
    drain_timeout: float = 5.0
    """Seconds `shopfloor serve` lets requests finish after SIGTERM."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        for name in ("write_timeout", "statement_timeout", "pool_timeout", "drain_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be > 0 and at most 3600 s, got {getattr(self, name)}")
        if not 1 <= self.pool_size <= 200:
            raise ValueError(f"pool_size must be 1..200, got {self.pool_size}")
        if not 1024 <= self.max_body <= 1 << 30:
            raise ValueError(f"max_body must be 1 KiB..1 GiB, got {self.max_body}")
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("certfile and keyfile: give both for TLS, or neither")
        keys = [u.key for u in self.users if u.key] + [u.key_hash for u in self.users if u.key_hash]
        if len(keys) != len(set(keys)):
            raise ValueError("users: two users share an API key")
        ids = [u.key_id for u in self.users if u.key_id]
        if len(ids) != len(set(ids)):
            raise ValueError("users: two users share a key_id")
