"""Where the plant finds the public data it replays: the full set where present, else the project's slice.

The same rule as datasets.dataset_dir (the plant imports nothing of Shopfloor's, so it keeps its own
copy): $SHOPFLOOR_DATA if set, else ../shared/data beside the project, else the user data folder that
`shopfloor data fetch` fills; a set missing there falls back to its slice committed under data/.
"""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SLICES = PROJECT / "data"


def _full_root() -> Path | None:
    configured = os.environ.get("SHOPFLOOR_DATA")
    if configured:
        return Path(configured)
    user = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "shopfloor" / "data"
    return next((p for p in (PROJECT.parent / "shared" / "data", user) if p.is_dir()), None)


def dataset_dir(name: str, root: Path | None = None) -> Path:
    """The folder of one set (cmapss, cwru-bearing, ai4i2020): under `root` when given, else looked up."""
    if root is not None:
        return root / name
    full = _full_root()
    if full is not None and (full / name).is_dir():
        return full / name
    if (SLICES / name).is_dir():
        return SLICES / name
    raise FileNotFoundError(f"data set {name!r} not found under {full or '$SHOPFLOOR_DATA'} nor in {SLICES}; "
                            f"run `shopfloor data fetch {name}` or set SHOPFLOOR_DATA")
