"""Fixtures: real TimescaleDB and plain PostgreSQL servers, a fresh migrated database per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import AsyncIterator

import psycopg
import pytest
from psycopg import conninfo

from historian.db import connect
from historian.migrate import migrate
from tests.support import service_url
from tests.support import services_env as _services_env  # noqa: F401  (older imports)

BACKENDS = ("timescaledb", "postgresql")
_ENV = {"timescaledb": "SHOPFLOOR_TEST_TSDB_DSN", "postgresql": "SHOPFLOOR_TEST_PG_DSN"}


def server_dsn(backend: str) -> str:
    """The maintenance DSN of a test server: from the environment or scripts/services' env file."""
    return service_url(_ENV[backend])


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server DSN pointing at another database."""
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


_templates: dict[str, str] = {}
_template_lock = asyncio.Lock()


async def _template(backend: str) -> str:
    """A migrated database to copy per test (CREATE DATABASE ... TEMPLATE is much faster than migrating)."""
    async with _template_lock:
        if backend not in _templates:
            admin = server_dsn(backend)
            name = f"sf_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as c:
                await c.execute(f'CREATE DATABASE "{name}"')
            conn = await connect(with_dbname(admin, name))
            await migrate(conn)
            await conn.close()
            _templates[backend] = name
        return _templates[backend]


async def fresh_database(backend: str) -> str:
    """Create a new migrated database on the backend's server and return its DSN."""
    admin = server_dsn(backend)
    template = await _template(backend)
    name = f"sf_test_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as c:
        for attempt in range(50):
            try:
                await c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg.errors.ObjectInUse:
                # TimescaleDB's scheduler may still be looking at the template; it leaves quickly
                await asyncio.sleep(0.1 * (attempt + 1))
        else:
            raise RuntimeError(f"template {template} stayed busy")
    return with_dbname(admin, name)


async def drop_database(dsn: str) -> None:
    """Drop a test database, closing whatever still uses it."""
    params = conninfo.conninfo_to_dict(dsn)
    name = params["dbname"]
    admin = with_dbname(dsn, "postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as c:
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each historian test runs on TimescaleDB and on plain PostgreSQL."""
    return request.param


@pytest.fixture
async def dsn(backend: str) -> AsyncIterator[str]:
    """A fresh migrated database on the backend under test."""
    url = await fresh_database(backend)
    yield url
    await drop_database(url)


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit connection to the fresh database."""
    c = await connect(dsn)
    yield c
    await c.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the template databases this run made."""

    async def drop() -> None:
        for backend, name in _templates.items():
            try:
                await drop_database(with_dbname(server_dsn(backend), name))
            except psycopg.Error:
                pass

    if _templates:
        asyncio.run(drop())
