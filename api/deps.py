"""Dependencies handlers share: a pooled database connection."""

from typing import AsyncIterator

import psycopg
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool


async def provide_conn(state: State) -> AsyncIterator[psycopg.AsyncConnection]:
    """One connection from the app's pool for the length of a request."""
    pool: AsyncConnectionPool = state.pool
    async with pool.connection() as conn:
        yield conn
