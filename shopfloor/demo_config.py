"""The project's top-level shopfloor.toml, written from the demo's own configuration.

`python -m shopfloor.demo_config` rewrites it after a change to demo_gateway/demo_twin;
tests/shopfloor/test_config.py checks that loading the file gives exactly the demo's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopfloor.config import PlantConfig
from shopfloor.demo_plant import demo_gateway_table, demo_inspection_table, demo_twin_table

PATH = Path(__file__).resolve().parent.parent / "shopfloor.toml"
SPEED = 20.0  # simulated seconds per second: parts and non-zero KPIs within 30 s of start
CAMERA = "camera/press1"  # under the demo's state folder
PLANT = PlantConfig(speedup=SPEED, tick=0.5, camera_folder=CAMERA)

HEADER = f'''# Shopfloor's configuration: exactly what `shopfloor demo` runs (tests/shopfloor/test_config.py checks it;
# `python -m shopfloor.demo_config` writes it). Copy it for a real plant: point [historian] dsn at your database,
# [[gateway.sources]] at your devices and [[twin.machines]] at your machines, and drop [plant] (the simulated
# plant). Every key is explained in README.md.

[historian]
dsn = ""                 # empty: the embedded PostgreSQL on 127.0.0.1:embedded_port
embedded_port = 55434

[api]
host = "127.0.0.1"
port = 8000

[plant]                  # the simulated plant (`shopfloor plant`, and the demo)
opcua_port = 4840
modbus_port = 5020
mqtt_host = "127.0.0.1"
mqtt_port = 1883
speedup = {SPEED!r}           # simulated seconds per second (`shopfloor demo --speed N`)
tick = 0.5
seed = 7
camera_folder = "{CAMERA}"   # an image per part of camera_machine (the demo: under its state folder); "" for none
camera_machine = "press1"
camera_every = 1
'''


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def render() -> str:
    """The text of shopfloor.toml for the demo's plant, gateway, camera station and twin."""
    out = [HEADER]
    for source in demo_gateway_table(PLANT)["sources"]:
        tags = source.pop("tags", [])
        out += ["[[gateway.sources]]", *(f"{k} = {_value(v)}" for k, v in source.items())]
        if tags:
            out += ["tags = [", *(f"    {_value(t)}," for t in tags), "]"]
        out.append("")
    out.append("# the camera station judging the plant's camera images; its p-chart raises alarms on press1")
    for station in demo_inspection_table(PLANT)["stations"]:
        out += ["[[inspection.stations]]", *(f"{k} = {_value(v)}" for k, v in station.items()), ""]
    out.append("# the twin: ISO 22400 states, part counts, SPC on the sensors, RUL (presses), failure probability (lathe)")
    for machine in demo_twin_table()["machines"]:
        out += ["[[twin.machines]]", *(f"{k} = {_value(v)}" for k, v in machine.items()), ""]
    return "\n".join(out)


if __name__ == "__main__":
    PATH.write_text(render())
