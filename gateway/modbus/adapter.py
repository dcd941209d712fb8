"""The Modbus source (TCP, RTU over TCP, or RTU on a serial port): polls one device for its configured tags and writes back to writable ones.

Error policy, one per scope (as Telegraf's modbus input): an exception response spoils only the
request it answers (its tags are published with bad quality, the error is recorded, the poll goes
on); no response or a lost connection drops the connection, publishes the tags as
BAD_COMM_FAILURE once, and reconnects with exponential backoff and jitter, forever.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from gateway.modbus import codec
from gateway.modbus.block import BlockDecoder
from gateway.modbus.config import BIT_TABLES, ModbusSourceConfig, ModbusTag
from gateway.modbus.lean import LeanTcpClient
from gateway.modbus.requests import ReadRequest, group
from gateway.cancel import honour_cancellation
from gateway.outbox import Outbox, run_beside
from gateway.source import (InvalidValueError, NotWritableError, Reading, ReadingColumns, Sink, SinkError,
                            SourceStatus, WriteError)
from historian.samples import Quality

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
# what a reading is worth when its request got an exception: the device says our map is wrong
# (1, 2), a gateway could not reach the device behind it (10, 11), or the device failed (the rest)
_EXCEPTION_QUALITY = {1: Quality.BAD_CONFIG_ERROR, 2: Quality.BAD_CONFIG_ERROR,
                      10: Quality.BAD_COMM_FAILURE, 11: Quality.BAD_COMM_FAILURE}
_ILLEGAL_ADDRESS = 2
_SKIP_PAUSE = 0.01  # seconds a flat-out poll group waits between looks at a full spool
_READS = {"coil": "read_coils", "discrete_input": "read_discrete_inputs", "holding": "read_holding_registers",
          "input": "read_input_registers"}  # the client's read method of each table
Client = LeanTcpClient | AsyncModbusTcpClient | AsyncModbusSerialClient


def describe_exception(code: int) -> str:
    """'illegal data address (exception 2)' for a Modbus exception code."""
    return f"{EXCEPTION_NAMES.get(code, 'unknown exception')} (exception {code})"


class LinkDown(Exception):
    """The device did not answer or the connection is gone: reconnect."""


@dataclass
class Backoff:
    """Exponential delays from `low` to `high` seconds, each drawn in [d/2, d] so clients spread out."""

    low: float
    high: float
    attempts: int = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = min(self.high, self.low * 2**self.attempts)
        self.attempts += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        """Start from `low` again (after a success)."""
        self.attempts = 0


@dataclass
class PollGroup:
    """Tags read on one schedule: every `interval` seconds, with these requests."""

    interval: float
    requests: list[ReadRequest]
    """The reads of one poll; a merged read that meets a hole in the device's map is split."""


def poll_groups(config: ModbusSourceConfig) -> list[PollGroup]:
    """The source's tags grouped by poll interval (fastest first), each group planned into reads."""
    by_interval: dict[float, list[ModbusTag]] = {}
    for tag in config.tags:
        by_interval.setdefault(config.interval_of(tag), []).append(tag)
    return [PollGroup(interval, group(tags, config.max_registers_per_request, config.merge_gap))
            for interval, tags in sorted(by_interval.items())]


class ModbusSource:
    """One Modbus device: a gateway.source.Source that polls it and writes back to it."""

    def __init__(self, config: ModbusSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.status = SourceStatus(config.name, "modbus", tags_total=len(config.tags))
        self.tags = {t.name: t for t in config.tags}
        self.groups: list[PollGroup] = poll_groups(config)
        """The tags by poll interval, fastest first, each planned into its own reads."""
        self._client: Client | None = None
        self._failing: dict[str, str] = {}  # request -> its last exception, to log changes only
        self._undecodable: dict[str, list[int]] = {}  # tag -> registers already dead-lettered
        self._blocks: dict[int, tuple[ReadRequest, BlockDecoder]] = {}  # id(request) -> its numeric decoder
        self._spool_full: Callable[[], bool] = _never_full
        self._skipping = False  # polls are being skipped (the warning is logged once per episode)
        self._block_sink: Any = None  # the sink, when it takes numeric responses as columns (put_block)
        # one request on the wire at a time: the groups' polls and writes share the one connection,
        # and a serial line (or an RTU converter) cannot tell interleaved answers apart
        self._wire = asyncio.Lock()
        # the lock is needed only when something else can use the wire (a per-request lock is a
        # measurable share of a 100-register poll's own CPU)
        self._shared_wire = len(self.groups) > 1 or any(t.writable for t in config.tags)

    @property
    def requests(self) -> list[ReadRequest]:
        """Every group's reads, fastest group first (a copy)."""
        return [r for g in self.groups for r in g.requests]

    async def run(self, sink: Sink) -> None:
        """Poll until cancelled, reconnecting with backoff after any transport failure."""
        c = self.config
        outbox = Outbox(sink, self.status, batch_size=c.batch_size, batch_interval=c.batch_interval,
                        max_pending=c.max_pending)
        # a sink that takes whole numeric responses (the gateway's spool sink, which applies
        # exception reporting to a block at once): good responses go to it as numpy columns
        # without waiting; the outbox keeps what needs a row each (bad quality, strings, bools,
        # dead letters)
        self._block_sink = sink if getattr(sink, "takes_blocks", False) else None
        # a spool sink says when its spool is full: polls are then skipped and counted (backpressure)
        # rather than read and made to push the spool's oldest records out
        self._spool_full = getattr(sink, "full", _never_full)
        try:
            await run_beside(outbox, self._connect_forever(outbox), f"modbus:{self.name}")
        except asyncio.CancelledError:
            if self._block_sink is not None:
                await self._block_sink.durable()  # what was read before the stop still reaches the spool
            raise

    async def _connect_forever(self, outbox: Outbox) -> None:
        """Connect and poll; after any transport failure reconnect with backoff, forever."""
        backoff = Backoff(self.config.reconnect_min, self.config.reconnect_max)
        connected_once = False
        while True:
            client = self._new_client()
            try:
                connected = await client.connect()
                honour_cancellation()
                if not connected:
                    raise LinkDown(f"cannot connect to {self.config.where}")
                if connected_once:
                    self.status.reconnects_total += 1
                connected_once = True
                self._client = client
                self.status.connected = True
                self.status.recovered()
                backoff.reset()
                log.info("%s: connected to %s", self.name, self.config.where)
                await self._poll(client, outbox)
            except LinkDown as e:
                self._lost(client, outbox, str(e))
            except SinkError:
                raise  # the spool cannot store what we read: the gateway stops, as when a publish fails
            except Exception as e:  # noqa: BLE001 - a bug here must not stop the other sources
                log.exception("%s: unexpected error; reconnecting", self.name)
                self._lost(client, outbox, f"unexpected error: {e!r}")
            finally:
                self._close(client)
            await asyncio.sleep(backoff.next())

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """Write a value to a writable tag: FC5/FC15 for a coil, FC6/FC16 for registers."""
        t = self.tags.get(tag)
        if t is None:
            raise NotWritableError(f"{self.name}: no tag {tag!r} in this source")
        if not t.writable:
            raise NotWritableError(f"{self.name}: tag {tag!r} is not writable")
        registers = self._raw(t, value)
        client = self._client
        if client is None or not client.connected:
            raise WriteError(f"{self.name}: cannot write tag {tag!r}: not connected")
        unit, single = self.config.unit_id, self.config.single_write_functions
        what = f"writing {t.table} {t.address}..{t.address + t.registers - 1} (tag {tag!r})"
        try:
            async with self._wire:
                if t.table == "coil" and single:
                    response = await client.write_coil(t.address, bool(registers[0]), device_id=unit)
                elif t.table == "coil":
                    response = await client.write_coils(t.address, [bool(registers[0])], device_id=unit)
                elif len(registers) == 1 and single:
                    response = await client.write_register(t.address, registers[0], device_id=unit)
                else:
                    response = await client.write_registers(t.address, registers, device_id=unit)
        except ModbusException as e:
            raise WriteError(f"{self.name}: no answer {what}: {e}") from e
        if response.isError():
            message = f"{describe_exception(response.exception_code)} {what}"
            self.status.error(message)
            raise WriteError(f"{self.name}: {message}")

    def _raw(self, tag: ModbusTag, value: float | int | bool | str) -> list[int]:
        """The registers to write for an engineering value, or WriteError saying why not."""
        try:
            if tag.type == "bool":
                if value not in (True, False):  # 1 and 0 compare equal to True and False
                    raise ValueError(f"a bool tag needs true or false, got {value!r}")
                return codec.encode(bool(value), "bool")
            if tag.type == "string":
                return codec.encode(value, "string", tag.byte_order, tag.length)
            if isinstance(value, str):
                raise ValueError(f"a {tag.type} tag needs a number, got {value!r}")
            raw = codec.remove_scale(value, tag.type, tag.scale, tag.offset)
            return codec.encode(raw, tag.type, tag.byte_order)
        except ValueError as e:
            raise InvalidValueError(f"{self.name}: cannot write {value!r} to tag {tag.name!r}: {e}") from e

    def _new_client(self) -> Client:
        """A fresh client for the configured transport (never reused after a failure)."""
        c = self.config
        if c.framing == "tcp":
            return LeanTcpClient(c.host, int(c.port or 0), c.timeout)
        # reconnect_delay=0: pymodbus must not reconnect on its own, run() does it with our backoff;
        # retries=0: the next poll is the retry
        if c.framing == "rtu":
            return AsyncModbusSerialClient(
                str(c.port),
                framer=FramerType.RTU,
                baudrate=int(c.baudrate or 0),
                bytesize=int(c.bytesize or 0),
                parity=str(c.parity),
                stopbits=int(c.stopbits or 0),
                name=self.name,
                timeout=c.timeout,
                retries=0,
                reconnect_delay=0,
            )
        return AsyncModbusTcpClient(
            c.host,
            port=int(c.port or 0),
            framer=FramerType.RTU,  # rtu-over-tcp: "tcp" (MBAP) takes the lean client above
            name=self.name,
            timeout=c.timeout,
            retries=0,
            reconnect_delay=0,
        )

    def _lost(self, client: Client, outbox: Outbox, message: str) -> None:
        """Record why the link failed; if it was up, mark every tag BAD_COMM_FAILURE once."""
        self.status.error(message)
        if not self.status.connected:
            log.debug("%s: %s", self.name, message)
            return
        log.warning("%s: %s; reconnecting", self.name, message)
        self._close(client)
        outbox.put_many(Reading(t, None, quality=Quality.BAD_COMM_FAILURE) for t in self.tags)

    def _close(self, client: Client) -> None:
        """Close a connection (again is harmless) and say so in the status."""
        if self._client is client:
            self._client = None
        self.status.connected = False
        client.close()

    async def _poll(self, client: Client, outbox: Outbox) -> None:
        """Poll every group on its own schedule over the one connection; the first failure ends all."""
        if len(self.groups) == 1:
            await self._poll_group(client, self.groups[0], outbox)
            return
        tasks = [asyncio.create_task(self._poll_group(client, g, outbox), name=f"modbus:{self.name}:{g.interval}s")
                 for g in self.groups]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # LinkDown (or a bug) of one group: reconnect, which restarts them all
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_group(self, client: Client, poll_group: PollGroup, outbox: Outbox) -> None:
        """Read a group's requests every interval, on a fixed schedule that skips missed slots."""
        loop = asyncio.get_running_loop()
        interval = poll_group.interval
        due = loop.time()
        while True:
            if self._spool_full():
                self._skip(poll_group)
            else:
                self._skipping = False
                poll = ReadingColumns()
                for request in list(poll_group.requests):
                    poll.extend(await self._read(client, poll_group, request, outbox))
                    honour_cancellation()
                if poll:
                    outbox.put_columns(poll)
            await outbox.wait_for_room()  # a slow sink slows the polls down rather than losing readings
            if self._block_sink is not None:
                await self._block_sink.room(self.config.max_pending)
            due += interval
            now = loop.time()
            if due <= now:
                # late (a slow device, or polling flat out): start again now rather than in a burst of
                # late polls, and send at once: the spool's and historian's tasks run while the device
                # answers, not between its answer and the next request (another group still gets
                # the wire: the lock hands it to whoever waited first)
                due = now
                if self._skipping:  # polling flat out against a full spool: look again soon, not in a busy loop
                    await asyncio.sleep(_SKIP_PAUSE)
                continue
            await asyncio.sleep(due - now)

    def _skip(self, poll_group: PollGroup) -> None:
        """Count a poll not taken because the spool is full; say so once per episode."""
        self.status.readings_skipped += sum(len(r.tags) for r in poll_group.requests)
        if not self._skipping:
            self._skipping = True
            log.warning("%s: the spool is full: skipping polls (counted in readings_skipped) until it has room",
                        self.name)

    async def _read(
        self, client: Client, poll_group: PollGroup, request: ReadRequest, outbox: Outbox
    ) -> ReadingColumns:
        """The readings of one request: decoded values, or bad quality for all on an exception."""
        response = await self._request(client, request)
        if not response.isError():
            if self._failing and self._failing.pop(str(request), None):  # no str() per poll while all is well
                log.info("%s: %s reads again", self.name, request)
                for name in request.names:
                    self.status.tag_live(name)
            values = response.bits if request.table in BIT_TABLES else response.registers
            # Modbus has no timestamps: the time of the answer is the best there is
            ts_us = time.time_ns() // 1000
            if self._block_sink is not None and request.table not in BIT_TABLES:
                block = self._decoder(request)
                if not block.rest:  # numbers only: one float64 column, straight to the spool
                    column, quality = block.columns(values[: request.count])
                    self._block_sink.put_block(request.names, ts_us, column, quality)
                    return ReadingColumns()
            if isinstance(values, np.ndarray):  # the lean client's registers: codec takes a list of ints
                values = values.tolist()
            return self._decode(request, values[: request.count], ts_us, outbox)
        code = response.exception_code
        if code == _ILLEGAL_ADDRESS and len(smaller := request.split()) > 1:
            # the request met a hole in the device's map (or a tag that is one): from now on read
            # around it, so only the tags really at illegal addresses go bad
            log.info("%s: %s has holes, reading it as %s", self.name, request, ", ".join(map(str, smaller)))
            index = poll_group.requests.index(request)
            poll_group.requests[index : index + 1] = smaller
            parts = ReadingColumns()
            for part in smaller:
                parts.extend(await self._read(client, poll_group, part, outbox))
            return parts
        message = f"{describe_exception(code)} reading {request}"
        if self._failing.get(str(request)) != message:  # once per request and error, not every poll
            log.warning("%s: %s", self.name, message)
            self._failing[str(request)] = message
        self.status.error(message)
        for name in request.names:
            self.status.tag_failed(name, message)
        quality = _EXCEPTION_QUALITY.get(code, Quality.BAD_DEVICE_FAILURE)
        n = len(request.tags)
        return ReadingColumns(list(request.names), [None] * n, [time.time_ns() // 1000] * n, [int(quality)] * n)

    async def _request(self, client: Client, request: ReadRequest) -> ModbusPDU:
        """Send one read; LinkDown when there is no answer."""
        if not client.connected:
            raise LinkDown("connection lost")
        read = getattr(client, _READS[request.table])
        try:
            if not self._shared_wire:  # one poll group and nothing writable: no other request can interleave
                return await read(request.address, count=request.count, device_id=self.config.unit_id)
            async with self._wire:
                return await read(request.address, count=request.count, device_id=self.config.unit_id)
        except (ModbusException, OSError) as e:  # OSError covers TimeoutError
            raise LinkDown(f"no response reading {request}: {e}") from e

    def _decoder(self, request: ReadRequest) -> BlockDecoder:
        """The numeric decoder of a register request, made on its first response."""
        block = self._blocks.get(id(request))
        if block is None:
            # the request is kept beside its decoder: its id() is not reused while the entry lives
            block = self._blocks[id(request)] = (request, BlockDecoder(request.address, request.tags))
        return block[1]

    def _decode(self, request: ReadRequest, values: Sequence[int], ts_us: int, outbox: Outbox) -> ReadingColumns:
        """Readings of the tags in a response; what does not decode goes to dead letters."""
        n = len(request.tags)
        decoded: list[object] = [None] * n
        rest: Sequence[tuple[int, ModbusTag]] = list(enumerate(request.tags))
        not_finite: list[int] = []
        if request.table not in BIT_TABLES:
            block = self._decoder(request)
            not_finite = block.decode(values, decoded)
            rest = block.rest
        skip = set()
        for slot, tag in rest:
            words = values[request.span(tag)]
            try:
                decoded[slot] = v = tag.to_value(codec.decode(words, tag.type, tag.byte_order))
            except ValueError as e:  # a string that is not UTF-8: nothing we can store
                skip.add(slot)
                # once per content, not once per poll: the device will say the same every second
                if self._undecodable.get(tag.name) != list(words):
                    self._undecodable[tag.name] = list(words)
                    outbox.put_dead(f"{self.name}: cannot decode tag {tag.name!r}: {e}", _payload(tag, words))
                continue
            self._undecodable.pop(tag.name, None)
            if isinstance(v, float) and not math.isfinite(v):
                not_finite.append(slot)
        quality = [int(Quality.GOOD)] * n
        for slot in not_finite:  # NaN or infinity is the device's "no value"
            quality[slot] = int(Quality.BAD_SENSOR_FAILURE)
        out = ReadingColumns(list(request.names), decoded, [ts_us] * n, quality)
        if skip:
            keep = [i for i in range(n) if i not in skip]
            out = ReadingColumns(*([col[i] for i in keep] for col in (out.tags, out.values, out.ts_us, out.quality)))
        return out


def _never_full() -> bool:
    """A sink without a spool (tests' MemorySink) is never full."""
    return False


def _payload(tag: ModbusTag, words: Sequence[int]) -> dict[str, Any]:
    return {"tag": tag.name, "table": tag.table, "address": tag.address, "type": tag.type,
            "registers": [int(w) for w in words]}
