"""A pysparkplug edge node for the Sparkplug interop suite, run by the peer venv of scripts/peers.

Usage: sparkplug_edge.py HOST PORT GROUP EDGE_NODE SPEC_JSON
SPEC_JSON: {"node": [[name, datatype, value, alias], ...], "devices": {"d1": [[...], ...]}}
with pysparkplug DataType names (INT8, FLOAT, DATETIME, ...); DATETIME values are epoch ms.

It prints "READY" once connected (NBIRTH and DBIRTHs sent), then reads JSON commands on stdin:
  {"op": "ddata", "device": "d1", "values": {name: value}, "ts": ms}   DDATA through update_device
  {"op": "ndata", "values": {...}, "ts": ms}                          NDATA through update
  {"op": "disconnect"} / {"op": "connect"}                            clean NDEATH + DISCONNECT / a new session
  {"op": "die"}                                                       exit without DISCONNECT: the broker sends the will
and answers each with one JSON line. An NCMD or DCMD it receives is logged as a line of its own; an NCMD
"Node Control/Rebirth" is answered the only way pysparkplug 0.6 offers (it has no rebirth call): a new session.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import sys
import threading
from typing import Any

from pysparkplug import DataType, Device, EdgeNode, Message, Metric

host, port, group, edge_id, spec_text = sys.argv[1:6]
spec = json.loads(spec_text)
types: dict[tuple[str | None, str], DataType] = {}
aliases: dict[tuple[str | None, str], int | None] = {}
work: queue.Queue[dict[str, Any]] = queue.Queue()


def say(line: dict[str, Any]) -> None:
    """One JSON line on stdout for the test."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def value_of(datatype: DataType, value: Any) -> Any:
    """pysparkplug takes datetime objects for DATETIME; the tests speak epoch ms."""
    if datatype == DataType.DATETIME and value is not None:
        return datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc)
    return value


def metric(device: str | None, name: str, value: Any, ts: int | None) -> Metric:
    """A metric as pysparkplug sends it: name, alias (if the spec gave one), datatype, value."""
    datatype = types[(device, name)]
    return Metric(timestamp=ts, name=name, datatype=datatype, value=value_of(datatype, value),
                  alias=aliases[(device, name)])


def metrics(device: str | None, rows: list[list[Any]]) -> list[Metric]:
    """The birth metrics of the node or one device."""
    out = []
    for name, type_name, value, alias in rows:
        types[(device, name)] = DataType[type_name]
        aliases[(device, name)] = alias
        out.append(metric(device, name, value, None))
    return out


def decoded(message: Message) -> dict[str, Any]:
    """name -> value of a command's metrics."""
    return {m.name: m.value for m in message.payload.metrics}


def on_ncmd(_node: EdgeNode, message: Message) -> None:
    """Log the NCMD; a rebirth request is handled on the main thread (paho's thread cannot reconnect)."""
    values = decoded(message)
    say({"event": "ncmd", "metrics": values})
    if values.get("Node Control/Rebirth") is True:
        work.put({"op": "rebirth"})


def on_dcmd(device_id: str):  # noqa: ANN201
    """Log a DCMD to one device."""
    return lambda _node, message: say({"event": "dcmd", "device": device_id, "metrics": decoded(message)})


class Edge(EdgeNode):
    """pysparkplug's EdgeNode, telling when a connection's births are out (pysparkplug has no callback).

    EdgeNode.connect sets the will once before CONNECT and once more at the end of its on-connect
    callback, after the NBIRTH and DBIRTHs: the second call is the signal.
    """

    wills = 0
    born = threading.Event()

    def _setup_will(self) -> None:
        super()._setup_will()
        self.wills += 1
        if self.wills % 2 == 0:
            self.born.set()


node = Edge(group, edge_id, metrics(None, spec.get("node", [])), cmd_callback=on_ncmd)
for device_id, rows in spec.get("devices", {}).items():
    node.register(Device(device_id, metrics(device_id, rows), cmd_callback=on_dcmd(device_id)))


def connect() -> None:
    """A new MQTT session: will with a new bdSeq, NBIRTH, DBIRTHs."""
    node.born.clear()
    node.connect(host, port=int(port), keepalive=5)
    if not node.born.wait(30):
        raise SystemExit("no CONNACK from the broker within 30 s")
    # the births are queued in paho; READY only once they are written to the broker's socket
    paho = node._client._client
    while paho._out_packet:
        node.born.wait(0.005)


def stdin_reader() -> None:
    """Commands from the test, onto the work queue."""
    for line in sys.stdin:
        if line.strip():
            work.put(json.loads(line))
    work.put({"op": "die"})


connect()
say({"event": "connected"})
print("READY", flush=True)
threading.Thread(target=stdin_reader, daemon=True).start()
while True:
    cmd = work.get()
    op = cmd["op"]
    if op == "ddata":
        dev = cmd["device"]
        node.update_device(dev, [metric(dev, n, v, cmd.get("ts")) for n, v in cmd["values"].items()])
        say({"op": op, "device": dev, "ts": cmd.get("ts")})
    elif op == "ndata":
        node.update([metric(None, n, v, cmd.get("ts")) for n, v in cmd["values"].items()])
        say({"op": op, "ts": cmd.get("ts")})
    elif op == "disconnect":
        node.disconnect()
        say({"op": op})
    elif op in ("connect", "rebirth"):
        if op == "rebirth":
            node.disconnect()
        connect()
        say({"op": op})
    elif op == "die":
        os._exit(0)  # no DISCONNECT: the broker publishes the will
    else:
        say({"op": op, "error": "unknown op"})
