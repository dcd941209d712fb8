"""/api/v1/operators: the people who run the machines, and their skills."""

from __future__ import annotations

from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.auth import requires
from api.mes.errors import refusals
from api.mes.types import Code, Text


class SkillIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A skill and how well it is mastered, 1..5."""

    skill: Code
    level: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1


class OperatorIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An operator known by badge."""

    badge: Code
    name: Text = ""
    skills: list[SkillIn] = []


class SkillOut(msgspec.Struct):
    """A skill of an operator."""

    skill: str
    level: int


class OperatorOut(msgspec.Struct):
    """An operator with their skills."""

    badge: str
    name: str
    skills: list[SkillOut]


_OPERATORS = """
    SELECT o.badge, o.name, coalesce(jsonb_agg(jsonb_build_object('skill', s.skill, 'level', s.level)
                                               ORDER BY s.skill) FILTER (WHERE s.skill IS NOT NULL), '[]')
    FROM operators o LEFT JOIN operator_skills s ON s.operator_id = o.id
    WHERE %(b)s::text IS NULL OR o.badge = %(b)s
    GROUP BY o.id ORDER BY o.badge"""


async def _read(conn: psycopg.AsyncConnection, badge: str | None) -> list[OperatorOut]:
    cur = await conn.execute(_OPERATORS, {"b": badge})
    return [OperatorOut(b, n, msgspec.convert(s, list[SkillOut])) for b, n, s in await cur.fetchall()]


class OperatorController(Controller):
    """Operators and skills."""

    path = "/operators"
    tags = ["mes: man"]
    guards = [requires("viewer")]

    @post("/", summary="Register an operator", guards=[requires("engineer")])
    async def create_operator(self, conn: NamedDependency[psycopg.AsyncConnection],
                              data: JSONBody[OperatorIn]) -> OperatorOut:
        """An operator with skills, in one transaction; 409 when the badge or a skill repeats."""
        with refusals(f"operator {data.badge!r}"):
            async with conn.transaction():
                cur = await conn.execute("INSERT INTO operators (badge, name) VALUES (%s, %s) RETURNING id",
                                         (data.badge, data.name))
                operator = (await cur.fetchone())[0]  # type: ignore[index]
                if data.skills:
                    await conn.execute(
                        "INSERT INTO operator_skills (operator_id, skill, level) "
                        "SELECT %s, s, l FROM unnest(%s::text[], %s::int[]) AS t (s, l)",
                        (operator, [s.skill for s in data.skills], [s.level for s in data.skills]),
                    )
        return (await _read(conn, data.badge))[0]

    @get("/", summary="List operators")
    async def list_operators(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[OperatorOut]:
        """Every operator with their skills, by badge."""
        return await _read(conn, None)
