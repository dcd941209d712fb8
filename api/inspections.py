"""/api/v1/inspections: judge a camera image with its station's model; read results, the image and its overlay.

Viewers read; operators post. An upload is bounded (20 MB body, 40 megapixels, a decodable image); a refused upload
is a 4xx naming the field and stores nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import requires
from api.deps import provide_conn
from api.spc import MAX_POINTS, PanelOut, PointOut, ViolationOut
from historian.errors import InvalidParameterError
from historian.query import check_range
from inspection import pchart, store
from inspection.images import MAX_BYTES, ImageRejected
from inspection.overlay import overlay_png
from inspection.service import UnknownStation, inspect

MAX_PAGE = 1000
STATION = r"^[A-Za-z0-9_.-]{1,64}$"
_NAME = msgspec.Meta(max_length=128)


class InspectionOut(msgspec.Struct):
    """One inspection: verdict, class, score, mask/boxes summary and the model that judged it."""

    id: int
    ts: datetime
    station: str
    machine: str
    lot: str | None
    operation: str | None
    verdict: str
    class_: str = msgspec.field(name="class")
    score: float = 0.0
    mask: dict[str, Any] | None = None
    boxes: list[Any] | None = None
    probs: dict[str, float] | None = None
    image_sha256: str = ""
    width: int = 0
    height: int = 0
    model: dict[str, str] = msgspec.field(default_factory=dict)
    latency_ms: float = 0.0
    source: str = "api"


class PChartAlarmOut(msgspec.Struct):
    """The station's active p-chart alarm (one per out-of-control episode; ISA-18.2 lifecycle in /api/v1/alarms)."""

    id: int
    priority: str
    state: str
    since: datetime
    last_ts: datetime
    points: int
    rules: list[str]


class PChartOut(msgspec.Struct):
    """A station's p-chart: NG fraction per subgroup of `subgroup_n` inspections, its limits, rules and alarm."""

    station: str
    machine: str
    tag: str
    """the tag its alarms are filed under"""
    subgroup_n: int
    baseline_subgroups: int
    rules: str
    """the rule set points are judged with: we (Western Electric 1-4), nelson (1-8) or all"""
    limits: str
    """learning: p̄ not yet known (points not judged); frozen: judged against p_bar"""
    p_bar: float | None
    frozen_at: datetime | None
    open_n: int
    """inspections counted into the subgroup not yet closed"""
    open_ng: int
    panel: PanelOut
    violations: list[ViolationOut]
    alarm: PChartAlarmOut | None


def _pchart_out(st: store.Station, state: dict[str, Any] | None, points: list[dict[str, Any]],
                alarm: dict[str, Any] | None) -> PChartOut:
    out_points = [PointOut(p["ts"], p["p"], p["n"], list(p["rules"]), p["cl"], p["ucl"], p["lcl"]) for p in points]
    violations = [ViolationOut("p", p["ts"], p["p"], list(p["rules"])) for p in points if p["rules"]]
    p_bar = state["p_bar"] if state else None
    return PChartOut(
        st.station, st.machine, pchart.tag_name(st.station), state["n"] if state else st.pchart_n,
        state["baseline"] if state else st.pchart_baseline, st.pchart_rules,
        "frozen" if p_bar is not None else "learning", p_bar,
        state["frozen_at"] if state else None, state["open_n"] if state else 0, state["open_ng"] if state else 0,
        PanelOut("p", True, None, None, None, out_points), violations,
        PChartAlarmOut(alarm["id"], alarm["priority"], alarm["state"], alarm["ts"], alarm["last_ts"],
                       alarm["points"], list(alarm["rules"])) if alarm else None)


def _out(row: dict[str, Any]) -> InspectionOut:
    detail = row["detail"] or {}
    return InspectionOut(
        id=row["id"], ts=row["ts"], station=row["station"], machine=row["machine"], lot=row["lot"],
        operation=row["operation"], verdict=row["verdict"], class_=row["class"], score=row["score"],
        mask=detail.get("mask"), boxes=detail.get("boxes"), probs=detail.get("probs"),
        image_sha256=row["image_sha256"], width=row["width"], height=row["height"],
        model={"name": row["model"], "version": row["model_version"], "sha256": row["model_sha256"]},
        latency_ms=row["latency_ms"], source=row["source"])


def _text(form: Any, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise InvalidParameterError(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidParameterError(name, "must be a text field, not a file")
    if len(value) > 128:
        raise InvalidParameterError(name, "is longer than 128 characters")
    return value


async def _check(request: Request) -> None:
    """before_request for this controller (it takes multipart, not the JSON the app-wide check insists on)."""
    for name, values in request.query_params.dict().items():
        for value in values:
            if "\x00" in value or len(value) > 1000:
                raise InvalidParameterError(name, "contains a NUL byte or is longer than 1000 characters")


class InspectionController(Controller):
    """Camera inspections."""

    path = "/api/v1/inspections"
    before_request = _check
    dependencies = {"conn": Provide(provide_conn)}
    tags = ["inspection"]

    @post("/", guards=[requires("operator")], status_code=HTTP_201_CREATED,
          request_max_body_size=MAX_BYTES + 64 * 1024)
    async def create(self, request: Request, conn: psycopg.AsyncConnection) -> InspectionOut:
        """Inspect one image (multipart: image, station, machine; optional lot, operation, captured_at)."""
        if request.content_type[0] != "multipart/form-data":
            raise InvalidParameterError("image", "send multipart/form-data with an `image` file part")
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidParameterError("image", "is required as a file part")
        data = await upload.read()
        station = _text(form, "station", required=True)
        machine = _text(form, "machine")
        captured = _text(form, "captured_at")
        captured_at = None
        if captured is not None:
            try:
                captured_at = datetime.fromisoformat(captured)
            except ValueError:
                raise InvalidParameterError("captured_at", f"{captured!r} is not an ISO 8601 time") from None
            if captured_at.tzinfo is None:
                raise InvalidParameterError("captured_at", "needs a time zone (e.g. Z or +00:00)")
        assert station is not None
        try:
            row = await inspect(conn, data, station=station, machine=machine, lot=_text(form, "lot"),
                                operation=_text(form, "operation"), captured_at=captured_at)
        except ImageRejected as e:
            raise InvalidParameterError("image", str(e).removeprefix("image: ").removeprefix("image ")) from None
        except UnknownStation as e:
            raise NotFoundException(str(e)) from None
        except ValueError as e:
            raise InvalidParameterError("machine", str(e)) from None
        return _out(row)

    @get("/", guards=[requires("viewer")])
    async def list(self, conn: psycopg.AsyncConnection, station: str | None = None, machine: str | None = None,
                   lot: str | None = None, verdict: Literal["ok", "ng"] | None = None,
                   start: datetime | None = None, end: datetime | None = None,
                   limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
                   offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0) -> list[InspectionOut]:
        """Inspections matching the filters, newest first, one page."""
        rows = await store.find(conn, station=station, machine=machine, lot=lot, verdict=verdict, start=start,
                                end=end, limit=limit, offset=offset)
        return [_out(r) for r in rows]

    @get("/pchart", guards=[requires("viewer")], summary="p-chart of a camera station")
    async def pchart(self, conn: NamedDependency[psycopg.AsyncConnection],
                     station: Annotated[str, Parameter(pattern=STATION, description="the camera station")],
                     start: Annotated[datetime | None, Parameter(description="subgroups closed at or after")] = None,
                     end: Annotated[datetime | None, Parameter(description="subgroups closed before")] = None,
                     limit: Annotated[int, Parameter(ge=1, le=MAX_POINTS,
                                                     description="the newest subgroups at most")] = 1000,
                     ) -> PChartOut:
        """NG fraction per subgroup of the station's inspections, limits from p̄, broken rules, the active alarm."""
        for name, t in (("start", start), ("end", end)):
            if t is not None and t.tzinfo is None:
                raise InvalidParameterError(name, f"{t.isoformat()} has no time zone; add Z or +hh:mm")
        if start is not None and end is not None:
            check_range(start, end)
        st = await store.station(conn, station)
        if st is None:
            raise NotFoundException(f"station {station!r} is not configured")
        return _pchart_out(st, *await pchart.read(conn, station, start, end, limit))

    @get("/{inspection_id:int}", guards=[requires("viewer")])
    async def one(self, conn: psycopg.AsyncConnection, inspection_id: int) -> InspectionOut:
        """One inspection."""
        return _out(await _row(conn, inspection_id))

    @get("/{inspection_id:int}/image", guards=[requires("viewer")], media_type="application/octet-stream")
    async def image(self, conn: psycopg.AsyncConnection, inspection_id: int) -> Response[bytes]:
        """The stored image, as uploaded."""
        row = await _row(conn, inspection_id)
        data = store.image_path(store.image_root(), row["image_sha256"]).read_bytes()
        return Response(data, media_type=f"image/{row['image_format'].lower()}")

    @get("/{inspection_id:int}/overlay.png", guards=[requires("viewer")], media_type="image/png")
    async def overlay(self, conn: psycopg.AsyncConnection, inspection_id: int) -> Response[bytes]:
        """The image with the defect mask, its box and the verdict drawn over it."""
        row = await _row(conn, inspection_id)
        data = store.image_path(store.image_root(), row["image_sha256"]).read_bytes()
        return Response(await asyncio.to_thread(overlay_png, data, row), media_type="image/png")


async def _row(conn: psycopg.AsyncConnection, inspection_id: int) -> dict[str, Any]:
    row = await store.get(conn, inspection_id)
    if row is None:
        raise NotFoundException(f"no inspection {inspection_id}")
    return row
