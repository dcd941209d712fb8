"""The gateway configuration that reads the simulated plant: what an automation engineer would write."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.config import GatewayConfig
from inspection.config import InspectionConfig
from shopfloor.config import PlantConfig
from twin.config import TwinConfig

# OPC UA signal -> (tag suffix, 4M1E category, data type, unit, writable)
_PRESS_SIGNALS = {
    "State": ("state", "machine", "text", "", False),
    "Speed": ("speed", "machine", "float", "1/min", False),
    "SpeedSetpoint": ("speed_setpoint", "method", "float", "%", True),
    "Temperature": ("temperature", "machine", "float", "degC", False),  # C-MAPSS T50 converted from degR
    "Vibration": ("vibration", "machine", "float", "g", False),
    "GoodCount": ("good_count", "material", "int", "parts", False),
    "ScrapCount": ("scrap_count", "material", "int", "parts", False),
    "CurrentLot": ("lot", "material", "text", "", False),
    "OperatorBadge": ("operator", "man", "text", "", False),
    "Recipe": ("recipe", "method", "text", "", False),
    "EnergyKWh": ("energy", "energy", "float", "kWh", False),
    "StateCode": ("state_code", "machine", "int", "", False),
    "CyclesSinceRenewal": ("cycles_since_renewal", "machine", "int", "cycles", False),
}
# the presses' health signals (C-MAPSS settings and sensors, one cycle per part): the RUL model's inputs
ENGINE_SIGNALS = tuple(f"Setting{i}" for i in range(1, 4)) + tuple(f"S{i}" for i in range(1, 22))
# their units as NASA's C-MAPSS model states them (Saxena et al. 2008, table 2): replayed unconverted, so labelled so
ENGINE_UNITS = {"Setting1": "kft", "Setting2": "Mach", "Setting3": "%", "S1": "degR", "S2": "degR", "S3": "degR",
                "S4": "degR", "S5": "psia", "S6": "psia", "S7": "psia", "S8": "rpm", "S9": "rpm", "S10": "",
                "S11": "psia", "S12": "pps/psi", "S13": "rpm", "S14": "rpm", "S15": "", "S16": "", "S17": "",
                "S18": "rpm", "S19": "rpm", "S20": "lbm/s", "S21": "lbm/s"}
# exception reporting per float signal: small enough that every real change of a sensor is stored
_DEADBANDS = {"Temperature": 0.05, "Vibration": 0.0005, "Speed": 0.05, "EnergyKWh": 0.001}
# Modbus plant signal -> tag name, category, machine
_MODBUS_TAGS = {
    "meter.voltage": ("meter.voltage", "energy", None),
    "meter.current": ("meter.current", "energy", None),
    "meter.power": ("meter.power", "energy", None),
    "meter.energy_total": ("meter.energy", "energy", None),
    "machine.temperature": ("lathe1.temperature", "machine", "lathe1"),
    "machine.speed": ("lathe1.speed", "machine", "lathe1"),
    "machine.speed_setpoint": ("lathe1.speed_setpoint", "method", "lathe1"),
    "machine.part_count": ("lathe1.good_count", "material", "lathe1"),
    "machine.running": ("lathe1.running", "machine", "lathe1"),
    "machine.alarm": ("lathe1.alarm", "machine", "lathe1"),
    "machine.air_temperature": ("lathe1.air_temperature", "machine", "lathe1"),
    "machine.process_temperature": ("lathe1.process_temperature", "machine", "lathe1"),
    "machine.process_speed": ("lathe1.process_speed", "machine", "lathe1"),
    "machine.torque": ("lathe1.torque", "machine", "lathe1"),
    "machine.tool_wear": ("lathe1.tool_wear", "machine", "lathe1"),
    "machine.energy": ("lathe1.energy", "energy", "lathe1"),
}


def demo_gateway(plant: PlantConfig, presses: tuple[str, ...] = ("press1", "press2")) -> GatewayConfig:
    """Sources and tags for every device of the simulated plant."""
    return msgspec.convert(demo_gateway_table(plant, presses), GatewayConfig)


def demo_gateway_table(plant: PlantConfig, presses: tuple[str, ...] = ("press1", "press2")) -> dict[str, Any]:
    """demo_gateway as the [gateway] table of shopfloor.toml would write it."""
    from plant.modbus_server import REGISTER_MAP

    opcua_tags = [
        {"name": f"{m}.{suffix}", "node_id": f"ns=2;s={m}.{signal}", "category": cat, "data_type": dtype,
         "unit": unit, "machine": m, "writable": writable, **({"write_role": "operator"} if writable else {}),
         **({"deadband_type": "absolute", "deadband_value": _DEADBANDS[signal]} if signal in _DEADBANDS else {})}
        for m in presses
        for signal, (suffix, cat, dtype, unit, writable) in _PRESS_SIGNALS.items()
    ] + [
        # no deadband: the model must see the values it was trained on
        {"name": engine_tag(m, signal), "node_id": f"ns=2;s={m}.{signal}", "category": "machine",
         "data_type": "float", "unit": ENGINE_UNITS[signal], "machine": m}
        for m in presses
        for signal in ENGINE_SIGNALS
    ]
    modbus_tags: list[dict[str, Any]] = []
    for signal, (name, cat, machine) in _MODBUS_TAGS.items():
        s = REGISTER_MAP[signal]
        tag: dict[str, Any] = {"name": name, "table": s.table, "address": s.address, "category": cat,
                               "unit": s.unit, "writable": signal == "machine.speed_setpoint",
                               "write_role": "operator"}
        if s.table not in ("coil", "discrete_input"):
            tag.update(type=s.type, byte_order=s.byte_order, scale=s.scale, offset=s.offset)
        if machine:
            tag["machine"] = machine
        modbus_tags.append(tag)
    camera = [{"type": "camera_folder", "name": f"{plant.camera_machine}-camera", "folder": plant.camera_folder,
               "station": camera_station(plant), "after": "delete", "poll_interval": 0.5}
              ] if plant.camera_folder else []
    return {
            "sources": [
                {"type": "opcua", "name": "presses", "publishing_interval": 0.5,
                 "endpoint": f"opc.tcp://127.0.0.1:{plant.opcua_port}/shopfloor/plant", "tags": opcua_tags},
                {"type": "modbus", "name": "lathe-and-meter", "host": "127.0.0.1", "port": plant.modbus_port,
                 "poll_interval": 1.0, "tags": modbus_tags},
                # the oven's metrics are learned from its Sparkplug births: no tag list needed
                {"type": "mqtt", "name": "line1-sparkplug", "host": plant.mqtt_host, "port": plant.mqtt_port,
                 "client_id": f"shopfloor-demo-{plant.opcua_port}",
                 "sparkplug": [{"group_id": "plant", "device_tag": "{device}.{metric}", "node_tag": "line1.{metric}",
                                "node_machine": ""}]},  # the edge node is the line's gateway, not a machine
                # judged images are in the inspection store (by content): the camera's copies are deleted
                *camera,
            ]
    }


def camera_station(plant: PlantConfig) -> str:
    """The inspection station of the plant's camera, e.g. cam-press1."""
    return f"cam-{plant.camera_machine}"


def demo_inspection(plant: PlantConfig) -> InspectionConfig:
    """The camera station of the simulated plant (none without a camera folder)."""
    return msgspec.convert(demo_inspection_table(plant), InspectionConfig)


def demo_inspection_table(plant: PlantConfig) -> dict[str, Any]:
    """demo_inspection as the [inspection] table of shopfloor.toml would write it."""
    if not plant.camera_folder:
        return {"stations": []}
    # magnetic tiles: the model that tells a good part (MT_Free) from a defect (every NEU class is a defect). At 0.9
    # it calls 1.7 % of the developers' MT_Free images NG out of fold (at 0.5: 17 %) and 66.5 % of the defect images
    # (inspection/README.md); with ~3 % NG, subgroups of 50 hold a few NG parts
    return {"stations": [{"name": camera_station(plant), "machine": plant.camera_machine, "model": "mtile",
                          "threshold": 0.9, "pchart_n": 50, "pchart_baseline": 10,
                          # presses report their lot over OPC UA (CurrentLot); the others have no lot tag
                          **({"lot_tag": f"{plant.camera_machine}.lot"} if plant.camera_machine.startswith("press")
                             else {})}]}


def engine_tag(machine: str, signal: str) -> str:
    """The tag of one health signal of a press, e.g. press1.engine.s4."""
    return f"{machine}.engine.{signal.lower()}"


def demo_twin(presses: tuple[str, ...] = ("press1", "press2"), oven: bool = True) -> TwinConfig:
    """The twin of the simulated plant: presses from state codes, counters and health (RUL); the lathe from signals
    and its process readings (failure probability); the oven from its Sparkplug metrics (when the broker is there)."""
    return msgspec.convert(demo_twin_table(presses, oven), TwinConfig)


def demo_twin_table(presses: tuple[str, ...] = ("press1", "press2"), oven: bool = True) -> dict[str, Any]:
    """demo_twin as the [twin] table of shopfloor.toml would write it."""
    machines: list[dict[str, Any]] = [
        {"name": m, "state_tag": f"{m}.state_code", "good_counter_tag": f"{m}.good_count",
         "scrap_counter_tag": f"{m}.scrap_count", "rul_model": "FD001",
         "rul_tags": [engine_tag(m, s) for s in ENGINE_SIGNALS], "rul_reset_tag": f"{m}.cycles_since_renewal",
         "sensors": [{"tag": f"{m}.temperature"}, {"tag": f"{m}.vibration"}]}
        for m in presses
    ]
    machines.append({"name": "lathe1", "running_tag": "lathe1.running", "speed_tag": "lathe1.speed",
                     "fault_tag": "lathe1.alarm", "good_counter_tag": "lathe1.good_count",
                     "sensors": [{"tag": "lathe1.temperature"}, {"tag": "lathe1.torque"}],
                     # the lathe's process replays AI4I 2020 records: the failure model reads them
                     "failure_model": "failure", "product_type": "M",
                     "failure_tags": {"air_temperature_k": "lathe1.air_temperature",
                                      "process_temperature_k": "lathe1.process_temperature",
                                      "rotational_speed_rpm": "lathe1.process_speed",
                                      "torque_nm": "lathe1.torque", "tool_wear_min": "lathe1.tool_wear"}})
    if oven:  # its tags exist once the oven's Sparkplug birth has been read
        machines.append({"name": "oven1", "running_tag": "oven1.Running", "speed_tag": "oven1.Speed",
                         "good_counter_tag": "oven1.Count", "sensors": [{"tag": "oven1.Temperature"}]})
    return {"machines": machines}


# energy meters of the demo: each machine's cumulative kWh tag, for the KPIs' energy per unit
ENERGY_TAGS = {"press1": "press1.energy", "press2": "press2.energy", "lathe1": "lathe1.energy",
               "oven1": "oven1.EnergyKWh"}
