"""/api/v1/machines and /api/v1/alarms: what the twin knows of each machine, and its alarms (ISA-18.2 lifecycle)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import psycopg
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import caller, requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError


class MachineOut(msgspec.Struct):
    """A machine: its ISO 22400 state since when, part totals, sensor health and model predictions."""

    name: str
    line: str
    state: str
    state_since: datetime | None
    good_total: int
    scrap_total: int
    sensors: dict[str, Any]
    predictions: dict[str, Any]
    updated_at: datetime


AlarmState = Literal["unack_active", "ack_active", "unack_cleared", "normal", "shelved", "suppressed"]
Priority = Literal["low", "medium", "high"]


class AlarmOut(msgspec.Struct):
    """One alarm (ISA-18.2): a (machine, signal, rule) condition from the point that raised it until it cleared.

    ts, last_ts and cleared_ts are data times (the samples'); rules are every rule its points broke.
    """

    id: int
    machine: str
    tag: str | None
    rule: Literal["spc", "bad_input", "flood", "opcua"]  # opcua: a server's condition (sql/0020)
    priority: Priority
    state: AlarmState
    active: bool
    acknowledged: bool
    ts: datetime
    last_ts: datetime
    cleared_ts: datetime | None
    points: int
    rules: list[str]
    value: float | None
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    shelved_until: datetime | None
    shelved_by: str | None


class JournalOut(msgspec.Struct):
    """One transition of an alarm: the twin's, or an operator's with its outcome."""

    id: int
    at: datetime
    data_ts: datetime | None
    transition: str
    actor: str
    role: str | None
    outcome: str
    detail: str


class AckBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An acknowledgement, with an optional comment for the journal."""

    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ShelveBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Shelve an active alarm for a while (ISA-18.2: time-limited, with a reason)."""

    duration_s: Annotated[int, msgspec.Meta(ge=60, le=8 * 3600, description="60 s .. 8 h")]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


_MACHINES = """SELECT m.name, m.line, s.state, s.state_since, s.good_total, s.scrap_total, s.sensors, s.predictions,
                      s.updated_at
               FROM machine_status s JOIN machines m ON m.id = s.machine_id"""


class MachineController(Controller):
    """Machines as the twin mirrors them."""

    path = "/api/v1/machines"
    tags = ["twin"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="Every machine the twin mirrors")
    async def list_machines(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[MachineOut]:
        """State, counts, health and predictions of every machine, by name."""
        cur = await conn.execute(_MACHINES + " ORDER BY m.name")
        return [MachineOut(*r) for r in await cur.fetchall()]

    @get("/{name:str}", summary="One machine")
    async def get_machine(
        self, conn: NamedDependency[psycopg.AsyncConnection], name: FromPath[str]
    ) -> MachineOut:
        """State, counts, per-sensor health (EWMA, CUSUM, last rules) and latest RUL with its model version."""
        cur = await conn.execute(_MACHINES + " WHERE m.name = %s", (name,))
        row = await cur.fetchone()
        if row is None:
            raise NotFoundException(f"no machine {name!r} in the twin")
        return MachineOut(*row)


_ALARM_COLUMNS = ("id, machine, tag, rule, priority, state, active, acknowledged, ts, last_ts, cleared_ts, points, "
                  "rules, CASE WHEN value = 'NaN' THEN NULL ELSE value END, raised_at, acked_at, acked_by, "
                  "shelved_until, shelved_by")


class AlarmController(Controller):
    """Alarms raised by the twin, with their lifecycle; operators acknowledge and shelve them."""

    path = "/api/v1/alarms"
    tags = ["twin"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="Alarms, newest first")
    async def list_alarms(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        machine: Annotated[str | None, QueryParameter(description="only this machine", max_length=200)] = None,
        since: Annotated[datetime | None, QueryParameter(description="only raised at or after, ISO 8601")] = None,
        state_is: Annotated[AlarmState | None, QueryParameter(query="state", description="only alarms in this state")]
        = None,
        priority: Annotated[Priority | None, QueryParameter(description="only this priority")] = None,
        limit: Annotated[int, QueryParameter(description="at most this many (1..10000)", ge=1, le=10_000)] = 100,
    ) -> list[AlarmOut]:
        """Alarms of every machine, or one; each with its state, priority and the rules its points broke."""
        if not 1 <= limit <= 10_000:
            raise InvalidParameterError("limit", f"must be 1..10000, got {limit}")
        cur = await conn.execute(
            f"SELECT {_ALARM_COLUMNS} FROM alarms_named "
            "WHERE (%(m)s::text IS NULL OR machine = %(m)s) AND (%(s)s::timestamptz IS NULL OR ts >= %(s)s) "
            "AND (%(st)s::text IS NULL OR state = %(st)s) AND (%(p)s::text IS NULL OR priority = %(p)s) "
            "ORDER BY ts DESC, id DESC LIMIT %(n)s",
            {"m": machine, "s": since, "st": state_is, "p": priority, "n": limit},
        )
        return [AlarmOut(*r) for r in await cur.fetchall()]

    @get("/{alarm_id:int}", summary="One alarm")
    async def get_alarm(self, conn: NamedDependency[psycopg.AsyncConnection], alarm_id: FromPath[int]) -> AlarmOut:
        """The alarm, or 404 naming its id."""
        return await _alarm(conn, alarm_id)

    @get("/{alarm_id:int}/journal", summary="An alarm's transitions, oldest first")
    async def journal(
        self, conn: NamedDependency[psycopg.AsyncConnection], alarm_id: FromPath[int]
    ) -> list[JournalOut]:
        """Every transition of the alarm: raised, escalated, cleared, suppressed, released, acknowledged, shelved."""
        await _alarm(conn, alarm_id)
        cur = await conn.execute("SELECT id, at, data_ts, transition, actor, role, outcome, detail "
                                 "FROM alarm_journal WHERE alarm_id = %s ORDER BY id", (alarm_id,))
        return [JournalOut(*r) for r in await cur.fetchall()]

    @post("/{alarm_id:int}/ack", summary="Acknowledge an alarm", status_code=200, guards=[requires("operator")])
    async def ack(
        self, request: Request, conn: NamedDependency[psycopg.AsyncConnection], alarm_id: FromPath[int],
        data: JSONBody[AckBody | None] = None,
    ) -> AlarmOut:
        """Acknowledge (active or cleared); 409 when it already is. Journaled with who, when and the outcome."""
        comment = data.comment if data else ""
        return await _act(conn, request, alarm_id, "acknowledged", comment,
                          refuse_if="acked_at IS NOT NULL", refusal="already acknowledged",
                          update="acked_at = now(), acked_by = %(who)s")

    @post("/{alarm_id:int}/shelve", summary="Shelve an active alarm for a while", status_code=200,
          guards=[requires("operator")])
    async def shelve(
        self, request: Request, conn: NamedDependency[psycopg.AsyncConnection], alarm_id: FromPath[int],
        data: JSONBody[ShelveBody],
    ) -> AlarmOut:
        """Hide an active alarm for duration_s (at most 8 h); 409 when it is cleared. Journaled."""
        return await _act(conn, request, alarm_id, "shelved", f"{data.duration_s} s: {data.reason}",
                          refuse_if="NOT active", refusal="not active (cleared alarms are not shelved)",
                          update="shelved_until = now() + make_interval(secs => %(secs)s), shelved_by = %(who)s",
                          secs=data.duration_s)

    @post("/{alarm_id:int}/unshelve", summary="Return a shelved alarm", status_code=200,
          guards=[requires("operator")])
    async def unshelve(
        self, request: Request, conn: NamedDependency[psycopg.AsyncConnection], alarm_id: FromPath[int]
    ) -> AlarmOut:
        """End a shelving early; 409 when the alarm is not shelved. Journaled."""
        return await _act(conn, request, alarm_id, "unshelved", "",
                          refuse_if="shelved_until IS NULL OR shelved_until <= now()", refusal="not shelved",
                          update="shelved_until = NULL")


async def _alarm(conn: psycopg.AsyncConnection, alarm_id: int) -> AlarmOut:
    """The alarm by id, or 404."""
    cur = await conn.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms_named WHERE id = %s", (alarm_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFoundException(f"no alarm {alarm_id}")
    return AlarmOut(*row)


async def _act(conn: psycopg.AsyncConnection, request: Request, alarm_id: int, transition: str, detail: str, *,
               refuse_if: str, refusal: str, update: str, secs: int = 0) -> AlarmOut:
    """An operator's transition: refused (409) or applied, journaled either way in one transaction."""
    if not -(2**63) <= alarm_id < 2**63:
        raise NotFoundException(f"no alarm {alarm_id}")
    user = await caller(request)
    args = {"id": alarm_id, "who": user.name, "role": user.role, "t": transition, "secs": secs}
    async with conn.transaction():
        cur = await conn.execute(f"SELECT {refuse_if} FROM alarms WHERE id = %(id)s FOR UPDATE", args)
        row = await cur.fetchone()
        if row is None:
            raise NotFoundException(f"no alarm {alarm_id}")
        refused = bool(row[0])
        if not refused:
            await conn.execute(f"UPDATE alarms SET {update} WHERE id = %(id)s", args)
        await conn.execute(
            "INSERT INTO alarm_journal (alarm_id, transition, actor, role, outcome, detail) "
            "VALUES (%(id)s, %(t)s, %(who)s, %(role)s, %(outcome)s, %(detail)s)",
            args | {"outcome": "refused" if refused else "accepted", "detail": refusal if refused else detail},
        )
    if refused:
        raise HTTPException(status_code=409, detail=f"alarm {alarm_id}: {refusal}")
    return await _alarm(conn, alarm_id)
