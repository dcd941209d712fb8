"""overlay.png: the stored image with the model's mask tinted red, its bounding box and the verdict written on it."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from inspection.images import decode
from inspection.models import load_model


def overlay_png(data: bytes, row: dict[str, Any]) -> bytes:
    """PNG bytes of the image with the defect mask (segmenters) or box and the verdict drawn over it."""
    grey = decode(data).grey
    rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)
    model = load_model(row["model"])
    result = model.run(grey)
    if result.mask is not None:
        m = result.mask > 0
        rgb[m] = rgb[m] * 0.5 + np.array([255, 0, 0]) * 0.5
    im = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    bbox = (row.get("detail") or {}).get("mask", {}).get("bbox") if isinstance(row.get("detail"), dict) else None
    colour = (255, 0, 0) if row["verdict"] == "ng" else (0, 200, 0)
    if bbox:
        draw.rectangle(bbox, outline=colour, width=2)
    draw.text((3, 2), f"{row['verdict'].upper()} {row['class']} {row['score']:.2f}", fill=colour)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()
