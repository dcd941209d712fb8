"""Shared test support: wait for a condition (never a clock), run a service for a block, find the test services."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, TypeVar
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = ROOT / ".shopfloor" / "services.env"

T = TypeVar("T")


def services_env() -> dict[str, str]:
    """The KEY=VALUE pairs scripts/services wrote to .shopfloor/services.env (empty if it is absent)."""
    found: dict[str, str] = {}
    if SERVICES_ENV.exists():
        for line in SERVICES_ENV.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() and value.strip() and not key.lstrip().startswith("#"):
                found[key.strip()] = value.strip()
    return found


def service_url(var: str, default: str | None = None) -> str:
    """A test service's URL/DSN: $var, else .shopfloor/services.env, else default; fails the test if none."""
    url = os.environ.get(var) or services_env().get(var) or default
    if not url:
        pytest.fail(f"{var} is not set and .shopfloor/services.env has none: run `scripts/services up` first")
    return url


def mqtt_broker() -> tuple[str, int]:
    """The test MQTT broker as (host, port): $SHOPFLOOR_TEST_MQTT, services.env, else 127.0.0.1:1883."""
    parts = urlsplit(service_url("SHOPFLOOR_TEST_MQTT", "mqtt://127.0.0.1:1883"))
    return parts.hostname or "127.0.0.1", parts.port or 1883


async def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.01,
) -> Any:
    """Poll check() (plain or async) until it returns something truthy and return that; fail naming `what` if not.

    The interval only paces the polling: the test proceeds the moment the condition holds, so a slow
    machine makes it slower, never wrong.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last: Any = None
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        last = value
        if value:
            return value
        if loop.time() >= end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {last!r}")
        await asyncio.sleep(interval)


async def wait_for_value(
    get: Callable[[], Awaitable[T] | T],
    ok: Callable[[T], bool],
    *,
    timeout: float = 10.0,
    what: str = "value",
    interval: float = 0.05,
) -> T:
    """Poll get() until ok(value) and return the value; the failure message shows the last value seen."""
    seen: list[T] = []

    async def check() -> bool:
        value = get()
        if inspect.isawaitable(value):
            value = await value
        seen[:] = [value]  # type: ignore[list-item]
        return value is not None and ok(value)  # type: ignore[arg-type]

    try:
        await wait_until(check, timeout=timeout, what=what, interval=interval)
    except pytest.fail.Exception:
        pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {seen[0] if seen else None!r}")
    return seen[0]


@contextlib.asynccontextmanager
async def running(
    work: Coroutine[Any, Any, Any],
    *,
    ready: asyncio.Event | Callable[[], Any] | None = None,
    timeout: float = 15.0,
    what: str = "the service to be ready",
) -> AsyncIterator[asyncio.Task[Any]]:
    """Run a coroutine (a service's run()) as a task for the block, entered once `ready` holds; cancelled after.

    `ready` is an Event or a condition for wait_until. If the task ends before it is ready, its
    exception is raised here instead of a timeout. On exit the task is cancelled and awaited.
    """
    task = asyncio.create_task(work)
    try:
        if isinstance(ready, asyncio.Event):
            event = ready
            await wait_until(lambda: event.is_set() or task.done(), timeout=timeout, what=what)
        elif ready is not None:
            check = ready

            async def ready_or_done() -> bool:
                if task.done():
                    return True
                value = check()
                return bool(await value if inspect.isawaitable(value) else value)

            await wait_until(ready_or_done, timeout=timeout, what=what)
        if task.done():
            task.result()  # raises what the service died of
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def scalar_of(conn: Any, sql: str, params: Any = None) -> Any:
    """The first column of the first row of a query on an async psycopg connection (None if no row)."""
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    return None if row is None else row[0]


async def wait_for_sql(conn: Any, sql: str, expected: Any, *, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Wait until a scalar query returns `expected`; the failure shows the query and the last value."""
    await wait_for_value(lambda: scalar_of(conn, sql), lambda v: v == expected, timeout=timeout,
                         what=f"{sql!r} == {expected!r}", interval=interval)


def has_full_set(name: str) -> bool:
    """Whether the full public set is here (CI: ../shared/data), not only its committed slice (a fresh clone)."""
    from datasets import dataset_dir

    try:
        dataset_dir(name, full=True)
    except FileNotFoundError:
        return False
    return True
