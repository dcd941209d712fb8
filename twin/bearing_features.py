"""Features of a window of drive-end vibration for bearing-fault classification, shared by training and serving.

Every feature is either dimensionless (kurtosis, crest factor, energy fractions) or a log level, and the
envelope-spectrum lines are located at multiples of the measured shaft frequency, so a change of load or
speed moves the lines with the speed instead of moving energy out of the measured bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import next_fast_len, rfft, rfftfreq


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """Defect frequencies as multiples of shaft frequency."""

    name: str
    bpfi: float  # ball pass frequency, inner race
    bpfo: float  # ball pass frequency, outer race
    bsf: float  # ball (roller) spin frequency
    ftf: float  # fundamental train (cage) frequency


# CWRU drive-end bearing (from the CWRU Bearing Data Center tables).
SKF_6205 = BearingGeometry("SKF 6205-2RS JEM", bpfi=5.4152, bpfo=3.5848, bsf=2.3570, ftf=0.39828)

HARMONICS = 3
# A rolling bearing slips by 1-2 %, so a defect line is searched within this relative tolerance.
LINE_TOLERANCE = 0.02
# Envelope demodulation bands (Hz): a broad one and two narrower ones around the usual CWRU resonances.
ENVELOPE_BANDS: tuple[tuple[float, float], ...] = ((500.0, 5500.0), (2000.0, 4000.0), (3500.0, 5500.0))
# Raw-spectrum bands (Hz) whose energy fractions describe where the vibration energy sits.
SPECTRUM_EDGES = np.array([0.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 5000.0, 6000.0])
_EPS = 1e-12


def _line_names() -> list[str]:
    names = []
    for b, _ in enumerate(ENVELOPE_BANDS):
        for fault in ("bpfi", "bpfo", "bsf2", "shaft"):
            names += [f"env{b}_{fault}_h{k}" for k in range(1, HARMONICS + 1)]
        names += [f"env{b}_bpfi_sidebands", f"env{b}_band_kurtosis"]
    return names


FEATURE_NAMES: tuple[str, ...] = (
    "log_rms",
    "kurtosis",
    "crest_factor",
    "skewness",
    "shape_factor",
    "impulse_factor",
    *(f"spec_{int(lo)}_{int(hi)}" for lo, hi in zip(SPECTRUM_EDGES[:-1], SPECTRUM_EDGES[1:], strict=True)),
    *_line_names(),
)


def _time_features(x: np.ndarray) -> np.ndarray:
    """Level and shape statistics of zero-mean windows (m, n) -> (m, 6)."""
    absx = np.abs(x)
    rms = np.sqrt(np.mean(x * x, axis=1)) + _EPS
    mean_abs = np.mean(absx, axis=1) + _EPS
    peak = np.max(absx, axis=1)
    z = x / rms[:, None]
    return np.column_stack(
        [
            np.log10(rms),
            np.mean(z**4, axis=1),
            peak / rms,
            np.mean(z**3, axis=1),
            rms / mean_abs,
            peak / mean_abs,
        ]
    )


def _spectrum_fractions(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """log10 of the share of raw-spectrum power in each SPECTRUM_EDGES band (m, bands)."""
    total = power[:, 1:].sum(axis=1, keepdims=True) + _EPS
    cols = []
    for lo, hi in zip(SPECTRUM_EDGES[:-1], SPECTRUM_EDGES[1:], strict=True):
        sel = (freqs >= lo) & (freqs < hi)
        cols.append(power[:, sel].sum(axis=1) if sel.any() else np.zeros(power.shape[0]))
    return np.log10(np.column_stack(cols) / total + 1e-6)


def _line_share(spec: np.ndarray, freqs: np.ndarray, centre: float, resolution: float, total: np.ndarray) -> np.ndarray:
    """Share of envelope power within tolerance of `centre` Hz, relative to `total` (m,)."""
    half = max(LINE_TOLERANCE * centre, resolution)
    sel = (freqs >= centre - half) & (freqs <= centre + half)
    if not sel.any():
        return np.zeros(spec.shape[0])
    # Normalise by the width searched, so wide high-harmonic windows do not earn energy for being wide.
    return spec[:, sel].mean(axis=1) / total


def _envelope_features(
    spectrum: np.ndarray, freqs: np.ndarray, n: int, shaft_hz: float, fs: float, geometry: BearingGeometry
) -> np.ndarray:
    """Envelope-spectrum line shares at the defect harmonics for each demodulation band (m, k)."""
    m = spectrum.shape[0]
    nfft = next_fast_len(4 * n)  # zero padding: finer line positions, same resolution
    env_freqs = rfftfreq(nfft, 1.0 / fs)
    resolution = fs / n
    taper = np.hanning(n)
    # The reference band spans every line searched, so shares compare across speeds.
    ref = (env_freqs >= 0.5 * shaft_hz) & (env_freqs <= (HARMONICS + 0.5) * geometry.bpfi * shaft_hz)
    faults = {
        "bpfi": geometry.bpfi,
        "bpfo": geometry.bpfo,
        "bsf2": 2.0 * geometry.bsf,  # a ball defect strikes both races once per spin
        "shaft": 1.0,
    }
    out = []
    for lo, hi in ENVELOPE_BANDS:
        hi = min(hi, 0.45 * fs)
        # Band-pass then Hilbert in one step: keep only positive in-band frequencies, doubled.
        mask = ((freqs >= lo) & (freqs <= hi)).astype(np.float64)
        analytic = np.fft.ifft(_full_spectrum(spectrum * mask, n), axis=1)
        env = np.abs(analytic)
        env_z = (env - env.mean(axis=1, keepdims=True)) / (env.std(axis=1, keepdims=True) + _EPS)
        band = analytic.real  # the band-passed signal itself: its kurtosis says how impulsive this band is
        band_kurt = np.mean(((band - band.mean(axis=1, keepdims=True)) / (band.std(axis=1, keepdims=True) + _EPS)) ** 4, axis=1)
        es = np.abs(rfft(env_z * taper, n=nfft, axis=1)) ** 2
        total = es[:, ref].mean(axis=1) + _EPS
        cols = []
        for ratio in faults.values():
            for k in range(1, HARMONICS + 1):
                cols.append(_line_share(es, env_freqs, k * ratio * shaft_hz, resolution, total))
        bpfi = geometry.bpfi * shaft_hz
        side = _line_share(es, env_freqs, bpfi - shaft_hz, resolution, total)
        side += _line_share(es, env_freqs, bpfi + shaft_hz, resolution, total)
        cols.append(0.5 * side)
        out.append(np.log10(np.column_stack(cols) + 1e-3))
        out.append(np.log10(band_kurt)[:, None])
    return np.concatenate(out, axis=1) if out else np.empty((m, 0))


def _full_spectrum(half: np.ndarray, n: int) -> np.ndarray:
    """Two-sided spectrum of an analytic signal from a one-sided spectrum: positive bins doubled, negative zero."""
    full = np.zeros((half.shape[0], n), dtype=np.complex128)
    full[:, : half.shape[1]] = half
    full[:, 1 : (n + 1) // 2] *= 2.0
    return full


def bearing_features_batch(
    windows: np.ndarray, rpm: float | np.ndarray, fs: float = 12_000.0, geometry: BearingGeometry = SKF_6205
) -> np.ndarray:
    """Features (m, len(FEATURE_NAMES)) float32 of windows (m, n) of drive-end vibration at shaft speed rpm."""
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 256:
        raise ValueError(f"windows must be (m, n) with n >= 256 samples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("windows contain NaN or inf")
    rpms = np.broadcast_to(np.asarray(rpm, dtype=np.float64), (x.shape[0],))
    if np.any(~np.isfinite(rpms)) or np.any(rpms <= 0):
        raise ValueError("rpm must be positive")
    if fs <= 0:
        raise ValueError("fs must be positive")
    x = x - x.mean(axis=1, keepdims=True)
    n = x.shape[1]
    spectrum = rfft(x, axis=1)
    freqs = rfftfreq(n, 1.0 / fs)
    power = np.abs(spectrum) ** 2
    common = np.hstack([_time_features(x), _spectrum_fractions(power, freqs)])
    env = np.empty((x.shape[0], len(FEATURE_NAMES) - common.shape[1]))
    # Windows sharing a speed share the line positions; group them so each group is one batched pass.
    for speed in np.unique(rpms):
        rows = rpms == speed
        env[rows] = _envelope_features(spectrum[rows], freqs, n, speed / 60.0, fs, geometry)
    return np.hstack([common, env]).astype(np.float32)


def bearing_features(
    window: np.ndarray, rpm: float, fs: float = 12_000.0, geometry: BearingGeometry = SKF_6205
) -> np.ndarray:
    """Features (len(FEATURE_NAMES),) float32 of one window of drive-end vibration."""
    return bearing_features_batch(np.asarray(window)[None, :], rpm, fs, geometry)[0]
