"""One chart request end to end: resolve the tag, pick frozen or estimated limits, load, chart, capability.

A chart uses the limits frozen for its tag and kind when there are any; their subgroup, chart
options and count source are its defaults, which the request may override. Without frozen limits
it estimates them from the data it charts (phase I). Capability is computed from the data charted
(within-subgroup sigma estimated from it, not the frozen one), when the tag has specification limits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime

import psycopg

from analytics.spc import capability, limits, source
from analytics.spc.charts import ATTRIBUTES, CHARTS, Chart, ChartDataError, Counts, Limits, Options, Subgroups
from analytics.spc.charts import chart as make_chart
from analytics.spc.charts import estimate
from historian.errors import InvalidParameterError
from historian.query import TagRef, check_range, resolve
from twin.kernels import NELSON, RULES, WESTERN_ELECTRIC

RULE_SETS = {"all": RULES, "we": WESTERN_ELECTRIC, "nelson": NELSON}


@dataclass(frozen=True, slots=True)
class ChartQuery:
    """A chart asked for: None where the frozen limits' (or the default) value applies."""

    tag: str
    chart: str
    start: datetime
    end: datetime
    subgroup: str | None = None
    machine: str | None = None
    n: float | None = None
    lam: float | None = None
    L: float | None = None
    k: float | None = None
    h: float | None = None
    rules: str = "all"


@dataclass(frozen=True, slots=True)
class ChartResult:
    """A chart with everything that went into it."""

    spec: source.DataSpec
    chart: Chart
    limits: Limits
    options: Options
    frozen: limits.Frozen | None
    spec_limits: capability.Spec | None
    capability: capability.Capability | None


def data_spec(q: ChartQuery, tag: TagRef, frozen: limits.Frozen | None = None) -> source.DataSpec:
    """The grouping and count source settled: as asked for, else as frozen, else the default."""
    if q.chart not in CHARTS:
        raise InvalidParameterError("chart", f"{q.chart!r} is not one of {', '.join(CHARTS)}")
    machine, n = q.machine, q.n
    if frozen is not None and machine is None and n is None:
        machine, n = frozen.machine, frozen.n
    if q.subgroup is not None:
        subgroup = source.parse_subgroup(q.subgroup)
    elif frozen is not None:
        subgroup = source.parse_subgroup(frozen.subgroup)
    else:
        subgroup = source.default_subgroup(q.chart, machine)
    spec = source.DataSpec(tag, q.chart, subgroup, machine, n)
    source.check(spec)
    return spec


def options(q: ChartQuery, base: Options = Options()) -> Options:
    """The chart options: the query's where given, else base's; errors name the parameter."""
    if q.rules not in RULE_SETS:
        raise InvalidParameterError("rules", f"{q.rules!r} is not one of {', '.join(RULE_SETS)}")
    given = {k: v for k, v in (("lam", q.lam), ("L", q.L), ("k", q.k), ("h", q.h)) if v is not None}
    for name, v in given.items():
        if not math.isfinite(v):
            raise InvalidParameterError(name, f"must be a finite number, got {v}")
    if "lam" in given and not 0 < given["lam"] <= 1:
        raise InvalidParameterError("lam", f"the EWMA weight must be in (0, 1], got {given['lam']}")
    for name in ("L", "h"):
        if name in given and given[name] <= 0:
            raise InvalidParameterError(name, f"must be > 0, got {given[name]}")
    if "k" in given and given["k"] < 0:
        raise InvalidParameterError("k", f"must be >= 0, got {given['k']}")
    return dataclasses.replace(base, rules=RULE_SETS[q.rules], **given)


async def run(conn: psycopg.AsyncConnection, q: ChartQuery) -> ChartResult:
    """The chart asked for, with its limits, frozen baseline (if any) and capability."""
    check_range(q.start, q.end)
    tag = await resolve(conn, q.tag)
    frozen = await limits.get_frozen(conn, tag.id, q.chart) if q.chart in CHARTS else None
    spec = data_spec(q, tag, frozen)
    opts = options(q, frozen.options if frozen is not None else Options())
    data = await source.load(conn, spec, q.start, q.end)
    lim = frozen.limits if frozen is not None else estimate(q.chart, data)
    chart = await asyncio.to_thread(make_chart, q.chart, data, lim, opts)  # CPU work on big ranges: off the loop
    spec_row = await limits.get_spec(conn, tag.id)
    spec_limits = spec_row[0] if spec_row is not None else None
    cap = _capability(q.chart, data, spec_limits) if spec_limits is not None else None
    return ChartResult(spec, chart, lim, opts, frozen, spec_limits, cap)


async def freeze(conn: psycopg.AsyncConnection, q: ChartQuery) -> limits.Frozen:
    """Estimate limits from the baseline [q.start, q.end) and freeze them for the tag and chart."""
    check_range(q.start, q.end)
    spec = data_spec(q, await resolve(conn, q.tag))
    return await limits.freeze(conn, spec, q.start, q.end, options(q))


def _capability(kind: str, data: Subgroups | Counts, spec: capability.Spec) -> capability.Capability | None:
    """Capability of a variables chart's data; None for attribute charts or data too thin to estimate sigma."""
    if kind in ATTRIBUTES or not isinstance(data, Subgroups):
        return None
    try:
        within = estimate(kind, data).sigma
        return capability.of_subgroups(data, within, spec)
    except (ChartDataError, ValueError):
        return None
