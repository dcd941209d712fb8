"""What a model card records of how a model was made: the versions of the libraries that made it."""

from __future__ import annotations

import importlib.metadata


def libraries(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each named distribution; those not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out
