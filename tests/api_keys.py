"""API keys for tests: one user per role, the app settings holding them, and the headers presenting them.

Every test that calls the API builds its app with `api_config()` and sends `auth(role)`; how keys are
stored (config, database, hashes) may change behind these two functions, their signatures stay.
The settings hold only argon2id hashes of the keys with their public ids, as a shopfloor.toml would.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from api.config import ROLES, ApiConfig, ApiUser
from api.keys import hash_key

KEYS = {role: f"sf_test-{role}_0123456789abcdef" for role in ROLES}


@cache
def _users() -> tuple[ApiUser, ...]:
    # argon2 is slow on purpose: hash once per test process
    return tuple(ApiUser(name=f"test-{role}", key_id=f"test-{role}", key_hash=hash_key(key), role=role)
                 for role, key in KEYS.items())


def api_config(**settings: Any) -> ApiConfig:
    """API settings with one user per role (name `test-<role>`), plus any other settings given."""
    return ApiConfig(users=list(_users()), **settings)


def auth(role: str = "viewer") -> dict[str, str]:
    """Headers that present the test key of `role`."""
    return {"Authorization": f"Bearer {KEYS[role]}"}
