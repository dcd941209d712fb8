"""The `[[gateway.sources]]` table of an OPC UA source and its tags, validated once at load."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import msgspec
from asyncua import ua

from gateway.outbox import check_settings
from gateway.tags import TagConfig
from historian.embedded import default_state_dir

import re

MODES = ("subscribe", "poll")
SECURITY_POLICIES = ("None", "Basic256Sha256")
SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
DEADBAND_TYPES = ("none", "absolute", "percent")


def check_monitoring(sampling_interval: float | None, queue_size: int | None, deadband_type: str | None,
                     deadband_value: float | None, data_type: str | None) -> None:
    """Validate monitored-item settings of a tag or a source's defaults (None: not set here)."""
    if sampling_interval is not None and sampling_interval < 0:
        raise ValueError(f"sampling_interval: must be >= 0, got {sampling_interval}")
    if queue_size is not None and queue_size < 1:
        raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
    if deadband_type is not None and deadband_type not in DEADBAND_TYPES:
        raise ValueError(f"deadband_type: {deadband_type!r} is not one of {', '.join(DEADBAND_TYPES)}")
    if deadband_value is not None and deadband_value < 0:
        raise ValueError(f"deadband_value: must be >= 0, got {deadband_value}")
    if deadband_type == "none" and deadband_value:
        raise ValueError("deadband_value: set, but deadband_type is 'none'")
    if deadband_type == "percent" and deadband_value is not None and deadband_value > 100:
        raise ValueError(f"deadband_value: a percentage must be <= 100, got {deadband_value}")
    if deadband_type not in (None, "none") and data_type is not None and data_type not in ("float", "int"):
        raise ValueError(f"deadband_type: a deadband needs a numeric data_type, not {data_type!r}")


class OpcUaTag(TagConfig, kw_only=True, forbid_unknown_fields=True):
    """One OPC UA variable read as a tag."""

    node_id: str
    """The variable's node id in string form, e.g. "ns=2;s=press1.Temperature"."""
    sampling_interval: float | None = None
    """How often (s) the server samples the variable; unset: the source's, else its publishing_interval."""
    queue_size: int | None = None
    """How many changes the server keeps between two publishes; unset: the source's (default 1, the latest)."""
    deadband_type: str | None = None
    """Server-side filter: 'none', 'absolute' (in the variable's unit) or 'percent' (of its EURange);
    unset: the source's for numeric tags, 'none' for the others."""
    deadband_value: float | None = None
    """Unset: the source's."""
    index: int | None = None
    """One element of a one-dimensional array variable (read with an OPC UA IndexRange, so the server
    reports changes of that element only); none: the variable holds a scalar."""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            ua.NodeId.from_string(self.node_id)
        except (ua.UaError, ValueError) as e:
            raise ValueError(f"node_id: {self.node_id!r} is not an OPC UA node id ({e})") from None
        check_monitoring(self.sampling_interval, self.queue_size, self.deadband_type, self.deadband_value,
                         self.data_type)
        if self.index is not None and self.index < 0:
            raise ValueError(f"index: must be >= 0, got {self.index}")
        if self.index is not None and self.writable:
            raise ValueError("index: writing one element of an array is not supported; set writable = false")

    @property
    def index_range(self) -> str | None:
        """The OPC UA IndexRange of the element read, or None for a scalar."""
        return None if self.index is None else str(self.index)

    def ua_node_id(self) -> ua.NodeId:
        """The node id as asyncua's NodeId."""
        return ua.NodeId.from_string(self.node_id)


# the fields of the standard event types (Part 5 BaseEventType, Part 9 ConditionType and its subtypes)
# a `fields` entry may start with; anything else needs a namespace-qualified browse name ("2:Pressure")
EVENT_FIELDS = (
    "EventId", "EventType", "SourceNode", "SourceName", "Time", "ReceiveTime", "LocalTime", "Message", "Severity",
    "ConditionClassId", "ConditionClassName", "ConditionSubClassId", "ConditionSubClassName",
    "ConditionName", "BranchId", "Retain", "EnabledState", "Quality", "LastSeverity", "Comment", "ClientUserId",
    "AckedState", "ConfirmedState", "ActiveState", "InputNode", "SuppressedState", "OutOfServiceState",
    "SilenceState", "LatchedState", "ShelvingState", "SuppressedOrShelved", "MaxTimeShelved",
)  # fmt: skip
# two-state variables: the field stores the state's boolean Id ("ActiveState" reads ActiveState/Id)
TWO_STATE_FIELDS = frozenset(
    {"EnabledState", "AckedState", "ConfirmedState", "ActiveState", "SuppressedState", "OutOfServiceState",
     "SilenceState", "LatchedState"}
)
DEFAULT_EVENT_FIELDS = (
    "EventType", "SourceName", "Time", "Severity", "Message", "ConditionName", "ActiveState", "AckedState", "Retain",
)  # fmt: skip
SERVER_OBJECT = "i=2253"
_QUALIFIED = re.compile(r"^(?:(\d+):)?([^/:]+)$")


def event_browse_path(field: str) -> list[ua.QualifiedName]:
    """The select clause browse path of a `fields` entry; ValueError naming it when it is none."""
    segments = field.split("/")
    path: list[ua.QualifiedName] = []
    for i, segment in enumerate(segments):
        m = _QUALIFIED.match(segment)
        if not m:
            raise ValueError(f"{field!r} is not a browse path (names separated by '/', optionally '2:Name')")
        ns, name = m.groups()
        if i == 0 and ns is None and name not in EVENT_FIELDS:
            raise ValueError(
                f"{field!r} is not a field of the standard event types (known: {', '.join(EVENT_FIELDS)}); "
                "a vendor field needs its namespace index, e.g. '2:Pressure'"
            )
        path.append(ua.QualifiedName(name, int(ns) if ns is not None else 0))
    if len(segments) == 1 and segments[0] in TWO_STATE_FIELDS:
        path.append(ua.QualifiedName("Id", 0))
    return path


class OpcUaEvents(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One event notifier subscribed for events (and Alarms & Conditions); stored as one text tag."""

    notifier: str = SERVER_OBJECT
    """Node id of the object whose events are subscribed; default the Server object (every event)."""
    name: str = ""
    """The events tag each event is stored under (events table, JSON); empty: '<source>.events'."""
    machine: str | None = None
    """Machine the events (and the alarms of conditions) belong to; none: the event's SourceName if a
    machine of that name exists."""
    category: str = "machine"
    description: str = ""
    fields: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EVENT_FIELDS))
    """Event fields kept, in this order; absent from an event that does not carry them."""
    queue_size: int = 1000
    """Events the server queues between two publishes; a burst beyond is lost on the server."""

    def __post_init__(self) -> None:
        try:
            ua.NodeId.from_string(self.notifier)
        except (ua.UaError, ValueError) as e:
            raise ValueError(f"notifier: {self.notifier!r} is not an OPC UA node id ({e})") from None
        if self.machine == "":
            raise ValueError("machine: empty; leave it out to take the event's SourceName")
        if not self.fields:
            raise ValueError("fields: keep at least one field")
        seen: set[str] = set()
        for field in self.fields:
            try:
                event_browse_path(field)
            except ValueError as e:
                raise ValueError(f"fields: {e}") from None
            if field in seen:
                raise ValueError(f"fields: {field!r} appears twice")
            seen.add(field)
        if self.queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {self.queue_size}")
        try:
            self.tag_config()
        except ValueError as e:
            raise ValueError(f"{e} (the events tag)") from None

    def tag_config(self) -> TagConfig:
        """The text tag the notifier's events are stored under."""
        description = self.description or f"OPC UA events of {self.notifier}"
        return TagConfig(name=self.name or "unnamed", category=self.category, machine=self.machine,
                         data_type="text", description=description)

    def ua_node_id(self) -> ua.NodeId:
        """The notifier's node id as asyncua's NodeId."""
        return ua.NodeId.from_string(self.notifier)


def default_pki_dir() -> Path:
    """Where generated client certificates go: pki/opcua in Shopfloor's state folder."""
    return default_state_dir() / "pki" / "opcua"


class OpcUaSourceConfig(msgspec.Struct, tag="opcua", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """One OPC UA server the gateway reads from."""

    name: str
    endpoint: str
    mode: str = "subscribe"
    """'subscribe' (the server reports changes) or 'poll' (one Read of every tag each poll_interval)."""
    publishing_interval: float = 1.0
    poll_interval: float = 1.0
    security_policy: str = "None"
    security_mode: str = "None"
    certificate: str = ""
    """Client certificate (DER or PEM); empty: <pki_dir>/<name>-cert.der, generated if missing."""
    private_key: str = ""
    pki_dir: str = ""
    """Folder for generated certificates; empty: $SHOPFLOOR_STATE/pki/opcua or the user's data folder."""
    application_uri: str = "urn:shopfloor:gateway"
    username: str = ""
    password: str = ""
    timeout: float = 5.0
    """Seconds a request may take; also how often a quiet connection is probed for life."""
    session_timeout: float = 60.0
    reconnect_min: float = 1.0
    reconnect_max: float = 10.0
    stall_timeout: float = 30.0
    """No data change and no keep-alive for this long (s): the subscription is recreated."""
    batch_interval: float = 0.05
    batch_size: int = 5000
    max_pending: int = 100_000
    """Readings kept while the sink is slow; beyond this the oldest are dropped (and counted)."""
    sampling_interval: float | None = None
    """Default of the tags' sampling_interval; unset: publishing_interval."""
    queue_size: int = 1
    """Default of the tags' queue_size."""
    deadband_type: str = "none"
    """Default of the numeric tags' deadband_type (text and bool tags get 'none')."""
    deadband_value: float = 0.0
    """Default of the tags' deadband_value."""
    tags: list[OpcUaTag] = msgspec.field(default_factory=list)
    events: list[OpcUaEvents] = msgspec.field(default_factory=list)
    """`[[gateway.sources.events]]`: event notifiers subscribed for events and conditions."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: a source needs a non-empty name")
        url = urlparse(self.endpoint)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"endpoint: {self.endpoint!r} is not an opc.tcp://host:port URL")
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        positive = ("publishing_interval", "poll_interval", "timeout", "session_timeout")
        for key in positive + ("reconnect_min",):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)}")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError(
                f"reconnect_max: must be >= reconnect_min ({self.reconnect_min}), got {self.reconnect_max}"
            )
        if self.stall_timeout < 2 * self.publishing_interval:
            raise ValueError(
                f"stall_timeout: must be at least twice publishing_interval ({self.publishing_interval}), "
                f"got {self.stall_timeout}"
            )
        check_settings(self.batch_size, self.batch_interval, self.max_pending)
        if self.security_policy not in SECURITY_POLICIES:
            raise ValueError(f"security_policy: {self.security_policy!r} is not one of {', '.join(SECURITY_POLICIES)}")
        if self.security_mode not in SECURITY_MODES:
            raise ValueError(f"security_mode: {self.security_mode!r} is not one of {', '.join(SECURITY_MODES)}")
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                f"security_mode: {self.security_mode!r} does not go with security_policy {self.security_policy!r} "
                "(None goes with None; Basic256Sha256 with Sign or SignAndEncrypt)"
            )
        if bool(self.certificate) != bool(self.private_key):
            raise ValueError("private_key: certificate and private_key are given together or not at all")
        if self.password and not self.username:
            raise ValueError("username: a password is set but no username")
        seen: set[str] = set()
        for tag in self.tags:
            if tag.name in seen:
                raise ValueError(f"tags: tag name {tag.name!r} appears twice")
            seen.add(tag.name)
        check_monitoring(self.sampling_interval, self.queue_size, self.deadband_type, self.deadband_value, None)
        self.tags = [self.effective(tag) for tag in self.tags]
        for i, notifier in enumerate(self.events):
            if not notifier.name:
                notifier.name = f"{self.name}.events" if len(self.events) == 1 else f"{self.name}.events{i + 1}"
            if notifier.name in seen:
                raise ValueError(f"events: name {notifier.name!r} is already a tag or events name of this source")
            seen.add(notifier.name)

    def effective(self, tag: OpcUaTag) -> OpcUaTag:
        """The tag with the source's monitoring defaults where it sets none itself (validated again)."""
        unset = (tag.queue_size, tag.deadband_type, tag.deadband_value)
        if None not in unset and (tag.sampling_interval is not None or self.sampling_interval is None):
            return tag
        numeric = tag.data_type in ("float", "int")
        kind = tag.deadband_type if tag.deadband_type is not None else (self.deadband_type if numeric else "none")
        value = tag.deadband_value
        if value is None:
            value = self.deadband_value if kind != "none" else 0.0
        try:
            return msgspec.structs.replace(
                tag,
                sampling_interval=tag.sampling_interval if tag.sampling_interval is not None else self.sampling_interval,
                queue_size=tag.queue_size if tag.queue_size is not None else self.queue_size,
                deadband_type=kind,
                deadband_value=value,
            )
        except ValueError as e:
            raise ValueError(f"{e} (tag {tag.name!r} with the source's defaults)") from None

    @property
    def secure(self) -> bool:
        """Whether the connection signs (and maybe encrypts) its messages."""
        return self.security_policy != "None"

    def certificate_paths(self) -> tuple[Path, Path]:
        """The client certificate and private key files (configured, or generated under pki_dir)."""
        if self.certificate:
            return Path(self.certificate).expanduser(), Path(self.private_key).expanduser()
        folder = Path(self.pki_dir).expanduser() if self.pki_dir else default_pki_dir()
        return folder / f"{self.name}-cert.der", folder / f"{self.name}-key.pem"
