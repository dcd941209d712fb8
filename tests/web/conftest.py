"""Fixtures of the command center's tests: the API with its pages on a fresh database, users of each role."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from api.config import ROLES
from historian.db import connect
from tests.api_keys import api_config
from tests.support import running, wait_until
from web import users
from web.app import create_app

PASSWORD = "correct horse battery staple"
"""Every test user's password (users are `web-<role>`)."""


@pytest.fixture
def backend() -> str:
    """The pages do not depend on the database kind: one backend is enough."""
    return "postgresql"


@pytest.fixture
async def people(dsn: str) -> dict[str, str]:
    """One user per role on the test database: role -> name."""
    conn = await connect(dsn)
    try:
        for role in ROLES:
            await users.create(conn, f"web-{role}", role, PASSWORD)
    finally:
        await conn.close()
    return {role: f"web-{role}" for role in ROLES}


@pytest.fixture
async def client(dsn: str, people: dict[str, str]) -> AsyncIterator[AsyncTestClient]:
    """A test client of the app with pages (cookies kept between requests, like a browser)."""
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=3)) as c:
        yield c


async def sign_in(client: AsyncTestClient, role: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    """Fetch the form (for its CSRF token) and post name and password; returns the response."""
    form = await client.get("/login")
    token = form.text.split('name="_csrf_token" value="', 1)[1].split('"', 1)[0]
    return await client.post("/login", data={"name": f"web-{role}", "password": password, "_csrf_token": token,
                                             "next": "/"}, follow_redirects=False)


def csrf_of(page_text: str) -> str:
    """The CSRF token a page carries in its meta tag."""
    return page_text.split('<meta name="csrf-token" content="', 1)[1].split('"', 1)[0]


@contextlib.asynccontextmanager
async def served(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The app served by uvicorn on a free loopback port in this event loop; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on",
                                           timeout_graceful_shutdown=2))  # open streams are cut after 2 s
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the test runner owns signals
    async with running(server.serve(), ready=lambda: server.started, what="uvicorn to start") as task:
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True  # a clean stop runs the app's shutdown (pool, stream hub) before the drop
            await wait_until(task.done, timeout=15, what="uvicorn to stop")
