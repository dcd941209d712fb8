"""JSON messages to readings: topic patterns with named captures, dotted field paths, timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec

from gateway.mqtt.config import JsonMapping, template_fields, topic_captures
from gateway.source import Reading
from historian.samples import Quality

_CACHE_LIMIT = 10_000
_decode = msgspec.json.decode


class JsonError(Exception):
    """A JSON message that cannot be turned into readings; the message says why."""


@dataclass(frozen=True, slots=True)
class CommandTarget:
    """Where write() sends a value for a JSON tag."""

    topic: str
    field: str


class TopicPattern:
    """An MQTT topic filter with named one-level captures: 'plant/{machine}/telemetry'."""

    def __init__(self, pattern: str) -> None:
        topic_captures(pattern)  # validates
        self.pattern = pattern
        self.levels = pattern.split("/")
        self.filter = "/".join("+" if lvl.startswith("{") else lvl for lvl in self.levels)
        self._multi = self.levels[-1] == "#"
        if self._multi:
            self.levels = self.levels[:-1]
        self._fixed = [(i, lvl) for i, lvl in enumerate(self.levels) if lvl != "+" and not lvl.startswith("{")]
        self._names = [(i, lvl[1:-1]) for i, lvl in enumerate(self.levels) if lvl.startswith("{")]

    def match(self, topic: str) -> dict[str, str] | None:
        """The captures if topic matches the pattern, else None."""
        parts = topic.split("/")
        n = len(self.levels)
        if len(parts) < n if self._multi else len(parts) != n:
            return None
        # MQTT: '#' and '+' at the first level do not match topics starting with '$'
        first = self.levels[0] if self.levels else "#"
        if parts[0][:1] == "$" and (first in ("+", "#") or first[0] == "{"):
            return None
        for i, lvl in self._fixed:
            if parts[i] != lvl:
                return None
        return {name: parts[i] for i, name in self._names}


class JsonDecoder:
    """One JSON mapping compiled: turns a message on a matching topic into readings."""

    def __init__(self, mapping: JsonMapping) -> None:
        self.mapping = mapping
        self.pattern = TopicPattern(mapping.topic)
        self._fields = [(path, tuple(path.split(".")), tag) for path, tag in mapping.fields.items()]
        self._ts_path = tuple(mapping.timestamp.split(".")) if mapping.timestamp else None
        self._q_path = tuple(mapping.quality.split(".")) if mapping.quality else None
        self._ts_format = mapping.timestamp_format
        # tag names per topic, so a steady stream of one machine formats its names once
        self._tags: dict[str, list[tuple[str, tuple[str, ...], str]] | None] = {}
        self._writable = (
            [(_tag_regex(tag), path) for path, tag in mapping.fields.items()] if mapping.command_topic else []
        )

    def resolve(self, topic: str) -> list[tuple[str, tuple[str, ...], str]] | None:
        """(path, path parts, tag name) for each field if topic matches, else None."""
        try:
            return self._tags[topic]
        except KeyError:
            pass
        captures = self.pattern.match(topic)
        fields = None if captures is None else [(p, parts, t.format(**captures)) for p, parts, t in self._fields]
        if len(self._tags) >= _CACHE_LIMIT:
            self._tags.clear()
        self._tags[topic] = fields
        return fields

    def decode(self, fields: list[tuple[str, tuple[str, ...], str]], payload: bytes) -> tuple[list[Reading], list[str]]:
        """Readings of the configured fields, and the problems of fields that could not be read.

        Raises JsonError when the message as a whole is unusable (not JSON, not an object, a bad
        timestamp or quality, none of the fields present).
        """
        try:
            doc = _decode(payload)
        except msgspec.DecodeError as e:
            raise JsonError(f"malformed JSON: {e}") from None
        if not isinstance(doc, dict):
            raise JsonError(f"JSON payload is a {type(doc).__name__}, not an object")
        ts = None
        if self._ts_path is not None:
            raw = _get(doc, self._ts_path)
            if raw is not _MISSING and raw is not None:
                ts = parse_timestamp(raw, self._ts_format, self.mapping.timestamp or "")
        quality: int = Quality.GOOD
        if self._q_path is not None:
            raw = _get(doc, self._q_path)
            if raw is not _MISSING:
                if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 255:
                    raise JsonError(f"{self.mapping.quality}: quality {raw!r} is not an integer 0..255")
                quality = raw
        readings: list[Reading] = []
        problems: list[str] = []
        for path, parts, tag in fields:
            value = _get(doc, parts)
            if value is _MISSING:
                continue
            if value is None:
                # JSON null: the device says it has no value
                readings.append(Reading(tag, None, ts, Quality.BAD))
            elif isinstance(value, (int, float, str, bool)):
                readings.append(Reading(tag, value, ts, quality))
            else:
                problems.append(f"{path}: a {type(value).__name__}, not a value")
        if not readings and not problems:
            raise JsonError(f"none of the fields {sorted(self.mapping.fields)} is in the message")
        return readings, problems

    def command(self, tag: str) -> CommandTarget | None:
        """Where to publish a write of this tag, if it is one of this mapping's writable tags."""
        for regex, path in self._writable:
            m = regex.match(tag)
            if m:
                assert self.mapping.command_topic is not None
                return CommandTarget(self.mapping.command_topic.format(**m.groupdict()), path)
        return None


class _Missing:
    pass


_MISSING: Any = _Missing()


def _get(doc: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            doc = doc.get(part, _MISSING)
            if doc is _MISSING:
                return _MISSING
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
    return doc


def parse_timestamp(raw: Any, fmt: str, field: str) -> datetime:
    """An aware UTC datetime from an epoch number or ISO 8601 text; JsonError naming the field."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise JsonError(f"{field}: timestamp {raw!r} is not ISO 8601 text")
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise JsonError(f"{field}: timestamp {raw!r} is not ISO 8601") from None
        return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts
    if isinstance(raw, str):
        return _epoch_text(raw, fmt, field)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise JsonError(f"{field}: timestamp {raw!r} is not a number ({fmt})")
    seconds = raw / 1000 if fmt == "epoch_ms" else raw
    try:
        if isinstance(raw, int) and fmt == "epoch_ms":
            # integer milliseconds stay exact (float seconds would round the microseconds)
            return datetime.fromtimestamp(raw // 1000, tz=timezone.utc).replace(microsecond=(raw % 1000) * 1000)
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise JsonError(f"{field}: timestamp {raw!r} is out of range ({fmt})") from None


_EPOCH_TEXT = re.compile(r"[+-]?[0-9]{1,19}(\.[0-9]{1,9})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _epoch_text(raw: str, fmt: str, field: str) -> datetime:
    """An epoch number sent as text ("1700000000123"): read exactly (decimal, not float), to the µs."""
    if not _EPOCH_TEXT.fullmatch(raw):
        raise JsonError(f"{field}: timestamp {raw!r} is not a number ({fmt})")
    us = int(Decimal(raw) * (1_000 if fmt == "epoch_ms" else 1_000_000))
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise JsonError(f"{field}: timestamp {raw!r} is out of range ({fmt})") from None


def _tag_regex(template: str) -> re.Pattern[str]:
    names = template_fields(template, "fields")
    out, rest, seen = "", template, set()
    for name in names:
        before, _, rest = rest.partition("{" + name + "}")
        # a capture used twice in one name must have the same value both times
        out += re.escape(before) + (f"(?P={name})" if name in seen else f"(?P<{name}>[^/+#]+)")
        seen.add(name)
    return re.compile(out + re.escape(rest) + r"\Z")
