"""Field types the MES bodies share, bounded by what their columns hold and read back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

INT4 = 2**31 - 1
MAX_QUANTITY = 1e12  # numeric columns are read back as float8: far below its 1.8e308, and any plant's order

Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with a zone, years 1..9999 in UTC")]
Quantity = Annotated[float, msgspec.Meta(ge=0, le=MAX_QUANTITY)]
Positive = Annotated[float, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=4000)]
Int4 = Annotated[int, msgspec.Meta(ge=-INT4 - 1, le=INT4)]
Version = Annotated[int, msgspec.Meta(gt=0, le=INT4)]
