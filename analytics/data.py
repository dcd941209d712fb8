"""Where the public data sets are, for analytics: the one lookup of datasets/ (full set, else the committed slice)."""

from __future__ import annotations

from datasets import dataset_dir, full_root, is_complete, user_data_dir

__all__ = ["dataset_dir", "full_root", "is_complete", "user_data_dir"]
