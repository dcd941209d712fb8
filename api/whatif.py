"""POST /api/v1/whatif: the line's simpy model, seeded from the twin, run under one or more scenarios.

Bounded work: the body's limits are msgspec constraints (so the OpenAPI document shows them and a
request past one is a 400 naming the field); the run holds no database connection while it
simulates, runs in a worker thread that stops between events when it passes MAX_EVENTS or its
wall-clock budget (422 naming the limit), or when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.params import JSONBody
from psycopg_pool import AsyncConnectionPool

from api.auth import requires
from historian.errors import InvalidParameterError
from twin.whatif import (
    MAX_HORIZON_S, MAX_MACHINES, MAX_ORDERS, MAX_SCENARIOS, MAX_WINDOWS, Budget, LimitExceeded, Machine, Order,
    Scenario, UnknownProduct, WhatIfRequest, WhatIfResult, Window, Wip, compare,
)
from twin.whatif_seed import SeedDefaults, known_products, machines_from_twin


class WhatIfBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Scenarios to compare over a horizon; machines from the twin unless given."""

    horizon_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_HORIZON_S, description="seconds, at most 30 days")]
    scenarios: Annotated[list[Scenario], msgspec.Meta(min_length=1, max_length=MAX_SCENARIOS)] = msgspec.field(
        default_factory=lambda: [Scenario()])
    orders: Annotated[list[Order], msgspec.Meta(max_length=MAX_ORDERS)] = msgspec.field(default_factory=list)
    wip: Annotated[list[Wip], msgspec.Meta(max_length=MAX_MACHINES)] = msgspec.field(default_factory=list)
    shifts: Annotated[list[Window], msgspec.Meta(max_length=MAX_WINDOWS)] | None = None
    setup_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_HORIZON_S)] = 0.0
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    machines: Annotated[list[Machine], msgspec.Meta(max_length=MAX_MACHINES)] | None = None
    """Given: used as they are. Absent: every machine the twin mirrors, with its state, routing cycle times and
    predicted life (or its MTBF when the life is unknown)."""
    defaults: SeedDefaults = msgspec.field(default_factory=SeedDefaults)


class WhatIfAnswer(msgspec.Struct):
    """The machines the model ran with, and one result per scenario, in the order asked."""

    seeded_from: Literal["twin", "request"]
    machines: list[Machine]
    results: list[WhatIfResult]


def _unprocessable(field: str, problem: str, **extra: str) -> ClientException:
    """422 naming the field (and the product or limit) in the detail and in `extra`."""
    return ClientException(status_code=422, detail=f"{field}: {problem}",
                           extra={"parameter": field, "problem": problem} | extra)


class WhatIfController(Controller):
    """What-if runs of the line model."""

    path = "/api/v1/whatif"
    tags = ["twin"]
    guards = [requires("viewer")]

    @post("/", summary="Run the line model under scenarios", status_code=200)
    async def whatif(self, request: Request, state: State, data: JSONBody[WhatIfBody]) -> WhatIfAnswer:
        """Throughput, OEE, tardiness and an event summary per scenario; deterministic for a seed.

        400 names a bad field; 422 an unknown product or a limit passed (max_events, budget_s).
        """
        seeded = data.machines is None
        pool: AsyncConnectionPool = state.pool
        machines = data.machines or []
        unknown: list[tuple[str, str]] = []
        if seeded:
            # the connection goes back to the pool before the simulation starts
            async with pool.connection() as conn:
                machines = await machines_from_twin(conn, data.defaults)
                asked = [(f"orders[{i}].product", o.product) for i, o in enumerate(data.orders)]
                asked += [(f"wip[{i}].order.product", w.order.product) for i, w in enumerate(data.wip)]
                known = await known_products(conn, sorted({p for _, p in asked}))
                unknown = [(where, p) for where, p in asked if p not in known]
        if unknown:
            where, product = unknown[0]
            raise _unprocessable(where, f"unknown product {product!r}", product=product)
        if not machines:
            raise InvalidParameterError("machines", "the twin mirrors no machine yet; give machines in the request")
        run = WhatIfRequest(machines=machines, horizon_s=data.horizon_s, orders=data.orders, wip=data.wip,
                            setup_s=data.setup_s, shifts=data.shifts, seed=data.seed)
        budget = Budget()
        try:
            results = await _until_done_or_gone(request, budget, run, data.scenarios)
        except UnknownProduct as e:
            raise _unprocessable(e.where, f"no machine makes {e.product!r}", product=e.product) from None
        except LimitExceeded as e:
            raise _unprocessable(e.limit, e.problem, limit=e.limit) from None
        except ValueError as e:
            field, _, problem = str(e).partition(": ")
            raise InvalidParameterError(field if problem else "body", problem or str(e)) from None
        return WhatIfAnswer("twin" if seeded else "request", machines, results)


async def _until_done_or_gone(request: Request, budget: Budget, run: WhatIfRequest,
                              scenarios: list[Scenario]) -> list[WhatIfResult]:
    """compare() in a worker thread; cancelled (between events) when the client disconnects or this task is."""
    work = asyncio.ensure_future(asyncio.to_thread(compare, run, scenarios, budget))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            budget.cancel()
        return await work
    except asyncio.CancelledError:
        budget.cancel()
        raise
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gone


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
