"""Download full public data sets from their publishers, verified by sha256, into a data folder.

Downloads resume: a partial download stays as `<dest>/.fetch/<set>/<name>.part` and the next run asks
the server for the rest (HTTP Range). Nothing half-done is ever used: every file is checked against
the catalog's sha256 before it is moved into `<dest>/<set>/`, and a set's files are moved in only once
all of them passed, so a set folder that exists is complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from datasets.catalog import SETS, File, files_of

CHUNK = 1 << 16
TIMEOUT_S = 30.0


class FetchError(Exception):
    """A set that could not be fetched: the message names it and says how to get it by hand."""


class ChecksumError(FetchError):
    """A downloaded file whose sha256 is not the catalog's."""


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK * 16), b""):
            h.update(block)
    return h.hexdigest()


def source_url(f: File, mirror: str | None) -> str:
    """Where to download a file: the publisher's URL, or the same file name under `mirror/<set>/`."""
    if not mirror:
        return f.url
    name = urllib.parse.unquote(f.url.rsplit("/", 1)[-1]).replace("+", " ")
    return f"{mirror.rstrip('/')}/{f.dataset}/{urllib.parse.quote(name)}"


def present(dest: Path, name: str) -> bool:
    """Whether every catalogued file of a set is in `dest/<set>` with its size."""
    return all((dest / name / f.path).is_file() and (dest / name / f.path).stat().st_size == f.size
               for f in files_of(name))


def download(url: str, part: Path, *, progress: bool = True, label: str = "") -> Path:
    """Download `url` to `part` (resuming what is there), then rename it without the .part suffix."""
    done = part.with_suffix("")
    if done.exists():
        return done
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "shopfloor-data-fetch"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with part.open("ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=label or done.name,
                disable=not progress, leave=False,
            ) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: what we have is the whole file
            part.rename(done)
            return done
        raise
    part.rename(done)
    return done


def _member(archive: zipfile.ZipFile, name: str) -> bytes | None:
    """A member's bytes by its file name, searching nested zip archives too."""
    for info in archive.infolist():
        if info.filename.rsplit("/", 1)[-1] == name:
            return archive.read(info)
    for info in archive.infolist():
        if info.filename.lower().endswith(".zip"):
            found = _member(zipfile.ZipFile(io.BytesIO(archive.read(info))), name)
            if found is not None:
                return found
    return None


def _stage(f: File, downloaded: Path, staging: Path) -> Path:
    target = staging / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if f.member is None:
        shutil.copyfile(downloaded, target)
    else:
        try:
            with zipfile.ZipFile(downloaded) as archive:
                data = _member(archive, f.member)
        except zipfile.BadZipFile as e:
            downloaded.unlink()
            raise FetchError(f"{f.dataset}: {downloaded.name} is not a zip archive ({e}); run again to download it anew") from e
        if data is None:
            raise FetchError(f"{f.dataset}: {f.member} is not in {downloaded.name}")
        target.write_bytes(data)
    got = sha256(target)
    if got != f.sha256:
        target.unlink()
        downloaded.unlink()  # a retry downloads it again rather than trusting these bytes
        raise ChecksumError(f"{f.dataset}: {f.path}: sha256 {got} is not the expected {f.sha256}; "
                            f"the download was discarded")
    return target


def fetch_set(name: str, dest: Path, *, mirror: str | None = None, progress: bool = True) -> Path:
    """Download, verify and install one set into `dest/<name>`; returns that folder."""
    files = files_of(name)
    folder = dest / name
    if present(dest, name):
        return folder
    work = dest / ".fetch" / name
    staging = work / "files"
    downloads: dict[str, Path] = {}
    for f in files:
        if (folder / f.path).is_file() and sha256(folder / f.path) == f.sha256:
            continue
        url = source_url(f, mirror)
        if url not in downloads:
            base = urllib.parse.unquote(url.rsplit("/", 1)[-1]).replace("+", " ") or "download"
            try:
                downloads[url] = download(url, work / (base + ".part"), progress=progress, label=f"{name}: {base}")
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", None) or e
                raise FetchError(
                    f"data set {name!r} is missing and {url} cannot be downloaded ({reason}); get it from "
                    f"{SETS[name].page} into {folder}/ (files: {', '.join(x.path for x in files[:3])}"
                    f"{', ...' if len(files) > 3 else ''}) or set SHOPFLOOR_DATA to a folder holding {name}/"
                ) from e
        _stage(f, downloads[url], staging)
    for staged in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = folder / staged.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
    shutil.rmtree(work, ignore_errors=True)
    if not any((dest / ".fetch").iterdir()):
        (dest / ".fetch").rmdir()
    return folder


def fetch(names: Iterable[str], dest: Path, *, mirror: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch several sets in order; the first that fails raises FetchError."""
    return [fetch_set(n, dest, mirror=mirror, progress=progress) for n in names]
