"""/health and /metrics of `shopfloor gateway run` over HTTP (uvicorn, a two-route ASGI app), loopback by default.

The gateway process has no API of its own; this is how a supervisor or Prometheus sees its sources,
spool drops, per-source rates and tag health without the database (which may be the thing that is down).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

import msgspec

from historian.metrics import METRICS, MetricsRegistry

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger(__name__)

TAG_ERRORS_SHOWN = 100
"""Most failed tags listed per source in /health (the count is always complete)."""

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[gateway.http]`: where `shopfloor gateway run` serves /health and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Loopback by default: the endpoints are unauthenticated, like the API's /health and /metrics."""
    port: int = 9108

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not self.host:
            raise ValueError("host must not be empty")


def health(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 200 "ok" when every source is connected and the historian is forwarding, else 503."""
    sources = []
    for src in gateway.sources:
        s = src.status
        errors = dict(s.tag_errors)  # a copy: sources change it while we read
        sources.append({
            "name": s.name, "kind": s.kind, "connected": s.connected, "last_error": s.last_error,
            "readings_total": s.readings_total, "dead_letters_total": s.dead_letters_total,
            "reconnects_total": s.reconnects_total, "tags_total": s.tags_total, "tags_live": s.tags_live,
            "tags_failed": len(errors), "tag_errors": dict(sorted(errors.items())[:TAG_ERRORS_SHOWN]),
        })  # fmt: skip
    forwarding = gateway.ready.is_set()
    ok = forwarding and all(s["connected"] for s in sources)
    body = {
        "status": "ok" if ok else "degraded",
        "historian": "forwarding" if forwarding else "waiting for the database",
        "spool": {"records": gateway.spool.depth, "bytes": gateway.spool.bytes,
                  "dropped_samples": gateway.spool.dropped_samples},
        "sources": sources,
    }  # fmt: skip
    return (200 if ok else 503), body


def app(gateway: Gateway, metrics: MetricsRegistry = METRICS) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """The ASGI app: GET (or HEAD) /health and /metrics; 404 for other paths, 405 for other methods."""

    async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        path, method = scope["path"], scope["method"]
        if path not in ("/health", "/metrics"):
            status, body, ctype = 404, b'{"error": "not found: /health and /metrics only"}', b"application/json"
        elif method not in ("GET", "HEAD"):
            status, body, ctype = 405, b'{"error": "method not allowed: GET"}', b"application/json"
        elif path == "/health":
            status, doc = health(gateway)
            body, ctype = msgspec.json.encode(doc), b"application/json"
        else:
            status, body, ctype = 200, metrics.render().encode(), b"text/plain; version=0.0.4; charset=utf-8"
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return asgi


def bind(config: HttpConfig) -> socket.socket:
    """The listening socket (bound here, so a taken port is an OSError we can name, and port 0 works)."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def serve(config: HttpConfig, gateway: Gateway) -> None:
    """Serve /health and /metrics until cancelled; a port that cannot be bound is logged and the gateway goes on."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the gateway process keeps its own signal handling

    try:
        sock = bind(config)
    except OSError as e:
        # monitoring must not stop data collection: say so loudly and keep collecting
        log.error("gateway HTTP not served: [gateway.http] %s:%s: %s", config.host, config.port, e,
                  extra={"action": "http_bind", "host": config.host, "port": config.port})
        return
    host, port = sock.getsockname()[:2]
    log.info("gateway HTTP on http://%s:%s (/health, /metrics)", host, port,
                extra={"action": "http_listen", "host": host, "port": port})
    server = Server(uvicorn.Config(app(gateway), log_level="warning", lifespan="off", server_header=False,
                                   access_log=False))
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
