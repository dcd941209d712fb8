"""Real images for the inspection tests: the committed slices, and bad files made from them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from datasets import SLICES

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
