"""Field types the MES bodies share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with a zone")]
Quantity = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
