"""Property-based fuzzing of the whole OpenAPI document (schemathesis) against the real app over loopback on
a real TimescaleDB, as admin and as viewer: no 5xx on any generated input, every 400/422 names the field it
refuses, and answers match the schema. Bounded: a few examples per operation (plus schemathesis' boundary
values), derandomized so a run repeats, no per-example deadline; about two minutes on two busy cores (3 min at load 7 with 5+2 examples)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from tests.api_keys import api_config, auth
from tests.conftest import drop_database, fresh_database

_FIELD_KEYS = ("parameter", "field", "limit", "key", "extra", "invalid_parameters")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The app on a fresh TimescaleDB database, served by uvicorn on a free loopback port."""
    dsn = asyncio.run(fresh_database("timescaledb"))
    app = create_app(dsn, api_config(statement_timeout=3.0), pool_size=4)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    started = threading.Event()

    def wait() -> None:
        while not srv.started and thread.is_alive():
            started.wait(0.02)

    wait()
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    asyncio.run(drop_database(dsn))


def names_a_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 400 or 422 says which parameter or field is wrong (in a field of its body, or in its detail)."""
    if response.status_code not in (400, 422):
        return None
    body = response.json()
    if any(body.get(k) for k in _FIELD_KEYS):
        return True
    detail = str(body.get("detail", ""))
    sent = set((case.query or {}).keys()) | set((case.path_parameters or {}).keys()) | {"body", "query", "Content-Type"}
    if isinstance(case.body, dict):
        sent |= set(case.body)
    assert any(name and name in detail for name in sent) or ":" in detail, (
        f"{case.method} {case.formatted_path} -> {response.status_code} names no field: {body}")
    return True


# the document the app serves at /schema/openapi.json (built without a database; the test calls the live server)
schema = schemathesis.openapi.from_dict(
    create_app("postgresql://127.0.0.1:1/none", api_config()).openapi_schema.to_schema())


def _fuzz(case: Any, server: str, role: str) -> None:
    case.call_and_validate(base_url=server, headers=auth(role), timeout=30,
                           checks=[not_a_server_error, response_schema_conformance, names_a_field])


@schema.parametrize()
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
def test_as_admin_no_server_error_and_answers_match_the_schema(case: Any, server: str) -> None:
    """Every generated request reaches its handler: not a 5xx, a 400/422 naming its field, a body as documented."""
    _fuzz(case, server, "admin")


@schema.parametrize()
@settings(max_examples=1, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
def test_as_viewer_no_server_error_and_answers_match_the_schema(case: Any, server: str) -> None:
    """As a viewer (refused every change): the same checks, fewer examples since most writes stop at the guard."""
    _fuzz(case, server, "viewer")
