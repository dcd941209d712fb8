"""The OPC UA source against node-opcua (a server no one here wrote), started by the suite itself.

Values and source timestamps are asserted exactly against what the node-opcua process logged.
The subscription tests fail on a gateway that monitors the RegisterNodes aliases: Part 4 makes
those valid for Read/Write only, and node-opcua answers BadNodeIdUnknown for them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import msgspec
import pytest
import pytest_asyncio

from gateway.opcua import OpcUaSource, OpcUaSourceConfig, OpcUaTag, browse
from gateway.testing import MemorySink
from historian.samples import Quality, to_us
from tests.gateway.interop.peers import NodePeer, free_port
from tests.support import running, wait_until

USER, PASSWORD = "integrator", "n0de-opcua"

# tag name -> (node-opcua variable, our data_type, value the peer is told to set, value we must store)
TYPES: dict[str, tuple[str, str, Any, Any]] = {
    "temp": ("Press1.Temperature", "float", 20.25, 20.25),
    "pressure": ("Press1.Pressure", "float", 123.456, 123.456),  # a Float: its shortest round-trip decimal
    "count": ("Press1.Count", "int", -42, -42),
    "running": ("Press1.Running", "bool", True, True),
    "recipe": ("Press1.Recipe", "text", "B-7", "B-7"),
    "setpoint": ("Press1.Setpoint", "int", 65535, 65535),
    "offset": ("Press2.Offset", "int", -300, -300),
    "total": ("Press2.Total", "int", 4_000_000_000, 4_000_000_000),
    "level": ("Press2.Level", "int", 200, 200),
}


async def start_peer(port: int, *extra: str) -> NodePeer:
    """A node-opcua server on the port."""
    return await NodePeer("opcua_server.js", f"--port={port}", *extra).start()


@pytest_asyncio.fixture(loop_scope="session")
async def peer() -> AsyncIterator[NodePeer]:
    """A fresh node-opcua server per test (each test may restart or reconfigure it)."""
    p = await start_peer(free_port())
    yield p
    await p.stop()


def endpoint(peer: NodePeer) -> str:
    """The peer's endpoint URL, from its READY line."""
    port = peer.ready_line.split()[1]
    return f"opc.tcp://127.0.0.1:{port}/shopfloor"


def config(peer: NodePeer, tags: dict[str, tuple[str, str, Any, Any]] = TYPES, **options: Any) -> OpcUaSourceConfig:
    """A source with short intervals over the given tags."""
    settings: dict[str, Any] = dict(
        name="node-opcua", endpoint=endpoint(peer), publishing_interval=0.05, poll_interval=0.05,
        stall_timeout=2.0, reconnect_min=0.1, reconnect_max=1.0, timeout=3.0,
    )  # fmt: skip
    settings.update(options)
    opc = [OpcUaTag(name=n, node_id=f"ns=1;s={var}", data_type=dt, writable=True) for n, (var, dt, _, _) in tags.items()]
    return OpcUaSourceConfig(tags=opc, **settings)


def stamp(i: int) -> datetime:
    """Distinct millisecond source timestamps (node-opcua keeps ms plus picoseconds)."""
    return datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc) + timedelta(milliseconds=37 * i + 1)


async def set_all(peer: NodePeer, offset: int = 0) -> dict[str, dict[str, Any]]:
    """Set every variable with its own source timestamp; the peer's log lines, by tag."""
    logged = {}
    for i, (name, (var, _, value, _)) in enumerate(TYPES.items()):
        ts = stamp(i + offset).isoformat().replace("+00:00", "Z")
        logged[name] = await peer.command({"set": var, "value": value, "ts": ts})
        assert logged[name]["set"] == var and logged[name]["status"] == "Good"
    return logged


def us(ts: datetime | int) -> int:
    """A reading's timestamp in µs, whether the source gave a datetime or µs."""
    return ts if isinstance(ts, int) else to_us(ts)


def has(sink: MemorySink, tag: str, ts_us: int) -> bool:
    """Whether the sink has a reading of the tag stamped ts_us."""
    return any(r.tag == tag and r.source_ts is not None and us(r.source_ts) == ts_us for r in sink.readings)


async def assert_exact(sink: MemorySink, logged: dict[str, dict[str, Any]]) -> None:
    """Every logged value arrives with the peer's source timestamp, value and Good quality."""
    want = {name: to_us(datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))) for name, entry in logged.items()}
    await sink.wait_for(lambda s: all(has(s, name, ts) for name, ts in want.items()), timeout=15)
    for name, ts in want.items():
        (reading,) = [r for r in sink.readings if r.tag == name and r.source_ts and us(r.source_ts) == ts]
        assert reading.quality == Quality.GOOD, name
        assert reading.value == TYPES[name][3] and type(reading.value) is type(TYPES[name][3]), (name, reading)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_type_arrives_exactly_as_the_peer_logged_it(peer: NodePeer, mode: str) -> None:
    source = OpcUaSource(config(peer, mode=mode))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        logged = await set_all(peer)
        await assert_exact(sink, logged)
        assert source.status.tag_errors == {}
        assert source.status.tags_live == len(TYPES)
    assert sink.dead_letters == []


async def test_subscription_monitors_real_node_ids_and_reports_each_refused_tag(peer: NodePeer) -> None:
    tags = {**TYPES, "ghost": ("Press9.Nothing", "float", 0, 0), "ghost2": ("Press9.Else", "int", 0, 0)}
    source = OpcUaSource(config(peer, tags))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        await wait_until(lambda: len(source.status.tag_errors) == 2, what="both unknown tags reported")
        logged = await set_all(peer, offset=100)
        await assert_exact(sink, logged)
    errors = source.status.tag_errors
    assert set(errors) == {"ghost", "ghost2"}
    assert "BadNodeIdUnknown" in errors["ghost"] and "ns=1;s=Press9.Nothing" in errors["ghost"]
    assert source.status.tags_live == len(TYPES)
    assert [r.quality for r in sink.readings if r.tag == "ghost"][0] == Quality.BAD_CONFIG_ERROR


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_bad_status_from_the_peer_is_a_bad_reading_and_a_failed_tag(peer: NodePeer, mode: str) -> None:
    source = OpcUaSource(config(peer, {"temp": TYPES["temp"]}, mode=mode))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        ts = "2026-03-01T09:00:00.500Z"
        logged = await peer.command({"set": "Press1.Temperature", "value": 1.0, "ts": ts, "status": "BadSensorFailure"})
        assert logged["status"] == "BadSensorFailure"
        want = to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))
        await sink.wait_for(lambda s: has(s, "temp", want))
        (bad,) = [r for r in sink.readings if r.tag == "temp" and r.source_ts and us(r.source_ts) == want]
        assert (bad.value, bad.quality) == (None, Quality.BAD_SENSOR_FAILURE)
        assert "BadSensorFailure" in source.status.tag_errors["temp"]
        ts2 = "2026-03-01T09:00:01.500Z"
        await peer.command({"set": "Press1.Temperature", "value": 2.5, "ts": ts2})
        await sink.wait_for(lambda s: has(s, "temp", to_us(datetime.fromisoformat(ts2.replace("Z", "+00:00")))))
        assert source.status.tag_errors == {}


async def test_the_source_recovers_when_the_peer_restarts_and_clears_its_error(peer: NodePeer) -> None:
    port = int(peer.ready_line.split()[1])
    source = OpcUaSource(config(peer, {"temp": TYPES["temp"]}))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        await peer.stop()
        await wait_until(lambda: not source.status.connected and source.status.last_error, what="the loss noticed")
        restarted = await start_peer(port)
        try:
            await wait_until(lambda: source.status.connected, timeout=20, what="reconnected")
            ts = "2026-03-01T10:00:00.250Z"
            await restarted.command({"set": "Press1.Temperature", "value": 77.5, "ts": ts})
            await sink.wait_for(lambda s: has(s, "temp", to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))))
            assert source.status.last_error == "" and source.status.reconnects_total >= 1
            assert Quality.BAD_NOT_CONNECTED in [r.quality for r in sink.readings if r.tag == "temp"]
        finally:
            await restarted.stop()


async def test_write_back_reaches_the_peer(peer: NodePeer) -> None:
    source = OpcUaSource(config(peer, {"setpoint": TYPES["setpoint"], "temp": TYPES["temp"]}))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        await source.write("setpoint", 1234)
        assert await peer.next_logged() == {"written": "Press1.Setpoint", "value": 1234}
        await source.write("temp", 12.75)
        assert await peer.next_logged() == {"written": "Press1.Temperature", "value": 12.75}


async def test_basic256sha256_with_username(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    secure = await start_peer(port, "--secure=1", f"--user={USER}", f"--password={PASSWORD}", f"--pki={tmp_path / 'srv'}")
    try:
        cfg = config(secure, {"temp": TYPES["temp"]}, security_policy="Basic256Sha256", security_mode="SignAndEncrypt",
                     username=USER, password=PASSWORD, pki_dir=str(tmp_path / "client"))
        source = OpcUaSource(cfg)
        sink = MemorySink()
        async with running(source.run(sink), ready=lambda: source.status.connected, timeout=30):
            ts = "2026-03-01T11:00:00.125Z"
            await secure.command({"set": "Press1.Temperature", "value": -5.5, "ts": ts})
            await sink.wait_for(lambda s: has(s, "temp", to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))))
        wrong = OpcUaSource(msgspec_replace(cfg, password="wrong"))
        async with running(wrong.run(MemorySink())):
            await wait_until(lambda: "BadUserAccessDenied" in wrong.status.last_error
                             or "BadIdentityToken" in wrong.status.last_error, timeout=20, what="login refused")
    finally:
        await secure.stop()


def msgspec_replace(cfg: OpcUaSourceConfig, **changes: Any) -> OpcUaSourceConfig:
    """A copy of a config with some fields changed."""
    return msgspec.structs.replace(cfg, **changes)


URI = "urn:shopfloor:interop:presses"


def namespace_index(peer: NodePeer) -> int:
    """The index the peer gave its variables' namespace, from its READY line."""
    return int(peer.ready_line.split("ns=")[1].split()[0])


async def test_browse_writes_nsu_ids_that_survive_a_restart_renumbering_the_namespace() -> None:
    port = free_port()
    first = await start_peer(port, f"--uri={URI}", "--extra-ns=0")
    before = namespace_index(first)
    restarted: NodePeer | None = None
    try:
        found = await browse(endpoint(first), "Press1/Temperature")
        assert [t["node_id"] for t in found] == [f"nsu={URI};s=Press1.Temperature"]
        assert found[0]["data_type"] == "float"
        # browse -> config -> data; beside it, the same variable by index, and a namespace the server lacks
        tags = msgspec.convert(found, list[OpcUaTag]) + [
            OpcUaTag(name="by_index", node_id=f"ns={before};s=Press1.Temperature", data_type="float"),
            OpcUaTag(name="elsewhere", node_id="nsu=urn:not:here;s=Press1.Temperature", data_type="float"),
        ]
        source = OpcUaSource(msgspec_replace(config(first, {}), tags=tags))
        sink = MemorySink()
        name = found[0]["name"]
        async with running(source.run(sink), ready=lambda: source.status.connected):
            ts = "2026-03-01T12:00:00.125Z"
            await first.command({"set": "Press1.Temperature", "value": 30.5, "ts": ts})
            await sink.wait_for(lambda s: has(s, name, to_us(datetime.fromisoformat(ts.replace("Z", "+00:00"))))
                                and has(s, "by_index", to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))))
            assert "urn:not:here" in source.status.tag_errors["elsewhere"]
            assert "NamespaceArray" in source.status.tag_errors["elsewhere"]

            await first.stop()
            await wait_until(lambda: not source.status.connected, what="the loss noticed")
            restarted = await start_peer(port, f"--uri={URI}", "--extra-ns=3")
            assert namespace_index(restarted) != before  # same URI, another index
            await wait_until(lambda: source.status.connected, timeout=20, what="reconnected")
            ts = "2026-03-01T12:00:01.250Z"
            await restarted.command({"set": "Press1.Temperature", "value": 31.75, "ts": ts})
            want = to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))
            await sink.wait_for(lambda s: has(s, name, want))
            await wait_until(lambda: "by_index" in source.status.tag_errors, what="the index-bound tag refused")
        (reading,) = [r for r in sink.readings if r.tag == name and r.source_ts and us(r.source_ts) == want]
        assert (reading.value, reading.quality) == (31.75, Quality.GOOD)
        # the id bound to the old index now names nothing (or something else): why browse writes nsu=
        assert not has(sink, "by_index", want)
        assert "BadNodeIdUnknown" in source.status.tag_errors["by_index"]
    finally:
        await first.stop()
        if restarted is not None:
            await restarted.stop()


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_array_variables_browse_to_one_tag_per_element_read_with_an_index_range(
    peer: NodePeer, mode: str
) -> None:
    found = {t["name"]: t for t in await browse(endpoint(peer), "Press2/*")}
    assert [found[f"press2.profile_{i}"]["index"] for i in range(4)] == [0, 1, 2, 3]
    assert found["press2.profile_2"]["description"] == "Press2/Profile[2]"
    assert found["press2.counts_1"]["data_type"] == "int" and "press2.counts_3" not in found
    assert "index" not in found["press2.speed"]
    elements = [t for n, t in found.items() if "profile" in n or "counts" in n]
    source = OpcUaSource(msgspec_replace(config(peer, {}, mode=mode), tags=msgspec.convert(elements, list[OpcUaTag])))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        ts = "2026-03-01T13:00:00.125Z"
        logged = await peer.command({"set": "Press2.Profile", "value": [10.5, -1.25, 3.0, 8.0], "ts": ts})
        assert logged["value"] == [10.5, -1.25, 3.0, 8.0]
        at = to_us(datetime.fromisoformat(ts.replace("Z", "+00:00")))
        await sink.wait_for(lambda s: all(has(s, f"press2.profile_{i}", at) for i in range(4)))
        ts2 = "2026-03-01T13:00:01.125Z"
        await peer.command({"set": "Press2.Counts", "value": [7, 65535, 0], "ts": ts2})
        at2 = to_us(datetime.fromisoformat(ts2.replace("Z", "+00:00")))
        # element 2 stays 0: a monitored item with an IndexRange reports changes of its element only,
        # a poll sees the new source timestamp
        changed = range(2) if mode == "subscribe" else range(3)
        await sink.wait_for(lambda s: all(has(s, f"press2.counts_{i}", at2) for i in changed))
        assert source.status.tag_errors == {} and source.status.tags_live == 7
    got = {r.tag: r.value for r in sink.readings if r.source_ts and us(r.source_ts) in (at, at2)}
    want = {"press2.profile_0": 10.5, "press2.profile_1": -1.25, "press2.profile_2": 3.0,
            "press2.profile_3": 8.0, "press2.counts_0": 7, "press2.counts_1": 65535}
    assert got == (want if mode == "subscribe" else want | {"press2.counts_2": 0})
    assert sink.dead_letters == []


async def test_an_array_without_index_is_dead_lettered_saying_what_to_set(peer: NodePeer) -> None:
    source = OpcUaSource(config(peer, {"profile": ("Press2.Profile", "float", None, None)}))
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        await sink.wait_for(lambda s: len(s.dead_letters) == 1)
    reason, payload = sink.dead_letters[0]
    assert reason == "profile: an array of 4: set `index` to read one element per tag"
    assert payload["node_id"] == "ns=1;s=Press2.Profile"


async def test_tags_inherit_the_sources_queue_size_and_deadband(peer: NodePeer) -> None:
    # source-level defaults: every numeric tag gets a queue of 10 and an absolute deadband of 1.0
    cfg = config(peer, {"temp": TYPES["temp"], "recipe": TYPES["recipe"]}, sampling_interval=0.0, queue_size=10,
                 deadband_type="absolute", deadband_value=1.0)  # fmt: skip
    temp, recipe = cfg.tags
    assert (temp.queue_size, temp.deadband_type, temp.deadband_value, temp.sampling_interval) == (10, "absolute", 1.0, 0.0)
    assert (recipe.queue_size, recipe.deadband_type) == (10, "none")  # no deadband on text
    source = OpcUaSource(cfg)
    sink = MemorySink()
    async with running(source.run(sink), ready=lambda: source.status.connected):
        await sink.wait_for(lambda s: s.values("temp") == [20.0])
        stamps = [to_us(stamp(500 + i)) for i in range(5)]

        async def put(i: int, value: float) -> None:
            ts = stamp(500 + i).isoformat().replace("+00:00", "Z")
            await peer.command({"set": "Press1.Temperature", "value": value, "ts": ts})

        await put(0, 30.0)
        await sink.wait_for(lambda s: s.values("temp")[-1] == 30.0)
        await put(1, 30.5)  # inside the inherited deadband of the last reported 30.0: the server keeps it back
        await peer.command({"set": "Press1.Recipe", "value": "Y"})  # a later change of the same subscription
        await sink.wait_for(lambda s: s.values("recipe")[-1:] == ["Y"])
        assert sink.values("temp")[-1] == 30.0
        await put(2, 32.0)
        await sink.wait_for(lambda s: s.values("temp")[-1] == 32.0)
        await put(3, 32.25)
        await put(4, 40.0)
        await peer.command({"set": "Press1.Recipe", "value": "Z-1"})
        await sink.wait_for(lambda s: s.values("temp")[-1:] == [40.0] and s.values("recipe")[-1:] == ["Z-1"])
        assert source.status.last_error == "" and source.status.tag_errors == {}
    later = [(r.value, us(r.source_ts)) for r in sink.readings if r.tag == "temp" and r.value != 20.0]
    assert later == [(30.0, stamps[0]), (32.0, stamps[2]), (40.0, stamps[4])]
