"""Browser sessions: a random cookie value whose SHA-256 names a row of web_sessions (the value is never stored)."""

from __future__ import annotations

import hashlib
import secrets

import psycopg

from web.users import User

COOKIE = "sf_session"
LIFETIME_S = 12 * 3600
"""A session lasts one long shift; then the person signs in again."""
_MAX_TOKEN = 100  # longer is no cookie of ours


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def start(conn: psycopg.AsyncConnection, user: User) -> str:
    """A new session for user; returns the cookie value (shown to the browser only)."""
    token = secrets.token_urlsafe(32)
    await conn.execute("INSERT INTO web_sessions (token_sha256, user_id, expires_at) "
                       "VALUES (%s, %s, now() + make_interval(secs => %s))", (_digest(token), user.id, LIFETIME_S))
    return token


async def find(conn: psycopg.AsyncConnection, token: str) -> User | None:
    """The user of a live session (not ended, not expired, user enabled); None for any other cookie."""
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        return None
    cur = await conn.execute(
        "SELECT u.id, u.name, u.role FROM web_sessions s JOIN web_users u ON u.id = s.user_id "
        "WHERE s.token_sha256 = %s AND s.ended_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL",
        (_digest(token),))
    row = await cur.fetchone()
    return User(*row) if row else None


async def end(conn: psycopg.AsyncConnection, token: str) -> None:
    """End the session of this cookie (sign-out); old ended sessions are removed on the way."""
    if token and len(token) <= _MAX_TOKEN:
        await conn.execute("UPDATE web_sessions SET ended_at = now() WHERE token_sha256 = %s AND ended_at IS NULL",
                           (_digest(token),))
    await conn.execute("DELETE FROM web_sessions WHERE coalesce(ended_at, expires_at) < now() - interval '7 days'")
