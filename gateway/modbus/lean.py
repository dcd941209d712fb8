"""A lean Modbus TCP client: pymodbus's request PDUs, framer and decoder over a plain asyncio Protocol.

pymodbus's own client costs about 90 µs of CPU per 100-register read on this kind of machine,
about as much as the rest of the gateway's path for that read: a lock, a wait_for task, frame
hex logging arguments, and a response decode that unpacks each register with struct and then
formats the whole PDU as a string for a debug line that is not logged. Here the requests are
still pymodbus PDUs (every read and write method comes from its ModbusClientMixin) framed by its
FramerSocket, and every response but one is decoded by its DecodePDU; only a good FC3/FC4
answer, the response every poll waits for, is read straight from the frame into a numpy uint16
array (`registers`) instead. About half the client CPU per read: `python -m bench.gateway
--protocol modbus` measures both clients in one run (its `lean_client` field).

Used for `framing = "tcp"` (MBAP); RTU over TCP and serial lines keep pymodbus's clients.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Awaitable

import numpy as np
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

log = logging.getLogger(__name__)

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit + PDU), unit id
_REGISTER_RESPONSES = {3: ReadHoldingRegistersResponse, 4: ReadInputRegistersResponse}
_MAX_FRAME = 7 + 253  # MBAP header and the largest PDU the specification allows


class _Link(asyncio.Protocol):
    """The connection: splits the byte stream into MBAP frames and hands the awaited one over."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: asyncio.Future[bytes] | None = None
        self.tid = 0  # the transaction id the waiting future expects

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 7:
            tid, pid, length, _ = _MBAP.unpack_from(buffer)
            size = 6 + length
            if pid != 0 or length < 2 or size > _MAX_FRAME:
                self._fail(ModbusIOException(f"not a Modbus TCP frame: protocol id {pid}, length {length}"))
                return
            if len(buffer) < size:
                return
            frame = bytes(buffer[:size])
            del buffer[:size]
            waiting = self.waiting
            if waiting is not None and tid == self.tid and not waiting.done():
                waiting.set_result(frame)
            else:
                # a late answer to a request that timed out (the source reconnects anyway), or a device's echo
                log.debug("modbus: dropped a frame with transaction id %d (waiting for %d)", tid, self.tid)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionResetError(f"connection lost: {exc}" if exc else "connection closed by the device"))

    def _fail(self, exc: Exception) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class LeanTcpClient(ModbusClientMixin[Awaitable[ModbusPDU]]):
    """The Modbus TCP client the source uses: the AsyncModbusTcpClient methods it calls, at lower cost per request.

    One request at a time (the source already serialises its wire); no retries and no reconnect of
    its own: a timeout or a lost connection raises, and the source reconnects with its backoff.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.timeout = timeout
        self._link: _Link | None = None
        self._framer = FramerSocket(DecodePDU(False))
        self._decoder = self._framer.decoder
        self._tid = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        link = self._link
        return link is not None and link.transport is not None and not link.transport.is_closing()

    async def connect(self) -> bool:
        """Open the connection within the timeout; False (and a debug line) when it cannot."""
        loop = asyncio.get_running_loop()
        try:
            _, link = await asyncio.wait_for(loop.create_connection(_Link, self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as e:
            log.debug("modbus: cannot connect to %s:%s: %s", self.host, self.port, e)
            return False
        self._link = link
        return True

    def close(self) -> None:
        """Close the connection (again is harmless)."""
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()

    async def execute(self, no_response_expected: bool, request: ModbusPDU) -> ModbusPDU:  # type: ignore[override]
        """Send one request and return its response PDU; OSError or ModbusIOException when there is none."""
        async with self._lock:
            link = self._link
            if link is None or link.transport is None or link.transport.is_closing():
                raise ConnectionResetError("not connected")
            self._tid = tid = self._tid % 0xFFFF + 1
            request.transaction_id = tid
            loop = asyncio.get_running_loop()
            waiting: asyncio.Future[bytes] = loop.create_future()
            link.waiting, link.tid = waiting, tid
            link.transport.write(self._framer.buildFrame(request))
            if no_response_expected:
                link.waiting = None
                return None  # type: ignore[return-value]
            timer = loop.call_later(self.timeout, _expire, waiting, self.timeout)
            try:
                frame = await waiting
            finally:
                timer.cancel()
                link.waiting = None
            return self._response(request, frame)

    def _response(self, request: ModbusPDU, frame: bytes) -> ModbusPDU:
        unit = frame[6]
        if request.dev_id and unit != request.dev_id:
            raise ModbusIOException(f"request for device id {request.dev_id} answered by device id {unit}")
        code = frame[7]
        cls = _REGISTER_RESPONSES.get(code)
        if cls is not None and code == request.function_code:
            count = frame[8]
            if count % 2 or 9 + count != len(frame):
                raise ModbusIOException(f"register response with byte count {count} in a {len(frame)}-byte frame")
            response: ModbusPDU = cls(dev_id=unit, transaction_id=request.transaction_id)
            response.registers = np.frombuffer(frame, dtype=">u2", offset=9).astype(np.uint16)
            return response
        pdu = self._decoder.decode(frame[7:])  # exceptions, bits, write echoes: pymodbus decodes them
        if pdu is None:
            raise ModbusIOException(f"cannot decode a response with function code {code}")
        pdu.dev_id, pdu.transaction_id = unit, request.transaction_id
        return pdu


def _expire(waiting: asyncio.Future[Any], timeout: float) -> None:
    if not waiting.done():
        waiting.set_exception(TimeoutError(f"no response within {timeout} s"))
