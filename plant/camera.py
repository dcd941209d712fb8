"""The line's camera: an image of each part a machine makes, dropped into a folder as a smart camera's FTP drop would.

Images come from the magnetic-tile set (the developers' share if present, else the slice committed under data/):
a part the machine counted good gets the next defect-free (MT_Free) image, a scrap part the next image of a defect
class, in a fixed order, so the camera sees roughly the machine's own scrap rate and what the model says about it
is the model's. Every file is written under a hidden temporary name and renamed into place, so a folder watcher
never sees half an image. Paced by the line: it looks at the machine's counters after each step of the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from plant.data import dataset_dir
from plant.line import MachineState

SET = "magnetic-tile-defect"
GOOD_CLASS = "MT_Free"


def tile_images(root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(defect-free images, defect images) of the magnetic-tile set, each in name order."""
    base = dataset_dir(SET, root)
    good = sorted((base / GOOD_CLASS / "Imgs").glob("*.jpg"))
    bad = sorted(p for d in sorted(base.glob("MT_*")) if d.name != GOOD_CLASS for p in (d / "Imgs").glob("*.jpg"))
    if not good or not bad:
        raise FileNotFoundError(f"{base}: no MT_Free and defect images (MT_*/Imgs/*.jpg) to show the camera")
    return good, bad


@dataclass
class Camera:
    """Writes one image per `every` parts of a machine into `folder`."""

    folder: Path
    machine: str
    every: int = 1
    data_root: Path | None = None
    written: int = 0
    _seen: tuple[int, int] | None = None  # (good, scrap) at the last look
    _parts: int = 0
    _next: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"camera every must be >= 1 part, got {self.every}")
        self.good, self.bad = tile_images(self.data_root)
        self.folder.mkdir(parents=True, exist_ok=True)

    def look(self, m: MachineState) -> list[Path]:
        """Photograph the parts the machine made since the last look; the files written."""
        now = (m.good_count, m.scrap_count)
        if self._seen is None:
            self._seen = now  # parts made before the camera started were never in front of it
            return []
        new_good, new_scrap = max(0, now[0] - self._seen[0]), max(0, now[1] - self._seen[1])
        self._seen = now
        out = []
        for ok in [True] * new_good + [False] * new_scrap:
            self._parts += 1
            if self._parts % self.every == 0:
                out.append(self._drop(ok, m.current_lot))
        return out

    def _drop(self, ok: bool, lot: str) -> Path:
        pool = self.good if ok else self.bad
        src = pool[self._next[ok] % len(pool)]
        self._next[ok] += 1
        self.written += 1
        name = f"{self.machine}-{lot or 'nolot'}-{self.written:07d}.jpg"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, self.folder / name)  # atomic: the watcher sees the whole image or nothing
        return self.folder / name
