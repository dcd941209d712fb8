"""API keys in the database: argon2id hashes with name, role, created, expires, revoked and last use.

A key reads `sf_<id>_<secret>`: the id finds its row without a scan, the argon2id hash of the whole key
proves it (api/key_check.py decides who may spend a verification). A verified key is remembered (by its
SHA-256) for a few seconds, so revoking or expiring it takes effect within `RECHECK_S` without a restart,
and argon2 runs once per key, not per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from api.config import ROLES, ApiUser
from historian.metrics import METRICS

RECHECK_S = 2.0
"""A cached key is looked up again after this long: the bound on how late a revocation bites."""
_LAST_USED_S = 60.0  # last_used_at is written at most once a minute per key
VERIFICATIONS = METRICS.counter("shopfloor_api_key_verifications_total", "argon2 verifications of API keys run")
_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
_verified: set[tuple[str, bytes]] = set()  # (hash, sha256(key)) pairs argon2 already accepted


class KeyError_(ValueError):
    """A key operation the store refuses (unknown name, duplicate name, bad role)."""


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets, any characters."""
    return hmac.compare_digest(a.encode(), b.encode())


def hash_key(key: str) -> str:
    """The argon2id hash to store for key."""
    return _HASHER.hash(key)


def verify_hash(stored: str, key: str) -> bool:
    """Whether key matches the argon2id hash; each (hash, key) pair is verified by argon2 once."""
    memo = (stored, hashlib.sha256(key.encode()).digest())
    if memo in _verified:
        return True
    VERIFICATIONS.inc()
    try:
        _HASHER.verify(stored, key)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    _verified.add(memo)
    return True


def remembered(stored: str, key: str) -> bool:
    """Whether argon2 already accepted key for this hash in this process (no hashing)."""
    return (stored, hashlib.sha256(key.encode()).digest()) in _verified


def new_key(key_id: int) -> str:
    """A fresh key for row key_id: `sf_<id>_<32 url-safe random characters>`."""
    return f"sf_{key_id}_{secrets.token_urlsafe(24)}"


def key_id_of(key: str) -> str | None:
    """The public id of a key `sf_<id>_<secret>` (digits: a database row; a word: a configured user), or None."""
    parts = key.split("_", 2)
    if len(parts) < 3 or parts[0] != "sf" or not parts[1] or len(parts[1]) > 32 or not parts[2]:
        return None
    return parts[1]


@dataclass
class _Cached:
    user: ApiUser
    key_id: int
    checked: float
    used: float


class KeyStore:
    """The keys of the api_keys table, as the guards ask for them."""

    def __init__(self) -> None:
        self._cache: dict[bytes, _Cached] = {}
        self._lock = asyncio.Lock()

    async def find(self, pool, key: str,  # type: ignore[no-untyped-def]
                   verify: Callable[[str], Awaitable[bool]]) -> ApiUser | None:
        """The user of a database key that is neither expired nor revoked; None for any other key.

        verify(stored_hash) proves the key when this process has not yet (one call at most).
        """
        given = key_id_of(key)
        if given is None or not given.isdigit() or len(given) > 18:
            return None
        key_id = int(given)
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit.checked < RECHECK_S:
            return hit.user
        async with pool.connection() as conn:
            cur = await conn.execute(
                """SELECT name, role, key_hash, (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
                   FROM api_keys WHERE id = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
                (key_id,))
            row = await cur.fetchone()
            if row is None:
                self._cache.pop(digest, None)
                return None
            name, role, stored, stale = row
            if hit is None and not remembered(stored, key) and not await verify(stored):
                return None
            if stale or hit is None or now - hit.used > _LAST_USED_S:
                await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
                used = now
            else:
                used = hit.used
        user = ApiUser(name=name, key_hash=stored, role=role)
        self._cache[digest] = _Cached(user, key_id, now, used)
        return user


@dataclass(frozen=True)
class KeyRow:
    """A key as `shopfloor keys list` shows it (never the key itself)."""

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


async def create(conn: psycopg.AsyncConnection, name: str, role: str, expires: datetime | None) -> str:
    """Store a new key's hash under name and return the key (shown once, never stored)."""
    if role not in ROLES:
        raise KeyError_(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > 100:
        raise KeyError_("name: give 1..100 characters")
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO api_keys (name, role, key_hash, expires_at) VALUES (%s, %s, '', %s) RETURNING id",
                (name, role, expires))
            key_id = (await cur.fetchone())[0]  # type: ignore[index]
            key = new_key(key_id)
            await conn.execute("UPDATE api_keys SET key_hash = %s WHERE id = %s", (hash_key(key), key_id))
    except psycopg.errors.UniqueViolation:
        raise KeyError_(f"name: a key named {name!r} exists; revoke it or choose another name") from None
    return key


async def listing(conn: psycopg.AsyncConnection) -> list[KeyRow]:
    """Every key, newest first."""
    cur = await conn.execute("SELECT name, role, created_at, expires_at, revoked_at, last_used_at FROM api_keys "
                             "ORDER BY created_at DESC, id DESC")
    return [KeyRow(*r) for r in await cur.fetchall()]


async def revoke(conn: psycopg.AsyncConnection, name: str) -> None:
    """Revoke the key named name (effective within RECHECK_S in every server)."""
    cur = await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
                             "RETURNING id", (name,))
    if await cur.fetchone() is None:
        raise KeyError_(f"name: no active key named {name!r}")
