"""One subscription per session, a monitored item per tag, and the watchdog that recreates it.

A subscription can die while the connection lives: the server may drop it (restart of its
subscription service, an expired lifetime, a bug), after which asyncua's publish loop simply
stops. The server promises a keep-alive at least every publishing_interval x keep-alive count,
and we ask for three of those per stall_timeout, so silence for stall_timeout means the
subscription is gone: it is deleted (best effort) and created again on the same session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable, Protocol, Sequence

from asyncua import ua
from asyncua.common.events import Event
from asyncua.common.subscription import DataChangeNotif, Subscription

from gateway.opcua.config import OpcUaEvents, OpcUaSourceConfig, OpcUaTag, event_browse_path
from gateway.opcua.session import RECOVERABLE, Session, describe, resolve_node_ids

log = logging.getLogger(__name__)

# statuses with which a server says "not this filter", as opposed to "not this node"
_FILTER_REFUSED = {
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
    ua.StatusCodes.BadMonitoredItemFilterInvalid,
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadDeadbandFilterInvalid,
}


class Listener(Protocol):
    """Where a Monitor reports: called from asyncua's notification tasks, so none of these may block."""

    def on_value(self, tag: OpcUaTag, dv: ua.DataValue) -> None:
        """A new value (or status) of a tag."""

    def on_values(self, items: list[tuple[OpcUaTag, ua.DataValue]]) -> None:
        """The values (or statuses) of one data-change notification, in the server's order."""

    def on_problem(self, message: str) -> None:
        """Something the operator should know that does not end the session."""

    def on_tag_refused(self, tag: OpcUaTag, reason: str) -> None:
        """The server would not monitor this tag; the others go on."""

    def on_recreated(self) -> None:
        """The subscription was recreated after a stall."""

    def on_event(self, notifier: OpcUaEvents, fields: list[ua.Variant]) -> None:
        """An event of a notifier: EventId, EventType, then the notifier's `fields` in order."""


def data_change_filter(tag: OpcUaTag) -> ua.DataChangeFilter | None:
    """The server-side deadband of a tag, or None for every change."""
    if tag.deadband_type == "none":
        return None
    kind = ua.DeadbandType.Absolute if tag.deadband_type == "absolute" else ua.DeadbandType.Percent
    return ua.DataChangeFilter(
        Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=kind, DeadbandValue=tag.deadband_value
    )


def subscription_parameters(config: OpcUaSourceConfig) -> ua.CreateSubscriptionParameters:
    """Publishing interval as configured, with keep-alives frequent enough to detect a stall."""
    keepalive = max(1, int(config.stall_timeout / (3 * config.publishing_interval)))
    return ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=config.publishing_interval * 1000,
        # the spec wants a lifetime of at least three keep-alives; ten leaves room for slow links
        RequestedLifetimeCount=10 * keepalive,
        RequestedMaxKeepAliveCount=keepalive,
        MaxNotificationsPerPublish=10_000,
        PublishingEnabled=True,
        Priority=0,
    )


def _request(
    handle: int, tag: OpcUaTag, session: Session, config: OpcUaSourceConfig, with_filter: bool
) -> ua.MonitoredItemCreateRequest:
    interval = tag.sampling_interval if tag.sampling_interval is not None else config.publishing_interval
    mfilter = data_change_filter(tag) if with_filter else None
    params = ua.MonitoringParameters(
        ClientHandle=handle,
        SamplingInterval=interval * 1000,
        QueueSize=tag.queue_size,
        DiscardOldest=True,
    )
    if mfilter is not None:
        params.Filter = mfilter
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=session.monitored[tag.name], AttributeId=ua.AttributeIds.Value,
                                     IndexRange=tag.index_range),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=params,
    )


# client handles of event items start here, clear of the tags' positions
EVENT_HANDLE_BASE = 1 << 30


# selected before the notifier's fields: EventId tells events apart, EventType finds refresh brackets
EVENT_PREFIX = ("EventId", "EventType")
# the RefreshStart/RefreshEnd events that bracket a ConditionRefresh: no news, not stored
REFRESH_EVENT_TYPES = frozenset({ua.NodeId(ua.ObjectIds.RefreshStartEventType), ua.NodeId(ua.ObjectIds.RefreshEndEventType)})


def event_filter(notifier: OpcUaEvents) -> ua.EventFilter:
    """Select EventId, EventType and the notifier's fields; no where clause: every event."""
    paths = [[ua.QualifiedName(f, 0)] for f in EVENT_PREFIX] + [event_browse_path(f) for f in notifier.fields]
    clauses = [
        ua.SimpleAttributeOperand(
            TypeDefinitionId=ua.NodeId(ua.ObjectIds.BaseEventType), BrowsePath=path, AttributeId=ua.AttributeIds.Value
        )
        for path in paths
    ]
    return ua.EventFilter(SelectClauses=clauses)


def _event_request(handle: int, notifier: ua.NodeId, queue_size: int, efilter: ua.EventFilter) -> ua.MonitoredItemCreateRequest:
    params = ua.MonitoringParameters(
        ClientHandle=handle, SamplingInterval=0, QueueSize=queue_size, DiscardOldest=True, Filter=efilter,
    )  # fmt: skip
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=notifier, AttributeId=ua.AttributeIds.EventNotifier),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=params,
    )


class _Subscription(Subscription):
    """asyncua's Subscription, handing each data-change notification to the handler whole.

    asyncua makes an object, an event and a task per monitored item of a notification and calls
    the handler once per item; here the handler gets the notification's items in one call (in the
    publish callback, in order), so that its numeric values go to the spool as columns without a
    Python object or task per value. Events and status changes keep asyncua's own path.
    `_explode_datachange` is asyncua's (2.1) private step; should a release drop it, asyncua calls
    `_Handler.datachange_notification` per item again and the values still arrive, one by one.
    """

    _handler: _Handler

    def _explode_datachange(self, datachange: ua.DataChangeNotification) -> Iterable[Any]:
        self._handler.datachange_batch(datachange.MonitoredItems)
        return ()


class _Handler:
    """asyncua's callback object for one generation of the subscription."""

    def __init__(self, monitor: Monitor, generation: int) -> None:
        self.monitor = monitor
        self.generation = generation

    def datachange_notification(self, node: Any, val: Any, data: DataChangeNotif) -> None:
        """One item: only if an asyncua without the hook _Subscription overrides calls per item (slower, still right)."""
        self.datachange_batch([data.monitored_item])

    def datachange_batch(self, items: list[ua.MonitoredItemNotification]) -> None:
        """Hand a notification's DataValues of our tags to the listener, in one call."""
        tags = self.monitor.tags_by_handle
        found = [(tag, item.Value) for item in items
                 if (tag := tags.get(item.ClientHandle)) is not None and item.Value is not None]
        if not found:
            return
        try:
            self.monitor.listener.on_values(found)
        except Exception as e:  # asyncua would only log it; the operator should see it in the status too
            log.exception("%s: a data-change notification was not taken", self.monitor.config.name)
            self.monitor.listener.on_problem(f"a data-change notification of {len(found)} values was not taken: {e!r}")

    def event_notification(self, event: Event) -> None:
        """Hand an event's fields (in select-clause order) to the listener."""
        # asyncua hands each event the select clauses of its item's filter (the same list object):
        # unlike the server handle, that is known before CreateMonitoredItems has answered
        notifier = self.monitor.notifiers_by_clauses.get(id(event.select_clauses))
        if notifier is None or event.event_fields is None:
            return
        fields = list(event.event_fields)
        if len(fields) > 1 and fields[1].Value in REFRESH_EVENT_TYPES:
            return
        self.monitor.listener.on_event(notifier, fields)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """The server (or asyncua on a lost connection) says the subscription is gone."""
        if self.generation == self.monitor.generation:
            self.monitor.trouble(f"was ended by the server ({status.Status.name})")


async def _wait_any(events: Sequence[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Monitor:
    """The subscription of one session: created by start(), kept alive by watch()."""

    def __init__(self, session: Session, config: OpcUaSourceConfig, listener: Listener, *, tags: bool = True) -> None:
        self.session = session
        self.config = config
        self.listener = listener
        # client handles are positions in the tag list, so a recreated item maps to the same tag
        # effective: a tag added to config.tags after load gets the source's defaults here too
        # (tags=False: poll mode, where the subscription carries the event notifiers only)
        self.tags_by_handle = {
            i: config.effective(tag) for i, tag in enumerate(config.tags, start=1) if tag.name in session.monitored
        } if tags else {}
        self.notifiers_by_handle = {EVENT_HANDLE_BASE + i: n for i, n in enumerate(config.events)}
        self._filters: list[ua.EventFilter] = []
        self.notifiers_by_clauses: dict[int, OpcUaEvents] = {}
        self.generation = 0
        self._sub: Subscription | None = None
        self._started = 0.0
        self._stall_after = config.stall_timeout
        self._trouble: str | None = None
        self._wake = asyncio.Event()

    def trouble(self, reason: str) -> None:
        """Ask watch() to recreate the subscription now."""
        self._trouble = reason
        self._wake.set()

    async def start(self) -> None:
        """Create the subscription and its monitored items."""
        self.generation += 1
        self._trouble = None
        self._wake.clear()
        sub = _Subscription(
            self.session.client.uaclient.session,
            subscription_parameters(self.config),
            _Handler(self, self.generation),
        )
        revised = await sub.init()
        # a server may impose a slower publishing interval or rarer keep-alives than we asked for
        keepalive_period = revised.RevisedPublishingInterval / 1000 * max(1, revised.RevisedMaxKeepAliveCount)
        self._stall_after = max(self.config.stall_timeout, 2 * keepalive_period)
        if self._stall_after > self.config.stall_timeout:
            log.warning(
                "%s: the server sends keep-alives only every %.1f s; a stall is declared after %.1f s",
                self.config.name, keepalive_period, self._stall_after,
            )  # fmt: skip
        self._sub = sub
        self._started = time.monotonic()
        await self._create_items(sub)

    async def _create_items(self, sub: Subscription) -> None:
        await self._create_tag_items(sub)
        await self._create_event_items(sub)

    async def _create_event_items(self, sub: Subscription) -> None:
        if not self.notifiers_by_handle:
            return
        # an `nsu=` notifier is looked up in this session's NamespaceArray, as tags are
        ids, missing = await resolve_node_ids(self.session.client, list(self.notifiers_by_handle.values()))
        for name, reason in missing.items():
            self.listener.on_problem(f"{name}: no events subscribed: {reason}")
        handles = [h for h, n in self.notifiers_by_handle.items() if n.name in ids]
        filters = [event_filter(self.notifiers_by_handle[h]) for h in handles]
        # kept referenced: the ids below must not be reused while this generation's items live
        self._filters, self.notifiers_by_clauses = filters, {}
        for h, efilter in zip(handles, filters):
            self.notifiers_by_clauses[id(efilter.SelectClauses)] = self.notifiers_by_handle[h]
        requests = [
            _event_request(h, ids[self.notifiers_by_handle[h].name], self.notifiers_by_handle[h].queue_size, f)
            for h, f in zip(handles, filters)
        ]
        results = await sub.create_monitored_items(requests) if requests else []
        for handle, result in zip(handles, results):
            notifier = self.notifiers_by_handle[handle]
            if isinstance(result, ua.StatusCode):
                # the other notifiers and the tags go on; the reconnect or next recreate tries again
                self.listener.on_problem(
                    f"{notifier.name}: the server refused events of notifier {notifier.notifier} ({result.name})"
                )
        if any(not isinstance(r, ua.StatusCode) for r in results):
            await self._condition_refresh(sub)

    async def _condition_refresh(self, sub: Subscription) -> None:
        """Ask for the state of every retained condition (Part 9 ConditionRefresh): what changed while we were away."""
        method = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)
        try:
            await self.session.client.get_node(ua.ObjectIds.ConditionType).call_method(
                method, ua.Variant(sub.subscription_id, ua.VariantType.UInt32)
            )
        except ua.UaStatusCodeError as e:
            # a server without Alarms & Conditions has no such method; its plain events still flow
            log.info("%s: ConditionRefresh not done (%s)", self.config.name, ua.StatusCode(e.code).name)

    async def _create_tag_items(self, sub: Subscription) -> None:
        handles = list(self.tags_by_handle)
        requests = [_request(h, self.tags_by_handle[h], self.session, self.config, True) for h in handles]
        results = await sub.create_monitored_items(requests) if requests else []
        retry: list[int] = []
        for handle, result in zip(handles, results):
            if not isinstance(result, ua.StatusCode):
                continue
            tag = self.tags_by_handle[handle]
            if result.value in _FILTER_REFUSED and data_change_filter(tag) is not None:
                # the gateway's own deadband (tag.deadband) still applies downstream
                self.listener.on_problem(
                    f"{tag.name}: the server refused the {tag.deadband_type} deadband ({result.name}); "
                    "monitoring every change"
                )
                retry.append(handle)
            else:
                self._refused(tag, result)
        if retry:
            requests = [_request(h, self.tags_by_handle[h], self.session, self.config, False) for h in retry]
            for handle, result in zip(retry, await sub.create_monitored_items(requests)):
                if isinstance(result, ua.StatusCode):
                    self._refused(self.tags_by_handle[handle], result)

    def _refused(self, tag: OpcUaTag, status: ua.StatusCode) -> None:
        # the tag shows bad in the historian instead of silently having no data; the others go on
        reason = f"the server refused to monitor {tag.node_id} ({status.name})"
        self.listener.on_problem(f"{tag.name}: {reason}")
        self.listener.on_value(tag, ua.DataValue(StatusCode=status))
        self.listener.on_tag_refused(tag, reason)

    def _stalled(self) -> str | None:
        assert self._sub is not None
        last = max(self._sub.last_publish_at or 0.0, self._started)
        idle = time.monotonic() - last
        if idle <= self._stall_after:
            return None
        return f"stalled (no data change and no keep-alive for {idle:.1f} s)"

    async def watch(self) -> None:
        """Return when the session is lost; meanwhile recreate the subscription whenever it stalls."""
        check = min(1.0, self.config.stall_timeout / 4)
        while not self.session.lost.is_set():
            await _wait_any((self.session.lost, self._wake), check)
            if self.session.lost.is_set():
                return
            reason = self._trouble or self._stalled()
            if reason is not None:
                await self.recreate(reason)

    async def recreate(self, reason: str) -> None:
        """Delete the subscription (best effort) and create it again; raises if the session cannot."""
        self.listener.on_problem(f"subscription {reason}; recreating it")
        old, self._sub = self._sub, None
        if old is not None:
            try:
                await asyncio.wait_for(old.delete(), self.config.timeout)
            except RECOVERABLE as e:
                # it is usually gone already; that is why we are here
                log.debug("%s: deleting the old subscription: %s", self.config.name, describe(e, self.config))
        await self.start()
        self.listener.on_recreated()
