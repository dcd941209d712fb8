"""Real images for the inspection tests: the committed slices, and bad files made from them."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from datasets import SLICES
from inspection import store

NEU = SLICES / "neu-surface-defect" / "IMAGES"
MTILE = SLICES / "magnetic-tile-defect"


def neu_image(name: str = "scratches_1.jpg") -> bytes:
    """A real NEU image's bytes."""
    return (NEU / name).read_bytes()


def tile_image(cls: str = "Blowhole") -> tuple[Path, bytes]:
    """A real magnetic-tile image of a class and its bytes."""
    path = sorted((MTILE / f"MT_{cls}" / "Imgs").glob("*.jpg"))[0]
    return path, path.read_bytes()


def truncated_jpeg() -> bytes:
    """A real JPEG cut off half way."""
    data = neu_image()
    return data[: len(data) // 2]


def bomb_png(width: int = 8000, height: int = 6000) -> bytes:
    """A small PNG whose header declares 48 megapixels (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


async def stored_verdict(conn: Any, root: Path, *, ts: datetime, verdict: str, lot: str | None = None,
                         operation: str | None = None, station: str = "cam-1", machine: str = "m1",
                         key: str = "") -> dict[str, Any]:
    """An inspection row (and its bytes as the image) written through the store, as the service writes one."""
    data = f"{station}-{lot}-{operation}-{verdict}-{ts.isoformat()}-{key}".encode()  # the store keeps any bytes
    return await store.store(conn, root, data, {
        "ts": ts, "station": station, "machine": machine, "lot": lot, "operation": operation, "verdict": verdict,
        "class": "scratches" if verdict == "ng" else "Free", "score": 0.9, "detail": {}, "image_format": "JPEG",
        "width": 200, "height": 200, "model": "neu", "model_version": "1", "model_sha256": "0" * 64,
        "latency_ms": 1.0, "source": "api"})
