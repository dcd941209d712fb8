"""/api/v1/recipes and /api/v1/machines/{name}/recipe: process parameters in versions, and which ran where when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from psycopg.types.json import Jsonb

from api.auth import requires
from api.mes.errors import ConflictError, UnknownEntityError, refusals
from api.mes.lookup import id_of, optional_id
from api.mes.types import Code, Timestamp, Version
from historian.errors import InvalidParameterError


class RecipeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A recipe version: named process parameters, optionally for one product."""

    name: Code
    parameters: dict[str, Any] = {}
    version: Version | None = None
    """default: one past the recipe's newest"""
    product: Code | None = None


class RecipeOut(msgspec.Struct):
    """A recipe version as stored."""

    name: str
    version: int
    product: str | None
    parameters: dict[str, Any]
    created_at: datetime


class ActivationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Run a recipe version on a machine from a time on."""

    recipe: Code
    version: Version | None = None
    """default: the newest"""
    at: Timestamp | None = None
    """default: now"""


class ActivationOut(msgspec.Struct):
    """The recipe version a machine runs over [start_ts, end_ts); end_ts null while it still does."""

    machine: str
    recipe: str
    version: int
    parameters: dict[str, Any]
    start_ts: datetime
    end_ts: datetime | None


_RECIPES = """SELECT r.name, r.version, p.code, r.parameters, r.created_at
              FROM recipes r LEFT JOIN products p ON p.id = r.product_id"""


class RecipeController(Controller):
    """Recipes and their versions."""

    path = "/recipes"
    tags = ["mes: method"]
    guards = [requires("viewer")]

    @post("/", summary="Create a recipe version", guards=[requires("engineer")])
    async def create_recipe(self, conn: NamedDependency[psycopg.AsyncConnection],
                            data: JSONBody[RecipeIn]) -> RecipeOut:
        """A new version of a recipe; 409 when that version exists."""
        with refusals(f"recipe {data.name!r}"):
            async with conn.transaction():
                product = await optional_id(conn, "product", data.product, "product")
                # one version number at a time per recipe name, also when two clients add versions at once
                await conn.execute("SELECT pg_advisory_xact_lock(54312, hashtext(%s))", (data.name,))
                cur = await conn.execute(
                    """INSERT INTO recipes (name, version, product_id, parameters)
                       VALUES (%s, coalesce(%s, (SELECT coalesce(max(version), 0) + 1 FROM recipes WHERE name = %s)),
                               %s, %s) RETURNING id""",
                    (data.name, data.version, data.name, product, Jsonb(data.parameters)),
                )
                recipe = (await cur.fetchone())[0]  # type: ignore[index]
        cur = await conn.execute(_RECIPES + " WHERE r.id = %s", (recipe,))
        return RecipeOut(*(await cur.fetchone()))  # type: ignore[misc]

    @get("/", summary="List recipes")
    async def list_recipes(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        name: Annotated[str | None, QueryParameter(description="only this recipe's versions")] = None,
    ) -> list[RecipeOut]:
        """Every recipe version, by name and version."""
        cur = await conn.execute(_RECIPES + " WHERE %(n)s::text IS NULL OR r.name = %(n)s ORDER BY r.name, r.version",
                                 {"n": name})
        return [RecipeOut(*r) for r in await cur.fetchall()]


class MachineRecipeController(Controller):
    """The recipe a machine runs: activate one (closing the previous), or ask which ran at a time."""

    path = "/machines"
    tags = ["mes: method"]
    guards = [requires("viewer")]

    @post("/{name:str}/recipe", summary="Activate a recipe version on a machine", guards=[requires("engineer")])
    async def activate(self, conn: NamedDependency[psycopg.AsyncConnection], name: FromPath[str],
                       data: JSONBody[ActivationIn]) -> ActivationOut:
        """Close the machine's open activation at `at` and open this one; activations only move forward in time."""
        with refusals(f"recipe activation on {name!r}"):
            async with conn.transaction():
                machine = await id_of(conn, "machine", name)
                cur = await conn.execute(
                    """SELECT id FROM recipes WHERE name = %s AND (%s::int IS NULL OR version = %s)
                       ORDER BY version DESC LIMIT 1""", (data.recipe, data.version, data.version))
                row = await cur.fetchone()
                if row is None:
                    key = data.recipe if data.version is None else f"{data.recipe} v{data.version}"
                    raise UnknownEntityError("recipe", key, "recipe")
                cur = await conn.execute("SELECT coalesce(%s, now()), (SELECT max(start_ts) FROM recipe_activations "
                                         "WHERE machine_id = %s)", (data.at, machine))
                at, latest = await cur.fetchone()  # type: ignore[misc]
                if latest is not None and latest >= at:
                    raise ConflictError(f"machine {name!r} has a recipe activated at {latest.isoformat()}, "
                                        f"not before {at.isoformat()}: activations only move forward in time")
                await conn.execute("UPDATE recipe_activations SET end_ts = %s WHERE machine_id = %s AND end_ts IS NULL",
                                   (at, machine))
                await conn.execute(
                    "INSERT INTO recipe_activations (machine_id, recipe_id, start_ts) VALUES (%s, %s, %s)",
                    (machine, row[0], at))
        return await _recipe_at(conn, name, at)

    @get("/{name:str}/recipe", summary="The recipe a machine runs at a time")
    async def recipe(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        name: FromPath[str],
        at: Annotated[datetime | None, QueryParameter(description="ISO 8601 with a zone; default now")] = None,
    ) -> ActivationOut:
        """The activation covering `at` (recipe_at() in SQL); 404 when the machine ran none then."""
        if at is not None and at.tzinfo is None:
            raise InvalidParameterError("at", "needs a zone, e.g. 2026-11-20T08:00:00Z")
        await id_of(conn, "machine", name)
        cur = await conn.execute("SELECT coalesce(%s, now())", (at,))
        return await _recipe_at(conn, name, (await cur.fetchone())[0])  # type: ignore[index]


async def _recipe_at(conn: psycopg.AsyncConnection, machine: str, at: datetime) -> ActivationOut:
    cur = await conn.execute("SELECT recipe, version, parameters, start_ts, end_ts FROM recipe_at(%s::text, %s)",
                             (machine, at))
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError("recipe activation", f"{machine} at {at.isoformat()}")
    return ActivationOut(machine, *row)
