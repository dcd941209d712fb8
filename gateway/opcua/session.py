"""Connecting to an OPC UA server: security, login, registered nodes, loss detection, backoff.

A Session is one connected asyncua Client. asyncua's own reconnect supervisor stays off: after
any loss the adapter throws the whole client away and builds a new one, so nothing half-restored
(old channel, old session, old subscriptions) survives into the next connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from asyncua import Client, ua
from asyncua.common.node import Node
from asyncua.crypto import security_policies

from gateway.opcua.config import OpcUaEvents, OpcUaSourceConfig, OpcUaTag

log = logging.getLogger(__name__)


class _LostConnectionNoise(logging.Filter):
    """Drops asyncua's traceback of a lost connection: the adapter reports the loss in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record that carries a ConnectionError."""
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionError))


# the publish loop logs every lost connection as "Publish iteration crashed" with a traceback
logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_LostConnectionNoise())

# asyncua raises these for everything a server or a network can do to us; anything else is a bug
RECOVERABLE: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, ua.UaError)

_LOGIN_REFUSED = {"BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected"}
_CERT_REFUSED = {
    "BadSecurityChecksFailed",
    "BadCertificateInvalid",
    "BadCertificateUntrusted",
    "BadCertificateUriInvalid",
    "BadCertificateHostNameInvalid",
    "BadSecurityPolicyRejected",
}


@dataclass
class Backoff:
    """Exponential backoff with jitter, so many gateways do not reconnect in step after an outage."""

    minimum: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2
    attempt: int = 0

    def next(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = min(self.maximum, self.minimum * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(self.minimum, min(self.maximum, delay))

    def reset(self) -> None:
        """Start again from the minimum after a success."""
        self.attempt = 0


def describe(exc: BaseException, config: OpcUaSourceConfig) -> str:
    """An operator-readable account of a connection failure."""
    if isinstance(exc, ua.UaStatusCodeError):
        name = ua.StatusCode(exc.code).name
        if name in _LOGIN_REFUSED:
            who = f"user {config.username!r}" if config.username else "anonymous login"
            return f"{name}: the server refused {who} (wrong username or password?)"
        if name in _CERT_REFUSED:
            cert, _ = config.certificate_paths()
            return f"{name}: the server refused our certificate (trust {cert} on the server)"
        return f"{name}: {ua.StatusCode(exc.code).doc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {config.endpoint}"
    if type(exc) is ConnectionError and str(exc):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer from {config.endpoint} within {config.timeout} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class Session:
    """A connected client, with the node of every configured tag (registered where the server allows).

    `nodes` holds the registered aliases, which Part 4 (5.4.3) makes valid for Read and Write only;
    monitored items use `monitored`, the tags' real node ids (node-opcua refuses an alias there).
    """

    client: Client
    nodes: dict[str, Node] = field(default_factory=dict)
    monitored: dict[str, ua.NodeId] = field(default_factory=dict)
    unresolved: dict[str, str] = field(default_factory=dict)
    """Tags left out of this session because their `nsu=` namespace is not on the server, with why."""
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lost_reason: str = ""

    async def on_connection_lost(self, exc: Exception) -> None:
        """asyncua's watchdog calls this when the socket drops or the server stops answering."""
        self.lost_reason = f"connection lost ({exc})" if str(exc) else f"connection lost ({type(exc).__name__})"
        self.lost.set()


async def _security(client: Client, config: OpcUaSourceConfig) -> None:
    cert, key = config.certificate_paths()
    if not (cert.is_file() and key.is_file()):
        # only ever generate: a certificate the operator supplied is never rewritten
        log.info("%s: generating a self-signed client certificate %s", config.name, cert)
        await client.setup_self_signed_certificate(key, cert, host_name=socket.gethostname())
    mode = getattr(ua.MessageSecurityMode, config.security_mode)
    policy = getattr(security_policies, f"SecurityPolicy{config.security_policy}")
    # without a server certificate, set_security fetches it from the server's endpoint list
    await client.set_security(policy, str(cert), str(key), mode=mode)


async def make_client(config: OpcUaSourceConfig) -> Client:
    """A client set up as the config says, not yet connected."""
    # the watchdog reads the server state every `timeout` s and gives it as long to answer
    client = Client(config.endpoint, timeout=config.timeout, watchdog_intervall=config.timeout)
    client.name = client.description = f"Shopfloor gateway ({config.name})"
    client.application_uri = config.application_uri
    client.product_uri = "urn:shopfloor"
    client.session_timeout = int(config.session_timeout * 1000)
    if config.username:
        client.set_user(config.username)
        client.set_password(config.password)
    if config.secure:
        await _security(client, config)
    return client


async def resolve_node_ids(
    client: Client, tags: Sequence[OpcUaTag | OpcUaEvents]
) -> tuple[dict[str, ua.NodeId], dict[str, str]]:
    """Each tag's (or event notifier's) node id in this session, `nsu=` ids mapped to the server's current index.

    A namespace's index may change when the server restarts (another namespace registered before
    it); its URI does not. Returns (node id by tag, why not) for tags whose namespace is not there.
    """
    ids = {tag.name: tag.ua_node_id() for tag in tags}
    uris = {uri for n in ids.values() if (uri := getattr(n, "NamespaceUri", None))}
    if not uris:
        return ids, {}
    index = {uri: i for i, uri in enumerate(await client.get_namespace_array())}
    resolved: dict[str, ua.NodeId] = {}
    missing: dict[str, str] = {}
    for name, node_id in ids.items():
        uri = getattr(node_id, "NamespaceUri", None)
        if not uri:
            resolved[name] = node_id
        elif uri in index:
            resolved[name] = ua.NodeId(node_id.Identifier, index[uri], node_id.NodeIdType)
        else:
            missing[name] = f"namespace {uri!r} is not in the server's NamespaceArray"
    return resolved, missing


async def _register(client: Client, ids: dict[str, ua.NodeId]) -> dict[str, Node]:
    plain = [client.get_node(node_id) for node_id in ids.values()]
    if not plain:
        return {}
    try:
        # registered ids let the server skip the lookup on every Read and Write (never for monitored items)
        nodes = await client.register_nodes(plain)
    except ua.uaerrors.BadServiceUnsupported:
        nodes = plain
    return dict(zip(ids, nodes))


async def _close(client: Client, config: OpcUaSourceConfig) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), config.timeout)
    except RECOVERABLE as e:
        log.debug("%s: closing the session: %s", config.name, describe(e, config))


@asynccontextmanager
async def open_session(config: OpcUaSourceConfig) -> AsyncIterator[Session]:
    """Connect, log in and register the tags' nodes; disconnect on exit."""
    client = await make_client(config)
    session = Session(client)
    client.connection_lost_callback = session.on_connection_lost
    await client.connect(auto_reconnect=False)
    try:
        session.monitored, session.unresolved = await resolve_node_ids(client, config.tags)
        session.nodes = await _register(client, session.monitored)
        yield session
    finally:
        await _close(client, config)
