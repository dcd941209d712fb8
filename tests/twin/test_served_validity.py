"""The twin carries each model's verdict through: no number from zeros, missing or too-short input, and the reason."""

from __future__ import annotations

import msgspec

from historian.registry import MachineSpec, TagSpec, register
from tests.historian.helpers import scalar
from tests.twin.test_twin_service import batch, running, until
from twin.config import FAILURE_INPUTS, TwinConfig
from twin.service import TwinService

RUL_TAGS = [f"p1.{c}" for c in ("setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22)))]


async def test_an_idle_machine_reading_zeros_gets_no_failure_probability_and_rul_waits_for_history(dsn, conn):
    tags = [TagSpec(f"m1.{k}", "machine", machine="m1") for k in FAILURE_INPUTS]
    tags += [TagSpec(t, "machine", machine="p1") for t in RUL_TAGS]
    registry = await register(conn, tags, [MachineSpec("m1"), MachineSpec("p1")])
    config = msgspec.convert({"tick_interval": 0.02, "record_interval": 0.05, "machines": [
        {"name": "m1", "failure_model": "failure", "product_type": "L", "failure_tags": {k: f"m1.{k}" for k in FAILURE_INPUTS}},
        {"name": "p1", "rul_model": "FD001", "rul_tags": RUL_TAGS},
    ]}, TwinConfig)
    service = TwinService(config, dsn)
    async with running(service):
        # the lathe stands idle and its PLC reports zeros for every process reading
        service.observe(batch(registry, [(f"m1.{k}", 1, 0.0) for k in FAILURE_INPUTS]))
        failure = await until(lambda: scalar(conn, "SELECT s.predictions -> 'failure' FROM machine_status s "
                                                   "JOIN machines m ON m.id = s.machine_id WHERE m.name = 'm1'"),
                              lambda p: "valid" in p)
        rul = await until(lambda: scalar(conn, "SELECT s.predictions -> 'rul' FROM machine_status s "
                                               "JOIN machines m ON m.id = s.machine_id WHERE m.name = 'p1'"),
                          lambda p: "valid" in p)
    assert failure["valid"] is False and failure["probability"] is None and failure["flagged"] is None
    assert "air_temperature_k = 0 K is outside the training range" in failure["reason"]
    assert rul["valid"] is False and rul["value"] is None
    assert rul["reason"] == "0 of the 20 cycles of history the model needs"
