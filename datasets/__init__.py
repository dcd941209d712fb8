"""Where the public data sets are: the full sets where present, else the small slices committed in data/.

Lookup order for the full sets: $SHOPFLOOR_DATA if set; else ../shared/data beside the project (the
developers' share); else the user data folder that `shopfloor data fetch` fills. A set missing there
falls back to its slice under the project's data/ folder, so a fresh clone runs its demo and tests.
Imports nothing of ours: every room may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SLICES = PROJECT / "data"


def user_data_dir() -> Path:
    """Where `shopfloor data fetch` puts full sets when SHOPFLOOR_DATA is not set."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shopfloor" / "data"


def full_root() -> Path | None:
    """The folder of full data sets, or None when none is configured or present."""
    configured = os.environ.get("SHOPFLOOR_DATA")
    if configured:
        return Path(configured)
    for candidate in (PROJECT.parent / "shared" / "data", user_data_dir()):
        if candidate.is_dir():
            return candidate
    return None


def dataset_dir(name: str, *, full: bool = False) -> Path:
    """The folder of one set (e.g. "cmapss"): the full set where present, else its committed slice.

    With full=True only the full set will do (training, held-out evaluation); a committed slice that holds
    the whole set (ai4i2020) counts as full. FileNotFoundError names the set and how to get it.
    """
    root = full_root()
    if root is not None and (root / name).is_dir():
        return root / name
    if (SLICES / name).is_dir() and (not full or is_complete(SLICES / name, name)):
        return SLICES / name
    where = f"{root / name}" if root is not None else f"$SHOPFLOOR_DATA/{name} (SHOPFLOOR_DATA is not set)"
    raise FileNotFoundError(f"data set {name!r} not found at {where}; run `shopfloor data fetch {name}` "
                            f"or set SHOPFLOOR_DATA to a folder holding it")


def is_complete(folder: Path, name: str) -> bool:
    """Whether a folder holds every catalogued file of a set at its full size (a slice may be the whole set)."""
    from datasets.catalog import files_of

    try:
        files = files_of(name)
    except KeyError:
        return False
    return bool(files) and all((folder / f.path).is_file() and (folder / f.path).stat().st_size == f.size
                               for f in files)


def is_slice(path: Path) -> bool:
    """Whether a path lies in the committed slices rather than a full set."""
    return SLICES in Path(path).resolve().parents or Path(path).resolve() == SLICES
