"""Who a presented key belongs to, at most one argon2 verification per request.

A key reads `sf_<id>_<secret>`. The id is public: digits name a row of `api_keys`, a word starting with a
letter names a configured user's `key_id`. Only the one hash the id points at is verified, so an unknown
or wrong key never costs a verification per configured or stored key. Keys without an id (configured
`key_hash` without `key_id`, from before ids) still work, each such user costing one verification; the
app logs which users they are.

Failures are bounded twice: a refused key is remembered for `REFUSED_S` (the same wrong key costs
nothing again), and a client whose keys failed verification `MAX_FAILURES` times within `WINDOW_S` gets
429 with Retry-After instead of a verification until the window passes (a key argon2 already accepted in
this process still works for it, so an attacker next to a real client cannot lock that client out).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict

from api.config import ApiUser
from api.keys import KeyStore, key_id_of, remembered, same_secret, verify_hash

log = logging.getLogger("shopfloor.api")

REFUSED_S = 60.0
"""Seconds a refused key is answered 401 from memory."""
MAX_FAILURES = 10
"""Verifications that may fail per client within WINDOW_S before it is answered 429."""
WINDOW_S = 60.0
_MAX_ENTRIES = 10_000  # clients and refused keys remembered at most (oldest forgotten first)
_ARGON = asyncio.Semaphore(1)  # argon2 is made to be slow: unknown keys may burn one core, never all of them


class TooManyFailures(Exception):
    """This client's keys failed too often; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed API keys from this client; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class _Bounded(OrderedDict):  # type: ignore[type-arg]
    """An insertion-ordered dict that forgets its oldest entries past _MAX_ENTRIES."""

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MAX_ENTRIES:
            self.popitem(last=False)


class KeyCheck:
    """The configured users and the key store, looked up by key id; failures remembered and rate-limited."""

    def __init__(self, users: list[ApiUser], store: KeyStore | None = None) -> None:
        self._plain = [u for u in users if u.key]
        self._by_id = {u.key_id: u for u in users if u.key_hash and u.key_id}
        self._legacy = [u for u in users if u.key_hash and not u.key_id]
        self._store = store
        self._refused: _Bounded = _Bounded()  # sha256(key) -> monotonic time it was refused
        self._failures: _Bounded = _Bounded()  # client -> list of monotonic failure times in the window
        if self._legacy:
            log.warning("api users %s have a key_hash without key_id: any key without an id costs one argon2 "
                        "verification per such user; issue them keys of the form sf_<id>_<secret> "
                        "(see `shopfloor keys hash`)", ", ".join(repr(u.name) for u in self._legacy))

    async def identify(self, pool, key: str, client: str) -> ApiUser | None:  # type: ignore[no-untyped-def]
        """The user of key, or None; raises TooManyFailures instead of verifying for a client past its limit."""
        for u in self._plain:
            if same_secret(u.key, key):
                return u
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        refused_at = self._refused.get(digest)
        if refused_at is not None and now - refused_at < REFUSED_S:
            return None
        key_id = key_id_of(key)
        if key_id is None:
            candidates = self._legacy
        elif key_id.isdigit():
            if self._store is None:
                return None
            return await self._store.find(pool, key, lambda stored: self._verify(stored, key, digest, client))
        else:
            # an id no configured user has may still be the key of a user from before ids
            candidates = [self._by_id[key_id]] if key_id in self._by_id else self._legacy
        for u in candidates:
            if remembered(u.key_hash, key):
                return u
        for u in candidates:
            if await self._verify(u.key_hash, key, digest, client):
                return u
        return None

    async def _verify(self, stored: str, key: str, digest: bytes, client: str) -> bool:
        """One argon2 verification, unless the client is past its failure limit; a failure is remembered."""
        if remembered(stored, key):
            return True
        now = time.monotonic()
        recent = [t for t in self._failures.get(client, ()) if now - t < WINDOW_S]
        if len(recent) >= MAX_FAILURES:
            raise TooManyFailures(WINDOW_S - (now - recent[0]))
        async with _ARGON:
            ok = await asyncio.to_thread(verify_hash, stored, key)
        if not ok:
            self._failures.put(client, [*recent, now])
            self._refused.put(digest, now)
        return ok

