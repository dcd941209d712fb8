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
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from api.auth import requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError
from inspection import store
from inspection.images import MAX_BYTES, ImageRejected
from inspection.overlay import overlay_png
from inspection.service import UnknownStation, inspect

MAX_PAGE = 1000
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
