"""People who sign in to the command center: argon2id passwords (the API keys' hasher), roles, lockout.

A user has the roles of the API keys (viewer < operator < engineer < admin). After `MAX_FAILURES`
wrong passwords in a row the account is locked for `LOCK_S`; during a lock no password is even checked.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from api.config import ROLES
from api.keys import hash_key, verify_hash

MAX_FAILURES = 5
"""Wrong passwords in a row that lock an account."""
LOCK_S = 15 * 60
"""How long a locked account stays locked."""
MIN_PASSWORD = 12
MAX_PASSWORD = 200  # longer is no password of ours; refused before hashing
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_ARGON = asyncio.Semaphore(1)  # argon2 is slow on purpose: sign-in floods burn one core, not all


class UserError(ValueError):
    """A user operation refused, naming the field (name, role, password)."""


@dataclass(frozen=True)
class User:
    """Who is signed in: name and role."""

    id: int
    name: str
    role: str


@dataclass(frozen=True)
class UserRow:
    """A user as `shopfloor users list` shows it (never the hash)."""

    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    failures: int
    locked_until: datetime | None
    last_login_at: datetime | None


def check_name(name: str) -> str:
    """name, or UserError when it is not 1..64 of letters, digits and _ . @ -."""
    if not _NAME.match(name):
        raise UserError(f"name: {name[:80]!r} is not 1..64 letters, digits, '_', '.', '@' or '-'")
    return name


def check_password(password: str) -> str:
    """password, or UserError when it is shorter than MIN_PASSWORD or longer than MAX_PASSWORD."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"password: give {MIN_PASSWORD}..{MAX_PASSWORD} characters (got {len(password)})")
    return password


async def create(conn: psycopg.AsyncConnection, name: str, role: str, password: str) -> None:
    """Add a user with this role; the password is stored as its argon2id hash only."""
    check_name(name)
    if role not in ROLES:
        raise UserError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    hashed = await asyncio.to_thread(hash_key, check_password(password))
    try:
        await conn.execute("INSERT INTO web_users (name, role, password_hash) VALUES (%s, %s, %s)",
                           (name, role, hashed))
    except psycopg.errors.UniqueViolation:
        raise UserError(f"name: a user named {name!r} exists") from None


async def listing(conn: psycopg.AsyncConnection) -> list[UserRow]:
    """Every user, by name."""
    cur = await conn.execute("SELECT name, role, created_at, disabled_at, failures, locked_until, last_login_at "
                             "FROM web_users ORDER BY name")
    return [UserRow(*r) for r in await cur.fetchall()]


async def disable(conn: psycopg.AsyncConnection, name: str) -> None:
    """Disable the user and end their sessions at once."""
    async with conn.transaction():
        cur = await conn.execute("UPDATE web_users SET disabled_at = now() WHERE name = %s AND disabled_at IS NULL "
                                 "RETURNING id", (name,))
        row = await cur.fetchone()
        if row is None:
            raise UserError(f"name: no enabled user named {name!r}")
        await conn.execute("UPDATE web_sessions SET ended_at = now() WHERE user_id = %s AND ended_at IS NULL", row)


async def authenticate(conn: psycopg.AsyncConnection, name: str, password: str) -> User | None:
    """The user when name and password match an enabled, unlocked account; else None (a failure is counted).

    Unknown names, disabled and locked accounts and wrong passwords all answer None: the sign-in page
    says the same for each, so it tells an attacker nothing about which names exist.
    """
    if not _NAME.match(name) or not 1 <= len(password) <= MAX_PASSWORD:
        return None
    cur = await conn.execute("SELECT id, role, password_hash, disabled_at IS NULL AND coalesce(locked_until < now(), "
                             "true) FROM web_users WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        return None
    user_id, role, stored, usable = row
    if not usable:
        return None
    async with _ARGON:
        ok = await asyncio.to_thread(verify_hash, stored, password)
    if not ok:
        await conn.execute(
            "UPDATE web_users SET failures = failures + 1, locked_until = CASE WHEN failures + 1 >= %s "
            "THEN now() + make_interval(secs => %s) END WHERE id = %s", (MAX_FAILURES, LOCK_S, user_id))
        return None
    await conn.execute("UPDATE web_users SET failures = 0, locked_until = NULL, last_login_at = now() WHERE id = %s",
                       (user_id,))
    return User(user_id, name, role)


async def unlock(conn: psycopg.AsyncConnection, name: str) -> None:
    """Lift a lockout early (an admin who knows the person)."""
    cur = await conn.execute("UPDATE web_users SET failures = 0, locked_until = NULL WHERE name = %s RETURNING id",
                             (name,))
    if await cur.fetchone() is None:
        raise UserError(f"name: no user named {name!r}")


async def first_user(conn: psycopg.AsyncConnection, name: str, role: str) -> str | None:
    """When nobody can sign in yet, create `name` with a random password and return it; else None."""
    if await (await conn.execute("SELECT 1 FROM web_users LIMIT 1")).fetchone():
        return None
    password = secrets.token_urlsafe(12)
    await create(conn, name, role, password)
    return password
