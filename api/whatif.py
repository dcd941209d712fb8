"""POST /api/v1/whatif: the line's simpy model, seeded from the twin, run under one or more scenarios."""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
import psycopg
from litestar import Controller, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.auth import requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError
from twin.whatif import Machine, Order, Scenario, WhatIfRequest, WhatIfResult, Window, Wip, compare
from twin.whatif_seed import SeedDefaults, machines_from_twin


class WhatIfBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Scenarios to compare over a horizon; machines from the twin unless given."""

    horizon_s: float
    scenarios: list[Scenario] = msgspec.field(default_factory=lambda: [Scenario()])
    orders: list[Order] = msgspec.field(default_factory=list)
    wip: list[Wip] = msgspec.field(default_factory=list)
    shifts: list[Window] | None = None
    setup_s: float = 0.0
    seed: int = 0
    machines: list[Machine] | None = None
    """Given: used as they are. Absent: every machine the twin mirrors, with its state and predicted life."""
    defaults: SeedDefaults = msgspec.field(default_factory=SeedDefaults)


class WhatIfAnswer(msgspec.Struct):
    """The machines the model ran with, and one result per scenario, in the order asked."""

    seeded_from: Literal["twin", "request"]
    machines: list[Machine]
    results: list[WhatIfResult]


class WhatIfController(Controller):
    """What-if runs of the line model."""

    path = "/api/v1/whatif"
    tags = ["twin"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @post("/", summary="Run the line model under scenarios", status_code=200)
    async def whatif(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[WhatIfBody]) -> WhatIfAnswer:
        """Throughput, OEE, tardiness and an event summary per scenario; deterministic for a seed."""
        seeded = data.machines is None
        machines = await machines_from_twin(conn, data.defaults) if seeded else data.machines or []
        if not machines:
            raise InvalidParameterError("machines", "the twin mirrors no machine yet; give machines in the request")
        if not data.scenarios:
            raise InvalidParameterError("scenarios", "give at least one scenario")
        request = WhatIfRequest(machines=machines, horizon_s=data.horizon_s, orders=data.orders, wip=data.wip,
                                setup_s=data.setup_s, shifts=data.shifts, seed=data.seed)
        try:
            # a long horizon is CPU work: off the event loop
            results = await asyncio.to_thread(compare, request, data.scenarios)
        except ValueError as e:
            field, _, problem = str(e).partition(": ")
            raise InvalidParameterError(field if problem else "body", problem or str(e)) from None
        return WhatIfAnswer("twin" if seeded else "request", machines, results)
