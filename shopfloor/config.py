"""shopfloor.toml: one file, validated at load, with errors that name the file, line and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from api.config import ApiConfig
from gateway.config import GatewayConfig
from historian.config import HistorianConfig
from inspection.config import InspectionConfig
from scheduling.config import SchedulingConfig
from twin.config import TwinConfig

if TYPE_CHECKING:
    from plant.run import PlantSettings


class PlantConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The simulated plant's devices (`shopfloor plant`, and the demo)."""

    opcua_port: int = 4840
    modbus_port: int = 5020
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    speedup: float = 1.0
    tick: float = 1.0
    seed: int = 7
    camera_folder: str = ""
    """Where the plant's camera drops an image per part of camera_machine (empty: no camera); the demo takes a
    relative folder under its state folder."""
    camera_machine: str = "press1"
    camera_every: int = 1
    """One image per this many parts made."""

    def __post_init__(self) -> None:
        if self.camera_machine not in ("press1", "press2", "oven1", "lathe1"):
            raise ValueError(f"camera_machine must be a machine of the plant (press1, press2, oven1, lathe1), got "
                             f"{self.camera_machine!r}")
        if not 1 <= self.camera_every <= 1_000_000:
            raise ValueError(f"camera_every must be 1..1000000 parts, got {self.camera_every}")
        for name in ("opcua_port", "modbus_port", "mqtt_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be 1..65535, got {getattr(self, name)}")
        if self.speedup <= 0 or self.tick <= 0:
            raise ValueError(f"speedup and tick must be > 0, got {self.speedup} and {self.tick}")

    def settings(self) -> PlantSettings:
        """The plant's own settings object (the plant imports nothing of ours, so it has its own)."""
        from plant.run import PlantSettings  # the devices' libraries load only when a plant runs

        return PlantSettings(**msgspec.structs.asdict(self))


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every section of shopfloor.toml; each part of Shopfloor defines its own."""

    historian: HistorianConfig = msgspec.field(default_factory=HistorianConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    plant: PlantConfig = msgspec.field(default_factory=PlantConfig)
    twin: TwinConfig = msgspec.field(default_factory=TwinConfig)
    inspection: InspectionConfig = msgspec.field(default_factory=InspectionConfig)
    scheduling: SchedulingConfig = msgspec.field(default_factory=SchedulingConfig)


class ConfigError(Exception):
    """A configuration file that cannot be used, with where and why."""


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"unknown field `(?P<field>[^`]+)`")


def load(path: Path | None) -> Config:
    """Read and validate a config file; None or a missing default file gives the defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    return parse(text, str(path))


def parse(text: str, name: str = "shopfloor.toml") -> Config:
    """Validate TOML text as a Config; errors read `name:line: key: problem`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: {e}") from e
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        m = _AT.match(str(e))
        problem = m.group("problem") if m else str(e)
        keys = _keys(m.group("path") if m and m.group("path") else "")
        unknown = _UNKNOWN.search(problem)
        if unknown:
            keys.append(unknown.group("field"))
        named = re.match(r"^(\w+): ", problem)
        # a struct's own check names its field first ("type: ..."): point at that line when it is written
        line = (named and locate(text, keys + [named.group(1)])) or locate(text, keys)
        where = f"{name}:{line}" if line else name
        raise ConfigError(f"{where}: {'.'.join(keys) or '(top level)'}: {problem}") from e


def _keys(path: str) -> list[str]:
    # msgspec paths look like .historian.flush_rows or .gateway.sources[2].host
    return [p for p in re.split(r"\.|\[|\]", path) if p]


def locate(text: str, keys: list[str]) -> int | None:
    """The line (1-based) where a key path is written, else its deepest table header, else None."""
    if not keys:
        return None
    table: list[str] = []
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> index of its current element
    best: tuple[int, int] | None = None  # (depth matched, line)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"^(\[\[?)\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            names = [n.strip().strip('"') for n in header.group(2).split(".")]
            table = []
            for i, name in enumerate(names):
                table.append(name)
                last = i == len(names) - 1
                if last and header.group(1) == "[[":
                    arrays[tuple(table)] = arrays.get(tuple(table), -1) + 1
                if tuple(table) in arrays:
                    table.append(str(arrays[tuple(table)]))
            if table == keys[: len(table)] and (best is None or len(table) > best[0]):
                best = (len(table), number)
            continue
        key = re.match(r"^\"?([A-Za-z0-9_\-]+)\"?\s*=", line)
        if key and table + [key.group(1)] == keys:
            return number
    return best[1] if best else None
