"""The simulated plant: the simpy line driving real OPC UA, Modbus TCP and MQTT (Sparkplug B) devices.

    press1, press2   OPC UA server   opc.tcp://127.0.0.1:<opcua_port>/shopfloor/plant
    oven1            Sparkplug B     spBv1.0/plant/DDATA/line1/oven1 on the MQTT broker
    lathe1 + meter   Modbus TCP      127.0.0.1:<modbus_port> (the legacy lathe and the line's energy meter)
    camera           image files     <camera_folder>, one per part <camera_machine> makes (when a folder is set)

Writes from the gateway come back into the model: an OPC UA SpeedSetpoint or the lathe's
Modbus speed setpoint changes that machine's rate.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from plant.camera import Camera
from plant.line import PRODUCING, Line
from plant.modbus_server import ModbusPlant
from plant.mqtt_publisher import MqttPlant
from plant.opcua_server import ENGINE_SIGNALS, OpcUaPlant

log = logging.getLogger(__name__)

OPCUA_MACHINES = ("press1", "press2")
SPARKPLUG_MACHINE = "oven1"
MODBUS_MACHINE = "lathe1"
NOMINAL_RPM = 1500


@dataclass(frozen=True)
class PlantSettings:
    """Where the plant's devices listen and how fast its clock runs."""

    opcua_port: int = 4840
    modbus_port: int = 5020
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    speedup: float = 1.0
    """Simulated seconds per wall-clock second."""
    tick: float = 1.0
    """Wall-clock seconds between device updates."""
    seed: int = 7
    data_root: Path | None = None
    camera_folder: str = ""
    """Where the camera drops an image per part of camera_machine; empty: no camera."""
    camera_machine: str = "press1"
    camera_every: int = 1
    """One image per this many parts."""


def celsius_from_rankine(t: float) -> float:
    """C-MAPSS temperatures are in degrees Rankine; the devices speak Celsius."""
    return t * 5.0 / 9.0 - 273.15


class Plant:
    """The running plant: the line model and its three kinds of device."""

    def __init__(self, settings: PlantSettings) -> None:
        self.settings = settings
        self.line = Line([*OPCUA_MACHINES, SPARKPLUG_MACHINE, MODBUS_MACHINE], seed=settings.seed,
                         data_root=settings.data_root)
        self.opcua = OpcUaPlant(port=settings.opcua_port, machines=list(OPCUA_MACHINES))
        self.modbus = ModbusPlant(port=settings.modbus_port, simulate=False)
        self.mqtt = MqttPlant(settings.mqtt_host, settings.mqtt_port, group_id="plant", edge_node="line1",
                              devices=[SPARKPLUG_MACHINE], period=None)
        self._setpoints = {m: 100.0 for m in OPCUA_MACHINES}
        self._lathe_rpm = NOMINAL_RPM
        self.camera = Camera(Path(settings.camera_folder), settings.camera_machine, settings.camera_every,
                             settings.data_root) if settings.camera_folder else None

    async def __aenter__(self) -> Plant:
        await self.opcua.start()
        await self.modbus.start()
        await self.mqtt.start()
        for m in OPCUA_MACHINES:
            await self.opcua.set(m, "SpeedSetpoint", 100.0)
        self.modbus.set("machine.speed_setpoint", NOMINAL_RPM)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.mqtt.stop()
        await self.modbus.close()
        await self.opcua.close()

    async def step(self) -> None:
        """Take writes from the devices into the model, advance it, and publish its state."""
        await self._take_writes()
        self.line.advance(self.settings.tick * self.settings.speedup)
        if self.camera is not None:
            self.camera.look(self.line.machines[self.settings.camera_machine])
        for name in OPCUA_MACHINES:
            v = self.line.machines[name].values()
            for signal in ("State", "Speed", "GoodCount", "ScrapCount", "CurrentLot", "OperatorBadge", "Recipe",
                           "EnergyKWh", "Vibration"):
                await self.opcua.set(name, signal, v[signal])
            await self.opcua.set(name, "Temperature", round(celsius_from_rankine(float(v["Temperature"])), 3))
            await self.opcua.set(name, "StateCode", v["StateCode"])
            await self.opcua.set(name, "CyclesSinceRenewal", self.line.machines[name].cycles)
            for signal, value in zip(ENGINE_SIGNALS, self.line.machines[name].engine):
                await self.opcua.set(name, signal, value)
        oven = self.line.machines[SPARKPLUG_MACHINE]
        await self.mqtt.ddata(SPARKPLUG_MACHINE, {
            "Temperature": round(celsius_from_rankine(oven.temperature), 3),
            "Pressure": oven.pressure,
            "Speed": int(round(oven.speed * 10)),
            "Count": oven.good_count,
            "Running": oven.state == PRODUCING,
            "State": oven.state,
            "EnergyKWh": round(oven.energy_kwh, 6),
        })
        lathe = self.line.machines[MODBUS_MACHINE]
        # the lathe's spindle temperature is its AI4I process temperature (K), in degC as the register declares
        self.modbus.set("machine.temperature", round(lathe.process[1] - 273.15, 1) if lathe.process[1] else 22.0)
        self.modbus.set("machine.energy", round(lathe.energy_kwh, 4))
        self.modbus.set("machine.speed", int(self._lathe_rpm if lathe.state == PRODUCING else 0))
        self.modbus.set("machine.part_count", lathe.good_count)
        self.modbus.set("machine.running", lathe.state == PRODUCING)
        self.modbus.set("machine.alarm", lathe.state == "unplanned_down")
        for signal, value in zip(("air_temperature", "process_temperature", "process_speed", "torque", "tool_wear"),
                                 lathe.process):
            self.modbus.set(f"machine.{signal}", int(value) if signal == "tool_wear" else value)
        power = sum(m.power_kw for m in self.line.machines.values())
        self.modbus.set("meter.power", round(power, 3))
        self.modbus.set("meter.current", round(power * 1000 / (400 * 1.732 * 0.9), 3))
        self.modbus.set("meter.energy_total", sum(m.energy_kwh for m in self.line.machines.values()))
        self.modbus.set("meter.energy_counter", int(sum(m.energy_kwh for m in self.line.machines.values()) * 1000)
                        % (1 << 32))

    async def _take_writes(self) -> None:
        for name in OPCUA_MACHINES:
            wanted = float(await self.opcua.get(name, "SpeedSetpoint"))
            if wanted != self._setpoints[name]:
                try:
                    self.line.set_speed(name, wanted)
                    self._setpoints[name] = wanted
                except ValueError as e:
                    log.warning("refused a setpoint", extra={"machine": name, "error": str(e)})
                    await self.opcua.set(name, "SpeedSetpoint", self._setpoints[name])
        rpm = int(self.modbus.get("machine.speed_setpoint"))
        if rpm != self._lathe_rpm and rpm > 0:
            try:
                self.line.set_speed(MODBUS_MACHINE, 100.0 * rpm / NOMINAL_RPM)
                self._lathe_rpm = rpm
            except ValueError as e:
                log.warning("refused a setpoint", extra={"machine": MODBUS_MACHINE, "error": str(e)})
                self.modbus.set("machine.speed_setpoint", self._lathe_rpm)

    async def run(self) -> None:
        """Step every tick until cancelled."""
        while True:
            await self.step()
            await asyncio.sleep(self.settings.tick)


async def run_plant(settings: PlantSettings) -> None:
    """Start the plant and run it until cancelled."""
    async with Plant(settings) as plant:
        log.info("plant running", extra={"opcua": plant.opcua.endpoint, "modbus": settings.modbus_port})
        await plant.run()
