"""Opaque keyset cursors for raw sample pages: the tag and the time of the last row a page returned."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone

import msgspec

from historian.errors import InvalidParameterError

MAX_CURSOR = 300
"""Characters a cursor may have (ours are far shorter)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def encode(tag: str, last: datetime) -> str:
    """The cursor that continues after the row of `tag` at `last`."""
    micros = (last - _EPOCH) // _MICRO
    return base64.urlsafe_b64encode(msgspec.json.encode([1, tag, micros])).rstrip(b"=").decode()


def decode(cursor: str, tag: str) -> datetime:
    """The time a cursor continues after; 400 naming `cursor` when it is not one of ours for this tag."""
    if len(cursor) > MAX_CURSOR:
        raise InvalidParameterError("cursor", f"longer than {MAX_CURSOR} characters; pass next_cursor as it came")
    try:
        version, owner, micros = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
                                                     type=tuple[int, str, int])
        last = _EPOCH + micros * _MICRO
    except (binascii.Error, ValueError, msgspec.DecodeError, OverflowError):
        raise InvalidParameterError("cursor", "not a cursor this API gave; pass next_cursor as it came") from None
    if version != 1:
        raise InvalidParameterError("cursor", f"cursor version {version} is not known")
    if owner != tag:
        raise InvalidParameterError("cursor", f"continues tag {owner!r}, not {tag!r}")
    return last
