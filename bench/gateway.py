"""Gateway end to end: device -> adapter -> spool (fsync) -> forwarder -> writer -> TimescaleDB, per protocol.

    python -m bench.gateway [--protocol all|opcua|modbus|sparkplug] [--device ours|peer|both]
                            [--seconds 8] [--rounds 2] [--latency-seconds 8] [--latency-rate 10000]
                            [--ceiling-rows 2000000] [--dsn URI] [--mqtt mqtt://host:port]

--device peer measures the same rows against a device we did not write (bench/gateway_peers.py):
a node-opcua server and an npm modbus-serial ServerTCP, the pinned versions scripts/peers installs,
run by bench-mode programs in bench/peers/ that change values at a high rate (OPC UA: the same
280 variables, window-paced or rate-paced like our plant; Modbus: new values on every read). The
bare baselines are the same plain asyncua subscription and pymodbus read loop, against the same
peer in the same run. Sparkplug has no peer row. A missing peer fails at once naming scripts/peers.

For each protocol the simulated plant device runs in a child process (its own interpreter, so it
is not scheduled inside the gateway's event loop), and this process runs:

1. BARE CLIENT rounds: a plain library client against the same device, same nodes/registers/topics
   (asyncua subscription counting data-change notifications; pymodbus read_holding_registers of
   100 registers in a loop; aiomqtt subscriber decoding each Sparkplug payload and counting metrics);
2. GATEWAY rounds, alternating with those (bare first in odd rounds, gateway first in even ones):
   the real path, adapter (OpcUaSource / ModbusSource / MqttSource) -> SpoolSink
   (ExceptionFilter([]): every reading kept) -> Spool (fsync on, in a temp folder on disk) ->
   forward() -> HistorianWriter -> a scratch TimescaleDB database, wired as `gateway run` wires
   it: one Collector (group commit) shared by the sinks, the spool's and the historian's default
   flush intervals unless --spool-flush / --historian-flush say otherwise, Modbus numeric
   responses handed over as blocks (put_block) and OPC UA notifications' and Sparkplug metrics'
   numbers as points (put_points), as the gateway's SpoolSink takes them.
   samples_per_s = rows committed (SQL count) / (first device publish -> last commit
   acknowledged to forward()); the best round of each side is compared (ratio_to_bare).
   After these rounds Modbus runs the bare loop once more per round with the gateway's own lean
   TCP client (lean_client in the output); ratio_to_bare stays against the pymodbus loop;
3. a GATEWAY LATENCY phase: the same pipeline with the device paced at --latency-rate samples/s;
   the latency of every committed sample = wall-clock time its batch's commit was acknowledged to
   forward() - its source timestamp (the device's time; Modbus has none: the gateway's stamp);
4. a HISTORIAN CEILING: raw binary COPY of ready-made rows of the same tag count into a table
   shaped like samples, with one connection and with two, nothing else running. It is what the
   database alone commits here, so historian_ceiling says whether 0.8 x bare is reachable at all.

Push devices (OPC UA, Sparkplug) produce as fast as they can in the bare and gateway rounds, but
never more than a window of samples ahead of what the consumer (bare client, or the gateway's
adapter) has taken (a shared counter): the measurement is of the consumer at saturation, not of
queues overflowing in the server or broker. Losses are still counted, and each phase reports the
CPU the consumer and the plant used (on a 2-core machine the device often sets the bare pace: see
bare_pace and cpu_efficiency in the output). Prints one JSON line per protocol on stdout, progress
on stderr; the scratch database is created, migrated and dropped, the spool folder removed. Every
line says its `device` (ours or peer), the `cores` of the best gateway round and the `loadavg` at the
start and end of its run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import numpy as np
import psycopg
from psycopg import conninfo

from bench.gateway_peers import PEERS, PeerDevice, PeerMissing, require_peer
from bench.ingest import ROOT, copy_table_days, default_dsn, make_batches, make_copy_table, run_copy
from bench.scratch import scratch_database
from historian.db import connect

log = logging.getLogger("bench.gateway")

LATENCY_TARGET_S = 1.0
LATENCY_RATE = 10_000
RATIO_TARGET = 0.8
SPARKPLUG_TARGET = 200_000
QUIET_S = 1.0
"""A phase is over when the consumer has taken nothing new for this long and nothing is queued."""

# -- workloads ----------------------------------------------------------------------------------

OPCUA_MACHINES = 40
OPCUA_SIGNALS = {  # the plant's numeric signals per machine and their historian data type
    "Speed": "float", "SpeedSetpoint": "float", "Temperature": "float", "Vibration": "float",
    "EnergyKWh": "float", "GoodCount": "int", "ScrapCount": "int",
}
OPCUA_PUBLISHING_INTERVAL = 0.05
OPCUA_QUEUE_SIZE = 100
OPCUA_WINDOW = 20_000

MODBUS_REGISTERS = 100

SPARKPLUG_DEVICES = 8
SPARKPLUG_METRICS = 500
SPARKPLUG_WINDOW_MESSAGES = 100
SPARKPLUG_EDGE = "line1"


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench.gateway {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_mqtt() -> str:
    """$SHOPFLOOR_BENCH_MQTT, else the broker scripts/services started, else 127.0.0.1:1883."""
    if os.environ.get("SHOPFLOOR_BENCH_MQTT"):
        return os.environ["SHOPFLOOR_BENCH_MQTT"]
    env = ROOT / ".shopfloor" / "services.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("SHOPFLOOR_TEST_MQTT="):
                return line.split("=", 1)[1]
    return "mqtt://127.0.0.1:1883"


# ================================================================================================
# The plant, in a child process
# ================================================================================================


def _plant_process(proto: str, params: dict[str, Any], conn: Any, consumed: Any) -> None:
    """Child process entry: run one plant device and obey commands from the pipe."""
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # pymodbus logs a client that hangs up mid-request (the bench stopping a source) with hex dumps
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(_plant_main(proto, params, conn, consumed))


async def _plant_main(proto: str, params: dict[str, Any], conn: Any, consumed: Any) -> None:
    loop = asyncio.get_running_loop()
    if proto == "opcua":
        device: Any = _OpcUaDevice(params)
    elif proto == "modbus":
        device = _ModbusDevice(params)
    else:
        device = _SparkplugDevice(params)
    info = await device.start()
    conn.send(("ready", info))
    try:
        while True:
            cmd, kwargs = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
            if cmd == "drive":
                conn.send(("driven", await device.drive(consumed=consumed, **kwargs)))
            elif cmd == "rebirth":
                await device.rebirth()
                conn.send(("reborn", {}))
    finally:
        await device.close()
        conn.send(("stopped", {}))


class _Pacer:
    """Paces a producer: a fixed rate (samples/s), or as fast as possible within a window of what was consumed."""

    def __init__(self, rate: float | None, window: int, consumed: Any) -> None:
        self.rate = rate
        self.window = window
        self.consumed = consumed
        self.base = consumed.value
        self.start = time.monotonic()
        self.waits = 0

    async def before(self, produced: int) -> None:
        """Wait until `produced` more samples may be sent."""
        if self.rate:
            due = self.start + produced / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            return
        while produced - (self.consumed.value - self.base) > self.window:
            self.waits += 1
            await asyncio.sleep(0.0005)


class _OpcUaDevice:
    def __init__(self, params: dict[str, Any]) -> None:
        from asyncua.server.monitored_item_service import MonitoredItemValues

        from plant.opcua_server import OpcUaPlant

        def set_current_datavalue(self: Any, cur_val: Any) -> None:
            # asyncua deep-copies every DataValue for every monitored item, which makes the simulated
            # server, not the clients, the limit; the driver below makes a fresh DataValue per set
            # and never touches it again, so the copy protects nothing here (this process only)
            self.old_dvalue = self.current_dvalue
            self.current_dvalue = cur_val

        MonitoredItemValues.set_current_datavalue = set_current_datavalue

        self.machines = [f"m{i:02d}" for i in range(params["machines"])]
        self.plant = OpcUaPlant(machines=self.machines)
        self.keys = [(m, s) for m in self.machines for s in params["signals"]]
        self.int_signals = {s for s, t in params["signals"].items() if t == "int"}
        self.round = 0
        self.next_key = 0

    async def start(self) -> dict[str, Any]:
        await self.plant.start()
        return {"endpoint": self.plant.endpoint, "ns": self.plant.namespace_index, "machines": self.machines}

    async def rebirth(self) -> None:
        pass

    async def drive(self, *, rate: float | None, seconds: float, window: int, consumed: Any) -> dict[str, Any]:
        """Set every node in turn to a new value (each set is a change, stamped now) for `seconds`."""
        pacer = _Pacer(rate, window, consumed)
        chunk = 50
        keys, n_keys, plant = self.keys, len(self.keys), self.plant
        i, produced = self.next_key, 0  # go on where the last drive stopped: every set must change the value
        end = time.monotonic() + seconds
        first = time.time()
        while time.monotonic() < end:
            await pacer.before(produced + chunk)
            for _ in range(chunk):
                machine, signal = keys[i]
                i += 1
                if i == n_keys:
                    i = 0
                    self.round += 1
                value = (self.round + 1) % 1_000_000
                await plant.set(machine, signal, value if signal in self.int_signals else float(value) + 0.5)
            produced += chunk
            await asyncio.sleep(0)  # let the server publish, even when behind a paced schedule
        last = time.time()
        self.next_key = i
        return {"first_publish": first, "last_publish": last, "produced": produced, "window_waits": pacer.waits}

    async def close(self) -> None:
        await self.plant.close()


class _ModbusDevice:
    def __init__(self, params: dict[str, Any]) -> None:
        from plant.modbus_server import ModbusPlant, Signal

        signals = {f"r{i:03d}": Signal("holding", i, "uint16") for i in range(params["registers"])}
        self.plant = ModbusPlant(port=0, signals=signals, simulate=False)
        for i, name in enumerate(signals):
            self.plant.set(name, 1000 + i)

    async def start(self) -> dict[str, Any]:
        await self.plant.start()
        return {"port": self.plant.port}

    async def rebirth(self) -> None:
        pass

    async def drive(self, **_: Any) -> dict[str, Any]:
        return {"requests": dict(self.plant.function_codes)}

    async def close(self) -> None:
        await self.plant.close()


class _SparkplugDevice:
    def __init__(self, params: dict[str, Any]) -> None:
        from plant.mqtt_publisher import MqttPlant
        from plant import sparkplug_b_pb2 as pb

        self.pb = pb
        metrics = {f"m{i:03d}": "Double" for i in range(params["metrics"])}
        self.devices = [f"dev{i:02d}" for i in range(params["devices"])]
        lock = asyncio.Lock()
        last_ms: dict[str, int] = {d: 0 for d in self.devices}
        self.lock, self.last_ms = lock, last_ms

        class BenchPlant(MqttPlant):
            async def rebirth(self) -> None:
                # a rebirth and the raw DDATA stream must not interleave (seq order), and no DDATA
                # may carry the same millisecond as the birth that precedes it (same (tag, ts) rows)
                async with lock:
                    await super().rebirth()
                    now = time.time_ns() // 1_000_000 + 1
                    for d in last_ms:
                        last_ms[d] = max(last_ms[d], now)

        self.plant = BenchPlant(params["host"], params["port"], group_id=params["group"], edge_node=params["edge"],
                                devices=self.devices, metrics=metrics, period=None)
        self.topics = {d: f"spBv1.0/{params['group']}/DDATA/{params['edge']}/{d}" for d in self.devices}
        # the metric part of a DDATA, built once per variant: aliases, datatype, values (no per-metric
        # timestamp: the payload's applies); each message prepends its own timestamp and seq
        rng = np.random.default_rng(11)
        self.bodies: list[dict[str, bytes]] = []
        for _ in range(4):
            per_device = {}
            for d in self.devices:
                msg = pb.Payload()
                for name, m in self.plant.devices[d].items():
                    msg.metrics.add(alias=m.alias, datatype=pb.Double, double_value=float(rng.normal(50, 10)))
                per_device[d] = msg.SerializeToString()
            self.bodies.append(per_device)
        self.payload_bytes = len(self.bodies[0][self.devices[0]])

    async def start(self) -> dict[str, Any]:
        await self.plant.start()
        return {"devices": self.devices, "payload_bytes": self.payload_bytes}

    async def rebirth(self) -> None:
        await self.plant.rebirth()

    async def drive(self, *, rate: float | None, seconds: float, window: int, consumed: Any) -> dict[str, Any]:
        """Publish DDATA of every metric of one device after another, QoS 0 as the plant does, for `seconds`."""
        per_msg = len(self.plant.devices[self.devices[0]])
        pacer = _Pacer(rate / per_msg if rate else None, window, consumed)
        pb, plant, lock, last_ms = self.pb, self.plant, self.lock, self.last_ms
        n_dev, n_var = len(self.devices), len(self.bodies)
        sent = forced = 0
        end = time.monotonic() + seconds
        first = time.time()
        while time.monotonic() < end:
            await pacer.before(sent + 1)
            device = self.devices[sent % n_dev]
            async with lock:
                now_ms = time.time_ns() // 1_000_000
                ms = max(now_ms, last_ms[device] + 1)  # one message per device per ms: unique (tag, ts)
                forced += ms > now_ms
                last_ms[device] = ms
                head = pb.Payload(timestamp=ms, seq=plant.next_seq()).SerializeToString()
                await plant.publish_raw(self.topics[device], head + self.bodies[(sent // n_dev) % n_var][device], qos=0)
            sent += 1
        last = time.time()
        return {"first_publish": first, "last_publish": last, "produced": sent * per_msg, "messages": sent,
                "ts_forced_ahead": forced, "window_waits": pacer.waits, "rebirths_answered": plant.rebirths_answered}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.plant.stop()


class PlantProcess:
    """The parent's handle on a plant child process."""

    def __init__(self, proto: str, params: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.consumed = ctx.Value("q", 0, lock=False)
        self.proc = ctx.Process(target=_plant_process, args=(proto, params, child, self.consumed), daemon=True,
                                name=f"plant-{proto}")

    async def start(self) -> dict[str, Any]:
        self.proc.start()
        return await self._reply("ready", 120)

    async def _reply(self, expect: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def wait() -> Any:
            if not self.conn.poll(timeout):
                raise TimeoutError(f"plant child gave no {expect!r} within {timeout} s")
            return self.conn.recv()

        kind, data = await loop.run_in_executor(None, wait)
        if kind != expect:
            raise RuntimeError(f"plant child answered {kind!r}, expected {expect!r}")
        return data

    async def drive(self, rate: float | None, seconds: float, window: int = 0) -> dict[str, Any]:
        self.conn.send(("drive", {"rate": rate, "seconds": seconds, "window": window}))
        return await self._reply("driven", seconds + 120)

    async def rebirth(self) -> None:
        self.conn.send(("rebirth", {}))
        await self._reply("reborn", 30)

    async def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(Exception):
                self.conn.send(("stop", {}))
                await self._reply("stopped", 30)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


OPCUA_PEER_DEVICE = ("node-opcua server (bench/peers/opcua_bench_server.js, its own Node.js process): the same "
                     "machines and signals as Double / UInt32 variables (MinimumSamplingInterval 0, the server's "
                     "MinSupportedSampleRate 0 so that every change is reported, not one per 100 ms); "
                     "setValueFromSource on every variable in turn, each a new value stamped by node-opcua's "
                     "own clock (sub-millisecond), paced like the plant")
MODBUS_PEER_DEVICE = ("modbus-serial ServerTCP (bench/peers/modbus_bench_server.js, its own Node.js process): "
                      "100 holding registers whose values change on every FC3 read")


def make_device(args: argparse.Namespace, proto: str, params: dict[str, Any]) -> PlantProcess | PeerDevice:
    """Our simulated plant in a child process, or the foreign peer (--device peer) with the same tags."""
    if args.device != "peer":
        return PlantProcess(proto, params)
    if proto == "opcua":
        signals = ",".join(f"{s}:{t}" for s, t in params["signals"].items())
        return PeerDevice(proto, {"machines": params["machines"], "signals": signals})
    return PeerDevice(proto, params)


def device_fields(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """What a row says of its device: the peer's package, pinned version and program (peer rows only)."""
    return {"peer": info["peer"]} if args.device == "peer" else {}


# ================================================================================================
# The gateway pipeline, in this process
# ================================================================================================


class TimedWriter:
    """What forward() gets as its writer: the HistorianWriter, recording each acknowledged batch.

    For every batch acknowledged (its future resolved after the commit) it keeps the wall-clock
    time of the acknowledgement, the batch's sample timestamps and how many rows it wrote.
    """

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.acks: list[tuple[float, np.ndarray, int]] = []

    @property
    def registry(self) -> Any:
        return self._writer.registry

    async def submit(self, batch: Any) -> asyncio.Future[Any]:
        future = await self._writer.submit(batch)
        ts_us = batch.samples.ts_us

        def acked(f: asyncio.Future[Any]) -> None:
            t = time.time()
            if not f.cancelled() and f.exception() is None:
                self.acks.append((t, ts_us, f.result().written))

        future.add_done_callback(acked)
        return future

    def take(self) -> list[tuple[float, np.ndarray, int]]:
        acks, self.acks = self.acks, []
        return acks


class GatedSink:
    """The SpoolSink, with a gate the bench closes to stop a source between two publishes.

    A source cancelled in the middle of Spool.append would leave its record fsync'ed but unseen
    by forward() until the next append (see Pipeline.stop); a closed gate ends the source with
    CancelledError before it appends anything, and what it read then is neither counted nor spooled.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = False

    async def publish(self, readings: Any) -> None:
        if self.closed:
            raise asyncio.CancelledError
        await self.inner.publish(readings)

    async def publish_columns(self, columns: Any) -> None:
        if self.closed:
            raise asyncio.CancelledError
        await self.inner.publish_columns(columns)

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        if self.closed:
            raise asyncio.CancelledError
        await self.inner.dead_letter(reason, payload)

    # the block path (Modbus numeric responses as numpy columns), as the gateway's SpoolSink offers it:
    # a sink without it would bench the per-reading fallback instead of what `gateway run` does
    @property
    def takes_blocks(self) -> bool:
        return bool(self.inner.takes_blocks)

    def put_block(self, tags: tuple[str, ...], ts_us: int, values: np.ndarray, quality: np.ndarray | None) -> None:
        if self.closed:
            raise asyncio.CancelledError
        self.inner.put_block(tags, ts_us, values, quality)

    # the points path (OPC UA notifications' and Sparkplug metrics' numbers as numpy columns), as the gateway's
    # SpoolSink offers it
    @property
    def takes_points(self) -> bool:
        return bool(self.inner.takes_points)

    def put_points(self, tags: tuple[str, ...], at: np.ndarray, ts_us: np.ndarray, values: np.ndarray,
                   quality: np.ndarray | None, waits: bool = False) -> None:
        if self.closed:  # called inside asyncua's publish callback: not taken, not counted (durable() ends the source)
            return
        self.inner.put_points(tags, at, ts_us, values, quality, waits=waits)

    def full(self) -> bool:
        return bool(self.inner.full())

    async def room(self, limit: int) -> None:
        await self.inner.room(limit)

    async def durable(self) -> None:
        if self.closed:
            raise asyncio.CancelledError
        await self.inner.durable()


class Pipeline:
    """Spool (fsync) -> forward() -> HistorianWriter, fed by one source at a time through a SpoolSink.

    Wired as gateway.service.Gateway wires it: the sink shares a Collector (group commit at the
    spool's flush interval) and the writer flushes at the historian's; both default to what
    shopfloor.toml ships, and --spool-flush / --historian-flush set them.
    """

    def __init__(self, dsn: str, spool_flush: float | None = None, historian_flush: float | None = None) -> None:
        from gateway.config import SpoolConfig
        from historian.config import HistorianConfig

        self.dsn = dsn
        self.dir = Path(tempfile.mkdtemp(prefix="sf-bench-spool-"))
        self.spool_flush = SpoolConfig().flush_interval if spool_flush is None else spool_flush
        self.historian_flush = HistorianConfig(dsn=dsn).flush_interval if historian_flush is None else historian_flush

    async def start(self) -> None:
        from gateway.forwarder import forward
        from gateway.records import count_samples
        from gateway.sink import Collector
        from gateway.spool import Spool
        from historian.config import HistorianConfig
        from historian.writer import HistorianWriter

        self.config = HistorianConfig(dsn=self.dsn, flush_interval=self.historian_flush)
        self.spool = Spool(self.dir, fsync=True, count_samples=count_samples)
        self.collector = Collector(self.spool, self.spool_flush)
        self.writer = HistorianWriter(self.dsn, self.config)
        await self.writer.start()
        self.timed = TimedWriter(self.writer)
        self.forwarder = asyncio.create_task(forward(self.spool, self.timed), name="forwarder")

    def run(self, source: Any) -> tuple[asyncio.Task[None], GatedSink]:
        from gateway.exception import ExceptionFilter
        from gateway.sink import SpoolSink

        gate = GatedSink(SpoolSink(self.spool, source.status, ExceptionFilter([]), self.collector))
        return asyncio.create_task(source.run(gate), name=f"source:{source.name}"), gate

    async def stop(self, running: tuple[asyncio.Task[None], GatedSink]) -> None:
        """Close the gate (a polling source ends at its next publish), then cancel whatever still runs."""
        task, gate = running
        gate.closed = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def idle(self) -> bool:
        """Nothing spooled and not committed, nothing queued in the writer."""
        if self.forwarder.done():
            self.forwarder.result()
        return self.spool.depth == 0 and self.writer.queued_rows == 0

    async def close(self) -> None:
        self.forwarder.cancel()
        await asyncio.gather(self.forwarder, return_exceptions=True)
        await self.writer.close()
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)


async def settle(count: Callable[[], int], idle: Callable[[], bool] = lambda: True, timeout: float = 180) -> None:
    """Wait until count() has not moved for QUIET_S and idle() holds."""
    last, since = count(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= QUIET_S and idle():
            return
    raise TimeoutError(f"the phase did not settle within {timeout} s")


@contextlib.asynccontextmanager
async def mirrored(counter: Callable[[], int], shared: Any, factor: float = 1.0) -> Any:
    """While inside, keep the plant's window counter at what the consumer has taken."""
    async def loop() -> None:
        base, start = counter(), shared.value
        while True:
            shared.value = start + int((counter() - base) * factor)
            await asyncio.sleep(0.001)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy so far (every process, the kernel's own work too)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores used over a phase by this process (the consumer: bare client or gateway), the plant child, the machine.

    The machine's figure holds what the other two do not: PostgreSQL, the broker, the kernel's
    work for fsync and loopback sockets. Near machine_cpus, the phase was bound by CPU.
    """

    def __init__(self, plant: PlantProcess | PeerDevice) -> None:
        self.plant_pid = (plant.proc.pid if plant.proc is not None else 0) or 0
        self.t0 = time.monotonic()
        self.me0 = time.process_time()
        self.plant0 = _proc_cpu(self.plant_pid)
        self.machine0 = _machine_busy()

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        return {"consumer_process_cores": round((time.process_time() - self.me0) / wall, 2),
                "plant_process_cores": round((_proc_cpu(self.plant_pid) - self.plant0) / wall, 2),
                "machine_busy_cores": round((_machine_busy() - self.machine0) / wall, 2)}

    def consumer_seconds(self) -> float:
        """CPU seconds this process has used since the meter started."""
        return time.process_time() - self.me0


class Db:
    """The scratch database of one protocol's run, and the counts the bench takes of it."""

    def __init__(self, dsn: str, conn: psycopg.AsyncConnection) -> None:
        self.dsn = dsn
        self.conn = conn

    async def register(self, specs: list[Any]) -> None:
        from historian.registry import register

        await register(self.conn, specs)

    async def rows(self) -> int:
        cur = await self.conn.execute("SELECT count(*) FROM samples")
        return int((await cur.fetchone())[0])

    async def dead_letters(self) -> int:
        cur = await self.conn.execute("SELECT count(*) FROM dead_letters")
        return int((await cur.fetchone())[0])


async def historian_ceiling(db: Db, tags: int, rows: int, rounds: int) -> dict[str, Any]:
    """Raw binary COPY of ready-made rows shaped like the protocol's: what the database alone commits.

    The rows (``tags`` tags, one per tag per second) go into bench_copy, a table shaped like
    samples (same hypertable or partitions, same unique index), in batches of the writer's
    flush_rows, one transaction each; with one connection (the writer's) and with two at once.
    Nothing else runs meanwhile: no device, no adapter, no spool. No gateway on this machine
    can commit more than this, so it bounds what ratio_to_bare can reach.
    """
    from historian.config import HistorianConfig

    batch = HistorianConfig(dsn=db.dsn).flush_rows
    await make_copy_table(db.conn)
    start_us = (time.time_ns() // 1000 // 86_400_000_000 - 3) * 86_400_000_000
    batches = make_batches(rows, list(range(1, tags + 1)), batch, start_us)
    await copy_table_days(db.conn, batches)
    payloads = [b.to_copy_binary() for b in batches]
    best: dict[int, float] = {}
    for r in range(rounds):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            await db.conn.execute("TRUNCATE bench_copy")
            await db.conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            await asyncio.gather(*(run_copy(db.dsn, payloads[i::n]) for i in range(n)))
            rate = rows / (time.perf_counter() - t0)
            best[n] = max(best.get(n, 0.0), rate)
            say(f"historian ceiling round {r + 1}: raw COPY with {n} connection(s) {rate:,.0f} rows/s")
    await db.conn.execute("DROP TABLE bench_copy")
    return {"copy_rows_per_s_1_connection": round(best[1]), "copy_rows_per_s_2_connections": round(best[2]),
            "rows": rows, "tags": tags, "batch_rows": batch, "rounds": rounds,
            "definition": "ready-made binary COPY payloads into a table shaped like samples (same unique index), "
                          "one transaction per batch of the writer's flush_rows, alone on the machine (no device, "
                          "no gateway); best round; with 2 connections the batches are split between them"}


def latency_stats(acks: list[tuple[float, np.ndarray, int]], t_from: float) -> dict[str, Any]:
    """Percentiles of (ack time - source ts) over every acknowledged sample stamped at or after t_from."""
    keep = [(t, ts.astype(np.float64) / 1e6) for t, ts, _ in acks if len(ts)]
    if not keep:
        return {"latency_samples": 0}
    lat = np.concatenate([t - ts for t, ts in keep])
    lat = lat[np.concatenate([ts for _, ts in keep]) >= t_from]
    if not len(lat):
        return {"latency_samples": 0}
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {"latency_samples": int(len(lat)), "latency_p50_s": round(float(p50), 4),
            "latency_p90_s": round(float(p90), 4), "latency_p99_s": round(float(p99), 4),
            "latency_max_s": round(float(lat.max()), 4), "latency_min_s": round(float(lat.min()), 4)}


async def gateway_phase(
    db: Db, pipe: Pipeline, status: Any, drive: Callable[[], Any], name: str, plant: PlantProcess | PeerDevice
) -> dict[str, Any]:
    """Run one driven phase through the pipeline; rows counted with SQL, timed to the last commit ack."""
    pipe.timed.take()
    rows0, dead0 = await db.rows(), await db.dead_letters()
    taken0 = status.readings_total
    cpu = CpuMeter(plant)
    stats = await drive()
    cores = cpu.read()  # while the device ran
    await settle(lambda: status.readings_total, pipe.idle)
    consumer_cpu_s = cpu.consumer_seconds()  # the whole phase, the drain included
    acks = pipe.timed.take()
    rows = await db.rows() - rows0
    dead = await db.dead_letters() - dead0
    if not acks:
        raise RuntimeError(f"{name}: nothing was committed")
    last_commit = max(a[0] for a in acks)
    elapsed = last_commit - stats["first_publish"]
    device_s = stats["last_publish"] - stats["first_publish"]
    out = {
        "device_samples": stats["produced"],
        "adapter_readings": status.readings_total - taken0,
        "committed_rows": rows,
        "acked_written": sum(a[2] for a in acks),
        "dead_letters": dead,
        "lost": stats["produced"] - rows,
        "device_seconds": round(device_s, 3),
        "device_samples_per_s": round(stats["produced"] / device_s),
        "elapsed_s": round(elapsed, 3),
        "samples_per_s": round(rows / elapsed),
        **{k: v for k, v in stats.items() if k not in ("first_publish", "last_publish", "produced")},
        **latency_stats(acks, stats["first_publish"] - 1e-3),
        "cpu_while_device_ran": cores,
        "consumer_cpu_s": round(consumer_cpu_s, 2),
        "samples_per_consumer_cpu_s": round(rows / consumer_cpu_s),
    }
    say(f"{name}: {out['samples_per_s']:,} samples/s committed ({rows:,} rows in {elapsed:.2f} s), "
        f"p50 {out.get('latency_p50_s')} s p99 {out.get('latency_p99_s')} s, lost {out['lost']}, device "
        f"{out['device_samples_per_s']:,}/s, window waits {out.get('window_waits', '-')}, {cores}")
    return out


async def alternate(args: argparse.Namespace, bare: Callable[[int], Any], gateway: Callable[[int], Any]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rounds of bare client and gateway, alternating which goes first (the machine's noise spreads)."""
    bares: list[dict[str, Any]] = []
    gateways: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for which in (("bare", "gateway") if r % 2 == 0 else ("gateway", "bare")):
            if which == "bare":
                bares.append(await bare(r + 1))
            else:
                gateways.append(await gateway(r + 1))
    return bares, gateways


def bare_pace(bares: list[dict[str, Any]], bare_key: str) -> dict[str, Any]:
    """Who set the pace of the best bare round: the client, or the device (then the bare figure is a floor)."""
    best = max(bares, key=lambda b: b[bare_key])
    cores = best["cpu_while_device_ran"]
    waits = best.get("window_waits")
    saturated = cores["plant_process_cores"] >= 0.85 or waits == 0
    out = {"round": best["round"], **cores, "window_waits": waits, "device_saturated": saturated}
    if saturated:
        out["note"] = ("the plant process was (nearly) a full core busy or never had to wait for the client: the "
                       "device and this 2-core machine, not the bare client, set the pace, so bare_samples_per_s "
                       "is a lower bound of the client's limit and ratio_to_bare an upper bound; cpu_efficiency "
                       "compares the two per CPU-second instead")
    return out


def assemble(args: argparse.Namespace, proto: str, workload: dict[str, Any], bares: list[dict[str, Any]],
             bare_key: str, bare_definition: str, gateways: list[dict[str, Any]], lat: dict[str, Any],
             pipe: Pipeline, ceiling: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON line of one protocol: best round of each side, the latency phase, the targets."""
    best_gw = max(gateways, key=lambda g: g["samples_per_s"])
    best_bare = max(b[bare_key] for b in bares)
    cfg = pipe.config
    result: dict[str, Any] = {
        "bench": "gateway",
        "protocol": proto,
        "device": args.device,
        "workload": {**workload, "rounds": args.rounds, "throughput_seconds": args.seconds,
                     "latency_seconds": args.latency_seconds, "latency_rate_samples_per_s": args.latency_rate},
        "samples_per_s": best_gw["samples_per_s"],
        "samples_per_s_definition": "committed rows (SQL count) / (first device publish -> last commit "
                                    "acknowledged to forward()); best of the gateway max-throughput rounds",
        "latency_p50_s": lat.get("latency_p50_s"),
        "latency_p99_s": lat.get("latency_p99_s"),
        "latency_definition": "commit acknowledged to forward() (wall clock) - sample's source timestamp, over "
                              "every committed sample of the latency phase (the device paced at "
                              f"{args.latency_rate:,.0f} samples/s), not the max-throughput phase",
        "bare_samples_per_s": best_bare,
        "bare_definition": bare_definition,
        "ratio_to_bare": round(best_gw["samples_per_s"] / best_bare, 3),
        "gateway_rounds_samples_per_s": [g["samples_per_s"] for g in gateways],
        "bare_rounds_samples_per_s": [b[bare_key] for b in bares],
        "cpu_efficiency": {
            "gateway_samples_per_consumer_cpu_s": max(g["samples_per_consumer_cpu_s"] for g in gateways),
            "bare_samples_per_consumer_cpu_s": max(b["samples_per_consumer_cpu_s"] for b in bares),
            "ratio": round(max(g["samples_per_consumer_cpu_s"] for g in gateways)
                           / max(b["samples_per_consumer_cpu_s"] for b in bares), 3),
            "definition": "samples per CPU-second of this process over the phase (the bare client; or the whole "
                          "gateway path: adapter, spool, forwarder, writer; PostgreSQL's own CPU not included), "
                          "best round of each; a second view where the device, not the client, sets the pace",
        },
        "bare_pace": bare_pace(bares, bare_key),
        "throughput_phase": best_gw,
        "latency_phase": lat,
        "bare_rounds": bares,
        "historian": {"backend": "timescaledb", "flush_rows": cfg.flush_rows, "flush_interval_s": cfg.flush_interval,
                      "max_pending_rows": cfg.max_pending_rows},
        "spool": {"fsync": True, "where": "a temp folder on the root ext4 disk", "filter": "ExceptionFilter([])",
                  "flush_interval_s": pipe.spool_flush,
                  "flush_note": "group commit: one Collector shared by the sink, as gateway.service wires it"},
        "machine_cpus": os.cpu_count(),
        "cores": {**best_gw["cpu_while_device_ran"], "machine_cpus": os.cpu_count(),
                  "definition": "cores used while the device ran in the best gateway round: the gateway "
                                "(this process), the device process, the whole machine"},
        "loadavg": {"start": args.loadavg_start, "end": [round(x, 2) for x in os.getloadavg()],
                    "definition": "1, 5 and 15 minute load averages when this protocol's run started and ended"},
        **(extra or {}),
    }
    achieved = lat.get("device_samples_per_s", 0)
    checks = {
        "ratio_to_bare>=0.8": result["ratio_to_bare"] >= RATIO_TARGET,
        "latency_p99_s<1_at_10k_samples_per_s": result["latency_p99_s"] is not None
        and result["latency_p99_s"] < LATENCY_TARGET_S and achieved >= 0.9 * LATENCY_RATE,
    }
    if proto == "sparkplug":
        checks["samples_per_s>=200k"] = result["samples_per_s"] >= SPARKPLUG_TARGET
    result["target"] = {"ratio_to_bare": RATIO_TARGET, "latency_p99_s": LATENCY_TARGET_S,
                        "latency_at_samples_per_s": LATENCY_RATE,
                        **({"samples_per_s": SPARKPLUG_TARGET} if proto == "sparkplug" else {})}
    result["target_checks"] = checks
    result["target_note"] = ("the latency check also needs the latency phase to have reached at least 90% of "
                             f"{LATENCY_RATE:,} samples/s at the device (achieved: {achieved:,}/s)")
    result["meets_target"] = all(checks.values())
    # the ratio target in rows/s, next to what the database alone commits: above it, no gateway can reach it here
    needed = RATIO_TARGET * best_bare
    limit = max(ceiling["copy_rows_per_s_1_connection"], ceiling["copy_rows_per_s_2_connections"])
    result["historian_ceiling"] = {
        **ceiling,
        "ratio_target_samples_per_s": round(needed),
        "ratio_target_over_ceiling": round(needed / limit, 3),
        "ratio_target_reachable": needed <= limit,
        "gateway_ratio_to_ceiling_1_connection": round(best_gw["samples_per_s"]
                                                       / ceiling["copy_rows_per_s_1_connection"], 3),
    }
    return result


# ================================================================================================
# OPC UA
# ================================================================================================


async def bench_opcua(args: argparse.Namespace, db: Db) -> dict[str, Any]:
    from asyncua import Client, ua

    from gateway.opcua.adapter import OpcUaSource
    from gateway.opcua.config import OpcUaSourceConfig, OpcUaTag

    plant = make_device(args, "opcua", {"machines": OPCUA_MACHINES, "signals": OPCUA_SIGNALS})
    info = await plant.start()
    pipe = Pipeline(db.dsn, args.spool_flush, args.historian_flush)
    try:
        ns = info["ns"]
        tags = [
            OpcUaTag(name=f"{m}.{s}", node_id=f"ns={ns};s={m}.{s}", data_type=t, machine=m, sampling_interval=0.0,
                     queue_size=OPCUA_QUEUE_SIZE, deadband_type="none")
            for m in info["machines"] for s, t in OPCUA_SIGNALS.items()
        ]
        n = len(tags)
        config = OpcUaSourceConfig(name="opcua-bench", endpoint=info["endpoint"], mode="subscribe",
                                   publishing_interval=OPCUA_PUBLISHING_INTERVAL, tags=tags)
        await db.register([t.spec(config.name, "device") for t in tags])
        await pipe.start()
        say(f"opcua: {args.device} device at {info['endpoint']} with {n} numeric nodes")

        async def bare(r: int) -> dict[str, Any]:
            """A plain asyncua subscription on the same nodes, counting data-change notifications."""
            seen = {"count": 0, "last": 0.0}

            class Handler:
                def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                    seen["count"] += 1
                    seen["last"] = time.time()

            client = Client(info["endpoint"], timeout=10)
            await client.connect()
            try:
                params = ua.CreateSubscriptionParameters(
                    RequestedPublishingInterval=OPCUA_PUBLISHING_INTERVAL * 1000, RequestedLifetimeCount=10_000,
                    RequestedMaxKeepAliveCount=100, MaxNotificationsPerPublish=10_000, PublishingEnabled=True,
                    Priority=0)
                sub = await client.create_subscription(params, Handler())
                await sub.subscribe_data_change([client.get_node(t.node_id) for t in tags],
                                                queuesize=OPCUA_QUEUE_SIZE, sampling_interval=0.0)
                await settle(lambda: seen["count"])  # the initial values
                seen["count"] = 0
                async with mirrored(lambda: seen["count"], plant.consumed):
                    cpu = CpuMeter(plant)
                    stats = await plant.drive(None, args.seconds, OPCUA_WINDOW)
                    cores = cpu.read()
                    await settle(lambda: seen["count"])
                    consumer_cpu_s = cpu.consumer_seconds()
                await sub.delete()
            finally:
                await client.disconnect()
            elapsed = seen["last"] - stats["first_publish"]
            out = {"round": r, "device_samples": stats["produced"], "notifications": seen["count"],
                   "lost": stats["produced"] - seen["count"], "elapsed_s": round(elapsed, 3),
                   "notifications_per_s": round(seen["count"] / elapsed),
                   "device_samples_per_s": round(stats["produced"] / (stats["last_publish"] - stats["first_publish"])),
                   "window_waits": stats["window_waits"], "cpu_while_device_ran": cores,
                   "consumer_cpu_s": round(consumer_cpu_s, 2),
                   "samples_per_consumer_cpu_s": round(seen["count"] / consumer_cpu_s)}
            say(f"opcua bare round {r}: {out['notifications_per_s']:,} notifications/s ({seen['count']:,} of "
                f"{stats['produced']:,} sets), window waits {stats['window_waits']}, {cores}")
            return out

        async def gateway(r: int, rate: float | None = None, seconds: float = args.seconds) -> dict[str, Any]:
            """OpcUaSource (subscribe) into the pipeline."""
            source = OpcUaSource(config)
            running = pipe.run(source)
            try:
                await settle(lambda: source.status.readings_total, pipe.idle)  # connected, initial values in
                if source.status.readings_total < n:
                    raise RuntimeError(f"opcua gateway: {source.status.readings_total} initial values of {n}")
                name = f"opcua gateway round {r}" if rate is None else f"opcua gateway at {rate:,.0f}/s"
                async with mirrored(lambda: source.status.readings_total, plant.consumed):
                    out = await gateway_phase(db, pipe, source.status,
                                              lambda: plant.drive(rate, seconds, OPCUA_WINDOW), name, plant)
                out["subscription_stalls"] = source.stalls_total
            finally:
                await pipe.stop(running)
            return {"round": r, **out} if rate is None else out

        bares, gateways = await alternate(args, bare, gateway)
        lat = await gateway(0, args.latency_rate, args.latency_seconds)
        workload = {
            "nodes": n, "machines": OPCUA_MACHINES, "signals_per_machine": list(OPCUA_SIGNALS),
            "message": "one DataValue (Float, Double or UInt32) per data-change notification",
            "publishing_interval_s": OPCUA_PUBLISHING_INTERVAL, "sampling_interval_s": 0.0,
            "queue_size": OPCUA_QUEUE_SIZE, "deadband": "none (server and gateway)", "mode": "subscribe",
            "device": OPCUA_PEER_DEVICE if args.device == "peer" else
                      "OpcUaPlant (asyncua server) in a child process; plant.set() on every node in turn, each "
                      "a new value stamped now (asyncua's per-monitored-item deepcopy of the DataValue is "
                      "skipped in that process so that the server is not the limit)",
            "max_phase_pacing": f"as fast as the plant can set, at most {OPCUA_WINDOW:,} sets ahead of what the "
                                "consumer has taken",
        }
        ceiling = await historian_ceiling(db, OPCUA_MACHINES * len(OPCUA_SIGNALS), args.ceiling_rows, args.rounds)
        return assemble(args, "opcua", workload, bares, "notifications_per_s",
                        "plain asyncua Client subscription (same nodes, publishing interval 0.05 s, queue size, "
                        "sampling 0, handler callback): data-change notifications received / (first set -> last "
                        "notification)", gateways, lat, pipe, ceiling, device_fields(args, info))
    finally:
        await pipe.close()
        await plant.stop()


# ================================================================================================
# Modbus
# ================================================================================================


async def bench_modbus(args: argparse.Namespace, db: Db) -> dict[str, Any]:
    from pymodbus.client import AsyncModbusTcpClient

    from gateway.modbus.adapter import ModbusSource
    from gateway.modbus.config import ModbusSourceConfig, ModbusTag
    from gateway.modbus.lean import LeanTcpClient

    plant = make_device(args, "modbus", {"registers": MODBUS_REGISTERS})
    info = await plant.start()
    port = info["port"]
    pipe = Pipeline(db.dsn, args.spool_flush, args.historian_flush)
    try:
        tags = [ModbusTag(name=f"lathe.r{i:03d}", table="holding", address=i, type="uint16", machine="lathe")
                for i in range(MODBUS_REGISTERS)]
        await db.register([t.spec("modbus-bench", "gateway") for t in tags])
        await pipe.start()
        say(f"modbus: {args.device} device on 127.0.0.1:{port}, {MODBUS_REGISTERS} uint16 holding registers")

        async def bare(r: int, lean: bool = False) -> dict[str, Any]:
            """A plain pymodbus client reading the same 100 registers back to back (or the gateway's lean one)."""
            client = LeanTcpClient("127.0.0.1", port, 3.0) if lean else AsyncModbusTcpClient("127.0.0.1", port=port)
            await client.connect()
            reads = 0
            cpu = CpuMeter(plant)
            t0 = time.time()
            end = time.monotonic() + args.seconds
            try:
                while time.monotonic() < end:
                    rr = await client.read_holding_registers(0, count=MODBUS_REGISTERS, device_id=1)
                    if rr.isError() or len(rr.registers) != MODBUS_REGISTERS:
                        raise RuntimeError(f"bare modbus read failed: {rr}")
                    reads += 1
            finally:
                client.close()
            elapsed = time.time() - t0
            consumer_cpu_s = cpu.consumer_seconds()
            out = {"round": r, "reads": reads, "elapsed_s": round(elapsed, 3), "reads_per_s": round(reads / elapsed),
                   "registers_per_s": round(reads * MODBUS_REGISTERS / elapsed), "cpu_while_device_ran": cpu.read(),
                   "consumer_cpu_s": round(consumer_cpu_s, 2),
                   "samples_per_consumer_cpu_s": round(reads * MODBUS_REGISTERS / consumer_cpu_s)}
            say(f"modbus {'lean client' if lean else 'bare'} round {r}: {out['reads_per_s']:,} reads/s, "
                f"{out['registers_per_s']:,} registers/s, "
                f"{out['cpu_while_device_ran']}")
            return out

        async def gateway(r: int, interval: float = 1e-6, seconds: float = args.seconds) -> dict[str, Any]:
            """ModbusSource polling every `interval` into the pipeline for `seconds`."""
            config = ModbusSourceConfig(name="modbus-bench", host="127.0.0.1", port=port, poll_interval=interval,
                                        tags=tags)
            source = ModbusSource(config)
            if len(source.requests) != 1:
                raise RuntimeError(f"modbus gateway: expected one read request, got {source.requests}")

            async def poll() -> dict[str, Any]:
                first = time.time()
                running = pipe.run(source)
                await asyncio.sleep(seconds)
                last = time.time()
                await pipe.stop(running)  # the poll under way is neither counted nor spooled
                return {"first_publish": first, "last_publish": last, "produced": source.status.readings_total,
                        "polls": source.status.readings_total // MODBUS_REGISTERS}

            name = f"modbus gateway round {r}" if r else f"modbus gateway at {args.latency_rate:,.0f}/s"
            out = await gateway_phase(db, pipe, source.status, poll, name, plant)
            return {"round": r, **out} if r else out

        bares, gateways = await alternate(args, bare, gateway)
        leans = [await bare(r + 1, lean=True) for r in range(args.rounds)]
        lat = await gateway(0, MODBUS_REGISTERS / args.latency_rate, args.latency_seconds)
        workload = {
            "tags": MODBUS_REGISTERS, "registers": f"{MODBUS_REGISTERS} uint16 holding registers 0..99, one tag each",
            "message": f"one FC3 read of {MODBUS_REGISTERS} registers per poll",
            "device": MODBUS_PEER_DEVICE if args.device == "peer" else
                      "ModbusPlant (pymodbus server, simulate=False) in a child process",
            "throughput_poll_interval_s": 1e-6,
            "throughput_poll_interval_note": "the config refuses 0; 1e-6 polls back to back",
            "latency_poll_interval_s": MODBUS_REGISTERS / args.latency_rate,
            "timestamps": "Modbus has none: the gateway stamps readings at SpoolSink.publish, after the read",
        }
        ceiling = await historian_ceiling(db, MODBUS_REGISTERS, args.ceiling_rows, args.rounds)
        extra = device_fields(args, info)
        extra["lean_client"] = {
            "reads_per_s_rounds": [x["reads_per_s"] for x in leans],
            "samples_per_consumer_cpu_s": max(x["samples_per_consumer_cpu_s"] for x in leans),
            "cpu_ratio_to_pymodbus_client": round(max(x["samples_per_consumer_cpu_s"] for x in leans)
                                                  / max(b["samples_per_consumer_cpu_s"] for b in bares), 3),
            "definition": "the bare loop again with the gateway's Modbus TCP client (gateway/modbus/lean.py: "
                          "pymodbus PDUs and framer, registers read straight into numpy) instead of pymodbus's "
                          "AsyncModbusTcpClient, after the alternating rounds; cpu ratio > 1: fewer CPU-seconds "
                          "per register than the pymodbus loop. The ratio_to_bare above stays against pymodbus",
        }
        if isinstance(plant, PeerDevice):
            extra["device_counters"] = {**await plant.stats(), "definition": "FC3 reads and registers the "
                                        "modbus-serial server answered over the whole run (every phase)"}
        return assemble(args, "modbus", workload, bares, "registers_per_s",
                        "plain pymodbus AsyncModbusTcpClient loop of read_holding_registers(0, count=100): "
                        "registers/s = reads/s x 100 (one register = one uint16 tag value, the gateway's tag set)",
                        gateways, lat, pipe, ceiling,
                        {"latency_note": "Modbus latency runs from the gateway's stamp (taken after the read) to "
                                         "the commit: spool, forwarder and writer only", **extra})
    finally:
        await pipe.close()
        await plant.stop()


# ================================================================================================
# Sparkplug B
# ================================================================================================


async def bench_sparkplug(args: argparse.Namespace, db: Db) -> dict[str, Any]:
    import aiomqtt

    from gateway.mqtt import sparkplug_b_pb2 as gpb
    from gateway.mqtt.adapter import MqttSource
    from gateway.mqtt.config import MqttSourceConfig, SparkplugGroup
    from gateway.tags import TagConfig

    url = urlparse(args.mqtt)
    host, port = url.hostname or "127.0.0.1", url.port or 1883
    group = f"bench{uuid.uuid4().hex[:6]}"
    plant = PlantProcess("sparkplug", {"host": host, "port": port, "group": group, "edge": SPARKPLUG_EDGE,
                                       "devices": SPARKPLUG_DEVICES, "metrics": SPARKPLUG_METRICS})
    info = await plant.start()
    pipe = Pipeline(db.dsn, args.spool_flush, args.historian_flush)
    try:
        # the tag names the adapter makes of the births (default template {edge_node}.{device}.{metric})
        specs = [TagConfig(name=f"{SPARKPLUG_EDGE}.{d}.m{i:03d}", machine=d).spec("sparkplug-bench", "device")
                 for d in info["devices"] for i in range(SPARKPLUG_METRICS)]
        specs.append(TagConfig(name=f"{SPARKPLUG_EDGE}.Properties/Hardware", data_type="text",
                               machine=SPARKPLUG_EDGE).spec("sparkplug-bench", "device"))
        await db.register(specs)
        config = MqttSourceConfig(name="sparkplug-bench", host=host, port=port,
                                  sparkplug=[SparkplugGroup(group_id=group)])
        await pipe.start()
        say(f"sparkplug: edge node {group}/{SPARKPLUG_EDGE}, {SPARKPLUG_DEVICES} devices x {SPARKPLUG_METRICS} "
            f"Double metrics, DDATA {info['payload_bytes']} bytes")

        async def bare(r: int) -> dict[str, Any]:
            """A plain aiomqtt subscriber decoding every payload and counting its metrics."""
            counts = {"messages": 0, "metrics": 0, "last": 0.0, "other": 0}

            async def consume(client: aiomqtt.Client) -> None:
                async for message in client.messages:
                    payload = gpb.Payload.FromString(message.payload)  # type: ignore[arg-type]
                    if "/DDATA/" not in message.topic.value:
                        counts["other"] += 1
                        continue
                    counts["messages"] += 1
                    counts["metrics"] += len(payload.metrics)
                    counts["last"] = time.time()

            async with aiomqtt.Client(host, port, identifier=f"bench-bare-{uuid.uuid4().hex[:6]}",
                                      protocol=aiomqtt.ProtocolVersion.V5) as client:
                await client.subscribe(f"spBv1.0/{group}/#", qos=config.qos)
                consumer = asyncio.create_task(consume(client))
                async with mirrored(lambda: counts["messages"], plant.consumed):
                    cpu = CpuMeter(plant)
                    stats = await plant.drive(None, args.seconds, SPARKPLUG_WINDOW_MESSAGES)
                    cores = cpu.read()
                    await settle(lambda: counts["messages"])
                    consumer_cpu_s = cpu.consumer_seconds()
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
            elapsed = counts["last"] - stats["first_publish"]
            out = {"round": r, "published_messages": stats["messages"], "messages": counts["messages"],
                   "metrics": counts["metrics"], "other_messages": counts["other"],
                   "lost_messages": stats["messages"] - counts["messages"], "elapsed_s": round(elapsed, 3),
                   "messages_per_s": round(counts["messages"] / elapsed),
                   "metrics_per_s": round(counts["metrics"] / elapsed),
                   "window_waits": stats["window_waits"], "cpu_while_device_ran": cores,
                   "consumer_cpu_s": round(consumer_cpu_s, 2),
                   "samples_per_consumer_cpu_s": round(counts["metrics"] / consumer_cpu_s)}
            say(f"sparkplug bare round {r}: {out['messages_per_s']:,} messages/s, {out['metrics_per_s']:,} "
                f"metrics/s ({counts['messages']:,} of {stats['messages']:,}), window waits "
                f"{stats['window_waits']}, {cores}")
            return out

        async def gateway(r: int, rate: float | None = None, seconds: float = args.seconds) -> dict[str, Any]:
            """MqttSource (Sparkplug host, QoS as configured by default) into the pipeline."""
            source = MqttSource(config)
            running = pipe.run(source)
            try:
                while not source.status.connected:
                    await asyncio.sleep(0.05)
                await plant.rebirth()  # births teach this new host the aliases (their values are stored too)
                await settle(lambda: source.status.readings_total, pipe.idle)
                if source.status.readings_total < SPARKPLUG_DEVICES * SPARKPLUG_METRICS:
                    raise RuntimeError(f"sparkplug gateway: only {source.status.readings_total} birth values")
                name = f"sparkplug gateway round {r}" if rate is None else f"sparkplug gateway at {rate:,.0f}/s"
                async with mirrored(lambda: source.status.readings_total, plant.consumed, 1 / SPARKPLUG_METRICS):
                    out = await gateway_phase(db, pipe, source.status,
                                              lambda: plant.drive(rate, seconds, SPARKPLUG_WINDOW_MESSAGES),
                                              name, plant)
                out["source_last_error"] = source.status.last_error
            finally:
                await pipe.stop(running)
            return {"round": r, **out} if rate is None else out

        bares, gateways = await alternate(args, bare, gateway)
        lat = await gateway(0, args.latency_rate, args.latency_seconds)
        workload = {
            "tags": SPARKPLUG_DEVICES * SPARKPLUG_METRICS, "devices": SPARKPLUG_DEVICES,
            "metrics_per_message": SPARKPLUG_METRICS, "metric_datatype": "Double",
            "message_bytes": info["payload_bytes"], "message": "DDATA by alias, with payload timestamp and seq",
            "device": "MqttPlant in a child process: real NBIRTH/DBIRTH (names, aliases), then DDATA bytes built "
                      "once per device (4 value variants) with a fresh timestamp (ms, one per device per ms) and "
                      "seq per message, sent with publish_raw",
            "publish_qos": 0, "subscription_qos": config.qos,
            "qos_note": "the adapter's default subscription QoS is 1 (PUBACK after spooling); Sparkplug DDATA is "
                        "published QoS 0 (as the plant does), so it is delivered QoS 0, without PUBACKs",
            "broker": f"mosquitto at {host}:{port}",
            "max_phase_pacing": f"as fast as the plant can publish, at most {SPARKPLUG_WINDOW_MESSAGES} messages "
                                "ahead of what the consumer has taken",
        }
        ceiling = await historian_ceiling(db, SPARKPLUG_DEVICES * SPARKPLUG_METRICS, args.ceiling_rows, args.rounds)
        return assemble(args, "sparkplug", workload, bares, "metrics_per_s",
                        "plain aiomqtt subscriber (same broker, topic filter spBv1.0/<group>/#, QoS 1 "
                        "subscription): every payload decoded with gateway/mqtt/sparkplug_b_pb2 Payload.FromString "
                        "and its metrics counted; DDATA metrics / (first publish -> last DDATA received)",
                        gateways, lat, pipe, ceiling)
    finally:
        await pipe.close()
        await plant.stop()


BENCHES = {"opcua": bench_opcua, "modbus": bench_modbus, "sparkplug": bench_sparkplug}


def rows_to_run(protocol: str, device: str) -> list[tuple[str, str]]:
    """(protocol, device) of every row asked for; PeerMissing (naming scripts/peers) when a peer is absent."""
    protocols = list(BENCHES) if protocol == "all" else [protocol]
    devices = ["ours", "peer"] if device == "both" else [device]
    rows = []
    for proto in protocols:
        for dev in devices:
            if dev == "peer" and proto not in PEERS:
                if protocol != "all":
                    raise PeerMissing(f"--device {device}: no foreign peer bench for {proto} "
                                      f"(peer rows exist for {', '.join(PEERS)})")
                say(f"{proto}: no foreign peer bench (peer rows exist for {', '.join(PEERS)})")
                continue
            if dev == "peer":
                require_peer(proto)  # before any scratch database: fail at once, never fall back to ours
            rows.append((proto, dev))
    return rows


async def main_async(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    """Run each (protocol, device) row in its own scratch database and print its JSON line."""
    admin = args.dsn or default_dsn()
    for proto, device in rows:
        row = argparse.Namespace(**vars(args))
        row.device = device
        row.loadavg_start = [round(x, 2) for x in os.getloadavg()]
        async with scratch_database(admin, "sf_bench_gw") as dsn:
            say(f"{proto} ({device} device): scratch database {conninfo.conninfo_to_dict(dsn)['dbname']}")
            conn = await connect(dsn)
            try:
                result = await BENCHES[proto](row, Db(dsn, conn))
            finally:
                await conn.close()
        print(json.dumps(result), flush=True)


def main() -> None:
    """Parse arguments, run, print one JSON line per protocol."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=["all", *BENCHES], default="all")
    p.add_argument("--device", choices=["ours", "peer", "both"], default="ours",
                   help="ours: the simulated plant; peer: the foreign node-opcua / modbus-serial server "
                        "(installed by scripts/peers; no peer for sparkplug); both: a row of each")
    p.add_argument("--seconds", type=float, default=8.0, help="device time of each bare and max-throughput round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of bare client and gateway, alternating")
    p.add_argument("--latency-seconds", type=float, default=8.0)
    p.add_argument("--latency-rate", type=float, default=float(LATENCY_RATE), help="samples/s of the latency phase")
    p.add_argument("--ceiling-rows", type=int, default=2_000_000,
                   help="rows of the raw COPY ceiling measured after each protocol's rounds")
    p.add_argument("--dsn", help="server to make a scratch database on (default: the services' TimescaleDB)")
    p.add_argument("--mqtt", default=default_mqtt(), help="broker URL (default: the services' Mosquitto)")
    p.add_argument("--fleet", action="store_true",
                   help="only the fleet scenario (bench/fleet.py): N Modbus devices, gateway against the bare floor")
    from bench import fleet

    fleet.add_arguments(p)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = p.parse_args()
    if args.fleet:
        if "--seconds" not in sys.argv:
            args.seconds = 30.0  # the fleet's measurement window per phase
        asyncio.run(fleet.run(args))
        return
    try:
        rows = rows_to_run(args.protocol, args.device)
    except PeerMissing as e:
        print(f"bench.gateway: {e}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main_async(args, rows))


if __name__ == "__main__":
    main()
