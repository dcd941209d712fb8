"""A wrong or unknown key costs at most one argon2 verification, a repeated one none, and a client whose keys
keep failing is answered 429 instead of being verified (counted on the verification counter, not timed)."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api import key_check, keys
from api.app import create_app
from api.config import ApiConfig, ApiUser
from tests.api_keys import KEYS, api_config, auth


@pytest.fixture
def backend() -> str:
    """Key lookups do not depend on the historian backend."""
    return "postgresql"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _verifications(client: AsyncTestClient, key: str, expect: int) -> int:
    before = keys.VERIFICATIONS.value()
    r = await client.get("/api/v1/tags", headers=_bearer(key))
    assert r.status_code == expect, r.text
    return int(keys.VERIFICATIONS.value() - before)


async def test_one_verification_at_most_per_wrong_key_none_when_repeated_then_429(dsn, conn, monkeypatch):
    stored = await keys.create(conn, "mes-line-2", "operator", None)
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as client:
        await _verifications(client, KEYS["viewer"], 200)  # warm: the right key is remembered
        assert await _verifications(client, KEYS["viewer"], 200) == 0
        assert await _verifications(client, stored, 200) <= 1
        assert await _verifications(client, stored, 200) == 0

        # four configured hashes, one stored key: a wrong secret is verified against the one its id names
        assert await _verifications(client, "sf_test-admin_wrong-secret-000000", 401) == 1
        assert await _verifications(client, "sf_test-admin_wrong-secret-000000", 401) == 0  # remembered refusal
        assert await _verifications(client, stored[: stored.rindex("_") + 1] + "y" * 32, 401) == 1
        # ids nobody has, and keys without an id, cost nothing
        assert await _verifications(client, "sf_nobody_" + "z" * 32, 401) == 0
        assert await _verifications(client, "sf_987654321_" + "z" * 32, 401) == 0
        assert await _verifications(client, "no-id-at-all-" + "z" * 32, 401) == 0

        # two failures so far from this client; allow four: two more are verified, then 429 without verifying
        monkeypatch.setattr(key_check, "MAX_FAILURES", 4)
        assert await _verifications(client, "sf_test-viewer_guess-1-0000000000", 401) == 1
        assert await _verifications(client, "sf_test-viewer_guess-2-0000000000", 401) == 1
        before = keys.VERIFICATIONS.value()
        r = await client.get("/api/v1/tags", headers=_bearer("sf_test-viewer_guess-3-0000000000"))
        assert r.status_code == 429 and "too many failed API keys" in r.json()["detail"]
        assert 1 <= int(r.headers["retry-after"]) <= key_check.WINDOW_S
        assert keys.VERIFICATIONS.value() == before
        # keys this process already accepted still work for the throttled client
        assert (await client.get("/api/v1/tags", headers=auth("viewer"))).status_code == 200
        assert await _verifications(client, stored, 200) == 0


async def test_a_key_hash_without_key_id_still_works(dsn):
    legacy_key = "an-old-key-of-any-form-0123456789"
    legacy = ApiUser(name="old-mes", key_hash=keys.hash_key(legacy_key), role="operator")
    config = ApiConfig(users=[*api_config().users, legacy])
    async with AsyncTestClient(app=create_app(dsn, config, pool_size=2)) as client:
        assert (await client.get("/api/v1/tags", headers=_bearer(legacy_key))).status_code == 200
        assert await _verifications(client, legacy_key, 200) == 0
        # a key without an id is verified against the one id-less hash only, not the four with ids
        assert await _verifications(client, "another-old-form-key-000000000000", 401) == 1


def test_configured_key_ids_are_checked():
    with pytest.raises(ValueError, match="key_id"):
        ApiUser(name="x", key_id="12", key_hash="$argon2id$v=19$")
    h = "$argon2id$v=19$m=65536,t=3,p=4$aaaa$bbbb"
    with pytest.raises(ValueError, match="key_id"):
        ApiConfig(users=[ApiUser(name="a", key_id="mes", key_hash=h), ApiUser(name="b", key_id="mes", key_hash=h + "c")])
