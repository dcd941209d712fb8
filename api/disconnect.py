"""Work stops when the client goes: a GET whose client disconnects has its handler cancelled, and psycopg then
cancels the statement it was waiting on in the server (raw pages, SPC, KPI and every other read)."""

from __future__ import annotations

import asyncio
import contextlib

from litestar.types import ASGIApp, Message, Receive, Scope, Send

_READS = {"GET", "HEAD"}


def cancel_on_disconnect(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: run a read in its own task, cancelled when `http.disconnect` arrives before it ends."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _READS:
            await app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()

        async def relayed() -> Message:
            return await inbox.get()

        work = asyncio.ensure_future(app(scope, relayed, send))  # type: ignore[arg-type]

        async def watch() -> None:
            while True:
                message = await receive()
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    if not work.done():
                        scope.setdefault("state", {})["client_gone"] = True  # type: ignore[typeddict-item]
                        work.cancel()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await work
        except asyncio.CancelledError:
            if not scope.get("state", {}).get("client_gone"):  # type: ignore[union-attr]
                raise  # the server is stopping, not the client leaving
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    return middleware
