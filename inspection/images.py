"""Decoding untrusted image bytes with Pillow under size and pixel limits, into grey float arrays for the models."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


class ImageRejected(ValueError):
    """An upload that is not a usable image; the message names the problem."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded image: 8-bit grey pixels and the format the bytes were in."""

    grey: np.ndarray  # (h, w) uint8
    format: str


def decode(data: bytes) -> Decoded:
    """Grey pixels of an image file's bytes; ImageRejected for too large, a bomb, not an image, or truncated."""
    if len(data) > MAX_BYTES:
        raise ImageRejected(f"image is {len(data)} bytes, more than the {MAX_BYTES} byte limit")
    if not data:
        raise ImageRejected("image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:  # checked from the header, before any pixel is decoded
                    raise ImageRejected(f"image is {w}x{h} = {w * h} pixels, more than the {MAX_PIXELS} pixel limit")
                fmt = im.format or "unknown"
                im.load()  # a truncated file raises here (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
                grey = np.asarray(im.convert("L"), dtype=np.uint8)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("image: not a recognised image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageRejected(f"image: decompression bomb refused, more than the {MAX_PIXELS} pixel limit "
                            f"({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageRejected(f"image: damaged or truncated {e}") from None
    return Decoded(grey, fmt)


def resize(grey: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) float32 copy in [0, 1] (bilinear; aspect not kept, as in training)."""
    im = Image.fromarray(grey).resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) 0/1 float32 mask (nearest neighbour after the >127 threshold)."""
    im = Image.fromarray(((mask > 127) * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
    return (np.asarray(im) > 127).astype(np.float32)


Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check at our limit, for every decoder in the process
