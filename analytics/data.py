"""Where the public data sets are, for analytics: the one lookup of datasets/ (full set, else the slice)."""

from __future__ import annotations

from pathlib import Path

from datasets import SLICES, dataset_dir, full_root

__all__ = ["data_root", "dataset_dir"]


def data_root() -> Path:
    """The folder holding the full sets (cmapss/, cwru-bearing/, ...), else the committed slices' folder."""
    root = full_root()
    return root if root is not None and root.is_dir() else SLICES
