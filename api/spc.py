"""/api/v1/spc: control charts of a tag as JSON, PNG or SVG; its specification limits; frozen control limits."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Annotated

import msgspec
import numpy as np
import psycopg
from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_404_NOT_FOUND, HTTP_422_UNPROCESSABLE_ENTITY

from api.auth import requires
from analytics.spc import build, limits
from analytics.spc.capability import Capability, Spec
from analytics.spc.charts import CHARTS, Chart, ChartDataError, Options, rule_names
from analytics.spc.source import UnknownMachineError
from api.deps import provide_conn
from historian.errors import InvalidParameterError
from historian.query import resolve
from historian.samples import from_us

FORMATS = ("json", "png", "svg")
MAX_POINTS = 100_000
"""Plotted points (subgroups) one chart answers at most; more is refused with 400 naming `subgroup`."""
_MEDIA = {"png": "image/png", "svg": "image/svg+xml"}


class PointOut(msgspec.Struct, omit_defaults=True):
    """One plotted point: the statistic, its subgroup size and the rules it broke; limits when they vary."""

    ts: datetime
    value: float | None
    n: int | float
    """samples in the subgroup; units inspected for attribute charts"""
    rules: list[str]
    cl: float | None = None
    ucl: float | None = None
    lcl: float | None = None


class PanelOut(msgspec.Struct):
    """One plotted statistic (X̄, R, S, I, MR, p, np, c, u, EWMA, CUSUM C+ or C-) with its limits."""

    stat: str
    varying: bool
    """true: the limits differ per point and are given on each point, not here"""
    cl: float | None
    ucl: float | None
    lcl: float | None
    points: list[PointOut]


class ViolationOut(msgspec.Struct):
    """A point that broke rules."""

    stat: str
    ts: datetime
    value: float | None
    rules: list[str]


class OptionsOut(msgspec.Struct):
    """Chart parameters: EWMA weight and width in sigmas, CUSUM reference k and decision interval h in sigmas."""

    lam: float
    L: float
    k: float
    h: float


class FrozenOut(msgspec.Struct):
    """Control limits frozen from a baseline period."""

    tag: str
    chart: str
    subgroup: str
    baseline_start: datetime
    baseline_end: datetime
    centre: float
    sigma: float
    cl: float
    ucl: float | None
    lcl: float | None
    options: OptionsOut
    machine: str | None
    n: float | None
    computed_at: datetime


class SpecIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Specification limits; one of lsl and usl may be left out for a one-sided specification."""

    lsl: float | None = None
    usl: float | None = None
    target: float | None = None


class SpecOut(msgspec.Struct):
    """A tag's specification limits."""

    tag: str
    lsl: float | None
    usl: float | None
    target: float | None
    updated_at: datetime


class CapabilityOut(msgspec.Struct):
    """Capability of the charted data against the tag's specification limits."""

    lsl: float | None
    usl: float | None
    target: float | None
    mean: float
    sigma_within: float
    sigma_overall: float
    count: int
    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None
    cpm: float | None


class LimitsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Freeze a chart's limits from the baseline [start, end)."""

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


class SpcOut(msgspec.Struct):
    """A control chart: its panels (the statistic, then its dispersion or C- panel), violations, capability."""

    tag: str
    unit: str
    chart: str
    start: datetime
    end: datetime
    subgroup: str
    machine: str | None
    limits: str
    """frozen: from the baseline in `frozen`; estimated: from the data charted"""
    centre: float
    sigma: float
    options: OptionsOut
    panels: list[PanelOut]
    violations: list[ViolationOut]
    frozen: FrozenOut | None
    capability: CapabilityOut | None


def _f(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _panel(c: Chart) -> PanelOut:
    varying = c.varying
    ts = c.ts.tolist()
    xs = c.x.tolist()
    ns = c.n.tolist()
    flags = c.flags.tolist()
    per_point = [np.broadcast_to(np.asarray(v if v is not None else np.nan, dtype=np.float64), c.x.shape).tolist()
                 for v in (c.cl, c.ucl, c.lcl)] if varying else None
    points = []
    for i in range(len(xs)):
        p = PointOut(from_us(ts[i]), _f(xs[i]), ns[i], rule_names(flags[i]) if flags[i] else [])
        if per_point is not None:
            p.cl, p.ucl, p.lcl = (_f(col[i]) for col in per_point)
        points.append(p)
    scalar = [None if varying or v is None else _f(float(v)) for v in (c.cl, c.ucl, c.lcl)]  # type: ignore[arg-type]
    return PanelOut(c.stat, varying, scalar[0], scalar[1], scalar[2], points)


def _violations(c: Chart) -> list[ViolationOut]:
    return [ViolationOut(c.stat, from_us(int(c.ts[i])), _f(float(c.x[i])), names) for i, names in c.violations()]


def _options(o: Options) -> OptionsOut:
    return OptionsOut(o.lam, o.L, o.k, o.h)


def _frozen(tag: str, f: limits.Frozen) -> FrozenOut:
    return FrozenOut(tag, f.chart, f.subgroup, f.baseline_start, f.baseline_end, f.limits.centre, f.limits.sigma,
                     f.cl, f.ucl, f.lcl, _options(f.options), f.machine, f.n, f.computed_at)


def _capability(spec: Spec, c: Capability) -> CapabilityOut:
    return CapabilityOut(spec.lsl, spec.usl, spec.target, c.mean, c.sigma_within, c.sigma_overall, c.count,
                         c.cp, c.cpk, c.pp, c.ppk, c.cpm)


def _answer(r: build.ChartResult, q: build.ChartQuery, unit: str) -> SpcOut:
    panels = [r.chart] if r.chart.secondary is None else [r.chart, r.chart.secondary]
    cap = _capability(r.spec_limits, r.capability) if r.spec_limits and r.capability else None
    return SpcOut(
        r.spec.tag.name, unit, q.chart, q.start, q.end, r.spec.subgroup.text, r.spec.machine,
        "frozen" if r.frozen else "estimated", r.limits.centre, r.limits.sigma, _options(r.options),
        [_panel(p) for p in panels], [v for p in panels for v in _violations(p)],
        _frozen(r.spec.tag.name, r.frozen) if r.frozen else None, cap,
    )


def not_enough_data(_: Request, exc: ChartDataError) -> Response:
    """422 saying what the chart needs (and how many subgroups, where it is a count)."""
    body = {"status_code": 422, "detail": exc.problem, "needed": exc.needed, "got": exc.got}
    return Response(body, status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def unknown_machine(_: Request, exc: UnknownMachineError) -> Response:
    """404 naming the machine."""
    return Response({"status_code": 404, "detail": str(exc), "machine": exc.name}, status_code=HTTP_404_NOT_FOUND)


class SpcController(Controller):
    """Statistical process control over the historian."""

    path = "/api/v1/spc"
    tags = ["spc"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}
    exception_handlers = {ChartDataError: not_enough_data, UnknownMachineError: unknown_machine}  # type: ignore[dict-item]

    @get("/{tag:str}", summary="Control chart of a tag", media_type="application/json")
    async def chart(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        tag: FromPath[str],
        chart: Annotated[str, QueryParameter(description=f"one of {', '.join(CHARTS)}")],
        start: Annotated[datetime, QueryParameter(description="inclusive, ISO 8601 with a zone")],
        end: Annotated[datetime, QueryParameter(description="exclusive, ISO 8601 with a zone")],
        subgroup: Annotated[str | None, QueryParameter(
            description="a count (5) or a time bucket (1m); default: the frozen limits' subgroup, else 5 for X̄ "
                        "charts, 1h over a machine's part counts, 1 otherwise")] = None,
        machine: Annotated[str | None, QueryParameter(
            description="attribute charts: count scrap out of good + scrap from this machine's part counts")] = None,
        n: Annotated[float | None, QueryParameter(
            description="attribute charts over the tag's values: units inspected per sample")] = None,
        lam: Annotated[float | None, QueryParameter(description="EWMA weight (0, 1]; default 0.2")] = None,
        L: Annotated[float | None, QueryParameter(description="EWMA limits in sigmas; default 3")] = None,
        k: Annotated[float | None, QueryParameter(description="CUSUM reference in sigmas; default 0.5")] = None,
        h: Annotated[float | None, QueryParameter(description="CUSUM decision interval in sigmas; default 5")] = None,
        rules: Annotated[str, QueryParameter(description="all, we (Western Electric) or nelson")] = "all",
        format: Annotated[str, QueryParameter(description="json, png or svg")] = "json",
    ) -> Response:
        """Points, limits (frozen from a baseline, else estimated), rule violations and capability; or the drawing."""
        if format not in FORMATS:
            raise InvalidParameterError("format", f"{format!r} is not one of {', '.join(FORMATS)}")
        q = build.ChartQuery(tag, chart, start, end, subgroup, machine, n, lam, L, k, h, rules)
        result = await build.run(conn, q)
        if result.chart.x.shape[0] > MAX_POINTS:
            raise InvalidParameterError("subgroup", f"{result.chart.x.shape[0]} points; at most {MAX_POINTS} per "
                                                    "chart: give a larger subgroup or a shorter range")
        if format == "json":
            return Response(_answer(result, q, result.spec.tag.unit))
        title = f"{result.spec.tag.name} {chart} ({'frozen' if result.frozen else 'estimated'} limits)"
        from analytics.spc import render  # matplotlib loads when a picture is first asked for

        image = await asyncio.to_thread(render.render, result.chart, title, format)
        return Response(image, media_type=_MEDIA[format])

    @get("/{tag:str}/spec", summary="Specification limits of a tag")
    async def get_spec(self, conn: NamedDependency[psycopg.AsyncConnection], tag: FromPath[str]) -> SpecOut:
        """The tag's LSL, USL and target, or 404 when it has none."""
        ref = await resolve(conn, tag)
        row = await limits.get_spec(conn, ref.id)
        if row is None:
            raise NotFoundException(f"tag {tag!r} has no specification limits")
        spec, updated = row
        return SpecOut(ref.name, spec.lsl, spec.usl, spec.target, updated)

    @put("/{tag:str}/spec", summary="Set specification limits of a tag", guards=[requires("engineer")])
    async def put_spec(
        self, conn: NamedDependency[psycopg.AsyncConnection], tag: FromPath[str], data: JSONBody[SpecIn]
    ) -> SpecOut:
        """Set LSL, USL (either may be absent, not both) and target; capability is computed against them."""
        ref = await resolve(conn, tag)
        for name in ("lsl", "usl", "target"):
            v = getattr(data, name)
            if v is not None and not math.isfinite(v):
                raise InvalidParameterError(name, f"must be a finite number, got {v}")
        if data.lsl is None and data.usl is None:
            raise InvalidParameterError("usl", "give lsl, usl or both")
        if data.lsl is not None and data.usl is not None and not data.lsl < data.usl:
            raise InvalidParameterError("usl", f"must be above lsl ({data.lsl}), got {data.usl}")
        spec = Spec(data.lsl, data.usl, data.target)
        updated = await limits.put_spec(conn, ref.id, spec)
        return SpecOut(ref.name, spec.lsl, spec.usl, spec.target, updated)

    @post("/{tag:str}/limits", summary="Freeze control limits from a baseline period", status_code=201, guards=[requires("engineer")])
    async def freeze(
        self, conn: NamedDependency[psycopg.AsyncConnection], tag: FromPath[str], data: JSONBody[LimitsIn]
    ) -> FrozenOut:
        """Estimate the chart's limits from [start, end) and keep them for later charts until recomputed."""
        q = build.ChartQuery(tag, data.chart, data.start, data.end, data.subgroup, data.machine, data.n,
                             data.lam, data.L, data.k, data.h)
        frozen = await build.freeze(conn, q)
        return _frozen(tag, frozen)

