"""Names, codes and badges to ids, refusing unknown ones by name."""

from __future__ import annotations

import psycopg
from psycopg import sql

from api.mes.errors import UnknownEntityError

# entity -> (table, the column callers name it by)
_KEYS = {
    "machine": ("machines", "name"),
    "item": ("items", "code"),
    "product": ("products", "code"),
    "operator": ("operators", "badge"),
    "tag": ("tags", "name"),
}


async def id_of(conn: psycopg.AsyncConnection, entity: str, key: str, field: str | None = None) -> int:
    """The id of the entity called key; UnknownEntityError (404, or 422 naming field) when there is none."""
    table, column = _KEYS[entity]
    cur = await conn.execute(
        sql.SQL("SELECT id FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(column)), (key,)
    )
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError(entity, key, field)
    return row[0]  # type: ignore[no-any-return]


async def optional_id(conn: psycopg.AsyncConnection, entity: str, key: str | None, field: str) -> int | None:
    """id_of for an optional reference: None stays None."""
    return None if key is None else await id_of(conn, entity, key, field)
