"""Sign-in, sessions, CSRF, lockout and roles of the command center, on a real database."""

from __future__ import annotations

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from api.auth import ROLE_RANK
from historian.db import connect
from tests.api_keys import api_config
from tests.support import scalar_of
from tests.web.conftest import PASSWORD, csrf_of, sign_in
from web import users
from web.app import create_app
from web.sessions import COOKIE

PAGES = ["/", "/alarms", "/inspections", "/schedule", "/orders", "/sources", "/fragments/overview",
         "/fragments/alarms", "/fragments/inspections", "/fragments/sources"]


@pytest.fixture
async def alarm(dsn: str) -> int:
    """An active, unacknowledged alarm on machine m1."""
    conn = await connect(dsn)
    try:
        mid = (await (await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1') RETURNING id"))
               .fetchone())[0]
        tid = (await (await conn.execute("INSERT INTO tags (name, category, machine_id) VALUES ('m1.temp', 'machine', "
                                         "%s) RETURNING id", (mid,))).fetchone())[0]
        await conn.execute("INSERT INTO machine_status (machine_id, state) VALUES (%s, 'producing')", (mid,))
        return (await (await conn.execute(
            "INSERT INTO alarms (machine_id, tag_id, ts, rules, value, last_ts, priority) "
            "VALUES (%s, %s, now(), '{WE1}', 99, now(), 'high') RETURNING id", (mid, tid))).fetchone())[0]
    finally:
        await conn.close()


def test_every_page_declares_who_may_see_it():
    app = create_app("postgresql://127.0.0.1:1/none", api_config())
    for route in app.routes:
        if route.path.startswith(("/api/", "/schema", "/health", "/metrics")):
            continue  # the API's routes: tests/api/test_security.py checks them
        for handler in getattr(route, "route_handlers", []):
            roles = [getattr(g, "role", None) for g in handler.resolve_guards()]
            assert roles and all(roles), f"{route.path} declares no role"
            if not route.path.startswith(("/login", "/logout", "/static")):
                assert any(r in ROLE_RANK for r in roles), f"{route.path} is open: {roles}"


async def test_pages_send_strangers_to_sign_in_and_open_after_it(client: AsyncTestClient):
    r = await client.get("/alarms?all=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/alarms%3Fall%3D1"
    r = await client.get("/fragments/overview", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/login"
    r = await sign_in(client, "viewer")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    for page in PAGES:
        r = await client.get(page)
        assert r.status_code == 200, (page, r.text[:300])
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert "<script>" not in (await client.get("/")).text  # no inline script anywhere
    r = await client.get("/api/v1/machines")  # reads of the API with the session
    assert r.status_code == 200


async def test_the_session_cookie_is_secure_under_tls(dsn: str, people):
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2), base_url="https://shopfloor") as c:
        r = await sign_in(c, "viewer")
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


async def test_a_form_without_its_csrf_token_is_refused(client: AsyncTestClient):
    await client.get("/login")
    r = await client.post("/login", data={"name": "web-admin", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")


async def test_wrong_passwords_lock_the_account_and_say_nothing_about_why(client: AsyncTestClient, dsn: str):
    unknown = await sign_in(client, "nobody")
    assert unknown.status_code == 401
    for _ in range(users.MAX_FAILURES):
        r = await sign_in(client, "operator", "wrong password, long enough")
        assert r.status_code == 401 and r.text.count("Name or password wrong") == 1
    assert unknown.text.split("<main>")[1] .replace("web-nobody", "x") == \
        r.text.split("<main>")[1].replace("web-operator", "x")  # locked, wrong or unknown: the same answer
    r = await sign_in(client, "operator")  # the right password, but locked
    assert r.status_code == 401
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await scalar_of(conn, "SELECT locked_until > now() FROM web_users WHERE name = 'web-operator'")
        await users.unlock(conn, "web-operator")
    assert (await sign_in(client, "operator")).status_code == 303


async def test_passwords_are_stored_as_argon2id_hashes_only(dsn: str, people):
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        stored = await scalar_of(conn, "SELECT password_hash FROM web_users WHERE name = 'web-viewer'")
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        with pytest.raises(users.UserError, match="password"):
            await users.create(conn, "short", "viewer", "too short")
        with pytest.raises(users.UserError, match="role"):
            await users.create(conn, "someone", "root", PASSWORD)
        with pytest.raises(users.UserError, match="exists"):
            await users.create(conn, "web-viewer", "viewer", PASSWORD)


async def test_viewers_see_no_actions_and_the_api_refuses_them(client: AsyncTestClient, alarm: int, dsn: str):
    await sign_in(client, "viewer")
    page = await client.get("/alarms")
    assert f'data-alarm="{alarm}"' in page.text and "Acknowledge" not in page.text and "Shelve" not in page.text
    r = await client.post(f"/api/v1/alarms/{alarm}/ack", json={}, headers={"X-CSRFToken": csrf_of(page.text)})
    assert r.status_code == 403
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await scalar_of(conn, "SELECT acked_at FROM alarms WHERE id = %s", (alarm,)) is None
        assert await scalar_of(conn, "SELECT who FROM api_audit WHERE status = 403 ORDER BY id DESC LIMIT 1") \
            == "web-viewer"


async def test_an_operator_acknowledges_with_the_pages_token_and_never_without(client: AsyncTestClient, alarm: int,
                                                                               dsn: str):
    await sign_in(client, "operator")
    page = await client.get("/alarms")
    assert "Acknowledge" in page.text
    r = await client.post(f"/api/v1/alarms/{alarm}/ack", json={"comment": "seen"})  # a forged cross-site post
    assert r.status_code == 403
    r = await client.post(f"/api/v1/alarms/{alarm}/ack", json={"comment": "seen"},
                          headers={"X-CSRFToken": csrf_of(page.text)})
    assert r.status_code == 200 and r.json()["acked_by"] == "web-operator"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await scalar_of(conn, "SELECT actor FROM alarm_journal WHERE alarm_id = %s AND "
                                     "transition = 'acknowledged'", (alarm,)) == "web-operator"


async def test_signing_out_or_being_disabled_ends_the_session(client: AsyncTestClient, dsn: str):
    await sign_in(client, "engineer")
    page = await client.get("/")
    token = client.cookies.get(COOKIE)
    r = await client.post("/logout", data={"_csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.set(COOKIE, token)  # the old cookie, replayed
    assert (await client.get("/", follow_redirects=False)).status_code == 303
    client.cookies.clear()
    await sign_in(client, "engineer")
    assert (await client.get("/", follow_redirects=False)).status_code == 200
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await users.disable(conn, "web-engineer")
    assert (await client.get("/", follow_redirects=False)).status_code == 303
    assert (await sign_in(client, "engineer")).status_code == 401


async def test_after_sign_in_only_local_targets(client: AsyncTestClient):
    form = await client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in form.text
