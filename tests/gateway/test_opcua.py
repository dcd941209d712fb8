"""The OPC UA source against the simulated plant's real asyncua server, over sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import msgspec
import pytest
import pytest_asyncio

from gateway.opcua import OpcUaSource, OpcUaSourceConfig, OpcUaTag, browse, browse_to_toml
from gateway.source import NotWritableError, WriteError
from gateway.testing import MemorySink
from historian.samples import Quality, from_us
from plant.opcua_server import NAMESPACE as PLANT_NAMESPACE
from plant.opcua_server import OpcUaPlant

README = Path(__file__).resolve().parents[2] / "gateway" / "opcua" / "README.md"
USER, PASSWORD = "operator", "s3cret"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plant() -> AsyncIterator[OpcUaPlant]:
    """One plant for the tests that do not restart it; each test uses its own signals."""
    async with OpcUaPlant(machines=["press1", "press2"], users={USER: PASSWORD}) as p:
        yield p


def config(plant: OpcUaPlant, tags: list[tuple[str, str, str]], **options: Any) -> OpcUaSourceConfig:
    """A source with short intervals; tags are (name, "machine.Signal", data_type)."""
    settings: dict[str, Any] = dict(
        name="plant", endpoint=plant.endpoint, publishing_interval=0.05, poll_interval=0.05,
        stall_timeout=1.0, reconnect_min=0.1, reconnect_max=0.5, timeout=2.0,
    )  # fmt: skip
    settings.update(options)
    opc_tags = []
    for name, signal, data_type, *extra in tags:
        machine, _, sig = signal.partition(".")
        opc_tags.append(OpcUaTag(name=name, node_id=plant.node_id(machine, sig), data_type=data_type, **(extra[0] if extra else {})))
    return OpcUaSourceConfig(tags=opc_tags, **settings)


@asynccontextmanager
async def running(source: OpcUaSource, sink: MemorySink) -> AsyncIterator[asyncio.Task[None]]:
    """The source's run() as a task, cancelled (and awaited) on exit."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition on state the sink does not see (source status, the plant's values)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def last(sink: MemorySink, tag: str):  # type: ignore[no-untyped-def]
    """The newest reading of a tag, or None."""
    found = [r for r in sink.readings if r.tag == tag]
    return found[-1] if found else None


async def test_subscription_delivers_values_with_source_timestamps_and_good_quality(plant: OpcUaPlant) -> None:
    await plant.set("press1", "Temperature", 61.5)
    await plant.set("press1", "GoodCount", 7)
    await plant.set("press1", "State", "Running")
    source = OpcUaSource(config(plant, [("t", "press1.Temperature", "float"), ("n", "press1.GoodCount", "int"), ("s", "press1.State", "text")]))
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("t") == [61.5] and s.values("n") == [7] and s.values("s") == ["Running"])
        reading = last(sink, "t")
        assert reading.quality == Quality.GOOD
        # the device's time, as µs since the epoch once it is through the outbox
        assert reading.source_ts is not None and abs(from_us(reading.source_ts) - datetime.now(timezone.utc)) < timedelta(seconds=30)
        before = datetime.now(timezone.utc)
        await plant.set("press1", "Temperature", 20.3)  # a Float: arrives as 20.3, not 20.299999237...
        await sink.wait_for(lambda s: s.values("t")[-1:] == [20.3])
        assert from_us(last(sink, "t").source_ts) >= before - timedelta(seconds=1)
        assert isinstance(last(sink, "n").value, int)
    assert source.status.connected is False
    assert source.status.readings_total == len(sink.readings)


async def test_deadband_filter_suppresses_small_changes(plant: OpcUaPlant) -> None:
    await plant.set("press2", "Vibration", 5.0)
    deadband = {"deadband_type": "absolute", "deadband_value": 1.0}
    source = OpcUaSource(config(plant, [("v", "press2.Vibration", "float", deadband), ("e", "press2.EnergyKWh", "float")]))
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("v") == [5.0] and len(s.values("e")) == 1)
        await plant.set("press2", "Vibration", 5.5)  # inside the deadband
        await plant.set("press2", "EnergyKWh", 1.25)  # no deadband: its change arrives
        await sink.wait_for(lambda s: 1.25 in s.values("e"))
        await plant.set("press2", "Vibration", 7.0)
        await sink.wait_for(lambda s: 7.0 in s.values("v"))
    assert sink.values("v") == [5.0, 7.0]


async def test_poll_mode_reads_every_tag_and_skips_unchanged_values(plant: OpcUaPlant) -> None:
    await plant.set("press2", "Speed", 100.0)
    await plant.set("press2", "CurrentLot", "LOT-1")
    source = OpcUaSource(config(plant, [("speed", "press2.Speed", "float"), ("lot", "press2.CurrentLot", "text")], mode="poll"))
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("speed") == [100.0] and s.values("lot") == ["LOT-1"])
        await plant.set("press2", "Speed", 120.0)
        await sink.wait_for(lambda s: 120.0 in s.values("speed"))
        await plant.set("press2", "Speed", 121.0)
        await sink.wait_for(lambda s: 121.0 in s.values("speed"))
    # several polls ran; the lot kept its value and its timestamp, so it was published once
    assert sink.values("lot") == ["LOT-1"]
    assert sink.values("speed") == [100.0, 120.0, 121.0]
    assert last(sink, "speed").source_ts is not None


async def test_a_bad_node_gives_bad_quality_and_the_others_keep_flowing(plant: OpcUaPlant) -> None:
    await plant.set("press1", "Vibration", 1.5)
    await plant.set("press1", "Speed", 10.0)
    source = OpcUaSource(config(plant, [("vib", "press1.Vibration", "float"), ("speed", "press1.Speed", "float")]))
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("vib") == [1.5] and s.values("speed") == [10.0])
        await plant.set_bad("press1", "Vibration")
        await sink.wait_for(lambda s: last(s, "vib").quality == Quality.BAD_SENSOR_FAILURE)
        assert last(sink, "vib").value is None
        await plant.set("press1", "Speed", 11.0)
        await sink.wait_for(lambda s: 11.0 in s.values("speed"))
        await plant.set("press1", "Vibration", 1.7)
        await sink.wait_for(lambda s: last(s, "vib").value == 1.7 and last(s, "vib").quality == Quality.GOOD)
    assert source.status.connected is False


async def test_a_node_the_server_does_not_have_is_bad_and_the_others_flow(plant: OpcUaPlant) -> None:
    cfg = config(plant, [("temp", "press2.Temperature", "float")])
    cfg.tags.append(OpcUaTag(name="ghost", node_id="ns=2;s=press9.Nothing"))
    source = OpcUaSource(cfg)
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("temp") and last(s, "ghost") is not None)
    assert last(sink, "ghost").quality == Quality.BAD_CONFIG_ERROR
    assert "ghost" in source.status.last_error and "BadNodeIdUnknown" in source.status.last_error


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_server_restart_under_a_running_source_recovers_by_itself(mode: str) -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        await plant.set("press1", "Temperature", 50.0)
        source = OpcUaSource(config(plant, [("t", "press1.Temperature", "float")], mode=mode))
        sink = MemorySink()
        async with running(source, sink) as task:
            await sink.wait_for(lambda s: s.values("t") == [50.0])
            assert source.status.connected and source.status.reconnects_total == 0
            await plant.stop()
            await sink.wait_for(lambda s: last(s, "t").quality == Quality.BAD_NOT_CONNECTED)
            assert not source.status.connected and source.status.last_error
            await plant.start()
            # the unchanged value comes back good after the gap, with no manual step
            await sink.wait_for(lambda s: last(s, "t").quality == Quality.GOOD, timeout=20)
            assert sink.values("t") == [50.0, None, 50.0]
            await plant.set("press1", "Temperature", 56.0)
            await sink.wait_for(lambda s: 56.0 in s.values("t"))
            assert source.status.connected and source.status.reconnects_total == 1
            assert not task.done()


async def test_a_stalled_subscription_is_recreated_on_the_same_session(plant: OpcUaPlant) -> None:
    await plant.set("press2", "ScrapCount", 1)
    source = OpcUaSource(config(plant, [("scrap", "press2.ScrapCount", "int")]))
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("scrap") == [1])
        assert await plant.drop_subscriptions() >= 1  # the server forgets it; the session stays up
        await eventually(lambda: source.stalls_total == 1)
        await plant.set("press2", "ScrapCount", 2)
        await sink.wait_for(lambda s: 2 in s.values("scrap"))
    assert "stalled" in source.status.last_error
    assert source.status.reconnects_total == 0


async def test_basic256sha256_sign_and_encrypt_with_a_user_connects_and_reads(plant: OpcUaPlant, tmp_path: Path) -> None:
    await plant.set("press2", "OperatorBadge", "B-0042")
    cfg = config(
        plant, [("badge", "press2.OperatorBadge", "text")],
        security_policy="Basic256Sha256", security_mode="SignAndEncrypt",
        username=USER, password=PASSWORD, pki_dir=str(tmp_path / "pki"),
    )  # fmt: skip
    source = OpcUaSource(cfg)
    sink = MemorySink()
    async with running(source, sink):
        await sink.wait_for(lambda s: s.values("badge") == ["B-0042"])
    cert, key = cfg.certificate_paths()
    assert cert.is_file() and key.is_file() and cert.parent == tmp_path / "pki"


async def test_a_wrong_password_is_reported_and_retried_without_crashing(plant: OpcUaPlant, tmp_path: Path) -> None:
    cfg = config(plant, [("badge", "press2.OperatorBadge", "text")], username=USER, password="wrong")
    source = OpcUaSource(cfg)
    async with running(source, MemorySink()) as task:
        await eventually(lambda: "BadUserAccessDenied" in source.status.last_error)
        assert "password" in source.status.last_error and USER in source.status.last_error
        first = source.status.last_error_at
        await eventually(lambda: source.status.last_error_at != first)  # it tried again
        assert not task.done() and not source.status.connected


async def test_write_back_to_writable_nodes_and_refusals(plant: OpcUaPlant) -> None:
    await plant.set("press1", "SpeedSetpoint", 0.0)
    await plant.set("press1", "Recipe", "R-1")
    await plant.set("press1", "ScrapCount", 3)
    writable = {"writable": True}
    source = OpcUaSource(
        config(
            plant,
            [
                ("sp", "press1.SpeedSetpoint", "float", writable),
                ("recipe", "press1.Recipe", "text", writable),
                ("temp", "press1.Temperature", "float"),
                ("scrap", "press1.ScrapCount", "int", writable),  # writable here, read-only at the server
            ],
        )
    )
    temperature = await plant.get("press1", "Temperature")
    with pytest.raises(WriteError, match="sp: not connected"):
        await source.write("sp", 1.0)
    sink = MemorySink()
    async with running(source, sink):
        await eventually(lambda: source.status.connected)
        await source.write("sp", 42.5)
        assert await plant.get("press1", "SpeedSetpoint") == 42.5
        await source.write("sp", 40)  # an int goes as the node's Float
        assert await plant.get("press1", "SpeedSetpoint") == 40.0
        await source.write("recipe", "R-17")
        assert await plant.get("press1", "Recipe") == "R-17"
        await sink.wait_for(lambda s: "R-17" in s.values("recipe"))

        with pytest.raises(NotWritableError, match="temp"):
            await source.write("temp", 99.0)
        with pytest.raises(NotWritableError, match="nosuch"):
            await source.write("nosuch", 1)
        with pytest.raises(WriteError, match="sp: .*does not fit"):
            await source.write("sp", "fast")
        with pytest.raises(WriteError, match=r"scrap: the server refused the write \(Bad"):
            await source.write("scrap", 9)
    assert await plant.get("press1", "Temperature") == temperature
    assert await plant.get("press1", "ScrapCount") == 3
    assert await plant.get("press1", "SpeedSetpoint") == 40.0


def nsu(plant: OpcUaPlant, machine: str, signal: str) -> str:
    """What browse writes for a plant variable: its namespace by URI, not by index."""
    return plant.node_id(machine, signal).replace(f"ns={plant.namespace_index};", f"nsu={PLANT_NAMESPACE};")


async def test_browse_finds_the_plant_and_renders_toml_that_loads(plant: OpcUaPlant) -> None:
    found = await browse(plant.endpoint, "Plant/press1/*")
    by_name = {t["name"]: t for t in found}
    assert len(found) == 11 + 2 + 24  # the 4M1E signals, StateCode, CyclesSinceRenewal, 3 settings + 21 sensors
    assert by_name["press1.s4"]["data_type"] == "float"
    assert by_name["press1.temperature"] == {
        "name": "press1.temperature", "node_id": nsu(plant, "press1", "Temperature"), "data_type": "float",
        "unit": "°C", "machine": "press1", "category": "machine", "description": "Plant/press1/Temperature",
    }  # fmt: skip
    assert by_name["press1.goodcount"]["data_type"] == "int"
    assert by_name["press1.operatorbadge"]["category"] == "man"
    assert by_name["press1.currentlot"]["category"] == "material"
    assert by_name["press1.energykwh"]["category"] == "energy"

    both = await browse(plant.endpoint, "re:/Temperature$")
    assert sorted(t["node_id"] for t in both) == [nsu(plant, m, "Temperature") for m in ("press1", "press2")]

    text = await browse_to_toml(plant.endpoint, "Plant/*/Recipe")
    tags = tomllib.loads(text)["gateway"]["sources"]["tags"]
    assert [t["node_id"] for t in tags] == [nsu(plant, "press1", "Recipe"), nsu(plant, "press2", "Recipe")]
    for t in msgspec.convert(tags, list[OpcUaTag]):
        assert t.category == "method" and t.data_type == "text"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"endpoint": "http://127.0.0.1:4840"}, "endpoint"),
        ({"mode": "push"}, "mode"),
        ({"security_policy": "Basic256Sha256"}, "security_mode"),
        ({"security_policy": "Basic128"}, "security_policy"),
        ({"password": "x"}, "username"),
        ({"stall_timeout": 1.0, "publishing_interval": 1.0}, "stall_timeout"),
        ({"reconnect_min": 5.0, "reconnect_max": 1.0}, "reconnect_max"),
        ({"publish_interval": 1.0}, "publish_interval"),
        ({"tags": [{"name": "a", "node_id": "not a node id"}]}, "node_id"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "deadband_type": "relative"}]}, "deadband_type"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "deadband_value": 1.0}]}, "deadband_value"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "queue_size": 0}]}, "queue_size"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "index": -1}]}, "index"),
        ({"queue_size": 0}, "queue_size"),
        ({"deadband_type": "relative"}, "deadband_type"),
        ({"deadband_value": 1.0}, "deadband_value"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "index": 2, "writable": True}]}, "index"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x", "data_type": "text", "deadband_type": "absolute"}]}, "deadband_type"),
        ({"tags": [{"name": "a", "node_id": "ns=2;s=x"}, {"name": "a", "node_id": "ns=2;s=y"}]}, "tags"),
        ({"tags": [{"name": "a"}]}, "node_id"),
    ],
)
def test_config_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    data = {"type": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840", **change}
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.convert(data, OpcUaSourceConfig)
    assert re.search(rf"(^|`){field}(:|`)", str(e.value)), str(e.value)


def test_the_readme_sample_config_is_valid() -> None:
    sample = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert sample, "gateway/opcua/README.md has no ```toml block"
    sources = tomllib.loads(sample.group(1))["gateway"]["sources"]
    configs = msgspec.convert(sources, list[OpcUaSourceConfig])
    assert configs[0].tags and configs[0].endpoint.startswith("opc.tcp://")
