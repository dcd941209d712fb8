"""The OPC UA source: subscriptions or polling, recovery after any loss, write-back, browsing."""

import logging

from gateway.opcua.adapter import OpcUaSource
from gateway.opcua.browse import browse, browse_to_toml, render_toml
from gateway.opcua.config import OpcUaSourceConfig, OpcUaTag

# asyncua logs every request at INFO and every reconnect at WARNING; our own log says what matters.
# Only when nobody chose a level for it, so `logging.getLogger("asyncua").setLevel(...)` still works.
_asyncua = logging.getLogger("asyncua")
if _asyncua.level == logging.NOTSET:
    _asyncua.setLevel(logging.ERROR)

__all__ = ["OpcUaSource", "OpcUaSourceConfig", "OpcUaTag", "browse", "browse_to_toml", "render_toml"]
