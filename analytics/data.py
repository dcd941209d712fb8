"""Where the public data sets are: $SHOPFLOOR_DATA, default ../shared/data beside the project."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The folder holding cmapss/, cwru-bearing/, ai4i2020/ and the rest; FileNotFoundError says how to set it."""
    configured = os.environ.get("SHOPFLOOR_DATA")
    path = Path(configured) if configured else PROJECT.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} not found; set SHOPFLOOR_DATA to the shared data sets")
    return path
