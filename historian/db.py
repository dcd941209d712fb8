"""Connections to the historian's database: the one module that opens them."""

from __future__ import annotations

import psycopg


async def connect(dsn: str, *, autocommit: bool = True) -> psycopg.AsyncConnection:
    """Open an async connection with the settings every historian connection uses."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit, application_name="shopfloor")
    # timestamps leave the database in UTC whatever the server's zone
    await conn.execute("SET TIME ZONE 'UTC'")
    return conn


async def backend(conn: psycopg.AsyncConnection) -> str:
    """'timescaledb' or 'postgresql': how this database stores time series."""
    cur = await conn.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')")
    row = await cur.fetchone()
    return "timescaledb" if row and row[0] else "postgresql"
