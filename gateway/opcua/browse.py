"""Finding tags on a server: walk the address space from Objects and keep the variables a pattern matches.

    print(await browse_to_toml("opc.tcp://plc:4840", "Plant/*/Temperature"))

A pattern is a glob over the browse path below Objects ("Plant/press1/Temperature"), or a
regular expression searched in it when it starts with "re:". Each variable found becomes a tag
with a guessed data_type, unit (from its EngineeringUnits property), machine and 4M1E category.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from asyncua import Client, ua
from asyncua.common.ua_utils import data_type_to_variant_type

from gateway.opcua.config import OpcUaSourceConfig
from gateway.opcua.session import open_session

log = logging.getLogger(__name__)

_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
# the Server object holds the server's own diagnostics: thousands of nodes nobody historizes
_SKIP = {ua.NodeId(ua.ObjectIds.Server)}
_CHUNK = 200
MAX_ELEMENTS = 64
"""Arrays longer than this are left out of browse output (one tag per element would flood the config)."""
_FLOATS = {ua.VariantType.Float, ua.VariantType.Double}
_INTS = {
    ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
    ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64,
}  # fmt: skip
_TEXTS = {ua.VariantType.String, ua.VariantType.LocalizedText, ua.VariantType.DateTime, ua.VariantType.Guid}
# first match wins: "CurrentLot" is material before anything else
_CATEGORIES = (
    ("man", ("operator", "badge", "worker", "shift", "user")),
    ("material", ("lot", "batch", "material", "serial", "part")),
    ("method", ("recipe", "program", "setpoint", "mode")),
    ("energy", ("energy", "kwh", "power", "voltage", "watt")),
)


@dataclass
class _Variable:
    path: tuple[str, ...]
    node_id: ua.NodeId
    units_node: ua.NodeId | None = None
    data_type: str | None = None
    unit: str = ""
    length: int | None = None
    """For a one-dimensional array: its current length (one tag per element); None: a scalar."""


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"pattern: {pattern[3:]!r} is not a regular expression ({e})") from None
        return lambda path: regex.search(path) is not None
    return lambda path: fnmatch.fnmatchcase(path, pattern)


async def _browse_many(client: Client, nodes: Sequence[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """The hierarchical forward references to objects and variables of each node, all pages of them."""
    found: list[list[ua.ReferenceDescription]] = []
    for start in range(0, len(nodes), _CHUNK):
        params = ua.BrowseParameters(
            View=ua.ViewDescription(),
            RequestedMaxReferencesPerNode=0,
            NodesToBrowse=[
                ua.BrowseDescription(
                    NodeId=node,
                    BrowseDirection=ua.BrowseDirection.Forward,
                    ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                    IncludeSubtypes=True,
                    NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
                    ResultMask=ua.BrowseResultMask.All,
                )
                for node in nodes[start : start + _CHUNK]
            ],
        )
        for result in await client.uaclient.browse(params):
            refs = list(result.References or [])
            point = result.ContinuationPoint
            while point:
                more = await client.uaclient.browse_next(ua.BrowseNextParameters(ContinuationPoints=[point]))
                refs += more[0].References or []
                point = more[0].ContinuationPoint
            found.append(refs)
    return found


async def _walk(client: Client, max_nodes: int) -> list[_Variable]:
    """Every variable below Objects, breadth first, one Browse call per level (and chunk)."""
    root = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, ())]
    seen = {root}
    variables: dict[ua.NodeId, _Variable] = {}
    while level and len(seen) < max_nodes:
        below: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for (parent, path), refs in zip(level, await _browse_many(client, [n for n, _ in level])):
            for ref in refs:
                child = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                name = ref.BrowseName.Name or ""
                if ref.ReferenceTypeId == _HAS_PROPERTY:
                    # properties describe their parent; they are not tags of their own
                    if name == "EngineeringUnits" and parent in variables:
                        variables[parent].units_node = child
                    continue
                if child in seen or child in _SKIP:
                    continue
                seen.add(child)
                if ref.NodeClass == ua.NodeClass.Variable:
                    variables[child] = _Variable(path + (name,), child)
                below.append((child, path + (name,)))
        level = below
    if level:
        log.warning("browse stopped after %d nodes (max_nodes); narrow the pattern or raise max_nodes", len(seen))
    return list(variables.values())


async def _read(client: Client, nodes: Sequence[ua.NodeId], attribute: ua.AttributeIds) -> list[ua.DataValue]:
    results: list[ua.DataValue] = []
    for start in range(0, len(nodes), _CHUNK):
        params = ua.ReadParameters(
            NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in nodes[start : start + _CHUNK]]
        )
        results += await client.uaclient.read(params)
    return results


async def _data_type(client: Client, datatype: ua.NodeId, cache: dict[ua.NodeId, str | None]) -> str | None:
    """The tag data_type a variable of this DataType gets, or None when it cannot be a tag (structures)."""
    if datatype not in cache:
        abstract = (ua.ObjectIds.Number, ua.ObjectIds.Integer, ua.ObjectIds.UInteger)
        if datatype.NamespaceIndex == 0 and datatype.Identifier in abstract:
            # abstract numeric types: a concrete number at run time
            cache[datatype] = "float" if datatype.Identifier == ua.ObjectIds.Number else "int"
        else:
            try:
                vtype = await data_type_to_variant_type(client.get_node(datatype))
            except (ValueError, ua.UaError):
                vtype = None
            cache[datatype] = (
                "bool" if vtype is ua.VariantType.Boolean
                else "float" if vtype in _FLOATS
                else "int" if vtype in _INTS
                else "text" if vtype in _TEXTS
                else None
            )  # fmt: skip
    return cache[datatype]


async def _describe(client: Client, variables: list[_Variable]) -> None:
    """Fill in data types and units with a few batched Read calls."""
    nodes = [v.node_id for v in variables]
    datatypes = await _read(client, nodes, ua.AttributeIds.DataType)
    ranks = await _read(client, nodes, ua.AttributeIds.ValueRank)
    cache: dict[ua.NodeId, str | None] = {}
    arrays: list[_Variable] = []
    for var, dt, rank in zip(variables, datatypes, ranks):
        value_rank = rank.Value.Value if rank.Value is not None and isinstance(rank.Value.Value, int) else -1
        if value_rank >= 0 and value_rank != 1:
            continue  # matrices (and "one or more dimensions"): no tag per element
        if dt.Value is not None and isinstance(dt.Value.Value, ua.NodeId):
            var.data_type = await _data_type(client, dt.Value.Value, cache)
        if value_rank == 1 and var.data_type is not None:
            arrays.append(var)
    # an array becomes one tag per element it holds now (read once, batched), up to MAX_ELEMENTS
    for var, dv in zip(arrays, await _read(client, [v.node_id for v in arrays], ua.AttributeIds.Value)):
        items = dv.Value.Value if dv.Value is not None else None
        if isinstance(items, (list, tuple)) and 0 < len(items) <= MAX_ELEMENTS:
            var.length = len(items)
        else:
            log.info("browse: %s left out (array of %s elements)", "/".join(var.path),
                     len(items) if isinstance(items, (list, tuple)) else "unknown")
            var.data_type = None
    with_units = [v for v in variables if v.units_node is not None]
    units = await _read(client, [v.units_node for v in with_units if v.units_node is not None], ua.AttributeIds.Value)
    for var, eu in zip(with_units, units):
        info = eu.Value.Value if eu.Value is not None else None
        if isinstance(info, ua.EUInformation) and info.DisplayName is not None:
            var.unit = info.DisplayName.Text or ""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


def _category(name: str) -> str:
    lowered = name.lower()
    for category, words in _CATEGORIES:
        if any(w in lowered for w in words):
            return category
    return "machine"


def expanded(node_id: ua.NodeId, namespaces: Sequence[str]) -> str:
    """The node id as `nsu=<namespace URI>;...` (stable when the server renumbers namespaces); ns=0 as is."""
    if node_id.NamespaceIndex == 0 or node_id.NamespaceIndex >= len(namespaces):
        return node_id.to_string()
    local = ua.NodeId(node_id.Identifier, 0, node_id.NodeIdType).to_string()
    return f"nsu={namespaces[node_id.NamespaceIndex]};{local}"


def _as_tags(variables: list[_Variable], namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
    short = [".".join(_slug(p) for p in v.path[-2:]) for v in variables]
    counts = Counter(short)
    tags = []
    for var, name in zip(variables, short):
        if counts[name] > 1:
            name = ".".join(_slug(p) for p in var.path)
        for index in range(var.length) if var.length is not None else (None,):
            tag: dict[str, Any] = {
                "name": name if index is None else f"{name}_{index}",
                "node_id": expanded(var.node_id, namespaces),
                "data_type": var.data_type,
            }
            if index is not None:
                tag["index"] = index
            if var.unit:
                tag["unit"] = var.unit
            if len(var.path) >= 2:
                tag["machine"] = var.path[-2]
            tag["category"] = _category(var.path[-1])
            tag["description"] = "/".join(var.path) + ("" if index is None else f"[{index}]")
            tags.append(tag)
    return tags


async def browse(
    endpoint: str,
    pattern: str = "*",
    *,
    username: str = "",
    password: str = "",
    security_policy: str = "None",
    security_mode: str = "None",
    pki_dir: str = "",
    timeout: float = 5.0,
    max_nodes: int = 50_000,
) -> list[dict[str, Any]]:
    """The variables below Objects whose browse path matches pattern, as OpcUaTag-shaped dicts."""
    matches = _matcher(pattern)
    config = OpcUaSourceConfig(
        name="browse",
        endpoint=endpoint,
        username=username,
        password=password,
        security_policy=security_policy,
        security_mode=security_mode,
        pki_dir=pki_dir,
        timeout=timeout,
    )
    async with open_session(config) as session:
        found = [v for v in await _walk(session.client, max_nodes) if matches("/".join(v.path))]
        await _describe(session.client, found)
        namespaces = await session.client.get_namespace_array()
    return _as_tags([v for v in found if v.data_type is not None], namespaces)


def render_toml(tags: list[dict[str, Any]], endpoint: str = "", pattern: str = "") -> str:
    """Tags as `[[gateway.sources.tags]]` blocks, to paste below an OPC UA source's table."""
    lines = [f"# {len(tags)} variables of {endpoint or 'the server'}" + (f" matching {pattern!r}" if pattern else "")]
    if endpoint:
        lines += ["# [[gateway.sources]]", '# type = "opcua"', '# name = "..."', f"# endpoint = {json.dumps(endpoint)}"]
    for tag in tags:
        lines += ["", "[[gateway.sources.tags]]"]
        # a JSON string is a valid TOML basic string
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in tag.items()]
    return "\n".join(lines) + "\n"


async def browse_to_toml(endpoint: str, pattern: str) -> str:
    """Browse a server and render what matched as TOML tag blocks."""
    return render_toml(await browse(endpoint, pattern), endpoint, pattern)
