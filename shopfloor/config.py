"""shopfloor.toml: one file, validated at load, with errors that name the file, line and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

from api.config import ApiConfig
from historian.config import HistorianConfig


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every section of shopfloor.toml; each part of Shopfloor defines its own."""

    historian: HistorianConfig = msgspec.field(default_factory=HistorianConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)


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
        line = locate(text, keys)
        where = f"{name}:{line}" if line else name
        raise ConfigError(f"{where}: {'.'.join(keys) or '(top level)'}: {problem}") from e


def _keys(path: str) -> list[str]:
    # msgspec paths look like .historian.flush_rows or .gateway.sources[2].host
    return [p for p in re.split(r"\.|\[|\]", path) if p]


def locate(text: str, keys: list[str]) -> int | None:
    """The line (1-based) where a key path is written, else its table's header line, else None."""
    if not keys:
        return None
    table: list[str] = []
    counts: dict[tuple[str, ...], int] = {}
    best: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            names = [n.strip().strip('"') for n in header.group(1).split(".")]
            if line.startswith("[["):
                idx = counts.get(tuple(names), -1) + 1
                counts[tuple(names)] = idx
                names = names + [str(idx)]
            table = names
            if table == keys[: len(table)] and best is None:
                best = number
            continue
        key = re.match(r"^\"?([A-Za-z0-9_\-]+)\"?\s*=", line)
        if key and table + [key.group(1)] == keys:
            return number
    return best
