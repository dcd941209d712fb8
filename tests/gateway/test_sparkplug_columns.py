"""Sparkplug metrics on the columnar path (SpoolSink.put_points): the plant's edge node, the real broker, the historian.

The payloads are built by hand (per-metric timestamps, a Quality property, is_null, a tag several
times in one message, text and bools beside the numbers); the historian must hold exactly what
was published, once, the numbers must have crossed the spool as points and not as rows, and a
QoS 1 DDATA must be acknowledged only once its columns are on disk.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from gateway.exception import ExceptionFilter
from gateway.forwarder import forward
from gateway.mqtt import MqttSource
from gateway.mqtt import sparkplug_b_pb2 as pb
from gateway.records import SpoolRecord, decode
from gateway.sink import Collector, SpoolSink
from gateway.spool import Spool
from gateway.tags import TagConfig
from historian.config import HistorianConfig
from historian.registry import register
from historian.samples import Quality
from historian.writer import HistorianWriter
from tests.gateway.test_mqtt import broker_is_up  # noqa: F401  (fails early without a broker)
from tests.gateway.test_mqtt import _end_session, config, plant, running, unique
from tests.support import wait_until

T0 = 1_700_000_000_000  # ms: the hand-built DDATA's times, far from the births' (the plant stamps those now)
METRICS = {"d": "Double", "f": "Float", "i16": "Int16", "u32": "UInt32", "i64": "Int64", "vib": "Double",
           "s": "String", "b": "Boolean"}
NUMERIC = {"d", "f", "i16", "u32", "i64", "vib", "extra"}
VIB = TagConfig(name="line1.d1.vib", deadband=1.0)  # stored only when it moved by 1 or more


def tag(metric: str) -> str:
    """The tag the source makes of a d1 metric (default device_tag)."""
    return f"line1.d1.{metric}"


def add(msg: Any, alias: int, ts: int | None = None, quality: int | None = None, **value: Any) -> None:
    """Append a metric by alias with its value field, an own timestamp and a Quality property if given."""
    m = msg.metrics.add(alias=alias, **value)
    if ts is not None:
        m.timestamp = ts
    if quality is not None:
        m.properties.keys.append("Quality")
        m.properties.values.add(type=pb.Int32, int_value=quality)


async def records_of(spool: Spool) -> list[SpoolRecord]:
    """Every record in the spool, in order."""
    out: list[SpoolRecord] = []
    if spool.depth == 0:
        return out
    async for seq, payload in spool.records():
        out.append(decode(payload))
        if seq == spool.depth:
            break
    return out


async def into_historian(spool: Spool, dsn: str) -> None:
    """Forward the whole spool into the historian."""
    async with HistorianWriter(dsn, HistorianConfig(dsn=dsn, flush_interval=0.05)) as writer:
        forwarder = asyncio.create_task(forward(spool, writer))
        await wait_until(lambda: spool.depth == 0, what="the spool forwarded")
        forwarder.cancel()
        await asyncio.gather(forwarder, return_exceptions=True)


async def samples(conn: psycopg.AsyncConnection) -> list[tuple[str, int, float | None, int]]:
    """Every stored sample as (tag, µs, value or None for NaN, quality)."""
    cur = await conn.execute("SELECT t.name, (extract(epoch FROM s.ts) * 1e6)::bigint, NULLIF(s.value, 'NaN'), "
                             "s.quality FROM samples s JOIN tags t ON t.id = s.tag_id")
    return list(await cur.fetchall())


async def test_metrics_reach_the_historian_as_columns_exactly_as_published(
        conn: psycopg.AsyncConnection, dsn: str, tmp_path: Path) -> None:
    group = unique("g")
    source = MqttSource(config(sparkplug=[{"group_id": group}], rebirth_interval=0.0))
    spool = Spool(tmp_path / "spool")
    sink = SpoolSink(spool, source.status, ExceptionFilter([VIB]), Collector(spool, 0.05))
    p = plant(group_id=group, devices=["d1"], metrics=METRICS)
    alias = {name: m.alias for name, m in p.devices["d1"].items()}
    topic = f"spBv1.0/{group}/DDATA/line1/d1"
    try:
        async with running(source, sink):
            await p.start()  # births once the source listens; the source stops before the plant (no stale rows)
            await wait_until(lambda: source.status.readings_total == 9, what="the births counted")
            # 1: every numeric datatype with and without its own time, text and a bool beside them
            msg = pb.Payload(timestamp=T0, seq=p.next_seq())
            add(msg, alias["d"], ts=T0 + 1, double_value=1.5)
            add(msg, alias["f"], float_value=20.3)  # a Float: stored as its shortest decimal
            add(msg, alias["i16"], int_value=65531)  # -5 in two's complement
            add(msg, alias["u32"], ts=T0 + 2, int_value=4_000_000_000)
            add(msg, alias["i64"], long_value=2**64 - 1)  # -1
            add(msg, alias["vib"], double_value=5.0)
            add(msg, alias["s"], string_value="Running")
            add(msg, alias["b"], boolean_value=True)
            await p.publish_raw(topic, msg.SerializeToString(), qos=0)
            # 2: qualities by property, a null, a real zero, and the deadband tag three times in one payload
            msg = pb.Payload(timestamp=T0 + 1000, seq=p.next_seq())
            add(msg, alias["d"], quality=500, double_value=2.25)  # Ignition's stale: uncertain, last usable
            add(msg, alias["u32"], quality=0, int_value=7)  # bad, with a value
            msg.metrics.add(alias=alias["i16"], is_null=True)
            add(msg, alias["f"], float_value=0.0)
            add(msg, alias["vib"], double_value=5.5)  # inside the band: not stored
            add(msg, alias["vib"], ts=T0 + 1001, double_value=7.0)
            add(msg, alias["vib"], ts=T0 + 1002, double_value=7.2)  # inside the band of 7.0
            add(msg, alias["s"], string_value="Idle")
            await p.publish_raw(topic, msg.SerializeToString(), qos=0)
            await wait_until(lambda: source.status.readings_total == 9 + 8 + 8, what="both DDATA counted")
            # 3: a metric the host has not seen born: dead-lettered, the rest stored, a rebirth asked for
            p.add_metric("d1", "extra", "Double")
            await p.ddata("d1", {"d": 3.0, "extra": 9.0}, ts=T0 + 2000)
            await p.wait_for(lambda plant: plant.rebirths_answered == 1)
            await wait_until(lambda: source.status.readings_total == 25 + 1 + 10, what="the rebirth counted")
            # 4: the new alias now resolves
            await p.ddata("d1", {"extra": 10.0, "vib": 0.5}, ts=T0 + 3000)
            await wait_until(lambda: source.status.readings_total == 38, what="the last DDATA counted")
            assert source.status.dead_letters_total == 1
    finally:
        await p.stop()
    records = await records_of(spool)
    await register(conn, [t.spec(source.name, "device") for t in source.known_tags().values()])
    await into_historian(spool, dsn)
    spool.close()

    # the numbers crossed the spool as points; rows hold text, bools and the null only
    rows = [(t, v, q) for r in records for t, v, q in zip(r.tags, r.values, r.quality)]
    assert [(t, v, q) for t, v, q in rows if t.rsplit(".", 1)[1] in NUMERIC] == [(tag("i16"), None, Quality.BAD)]
    points = sum(r.points.rows() for r in records if r.points is not None)
    letters = [d.reason for r in records for d in r.letters]
    assert len(letters) == 1 and "unknown alias" in letters[0] and "rebirth requested" in letters[0]

    got = await samples(conn)
    assert len(got) == len({(n, ts) for n, ts, _, _ in got})  # exactly once
    at = {(n, ts): (v, q) for n, ts, v, q in got}
    us = 1000
    want = {
        (tag("d"), (T0 + 1) * us): (1.5, 192), (tag("f"), T0 * us): (20.3, 192),
        (tag("i16"), T0 * us): (-5.0, 192), (tag("u32"), (T0 + 2) * us): (4e9, 192),
        (tag("i64"), T0 * us): (-1.0, 192), (tag("vib"), T0 * us): (5.0, 192), (tag("b"), T0 * us): (1.0, 192),
        (tag("d"), (T0 + 1000) * us): (2.25, int(Quality.UNCERTAIN_LAST_USABLE)),
        (tag("u32"), (T0 + 1000) * us): (7.0, 0), (tag("i16"), (T0 + 1000) * us): (None, int(Quality.BAD)),
        (tag("f"), (T0 + 1000) * us): (0.0, 192), (tag("vib"), (T0 + 1001) * us): (7.0, 192),
        (tag("d"), (T0 + 2000) * us): (3.0, 192), (tag("extra"), (T0 + 3000) * us): (10.0, 192),
    }
    assert {k: v for k, v in at.items() if k[1] < (T0 + 10_000) * us} == want
    # two births after the source subscribed (its own request and the answer to the rebirth request),
    # each at one time of its own; their values as the plant held them (it sets only what ddata() sent)
    born = sorted({ts for _, ts in at if ts >= (T0 + 10_000) * us})
    assert len(born) == 2
    first = {n: v for (n, ts), (v, _) in at.items() if ts == born[0]}
    second = {n: v for (n, ts), (v, _) in at.items() if ts == born[1]}
    assert first == {tag(m): 0.0 for m in METRICS if m != "s"}
    # the deadband tag at 0 again after 7.0 moved: stored; the last DDATA's vib 0.5 then stays in the band
    assert second == first | {tag("d"): 3.0, tag("extra"): 9.0}
    assert [v for (n, _), (v, _) in sorted(at.items(), key=lambda kv: kv[0][1]) if n == tag("vib")] == [
        5.0, 7.0, 0.0, 0.0]
    stored_numbers = sum(1 for (n, _), (v, _) in at.items() if n.rsplit(".", 1)[1] in NUMERIC and v is not None)
    assert points == stored_numbers  # every stored number came as a point, the filtered ones never spooled
    cur = await conn.execute("SELECT t.name, (extract(epoch FROM e.ts) * 1e6)::bigint, e.value FROM events e "
                             "JOIN tags t ON t.id = e.tag_id WHERE e.ts < to_timestamp(%s)", ((T0 + 10_000) / 1000,))
    assert sorted(await cur.fetchall()) == [(tag("s"), T0 * us, "Running"), (tag("s"), (T0 + 1000) * us, "Idle")]
    assert not any(v is not None and math.isnan(v) for _, _, v, _ in got)


async def test_qos1_ddata_is_acknowledged_only_once_its_columns_are_on_disk(
        conn: psycopg.AsyncConnection, dsn: str, tmp_path: Path) -> None:
    group = unique("g")
    client_id = unique("sf-spack-")
    cfg = config(sparkplug=[{"group_id": group}], client_id=client_id, clean_start=False, session_expiry=60, qos=1)
    source = MqttSource(cfg)  # one host state across both sessions, as a gateway that reconnects keeps it
    spool = Spool(tmp_path / "spool")
    p = plant(group_id=group, devices=["d1"], metrics={"d": "Double"})
    topic = f"spBv1.0/{group}/DDATA/line1/d1"
    alias = p.devices["d1"]["d"].alias
    try:
        # the DDATA carry no seq: a redelivered copy would be a gap to the host, which then asks for a
        # rebirth (test_sparkplug.py covers that); only the acknowledgement is under test here
        # 1: a group commit that waits 3 s: the DDATA is decoded and handed over, not yet on disk
        slow = Collector(spool, 3.0, flush_rows=10**9)
        async with running(source, SpoolSink(spool, source.status, ExceptionFilter([]), slow)):
            await p.start()
            await wait_until(lambda: source.status.readings_total == 2, what="the births on disk")
            on_disk = spool.depth
            msg = pb.Payload(timestamp=T0)
            add(msg, alias, double_value=42.5)
            await p.publish_raw(topic, msg.SerializeToString(), qos=1)
            await wait_until(lambda: slow.unsynced_rows == 1, what="the DDATA handed over")
            assert spool.depth == on_disk and source.status.readings_total == 2  # not on disk, not counted
        await slow.durable()  # its record reaches the disk after the source went away, unacknowledged
        assert source.status.readings_total == 3  # on disk: read (and read again when redelivered)
        # 2: same persistent session: the broker delivers the DDATA again; stored once more, then acknowledged
        sink = SpoolSink(spool, source.status, ExceptionFilter([]), Collector(spool, 0.05))
        async with running(source, sink):
            await wait_until(lambda: source.status.readings_total == 4, what="the redelivered DDATA on disk")
            msg = pb.Payload(timestamp=T0 + 1000)
            add(msg, alias, double_value=43.5)
            await p.publish_raw(topic, msg.SerializeToString(), qos=1)
            await wait_until(lambda: source.status.readings_total == 5, what="the next DDATA on disk")
            await asyncio.sleep(0.5)  # counted once on disk, acknowledged right after: let the PUBACK leave
        # 3: both were acknowledged: a third session gets nothing again
        third = Collector(spool, 0.05)
        async with running(source, SpoolSink(spool, source.status, ExceptionFilter([]), third)):
            await asyncio.sleep(1.0)
            assert source.status.readings_total == 5
    finally:
        await p.stop()
        await _end_session(client_id, "5")
    records = await records_of(spool)
    values = [float(v) for r in records if r.points is not None for v in np.frombuffer(r.points.values, "<f8")]
    assert values.count(42.5) == 2 and values.count(43.5) == 1  # at least once into the spool...
    assert all(t == "line1.Properties/Hardware" for r in records for t in r.tags)  # numbers only as points
    await register(conn, [t.spec(source.name, "device") for t in source.known_tags().values()])
    await into_historian(spool, dsn)
    spool.close()
    got = [(n, ts, v) for n, ts, v, _ in await samples(conn) if ts < (T0 + 10_000) * 1000]
    assert sorted(got) == [("line1.d1.d", T0 * 1000, 42.5), ("line1.d1.d", (T0 + 1000) * 1000, 43.5)]  # ...once in it


def test_columns_decode_what_the_row_path_decodes() -> None:
    """Every datatype, both int fields, wrapped negatives, zeros, nulls, properties, stamps: points == rows."""
    from gateway.mqtt.config import SparkplugGroup
    from gateway.mqtt.sparkplug import Outcome, SparkplugHost

    kinds = {"i8": pb.Int8, "i16": pb.Int16, "i32": pb.Int32, "i64": pb.Int64, "u8": pb.UInt8, "u16": pb.UInt16,
             "u32": pb.UInt32, "u64": pb.UInt64, "f": pb.Float, "d": pb.Double, "b": pb.Boolean, "s": pb.String,
             "dt": pb.DateTime}
    birth = pb.Payload(timestamp=T0, seq=1)
    for k, (name, datatype) in enumerate(kinds.items()):
        birth.metrics.add(name=name, alias=k + 1, datatype=datatype)
    rng = np.random.default_rng(5)
    payloads = [birth]
    for n in range(40):
        msg = pb.Payload(timestamp=T0 + n, seq=(n + 2) % 256)
        for k, name in enumerate(kinds):
            m = msg.metrics.add(alias=k + 1)
            if rng.random() < 0.1:
                m.is_null = True
                continue
            if rng.random() < 0.3:
                m.timestamp = T0 + 10_000 + n
            if rng.random() < 0.1:
                m.properties.keys.append("Quality")
                m.properties.values.add(type=pb.Int32, int_value=int(rng.choice([0, 64, 192, 500])))
            zero = rng.random() < 0.2
            if name in ("f", "d"):
                setattr(m, "float_value" if name == "f" or rng.random() < 0.5 else "double_value",
                        0.0 if zero else float(rng.normal(0, 1e3)))
            elif name == "b":
                m.boolean_value = bool(rng.random() < 0.5)
            elif name == "s":
                m.string_value = "" if zero else f"s{n}"
            elif name == "dt":
                m.long_value = T0 + n
            else:
                bits = int(name[1:])
                v = 0 if zero else int(rng.integers(-(2 ** (bits - 1)) if name[0] == "i" else 0, 2 ** (bits - 1)))
                wide = rng.random() < 0.5  # Tahu's Java client: wider field, wrapped to 32/64 bits
                field = "long_value" if bits == 64 or wide else "int_value"
                setattr(m, field, v % (2**64 if field == "long_value" else 2**32))
        payloads.append(msg)
    payloads[5].metrics.add(alias=99, double_value=1.0)  # unknown: named on both paths
    payloads[6].metrics[9].string_value = "wrong"  # a Double carrying text: a problem on both paths

    def decoded(points: bool) -> tuple[list[tuple[str, int, Any, int]], list[str], int]:
        host = SparkplugHost(SparkplugGroup(group_id="g"))
        host.handle("t", ["spBv1.0", "g", "NBIRTH", "e"], pb.Payload(timestamp=T0, seq=0).SerializeToString(),
                    Outcome())
        rows: list[tuple[str, int, Any, int]] = []
        letters: list[str] = []
        as_points = 0
        for i, msg in enumerate(payloads):
            out = Outcome(points=[] if points else None)
            kind = "DBIRTH" if i == 0 else "DDATA"
            host.handle("t", ["spBv1.0", "g", kind, "e", "d"], msg.SerializeToString(), out)
            rows += [(t, ts, v, q) for t, v, ts, q in zip(out.columns.tags, out.columns.values, out.columns.ts_us,
                                                          out.columns.quality)]
            for tags, at, ts_us, values, quality in out.points or ():
                qs = quality.tolist() if quality is not None else [192] * len(values)
                rows += [(tags[a], ts, v, q) for a, ts, v, q in zip(at.tolist(), ts_us.tolist(), values.tolist(), qs)]
            letters += [reason for reason, _ in out.dead_letters]
            as_points += out.points_total()
        return rows, letters, as_points

    def key(row: tuple[str, int, Any, int]) -> tuple[str, int, str, int]:
        t, ts, v, q = row
        return t, ts, repr(float(v) if isinstance(v, int) and not isinstance(v, bool) else v), q

    rows, letters, none = decoded(False)
    points, point_letters, numbers = decoded(True)
    assert sorted(map(key, points)) == sorted(map(key, rows))
    assert point_letters == letters and len(letters) == 2
    assert none == 0 and numbers == sum(1 for t, _, v, _ in rows if t.rsplit(".", 1)[1] in kinds
                                        and kinds[t.rsplit(".", 1)[1]] not in (pb.Boolean, pb.String, pb.DateTime)
                                        and v is not None)
