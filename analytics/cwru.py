"""CWRU bearing files (Case Western Reserve University Bearing Data Center): labels, drive-end signal, RPM, segments."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from datasets import dataset_dir

CLASSES = ("normal", "inner", "outer", "ball")
FS_DEFAULT = 12_000.0
MIN_SAMPLES = 4096  # one model window at 12 kHz; a shorter recording cannot be classified or rate-checked
# Nominal motor speed per load in the CWRU tables; used only when a file carries no X<nnn>RPM.
NOMINAL_RPM = {0: 1797.0, 1: 1772.0, 2: 1750.0, 3: 1730.0}
RPM_DEFAULT = NOMINAL_RPM[0]

_NAME = re.compile(r"^(?P<kind>normal|ir|or|b)(?P<size>\d{3})?(?:@(?P<pos>\d{1,2}))?_(?P<load>\d)$", re.IGNORECASE)
_KIND = {"normal": "normal", "ir": "inner", "or": "outer", "b": "ball"}


@dataclass(frozen=True, slots=True)
class CwruName:
    """What a standard CWRU file name says: class, fault size, outer-race clock position, motor load."""

    label: str  # one of CLASSES
    size_mils: int | None  # 7, 14, 21, 28; None for normal
    position: int | None  # outer race load-zone clock position (3, 6, 12); None otherwise
    load_hp: int


@dataclass(frozen=True, slots=True)
class Recording:
    """One CWRU file: its name, drive-end acceleration (g), shaft speed and sample rate."""

    path: Path
    name: CwruName
    de: np.ndarray  # (n,) float64 drive-end accelerometer
    rpm: float
    rpm_in_file: bool  # False when the RPM came from the nominal table
    fs: float  # measured from the signal's shaft-speed lines (estimate_sample_rate)
    fs_stated: float | None = None  # what the folder name says, if anything

    @property
    def label(self) -> str:
        """The class of the recording."""
        return self.name.label


def parse_name(path: Path | str) -> CwruName:
    """Label and conditions from a standard CWRU file name such as `IR007_2.mat`, `OR021@6_1.mat`, `Normal_0.mat`."""
    stem = Path(path).name.removesuffix(".mat")
    match = _NAME.match(stem)
    if match is None:
        raise ValueError(f"{Path(path).name}: not a standard CWRU name (Normal_k, IRddd_k, Bddd_k, ORddd@p_k)")
    kind = _KIND[match["kind"].lower()]
    size = match["size"]
    if (kind == "normal") != (size is None):
        raise ValueError(f"{Path(path).name}: fault files need a 3-digit size, normal files none")
    if match["pos"] is not None and kind != "outer":
        raise ValueError(f"{Path(path).name}: a clock position (@p) is only given for outer race faults")
    return CwruName(
        label=kind,
        size_mils=int(size) if size else None,
        position=int(match["pos"]) if match["pos"] else None,
        load_hp=int(match["load"]),
    )


FS_CANDIDATES = (12_000.0, 24_000.0, 48_000.0)


def stated_sample_rate(path: Path) -> float | None:
    """Sample rate the CWRU folder naming states (`12k_*` 12 kHz, `48k_*` 48 kHz), None when the folder says nothing."""
    folder = path.parent.name.lower()
    for prefix, fs in (("12k", 12_000.0), ("48k", 48_000.0)):
        if folder.startswith(prefix):
            return fs
    return None


def sample_rate(path: Path) -> float:
    """Sample rate from the CWRU folder naming; 12 kHz when it states none (read() checks it against the signal)."""
    return stated_sample_rate(path) or FS_DEFAULT


def shaft_line_strength(signal: np.ndarray, rpm: float, fs: float, harmonics: tuple[int, ...] = (1, 2, 3)) -> float:
    """Mean log10 peak-to-local-median power at the given shaft-speed harmonics, if the signal was sampled at fs."""
    x = signal - signal.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / fs)
    shaft = rpm / 60.0
    out = []
    for k in harmonics:
        line = (freqs > 0.98 * k * shaft) & (freqs < 1.02 * k * shaft)
        around = (freqs > 0.8 * k * shaft) & (freqs < 1.2 * k * shaft)
        out.append(np.log10(power[line].max() / (np.median(power[around]) + 1e-30) + 1e-30))
    return float(np.mean(out))


SHAFT_LINE_MIN = 2.7  # log10 peak-to-median of the 1x line: a real shaft line stands 500x above its neighbourhood


def estimate_sample_rate(signal: np.ndarray, rpm: float) -> float:
    """The sample rate (12, 24 or 48 kHz) read from the signal: the highest at which the 1x shaft line stands out.

    An assumed rate k times too low puts "1x" on the true k-th harmonic, which is a line too; an assumed rate too
    high puts it between lines. So the highest candidate with a clear 1x line is the true one.
    """
    clear = [fs for fs in FS_CANDIDATES if shaft_line_strength(signal, rpm, fs, (1,)) >= SHAFT_LINE_MIN]
    if clear:
        return max(clear)
    return max(FS_CANDIDATES, key=lambda fs: shaft_line_strength(signal, rpm, fs))


def read(path: Path | str) -> Recording:
    """The drive-end signal and shaft speed of a CWRU .mat file (RPM from `X<nnn>RPM`, else nominal for its load)."""
    path = Path(path)
    name = parse_name(path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except Exception as e:  # scipy raises several types for a damaged file; the caller needs one
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    de_keys = sorted(k for k in mat if k.endswith("_DE_time"))
    if not de_keys:
        raise ValueError(f"{path}: no X<nnn>_DE_time variable")
    # A few files hold a second recording's variables too; the file's own one matches its RPM variable's number.
    rpm_keys = sorted(k for k in mat if re.fullmatch(r"X\d+RPM", k))
    key = de_keys[0]
    if rpm_keys:
        own = rpm_keys[0].removesuffix("RPM") + "_DE_time"
        key = own if own in mat else key
    try:
        de = np.asarray(mat[key], dtype=np.float64).ravel()
        rpm = float(np.asarray(mat[rpm_keys[0]], dtype=np.float64).ravel()[0]) if rpm_keys else float("nan")
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{path}: {key} or its RPM variable is not numeric") from None
    bad = np.flatnonzero(~np.isfinite(de))
    if bad.size:
        raise ValueError(f"{path}: {key} sample {int(bad[0])} is {de[bad[0]]} (not finite)")
    if len(de) < MIN_SAMPLES:
        raise ValueError(f"{path}: {key} has {len(de)} samples, too short (at least {MIN_SAMPLES})")
    in_file = bool(np.isfinite(rpm) and rpm > 0)
    if not in_file:
        rpm = NOMINAL_RPM.get(name.load_hp, RPM_DEFAULT)
    # the rate is checked from the signal itself: a folder may state none (Normal/) or the wrong one
    measured = estimate_sample_rate(de, rpm)
    stated = stated_sample_rate(path)
    if stated is not None and stated != measured:
        raise ValueError(f"{path}: the folder states {stated:g} Hz but the shaft-speed lines of {key} sit where a "
                         f"{measured:g} Hz recording puts them")
    return Recording(path=path, name=name, de=de, rpm=rpm, rpm_in_file=in_file, fs=measured, fs_stated=stated)


def list_files(folder: Path | None = None, loads: tuple[int, ...] | None = (0,), *, full: bool = True) -> list[Path]:
    """The CWRU 12 kHz drive-end and normal files with a standard name in folder (default the CWRU set), by load."""
    folder = folder or dataset_dir("cwru-bearing", full=full)
    if not folder.is_dir():
        raise FileNotFoundError(f"no CWRU folder {folder}")
    out = []
    for path in sorted(folder.rglob("*.mat")):
        if stated_sample_rate(path) not in (None, FS_DEFAULT):
            continue
        try:
            name = parse_name(path)
        except ValueError:
            continue
        if loads is None or name.load_hp in loads:
            out.append(path)
    return out


def split_point(n: int, train_fraction: float = 0.7) -> int:
    """Sample index where the leading training segment of a recording ends and the held-out tail begins."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError("train_fraction must be in (0, 1)")
    return int(n * train_fraction)


def window_starts(start: int, stop: int, length: int, step: int) -> np.ndarray:
    """Start indices of windows of `length` that lie wholly inside [start, stop)."""
    if stop - start < length:
        return np.empty(0, dtype=np.int64)
    return np.arange(start, stop - length + 1, step, dtype=np.int64)


def windows(signal: np.ndarray, start: int, stop: int, length: int, step: int | None = None) -> np.ndarray:
    """Windows (m, length) of signal[start:stop]; none straddles either bound. Step defaults to length."""
    starts = window_starts(start, stop, length, step or length)
    if starts.size == 0:
        return np.empty((0, length), dtype=signal.dtype)
    return np.lib.stride_tricks.sliding_window_view(signal, length)[starts].copy()


def blocks(n: int, k: int) -> Iterator[tuple[int, int]]:
    """k contiguous, non-overlapping sample ranges covering [0, n), for contiguous-block cross-validation."""
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        yield int(lo), int(hi)
