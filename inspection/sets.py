"""The two image sets as (path, label) lists, read exactly as they are laid out on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NEU_CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
MTILE_CLASSES = ["Free", "Blowhole", "Break", "Crack", "Fray", "Uneven"]  # index 0 is defect-free


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled image file (and its mask file for magnetic tile)."""

    path: Path
    label: int
    mask: Path | None = None


def neu_label(path: Path) -> int:
    """The NEU class index from a file name `<class>_<k>.jpg`; ValueError names the file."""
    stem = path.stem
    for i, name in enumerate(NEU_CLASSES):
        if stem.startswith(name + "_") and stem[len(name) + 1:].isdigit():
            return i
    raise ValueError(f"{path.name}: name is not <class>_<k> with class one of {', '.join(NEU_CLASSES)}")


def neu_samples(folder: Path) -> list[Sample]:
    """Every image of a NEU folder (its IMAGES/ subfolder if present), labelled from the file name."""
    images = folder / "IMAGES" if (folder / "IMAGES").is_dir() else folder
    return [Sample(p, neu_label(p)) for p in sorted(images.glob("*.jpg"))]


def mtile_samples(folder: Path) -> list[Sample]:
    """Every image of a magnetic-tile folder (`MT_<class>/Imgs/*.jpg` with same-named .png masks)."""
    out: list[Sample] = []
    for i, name in enumerate(MTILE_CLASSES):
        for p in sorted((folder / f"MT_{name}" / "Imgs").glob("*.jpg")):
            out.append(Sample(p, i, p.with_suffix(".png")))
    return out


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint index arrays, each class spread evenly over them, shuffled under seed."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[j % k].append(int(i))
    return [np.array(sorted(f)) for f in folds]
