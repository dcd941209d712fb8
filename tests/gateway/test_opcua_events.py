"""OPC UA events and Alarms & Conditions from a real asyncua server: the events table and the alarm journal."""

from __future__ import annotations

import asyncio
import json
import os
import re
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest
from asyncua import Server, ua

from gateway.config import GatewayConfig
from gateway.opcua import OpcUaSource, OpcUaSourceConfig
from gateway.service import Gateway
from gateway.testing import MemorySink
from historian.config import HistorianConfig
from historian.samples import to_us
from plant.opcua_server import NAMESPACE as PLANT_NAMESPACE
from plant.opcua_server import OpcUaPlant
from tests.gateway.interop.peers import Peer, free_port, node_modules
from tests.support import wait_for_sql, wait_until

T0 = datetime(2026, 3, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)


def server_of(plant: OpcUaPlant) -> Server:
    """The plant's running asyncua server (the plant has no event API; its server has)."""
    assert plant._server is not None, "the plant is not running"
    return plant._server


async def enable_condition_refresh(plant: OpcUaPlant) -> None:
    """Bind ConditionRefresh on the plant's server (asyncua leaves Part 9's methods unbound unless asked)."""
    await server_of(plant).iserver.setup_condition_methods()


async def emit(plant: OpcUaPlant, ts: datetime, message: str, *, source: str = "press1", severity: int = 300) -> None:
    """A plain BaseEventType event from the Server object."""
    gen = await server_of(plant).get_event_generator()
    gen.event.SourceName = source
    gen.event.Severity = severity
    await gen.trigger(ts, message)


async def condition(
    plant: OpcUaPlant, ts: datetime, *, name: str = "OverTemp", source: str = "press1", active: bool, acked: bool,
    severity: int = 800, message: str = "", retain: bool = True,
) -> None:
    """An AlarmConditionType event of one condition (its node id is the same every time, as a server's is)."""
    gen = await server_of(plant).get_event_generator(ua.ObjectIds.AlarmConditionType)
    ev = gen.event
    ev.NodeId = ua.NodeId(f"{source}.{name}", 2)
    ev.ConditionName, ev.SourceName, ev.Severity, ev.Retain = name, source, severity, retain
    setattr(ev, "ActiveState/Id", active)
    setattr(ev, "AckedState/Id", acked)
    ev.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
    ev.AckedState = ua.LocalizedText("Acknowledged" if acked else "Unacknowledged")
    await gen.trigger(ts, message or f"{name} {'active' if active else 'inactive'}")


def source_config(plant: OpcUaPlant, events: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """An OPC UA source (TOML shape) with short intervals, one tag and the given notifiers."""
    return {
        "type": "opcua", "name": "plant", "endpoint": plant.endpoint, "publishing_interval": 0.05,
        "poll_interval": 0.05, "stall_timeout": 1.0, "reconnect_min": 0.1, "reconnect_max": 0.5, "timeout": 2.0,
        "tags": [{"name": "press1.temp", "node_id": plant.node_id("press1", "Temperature"), "machine": "press1"}],
        "events": events, **options,
    }  # fmt: skip


@asynccontextmanager
async def running(source: OpcUaSource, sink: MemorySink) -> AsyncIterator[None]:
    """The source's run() as a task, cancelled on exit."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def events_of(sink: MemorySink, tag: str) -> list[tuple[int, dict[str, Any]]]:
    """(ts µs, fields) of every event stored under a tag."""
    return [(r.source_ts, json.loads(r.value)) for r in sink.readings if r.tag == tag]  # type: ignore[misc]


async def subscribed(source: OpcUaSource, plant: OpcUaPlant) -> None:
    """Wait until the source's event item exists on the server (an event before that is not for us)."""

    def items() -> int:
        subs = server_of(plant).iserver.subscription_service.subscriptions.values()
        return sum(1 for s in subs for m in s.monitored_item_srv._monitored_events)

    await wait_until(lambda: source.status.connected and items() > 0, what="the event item on the server")


async def test_events_and_conditions_land_in_the_events_table_and_the_alarm_journal(conn, dsn, tmp_path: Path) -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        events = [
            {"name": "plant.events", "machine": "press1"},
            # LocalTime is a structure (TimeZoneDataType): no JSON form, so every event here is dead-lettered
            {"name": "plant.localtime", "fields": ["Time", "LocalTime"]},
        ]
        config = msgspec.convert({"spool": {"directory": str(tmp_path / "spool")},
                                  "sources": [source_config(plant, events)]}, GatewayConfig)
        gw = Gateway(config, dsn, HistorianConfig(flush_interval=0.05), tmp_path)
        task = asyncio.create_task(gw.run())
        try:
            await asyncio.wait_for(gw.ready.wait(), 15)
            await subscribed(gw.sources[0], plant)  # type: ignore[arg-type]
            t1, t2, t3, t4 = (T0 + timedelta(seconds=s) for s in (0, 1, 2, 3))
            await emit(plant, t1, "door opened")
            await emit(plant, t1, "door closed", severity=100)  # same Time, another event: kept 1 µs later
            await condition(plant, t2, active=True, acked=False, severity=800, message="oil 92 °C")
            await condition(plant, t3, active=True, acked=True, severity=800, message="oil 92 °C")
            await condition(plant, t4, active=False, acked=True, severity=200, message="oil 70 °C", retain=False)
            await wait_for_sql(conn, "SELECT count(*) FROM events e JOIN tags t ON t.id = e.tag_id "
                                     "WHERE t.name = 'plant.events'", 5)
            cur = await conn.execute("SELECT e.ts, e.value, e.quality FROM events e JOIN tags t ON t.id = e.tag_id "
                                     "WHERE t.name = 'plant.events' ORDER BY e.ts")
            rows = [(ts, json.loads(v), q) for ts, v, q in await cur.fetchall()]
            base = {"EventType": "i=2041", "SourceName": "press1"}
            cond = {"EventType": "i=2915", "SourceName": "press1", "ConditionName": "OverTemp"}
            assert rows == [
                (t1, {**base, "Time": t1.isoformat(), "Severity": 300, "Message": "door opened"}, 192),
                (t1 + timedelta(microseconds=1),
                 {**base, "Time": t1.isoformat(), "Severity": 100, "Message": "door closed"}, 192),
                (t2, {**cond, "Time": t2.isoformat(), "Severity": 800, "Message": "oil 92 °C",
                      "ActiveState": True, "AckedState": False, "Retain": True}, 192),
                (t3, {**cond, "Time": t3.isoformat(), "Severity": 800, "Message": "oil 92 °C",
                      "ActiveState": True, "AckedState": True, "Retain": True}, 192),
                (t4, {**cond, "Time": t4.isoformat(), "Severity": 200, "Message": "oil 70 °C",
                      "ActiveState": False, "AckedState": True, "Retain": False}, 192),
            ]  # fmt: skip
            # the keys in the configured order (the JSON text itself, not only its parse)
            cur = await conn.execute("SELECT e.value FROM events e JOIN tags t ON t.id = e.tag_id "
                                     "WHERE t.name = 'plant.events' AND e.ts = %s", (t2,))
            assert list(json.loads((await cur.fetchone())[0])) == [
                "EventType", "SourceName", "Time", "Severity", "Message", "ConditionName", "ActiveState",
                "AckedState", "Retain"]  # fmt: skip

            await wait_for_sql(conn, "SELECT count(*) FROM alarm_journal", 3)
            cur = await conn.execute(
                "SELECT machine, tag, rule, priority, state, active, ts, last_ts, cleared_ts, points, rules, value, "
                "acked_at, acked_by FROM alarms_named"
            )
            assert await cur.fetchall() == [
                ("press1", "plant.events/press1/OverTemp", "opcua", "high", "normal", False, t2, t4, t4, 2,
                 ["OverTemp"], 800.0, t3, "opcua"),
            ]  # fmt: skip
            cur = await conn.execute("SELECT machine, tag, rule, data_ts, transition, actor, detail "
                                     "FROM alarm_journal_named ORDER BY id")
            tag = "plant.events/press1/OverTemp"
            assert await cur.fetchall() == [
                ("press1", tag, "opcua", t2, "raised", "opcua", "high: oil 92 °C"),
                ("press1", tag, "opcua", t3, "acknowledged", "opcua", "acknowledged on the OPC UA server"),
                ("press1", tag, "opcua", t4, "cleared", "opcua", "oil 70 °C"),
            ]

            # the events that cannot be mapped are dead letters with the reason, one per event
            await wait_for_sql(conn, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'plant.localtime:%'", 5)
            cur = await conn.execute("SELECT source, reason, payload->>'notifier', payload->'fields'->>'Time' "
                                     "FROM dead_letters ORDER BY id LIMIT 1")
            source, reason, notifier, time_repr = await cur.fetchone()
            assert (source, notifier) == ("plant", "i=2253")
            assert reason == "plant.localtime: event not stored: field LocalTime: a TimeZoneDataType has no JSON form here"
            assert time_repr == repr(t1)
            assert await (await conn.execute("SELECT count(*) FROM events e JOIN tags t ON t.id = e.tag_id "
                                             "WHERE t.name = 'plant.localtime'")).fetchone() == (0,)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_replayed_condition_event_journals_once_and_a_condition_without_machine_is_a_dead_letter(conn) -> None:
    """The trigger fires per inserted row: the historian's ON CONFLICT DO NOTHING makes a replay a no-op."""
    await conn.execute("INSERT INTO machines (name) VALUES ('press1')")
    await conn.execute("SELECT sf_ensure_partitions('events', %s::date, %s::date)", (T0.date(), T0.date()))
    await conn.execute("INSERT INTO tags (name, category, data_type, source) VALUES ('opc.events', 'machine', 'text', 'opc')")
    value = json.dumps({"SourceName": "press1", "Severity": 500, "Message": "m", "ConditionName": "Jam",
                        "ActiveState": True, "AckedState": False})
    insert = ("INSERT INTO events (tag_id, ts, value) SELECT id, %s, %s FROM tags WHERE name = 'opc.events' "
              "ON CONFLICT (tag_id, ts) DO NOTHING")
    for _ in range(2):
        await conn.execute(insert, (T0, value))
    cur = await conn.execute("SELECT machine, tag, priority, state FROM alarms_named")
    assert await cur.fetchall() == [("press1", "opc.events/press1/Jam", "medium", "unack_active")]
    assert await (await conn.execute("SELECT count(*) FROM events")).fetchone() == (1,)
    assert await (await conn.execute("SELECT transition, data_ts FROM alarm_journal")).fetchall() == [("raised", T0)]
    # a worse severity band while active escalates; the same band only counts the point
    for dt, severity in ((1, 600), (2, 900)):
        worse = json.dumps({"SourceName": "press1", "Severity": severity, "Message": f"s{severity}",
                            "ConditionName": "Jam", "ActiveState": True, "AckedState": False})
        await conn.execute(insert, (T0 + timedelta(milliseconds=dt), worse))
    cur = await conn.execute("SELECT priority, points, value, last_ts FROM alarms")
    assert await cur.fetchall() == [("high", 3, 900.0, T0 + timedelta(milliseconds=2))]
    cur = await conn.execute("SELECT transition, data_ts, detail FROM alarm_journal ORDER BY id")
    assert await cur.fetchall() == [("raised", T0, "medium: m"),
                                    ("escalated", T0 + timedelta(milliseconds=2), "high: s900")]
    # an unknown SourceName and no machine on the tag: nothing to hang the alarm on, so a dead letter says why
    orphan = json.dumps({"SourceName": "kiln9", "ConditionName": "Hot", "ActiveState": True})
    await conn.execute(insert, (T0 + timedelta(seconds=1), orphan))
    cur = await conn.execute("SELECT source, reason FROM dead_letters")
    assert await cur.fetchall() == [("opc", "opc.events: OPC UA condition 'Hot' has no machine (set machine on the "
                                            "notifier, or name a machine as its SourceName 'kiln9')")]
    # a plain event and a non-JSON text never reach the alarm logic
    await conn.execute(insert, (T0 + timedelta(seconds=2), '{"ConditionName" is not json'))
    cur = await conn.execute("SELECT count(*) FROM dead_letters WHERE reason LIKE 'OPC UA condition event not applied%'")
    assert await cur.fetchone() == (1,)
    assert await (await conn.execute("SELECT count(*) FROM alarms")).fetchone() == (1,)


async def test_events_keep_flowing_across_a_server_restart_and_retained_conditions_are_refreshed() -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        # raised before the gateway connects: ConditionRefresh brings it
        await enable_condition_refresh(plant)
        await condition(plant, T0, name="Jam", active=True, acked=False, severity=500)
        config = msgspec.convert(source_config(plant, [{"name": "ev", "machine": "press1"},
                                                       {"name": "ghost", "notifier": "ns=2;s=nowhere"}]),
                                 OpcUaSourceConfig)
        source = OpcUaSource(config)
        sink = MemorySink()
        async with running(source, sink):
            jams = lambda s: [e for e in events_of(s, "ev") if e[1].get("ConditionName") == "Jam"]  # noqa: E731
            await sink.wait_for(lambda s: jams(s))
            assert events_of(sink, "ev")[0][0] == to_us(T0)
            # a subscription the server dropped is recreated and refreshed: the same event (EventId) again,
            # at the same time, so the events table's (tag, ts) key stores it once
            assert await plant.drop_subscriptions() == 1
            await sink.wait_for(lambda s: len(jams(s)) == 2)
            assert jams(sink)[0] == jams(sink)[1] and source.stalls_total == 1
            # a notifier the server refuses is reported; the other one and the tags go on
            assert re.search(r"ghost: the server refused events of notifier ns=2;s=nowhere \(Bad\w+\)",
                             source.status.last_error) or "ghost" in source.status.recovered_from
            await subscribed(source, plant)
            before = [T0 + timedelta(seconds=1 + i) for i in range(5)]
            for i, ts in enumerate(before):
                await emit(plant, ts, f"before {i}")
            await sink.wait_for(lambda s: sum(1 for _, f in events_of(s, "ev") if "before" in f["Message"]) == 5)
            await plant.stop()
            await wait_until(lambda: not source.status.connected, what="the source to see the server gone")
            await plant.start()
            await wait_until(lambda: source.status.reconnects_total == 1, timeout=20, what="reconnect")
            await subscribed(source, plant)
            after = [T0 + timedelta(seconds=10 + i) for i in range(5)]
            for i, ts in enumerate(after):
                await emit(plant, ts, f"after {i}")
            await sink.wait_for(lambda s: sum(1 for _, f in events_of(s, "ev") if "after" in f["Message"]) == 5)
        got = {f["Message"]: ts for ts, f in events_of(sink, "ev") if "before" in f["Message"] or "after" in f["Message"]}
        assert got == {f"before {i}": to_us(ts) for i, ts in enumerate(before)} | {
            f"after {i}": to_us(ts) for i, ts in enumerate(after)}
        assert "ev" not in {r.tag for r in sink.readings if r.value is None}  # no not-connected rows for events
        assert not sink.dead_letters


async def test_poll_mode_subscribes_the_notifiers_beside_the_reads() -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        await plant.set("press1", "Temperature", 41.5)
        config = msgspec.convert(source_config(plant, [{"fields": ["Time", "Message", "Severity"]}], mode="poll"),
                                 OpcUaSourceConfig)
        source = OpcUaSource(config)
        sink = MemorySink()
        async with running(source, sink):
            await sink.wait_for(lambda s: 41.5 in s.values("press1.temp"))
            await subscribed(source, plant)
            await emit(plant, T0, "polled", severity=10)
            await sink.wait_for(lambda s: events_of(s, "plant.events"))
        assert events_of(sink, "plant.events") == [(to_us(T0), {"Time": T0.isoformat(), "Message": "polled",
                                                                 "Severity": 10})]
        assert source.known_tags()["plant.events"].data_type == "text"


async def test_a_notifier_by_namespace_uri_and_one_whose_namespace_is_missing() -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        press1 = server_of(plant).get_node(ua.NodeId("press1", plant.namespace_index))
        await press1.set_event_notifier([ua.EventNotifier.SubscribeToEvents])  # the object reports its events
        events = [{"name": "lost", "notifier": "nsu=urn:nope;s=x"},
                  {"name": "m", "notifier": f"nsu={PLANT_NAMESPACE};s=press1", "fields": ["Time", "Message"]}]
        source = OpcUaSource(msgspec.convert(source_config(plant, events), OpcUaSourceConfig))
        sink = MemorySink()
        async with running(source, sink):
            await subscribed(source, plant)
            gen = await server_of(plant).get_event_generator(None, press1.nodeid)
            await gen.trigger(T0, "from press1")
            await sink.wait_for(lambda s: events_of(s, "m"))
            assert source.status.last_error == (
                "lost: no events subscribed: namespace 'urn:nope' is not in the server's NamespaceArray")
        assert events_of(sink, "m") == [(to_us(T0), {"Time": T0.isoformat(), "Message": "from press1"})]
        assert not events_of(sink, "lost") and not sink.dead_letters


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([{"notifier": "not a node id"}], "notifier"),
        ([{"fields": ["Severty"]}], "fields"),
        ([{"fields": ["Time", "Time"]}], "fields"),
        ([{"fields": []}], "fields"),
        ([{"fields": ["ActiveState//Id"]}], "fields"),
        ([{"queue_size": 0}], "queue_size"),
        ([{"machine": ""}], "machine"),
        ([{"category": "robots"}], "category"),
        ([{"name": "t"}], "events"),
        ([{"name": "x"}, {"name": "x"}], "events"),
        ([{"notifer": "i=2253"}], "notifer"),
    ],
)
def test_bad_event_notifier_config_names_the_field(events: list[dict[str, Any]], field: str) -> None:
    data = {"type": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840",
            "tags": [{"name": "t", "node_id": "ns=2;s=t"}], "events": events}
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.convert(data, OpcUaSourceConfig)
    assert re.search(rf"(^|`){field}(:|`)", str(e.value)), str(e.value)


def test_event_notifier_defaults() -> None:
    config = msgspec.convert({"type": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840",
                              "events": [{}, {"notifier": "ns=2;s=Line1", "fields": ["2:Pressure", "ActiveState"]}]},
                             OpcUaSourceConfig)
    first, second = config.events
    assert (first.notifier, first.name, first.machine) == ("i=2253", "plc.events1", None)
    assert first.fields == ["EventType", "SourceName", "Time", "Severity", "Message", "ConditionName", "ActiveState",
                            "AckedState", "Retain"]
    assert second.name == "plc.events2"


# A node-opcua server (a real Alarms & Conditions implementation no one here wrote) with one
# AlarmConditionType instance on Press1, an event source of the Server object, and Part 9's methods
# (ConditionRefresh) bound. Commands on stdin:
# {"op": "event"|"raise"|"clear", "message": ..., "severity": ..., "ts": ISO}, {"op": "ack", "message": ...};
# each is echoed once done.
NODE_ALARM_SERVER = r"""
"use strict";
const readline = require("readline");
const opcua = require("node-opcua");
const port = Number(process.argv[2]);
async function main() {
  const server = new opcua.OPCUAServer({ port, resourcePath: "/shopfloor" });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  addressSpace.installAlarmsAndConditionsService();  // binds ConditionRefresh, Acknowledge, ...
  const ns = addressSpace.getOwnNamespace();
  const serverObj = addressSpace.rootFolder.objects.server;
  const press1 = ns.addObject({ browseName: "Press1", organizedBy: addressSpace.rootFolder.objects,
    eventSourceOf: serverObj, eventNotifier: 1 });
  const oil = ns.addVariable({ componentOf: press1, browseName: "OilTemp", dataType: "Double",
    value: { dataType: opcua.DataType.Double, value: 20 } });
  const alarm = ns.instantiateAlarmCondition("AlarmConditionType", { browseName: "OverTemp",
    conditionName: "OverTemp", componentOf: press1, conditionSource: press1, inputNode: oil });
  alarm.setEnabledState(true);
  await server.start();
  console.log(`READY ${port}`);
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const cmd = JSON.parse(line);
    const time = cmd.ts ? new Date(cmd.ts) : new Date();
    if (cmd.op === "event") {
      serverObj.raiseEvent("BaseEventType", {
        message: { dataType: opcua.DataType.LocalizedText, value: { text: cmd.message } },
        severity: { dataType: opcua.DataType.UInt16, value: cmd.severity },
        sourceName: { dataType: opcua.DataType.String, value: "Press1" },
        time: { dataType: opcua.DataType.DateTime, value: time } });
    } else if (cmd.op === "raise" || cmd.op === "clear") {
      alarm.activeState.setValue(cmd.op === "raise");
      alarm.raiseNewCondition({ message: cmd.message, severity: cmd.severity, retain: cmd.op === "raise", time });
    } else if (cmd.op === "ack") {
      alarm.acknowledgeAndAutoConfirmBranch(alarm.currentBranch(), cmd.message);
    }
    console.log(JSON.stringify({ op: cmd.op, ts: time.toISOString() }));
  });
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


async def test_node_opcua_events_and_an_alarm_condition_reach_the_events_table_and_the_journal(
    conn, dsn, tmp_path: Path
) -> None:
    script = tmp_path / "alarm_server.js"
    script.write_text(NODE_ALARM_SERVER)
    port = free_port()
    peer = await Peer(["node", str(script), str(port)], env=dict(os.environ, NODE_PATH=str(node_modules()))).start()
    t1, t2, t3 = (T0.replace(microsecond=123000) + timedelta(seconds=s) for s in (0, 1, 3))
    # raised before the gateway connects: ConditionRefresh, answered by node-opcua, brings it
    await peer.command({"op": "raise", "message": "oil hot", "severity": 800, "ts": t2.isoformat()})
    config = msgspec.convert({
        "spool": {"directory": str(tmp_path / "spool")},
        "sources": [{"type": "opcua", "name": "n", "endpoint": f"opc.tcp://127.0.0.1:{port}/shopfloor",
                     "publishing_interval": 0.05, "stall_timeout": 1.0, "reconnect_min": 0.1, "reconnect_max": 0.5,
                     "events": [{"machine": "press1"}]}],
    }, GatewayConfig)  # fmt: skip
    gw = Gateway(config, dsn, HistorianConfig(flush_interval=0.05), tmp_path)
    task = asyncio.create_task(gw.run())
    count = ("SELECT count(*) FROM events e JOIN tags t ON t.id = e.tag_id "
             "WHERE t.name = 'n.events' AND e.value::jsonb->>'Message' {} 'ping'")
    try:
        await asyncio.wait_for(gw.ready.wait(), 15)
        # the server says nothing when our event item exists: ping until one arrives
        for i in range(200):
            await peer.command({"op": "event", "message": "ping", "severity": 1,
                                "ts": (T0 - timedelta(hours=1, seconds=-i)).isoformat()})
            if await (await conn.execute(count.format("="))).fetchone() != (0,):
                break
            await asyncio.sleep(0.05)
        await peer.command({"op": "event", "message": "door opened", "severity": 300, "ts": t1.isoformat()})
        await peer.command({"op": "ack", "message": "seen"})
        await peer.command({"op": "clear", "message": "oil cool", "severity": 200, "ts": t3.isoformat()})
        await wait_for_sql(conn, count.format("<>"), 4)
        cur = await conn.execute("SELECT e.ts, e.value FROM events e JOIN tags t ON t.id = e.tag_id "
                                 "WHERE t.name = 'n.events' AND e.value::jsonb->>'Message' <> 'ping' ORDER BY e.ts")
        rows = [(ts, json.loads(v)) for ts, v in await cur.fetchall()]
        # node-opcua names the source by its browse name with the namespace ("1:Press1") and sends the
        # acknowledgement with the Time of the branch it acknowledges: a second event at t2, kept 1 µs later
        cond = {"EventType": "i=2915", "SourceName": "1:Press1", "ConditionName": "OverTemp"}
        assert rows == [
            (t1, {"EventType": "i=2041", "SourceName": "Press1", "Time": t1.isoformat(), "Severity": 300,
                  "Message": "door opened"}),
            (t2, {**cond, "Time": t2.isoformat(), "Severity": 800, "Message": "oil hot", "ActiveState": True,
                  "AckedState": False, "Retain": True}),
            (t2 + timedelta(microseconds=1), {**cond, "Time": t2.isoformat(), "Severity": 800, "Message": "oil hot",
                                              "ActiveState": True, "AckedState": True, "Retain": False}),
            (t3, {**cond, "Time": t3.isoformat(), "Severity": 200, "Message": "oil cool", "ActiveState": False,
                  "AckedState": True, "Retain": False}),
        ]  # fmt: skip
        await wait_for_sql(conn, "SELECT count(*) FROM alarm_journal", 3)
        tag = "n.events/1:Press1/OverTemp"
        cur = await conn.execute("SELECT machine, tag, rule, priority, state, ts, cleared_ts, acked_at, acked_by "
                                 "FROM alarms_named")
        assert await cur.fetchall() == [
            ("press1", tag, "opcua", "high", "normal", t2, t3, t2 + timedelta(microseconds=1), "opcua")]
        cur = await conn.execute("SELECT tag, data_ts, transition, actor FROM alarm_journal_named ORDER BY id")
        assert await cur.fetchall() == [(tag, t2, "raised", "opcua"),
                                        (tag, t2 + timedelta(microseconds=1), "acknowledged", "opcua"),
                                        (tag, t3, "cleared", "opcua")]
        assert await (await conn.execute("SELECT count(*) FROM dead_letters")).fetchone() == (0,)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await peer.stop()
