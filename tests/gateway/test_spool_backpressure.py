"""A full spool applies backpressure to polling: Modbus polls are skipped and counted, nothing read is dropped."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
from psycopg import conninfo

from gateway.config import GatewayConfig
from gateway.service import Gateway
from historian.config import HistorianConfig
from plant.modbus_server import ModbusPlant, Signal
from tests.gateway.dbproxy import CuttableProxy
from tests.gateway.test_gateway_database_away import via_proxy
from tests.support import running, scalar_of, wait_for_value, wait_until

REGISTERS = 100
SEGMENT = 64 * 1024  # a record is ~2 KiB here: the spool fills in about a second


async def test_a_full_spool_skips_polls_counts_them_and_drops_nothing(conn, dsn, tmp_path: Path) -> None:
    signals = {f"r{i:03d}": Signal("holding", i, "uint16") for i in range(REGISTERS)}
    plant = ModbusPlant(port=0, signals=signals, simulate=False)
    await plant.start()
    params = conninfo.conninfo_to_dict(dsn)
    proxy = CuttableProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    await proxy.cut()  # the database is away: nothing leaves the spool, which fills
    name = f"bp{uuid.uuid4().hex[:8]}"
    config = msgspec.convert({
        "spool": {"directory": str(tmp_path / "spool"), "segment_bytes": SEGMENT, "max_bytes": 3 * SEGMENT,
                  "flush_interval": 0.02},
        "status_interval": 0.2,
        "sources": [{"type": "modbus", "name": name, "host": "127.0.0.1", "port": plant.port,
                     "poll_interval": 0.01,
                     "tags": [{"name": f"{name}.r{i:03d}", "table": "holding", "address": i, "type": "uint16"}
                              for i in range(REGISTERS)]}],
    }, GatewayConfig)
    gw = Gateway(config, via_proxy(dsn, proxy), HistorianConfig(flush_interval=0.05), tmp_path)
    status = gw.sources[0].status
    try:
        async with running(gw.run(), ready=lambda: gw.collecting.is_set() and status.connected):
            await wait_until(lambda: status.readings_skipped > 0, timeout=20, what="polls skipped on a full spool")
            await asyncio.sleep(0.3)  # the last record read before the spool filled reaches the disk
            reads, taken, skipped = plant.function_codes[3], status.readings_total, status.readings_skipped
            await asyncio.sleep(0.5)
            # while the spool is full the device is not read at all, and every read made is on disk
            assert plant.function_codes[3] == reads
            assert status.readings_total == taken == reads * REGISTERS
            assert status.readings_skipped >= skipped + 20 * REGISTERS  # ~50 poll slots of 100 tags in 0.5 s
            assert status.readings_skipped % REGISTERS == 0
            assert gw.spool.dropped_samples == 0 and gw.spool.bytes <= 3 * SEGMENT

            await proxy.start()  # the database is back: the spool drains, polling resumes
            await wait_until(gw.ready.is_set, timeout=20, what="tags registered after the outage")
            rows = f"SELECT count(*) FROM samples_named WHERE tag LIKE '{name}.%'"
            await wait_for_value(lambda: scalar_of(conn, rows), lambda n: n >= taken, timeout=30,
                                 what="everything spooled during the outage stored")
            await wait_until(lambda: plant.function_codes[3] > reads + 10, timeout=10, what="polling again")
            published = f"SELECT readings_skipped FROM sources WHERE name = '{name}'"
            await wait_for_value(lambda: scalar_of(conn, published), lambda n: n is not None and n >= skipped,
                                 timeout=10, what="readings_skipped in the sources table")
            assert gw.spool.dropped_samples == 0
    finally:
        await proxy.cut()
        await plant.close()
