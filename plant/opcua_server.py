"""The simulated plant's OPC UA server: a 4M1E address space per machine, on a real asyncua Server.

    async with OpcUaPlant(machines=["press1", "press2"]) as plant:
        await plant.set("press1", "Temperature", 61.5)
        ...  # a client connects to plant.endpoint

Every machine is an object under Objects/Plant/<machine> whose variables have string node ids
"ns=<idx>;s=<machine>.<signal>". The server offers no security and Basic256Sha256 Sign /
SignAndEncrypt (with a self-signed certificate made at start), and optionally checks user names
and passwords. Tests set exact values; `tick` > 0 animates the machines deterministically.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

NAMESPACE = "urn:shopfloor:plant"
APPLICATION_URI = "urn:shopfloor:plant:opcua"
_UNITS_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


def _unit(code: str, symbol: str, name: str) -> ua.EUInformation:
    """An EngineeringUnits value for a UNECE Rec. 20 common code (OPC 10000-8 5.6.4.4)."""
    unit_id = 0
    for c in code:
        unit_id = (unit_id << 8) | ord(c)
    return ua.EUInformation(
        NamespaceUri=_UNITS_NAMESPACE,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(symbol),
        Description=ua.LocalizedText(name),
    )


@dataclass(frozen=True, slots=True)
class Signal:
    """One variable every machine has."""

    name: str
    vtype: ua.VariantType
    initial: Any
    unit: ua.EUInformation | None = None
    writable: bool = False


ENGINE_SIGNALS = tuple(f"Setting{i}" for i in range(1, 4)) + tuple(f"S{i}" for i in range(1, 22))
_PER_MINUTE = _unit("C94", "1/min", "per minute")
SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("State", ua.VariantType.String, "Idle"),
        Signal("Speed", ua.VariantType.Float, 0.0, _PER_MINUTE),
        Signal("SpeedSetpoint", ua.VariantType.Float, 0.0, _PER_MINUTE, writable=True),
        Signal("Temperature", ua.VariantType.Float, 20.0, _unit("CEL", "°C", "degree Celsius")),
        Signal("Vibration", ua.VariantType.Float, 0.0, _unit("C16", "mm/s", "millimetre per second")),
        Signal("GoodCount", ua.VariantType.UInt32, 0),
        Signal("ScrapCount", ua.VariantType.UInt32, 0),
        Signal("CurrentLot", ua.VariantType.String, ""),
        Signal("OperatorBadge", ua.VariantType.String, ""),
        Signal("Recipe", ua.VariantType.String, "", writable=True),
        Signal("EnergyKWh", ua.VariantType.Double, 0.0, _unit("KWH", "kWh", "kilowatt hour")),
        Signal("StateCode", ua.VariantType.UInt32, 2),  # ISO 22400: 1 producing .. 5 planned down
        Signal("CyclesSinceRenewal", ua.VariantType.UInt32, 0),  # an operating-hours counter, in cycles
        # the machine's health signals: one C-MAPSS cycle (operating settings and 21 sensors) per part
        *(Signal(name, ua.VariantType.Double, 0.0) for name in ENGINE_SIGNALS),
    )
}


def _coerce(signal: Signal, value: Any) -> Any:
    """The Python value the signal's variant type holds (ints for UInt32, floats, strings)."""
    if signal.vtype is ua.VariantType.UInt32:
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{signal.name}: {value!r} is not an unsigned integer")
        return int(value)
    if signal.vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    return str(value)


class PlantUserManager(UserManager):
    """Accepts the configured users with their passwords, and anonymous clients if allowed."""

    def __init__(self, users: Mapping[str, str], allow_anonymous: bool) -> None:
        self.users = dict(users)
        self.allow_anonymous = allow_anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        """The user a client logs in as, or None to refuse it (the client sees BadUserAccessDenied)."""
        if username is None:
            return User(role=UserRole.User) if self.allow_anonymous else None
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User, name=username)
        return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class OpcUaPlant:
    """A simulated plant's OPC UA server; `stop()` and `start()` restart it on the same port."""

    def __init__(
        self,
        port: int = 0,
        machines: Sequence[str] = ("press1",),
        *,
        host: str = "127.0.0.1",
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = True,
        state_dir: Path | None = None,
        tick: float = 0.0,
    ) -> None:
        if not machines:
            raise ValueError("machines: a plant needs at least one machine")
        self.host = host
        self.port = port or _free_port(host)
        self.machines = list(machines)
        self.users = dict(users or {})
        self.allow_anonymous = allow_anonymous
        self.tick = tick
        self.endpoint = f"opc.tcp://{host}:{self.port}/shopfloor/plant"
        self._own_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="shopfloor-plant-")) if state_dir is None else Path(state_dir)
        self.certificate = self.state_dir / "server-cert.der"
        self.private_key = self.state_dir / "server-key.pem"
        self.namespace_index = 2
        self._server: Server | None = None
        self._nodes: dict[tuple[str, str], Node] = {}
        # what the address space holds while the server is down, restored by start()
        self._values: dict[tuple[str, str], ua.DataValue] = {
            (m, s.name): self._datavalue(s, s.initial) for m in self.machines for s in SIGNALS.values()
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def node_id(self, machine: str, signal: str) -> str:
        """The string node id of a machine's signal."""
        self._check(machine, signal)
        return f"ns={self.namespace_index};s={machine}.{signal}"

    async def __aenter__(self) -> OpcUaPlant:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening (again), with the values the address space had when it stopped."""
        if self._server is not None:
            return
        await cert_gen.setup_self_signed_certificate(
            self.private_key,
            self.certificate,
            APPLICATION_URI,
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            {},
        )
        server = Server(user_manager=PlantUserManager(self.users, self.allow_anonymous))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Shopfloor simulated plant")
        await server.set_application_uri(APPLICATION_URI)
        await server.load_certificate(str(self.certificate))
        await server.load_private_key(str(self.private_key))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.NoSecurity,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ]
        )
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        self.namespace_index = await server.register_namespace(NAMESPACE)
        await self._build(server)
        await server.start()
        self._server = server
        if self.tick > 0:
            self._ticker = asyncio.create_task(self._animate(), name="opcua-plant-animate")
        log.info("OPC UA plant listening on %s", self.endpoint)

    async def stop(self) -> None:
        """Stop listening and drop every session and subscription, keeping the values for start()."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for key, node in self._nodes.items():
            self._values[key] = server.read_attribute_value(node.nodeid)
        self._nodes.clear()
        await server.stop()
        # asyncua keeps sessions with subscriptions alive after their connection closes (for a client
        # to resume them); a restarted process has none, and their timeout tasks would outlive us
        for session in list(server.iserver._external_sessions.values()):
            await session.close_session(True)

    async def close(self) -> None:
        """Stop for good and remove the temporary state folder (if the plant made it)."""
        await self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def set(self, machine: str, signal: str, value: Any, *, source_ts: datetime | None = None,
                  status: str = "Good") -> None:
        """Give a signal a new value, stamped now unless source_ts is given; status Good or Uncertain..."""
        self._check(machine, signal)
        dv = self._datavalue(SIGNALS[signal], value)
        code = ua.StatusCode(getattr(ua.StatusCodes, status))
        if code.is_bad():
            raise ValueError(f"status: {status} is Bad: use set_bad()")
        if source_ts is not None or code.value:
            dv = ua.DataValue(dv.Value, StatusCode=code, SourceTimestamp=source_ts or dv.SourceTimestamp,
                              ServerTimestamp=dv.ServerTimestamp)
        await self._write((machine, signal), dv)

    async def get(self, machine: str, signal: str) -> Any:
        """The signal's current value (None while it is bad)."""
        self._check(machine, signal)
        if self._server is None:
            dv = self._values[(machine, signal)]
        else:
            dv = self._server.read_attribute_value(self._nodes[(machine, signal)].nodeid)
        return dv.Value.Value if dv.Value is not None else None

    def set_bad(self, machine: str, signal: str, status: str = "BadSensorFailure") -> asyncio.Task[None]:
        """Make a signal report a Bad status (its value becomes null); await the task to be sure it is done."""
        self._check(machine, signal)
        code = ua.StatusCode(getattr(ua.StatusCodes, status))
        if not code.is_bad():
            raise ValueError(f"status: {status} is not a Bad status code")
        now = datetime.now(timezone.utc)
        null = ua.Variant(None, ua.VariantType.Null)
        dv = ua.DataValue(null, StatusCode=code, SourceTimestamp=now, ServerTimestamp=now)
        task = asyncio.get_running_loop().create_task(self._write((machine, signal), dv))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drop_subscriptions(self) -> int:
        """Delete every subscription server-side while sessions stay up, as a faulty server might; how many."""
        if self._server is None:
            return 0
        service = self._server.iserver.subscription_service
        ids = list(service.subscriptions)
        await service.delete_subscriptions(ids)
        return len(ids)

    def _check(self, machine: str, signal: str) -> None:
        if machine not in self.machines:
            raise KeyError(f"machine: {machine!r} is not one of {', '.join(self.machines)}")
        if signal not in SIGNALS:
            raise KeyError(f"signal: {signal!r} is not one of {', '.join(SIGNALS)}")

    @staticmethod
    def _datavalue(signal: Signal, value: Any) -> ua.DataValue:
        now = datetime.now(timezone.utc)
        return ua.DataValue(ua.Variant(_coerce(signal, value), signal.vtype), SourceTimestamp=now, ServerTimestamp=now)

    async def _write(self, key: tuple[str, str], dv: ua.DataValue) -> None:
        if self._server is None:
            self._values[key] = dv
            return
        await self._server.write_attribute_value(self._nodes[key].nodeid, dv)

    async def _build(self, server: Server) -> None:
        idx = self.namespace_index
        plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", idx), ua.QualifiedName("Plant", idx))
        for machine in self.machines:
            obj = await plant.add_object(ua.NodeId(machine, idx), ua.QualifiedName(machine, idx))
            for signal in SIGNALS.values():
                key = (machine, signal.name)
                var = await obj.add_variable(
                    ua.NodeId(f"{machine}.{signal.name}", idx),
                    ua.QualifiedName(signal.name, idx),
                    ua.Variant(_coerce(signal, signal.initial), signal.vtype),
                )
                if signal.writable:
                    await var.set_writable()
                if signal.unit is not None:
                    await var.add_property(
                        ua.NodeId(f"{machine}.{signal.name}.EngineeringUnits", idx),
                        ua.QualifiedName("EngineeringUnits", 0),
                        ua.Variant(signal.unit, ua.VariantType.ExtensionObject),
                    )
                self._nodes[key] = var
                await server.write_attribute_value(var.nodeid, self._values[key])

    async def _animate(self) -> None:
        """Move every machine a step per tick: a deterministic function of the step count only."""
        step = 0
        while True:
            await asyncio.sleep(self.tick)
            step += 1
            for n, machine in enumerate(self.machines):
                phase = step / 10 + n
                setpoint = await self.get(machine, "SpeedSetpoint") or 0.0
                speed = await self.get(machine, "Speed") or 0.0
                speed += (setpoint - speed) * 0.2
                running = speed > 1.0
                await self.set(machine, "Speed", round(speed, 3))
                await self.set(machine, "State", "Running" if running else "Idle")
                await self.set(machine, "Temperature", round(40 + 0.1 * speed + 2 * math.sin(phase), 3))
                await self.set(machine, "Vibration", round(0.5 + 0.01 * speed + 0.2 * math.sin(3 * phase), 3))
                energy = await self.get(machine, "EnergyKWh") or 0.0
                await self.set(machine, "EnergyKWh", energy + 0.001 * (1 + speed))
                if running:
                    counter = "ScrapCount" if step % 50 == 0 else "GoodCount"
                    await self.set(machine, counter, (await self.get(machine, counter) or 0) + 1)
