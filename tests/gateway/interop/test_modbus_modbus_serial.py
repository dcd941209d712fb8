"""The Modbus source against modbus-serial's ServerTCP (npm; a device no one here wrote).

The peer encodes every type and word order itself (Node's Buffer, its own word swapping) and logs
the registers it holds and every write it receives with its function code; the tests compare the
gateway's readings and writes with those logs exactly.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from gateway.modbus.adapter import ModbusSource
from gateway.modbus.config import ModbusSourceConfig, ModbusTag
from gateway.source import InvalidValueError
from gateway.testing import MemorySink
from historian.samples import Quality
from tests.gateway.interop.peers import NodePeer, free_port
from tests.support import running, wait_until

# type -> (value the peer encodes, value the gateway must publish, word orders that apply)
VALUES: dict[str, tuple[Any, Any, tuple[str, ...]]] = {
    "int16": (-12345, -12345, ("ABCD", "BADC")),
    "uint16": (54321, 54321, ("ABCD", "BADC")),
    "int32": (-123456789, -123456789, ("ABCD", "BADC", "CDAB", "DCBA")),
    "uint32": (4_000_000_000, 4_000_000_000, ("ABCD", "BADC", "CDAB", "DCBA")),
    "float32": (123.456, 123.456, ("ABCD", "BADC", "CDAB", "DCBA")),  # its shortest round-trip decimal
    "int64": ("-1234567890123456789", -1234567890123456789, ("ABCD", "BADC", "CDAB", "DCBA")),
    "uint64": ("12345678901234567890", 12345678901234567890, ("ABCD", "BADC", "CDAB", "DCBA")),
    "float64": (-0.001234, -0.001234, ("ABCD", "BADC", "CDAB", "DCBA")),
}
MATRIX = [(t, o) for t, (_, _, orders) in VALUES.items() for o in orders]


async def start_peer(port: int) -> NodePeer:
    """A modbus-serial ServerTCP on the port."""
    return await NodePeer("modbus_server.js", f"--port={port}").start()


@pytest_asyncio.fixture(loop_scope="session")
async def peer() -> AsyncIterator[NodePeer]:
    """A fresh modbus-serial server per test."""
    p = await start_peer(free_port())
    yield p
    await p.stop()


def port_of(peer: NodePeer) -> int:
    """The peer's port, from its READY line."""
    return int(peer.ready_line.split()[1])


def source(peer: NodePeer, tags: list[ModbusTag], **overrides: Any) -> ModbusSource:
    """A source polling the peer fast."""
    fields: dict[str, Any] = dict(name="modbus-serial", host="127.0.0.1", port=port_of(peer), poll_interval=0.05,
                                  timeout=1.0, reconnect_min=0.05, reconnect_max=0.5, tags=tags)
    fields.update(overrides)
    return ModbusSource(ModbusSourceConfig(**fields))


def matrix_tags(table: str = "holding") -> list[ModbusTag]:
    """A tag per type and word order, four registers apart."""
    return [ModbusTag(name=f"{t}.{o}", table=table, address=4 * i, type=t, byte_order=o)
            for i, (t, o) in enumerate(MATRIX)]


def latest(sink: MemorySink, tag: str) -> Any:
    """The newest reading of a tag, or None."""
    found = [r for r in sink.readings if r.tag == tag]
    return found[-1] if found else None


@pytest.mark.parametrize("table", ["holding", "input"])
async def test_every_type_and_word_order_reads_as_the_peer_encoded_it(peer: NodePeer, table: str) -> None:
    tags = matrix_tags(table)
    for tag in tags:
        logged = await peer.command({"put": table, "address": tag.address, "type": tag.type,
                                     "order": tag.byte_order, "value": VALUES[tag.type][0]})
        assert len(logged["registers"]) == tag.registers
    src = source(peer, tags)
    sink = MemorySink()
    async with running(src.run(sink), ready=lambda: src.status.connected):
        await sink.wait_for(lambda s: all(latest(s, t.name) is not None for t in tags))
    for tag in tags:
        r = latest(sink, tag.name)
        want = VALUES[tag.type][1]
        assert (r.value, type(r.value), r.quality) == (want, type(want), Quality.GOOD), tag.name
    assert sink.dead_letters == [] and src.status.tag_errors == {}


async def test_coils_and_discrete_inputs(peer: NodePeer) -> None:
    await peer.command({"bit": "coil", "address": 3, "value": True})
    await peer.command({"bit": "discrete", "address": 5, "value": True})
    tags = [ModbusTag(name="c3", table="coil", address=3), ModbusTag(name="c4", table="coil", address=4),
            ModbusTag(name="d5", table="discrete_input", address=5)]
    src = source(peer, tags)
    sink = MemorySink()
    async with running(src.run(sink), ready=lambda: src.status.connected):
        await sink.wait_for(lambda s: all(latest(s, t.name) is not None for t in tags))
    assert [latest(sink, t).value for t in ("c3", "c4", "d5")] == [True, False, True]


async def test_exceptions_mark_only_their_tags_bad_and_are_listed_per_tag(peer: NodePeer) -> None:
    await peer.command({"put": "holding", "address": 10, "type": "uint16", "value": 7})
    tags = [ModbusTag(name="ok", table="holding", address=10, type="uint16"),
            ModbusTag(name="hole", table="holding", address=950, type="uint16")]
    src = source(peer, tags)
    sink = MemorySink()
    async with running(src.run(sink), ready=lambda: src.status.connected):
        await sink.wait_for(lambda s: latest(s, "ok") is not None and latest(s, "hole") is not None)
        assert latest(sink, "ok").value == 7 and latest(sink, "hole").quality < Quality.UNCERTAIN
        await wait_until(lambda: "hole" in src.status.tag_errors, what="the hole listed")
        assert "illegal data address" in src.status.tag_errors["hole"] and "ok" not in src.status.tag_errors
        # device busy for every read: all bad, then good again when it recovers
        await peer.command({"fail": 6})
        await wait_until(lambda: "ok" in src.status.tag_errors, what="busy reported")
        assert "busy" in src.status.tag_errors["ok"]
        await peer.command({"fail": 0})
        await peer.command({"put": "holding", "address": 10, "type": "uint16", "value": 8})
        await sink.wait_for(lambda s: latest(s, "ok").value == 8)
        await wait_until(lambda: "ok" not in src.status.tag_errors, what="ok live again")


async def test_the_source_reads_again_after_the_device_restarts(peer: NodePeer) -> None:
    port = port_of(peer)
    await peer.command({"put": "holding", "address": 0, "type": "int16", "value": 1})
    src = source(peer, [ModbusTag(name="v", table="holding", address=0, type="int16")])
    sink = MemorySink()
    async with running(src.run(sink), ready=lambda: src.status.connected):
        await sink.wait_for(lambda s: latest(s, "v") is not None and latest(s, "v").value == 1)
        await peer.stop()
        await sink.wait_for(lambda s: latest(s, "v").quality == Quality.BAD_COMM_FAILURE)
        assert src.status.last_error
        restarted = await start_peer(port)
        try:
            await restarted.command({"put": "holding", "address": 0, "type": "int16", "value": 2})
            await sink.wait_for(lambda s: latest(s, "v").value == 2, timeout=15)
            assert src.status.reconnects_total >= 1 and src.status.last_error == ""
        finally:
            await restarted.stop()


@pytest.mark.parametrize("single", [True, False])
async def test_write_back_uses_fc5_fc6_or_fc15_fc16_as_the_peer_logs(peer: NodePeer, single: bool) -> None:
    tags = [ModbusTag(name="coil", table="coil", address=2, writable=True),
            ModbusTag(name="u16", table="holding", address=20, type="uint16", writable=True),
            ModbusTag(name="f32", table="holding", address=30, type="float32", byte_order="CDAB", writable=True),
            ModbusTag(name="scaled", table="holding", address=40, type="int16", scale=0.1, writable=True)]
    src = source(peer, tags, single_write_functions=single)
    sink = MemorySink()
    async with running(src.run(sink), ready=lambda: src.status.connected):
        await src.write("coil", True)
        assert await peer.next_logged() == {"written": "coil", "fc": 5 if single else 15, "address": 2, "values": [True]}
        await src.write("u16", 65535)
        assert await peer.next_logged() == {"written": "holding", "fc": 6 if single else 16, "address": 20,
                                            "values": [65535]}
        await src.write("f32", 123.456)
        written = await peer.next_logged()
        want = (await peer.command({"put": "holding", "address": 100, "type": "float32", "order": "CDAB",
                                    "value": 123.456}))["registers"]
        assert written == {"written": "holding", "fc": 16, "address": 30, "values": want}
        await src.write("scaled", 23.4)
        assert await peer.next_logged() == {"written": "holding", "fc": 6 if single else 16, "address": 40,
                                            "values": [234]}
        await sink.wait_for(lambda s: latest(s, "f32") is not None and latest(s, "f32").value == 123.456)
        await sink.wait_for(lambda s: latest(s, "scaled") is not None and latest(s, "scaled").value == 23.4)
        # out of range for the register: refused before the device, with the limit named
        with pytest.raises(InvalidValueError, match="70000.*uint16"):
            await src.write("u16", 70000)
    assert not any(e.get("written") and e["address"] == 20 and e["values"] == [70000 & 0xFFFF] for e in peer.log)
