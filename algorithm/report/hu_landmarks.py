"""Is the image calibrated in HU? Decided from three landmarks every chest CT holds.

Air (outside the body, or the airways and lung air of a crop), fat (subcutaneous and
mediastinal) and soft tissue (muscle, blood, organs) each make a histogram peak at a known HU:
about -1000, -100 and +40. A landmark is found when the histogram has a clear peak (a local
maximum standing out of its surroundings) inside that landmark's window; the image is in HU when
at least two landmarks are found and agree on the offset from their nominal values.

Why not the lowest peak alone: a scan cropped around the heart holds no outside air, and its lung
peak (about -805 HU) was taken for the air peak and the image called "not HU" (issue 14). Raw
stored values (HU + 1024), MR intensities and an image shifted by 100 HU or more have none or one
landmark in place, or landmarks that disagree. tests/test_hu_landmarks.py holds the cases, the
real scans included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIN_HU = 5.0
SMOOTH_BINS = 5  # 25 HU moving average: noise of sharp kernels makes ragged histograms
MAX_SAMPLE = 4_000_000
MIN_PROMINENCE = 1.2  # the peak is this much above the lowest point on each side of it in reach
REACH_HU = 80.0  # how far on each side of a window the surroundings of a peak are looked at
MIN_PEAK_SHARE = 0.0005  # of all voxels in one 5 HU bin: a few hundred voxels, not stray noise


@dataclass(frozen=True)
class Landmark:
    name: str
    nominal_hu: float
    window_hu: tuple[float, float]


LANDMARKS = (
    Landmark("air", -1000.0, (-1080.0, -920.0)),
    Landmark("fat", -100.0, (-140.0, -60.0)),
    Landmark("soft_tissue", 40.0, (-20.0, 120.0)),
)
# Below the air window nothing but noise tails and constant padding (-1024, -2048, -3024 ...) lies
# in HU; a peak there is the real air of an image shifted down by about 150 HU, whose lung then
# sits where air belongs and whose muscle where fat belongs (both landmarks "found", agreeing).
BELOW_AIR = Landmark("below_air", -1250.0, (-1450.0, -1095.0))
PADDING_SHARE = 0.2  # one value holding this share of the voxels below the air window is padding


@dataclass(frozen=True)
class HuCalibration:
    peaks_hu: dict[str, float | None]  # landmark name -> where its peak was found (None: not found)
    offset_hu: float | None  # median of (found - nominal); None with no landmark found
    in_hu: bool
    reason: str  # in words, for the flag message


def hu_calibration(values: np.ndarray, min_landmarks: int = 2, max_spread_hu: float = 100.0) -> HuCalibration:
    """Landmark peaks of ``values`` (any shape, any dtype) and whether they say "HU"."""
    sample = values.reshape(-1)[:: max(1, values.size // MAX_SAMPLE)].astype(np.float32)
    peaks = {mark.name: peak_in_window(sample, mark) for mark in LANDMARKS}
    offsets = {mark.name: peaks[mark.name] - mark.nominal_hu for mark in LANDMARKS if peaks[mark.name] is not None}
    offset = float(np.median(list(offsets.values()))) if offsets else None
    spread = max(offsets.values()) - min(offsets.values()) if offsets else 0.0
    seen = ", ".join(f"{name.replace('_', ' ')} at {peak:.0f}" for name, peak in peaks.items() if peak is not None)
    if len(offsets) < min_landmarks:
        missing = [m.name.replace("_", " ") for m in LANDMARKS if peaks[m.name] is None]
        reason = f"no {', no '.join(missing)} peak where HU puts it" + (f" (found: {seen} HU)" if seen else "")
        return HuCalibration(peaks, offset, False, reason)
    if spread > max_spread_hu:
        return HuCalibration(peaks, offset, False, f"the landmarks disagree by {spread:.0f} HU ({seen} HU)")
    below = peak_in_window(without_padding(sample[sample < BELOW_AIR.window_hu[1] + REACH_HU]), BELOW_AIR, sample.size)
    if below is not None:
        return HuCalibration(peaks, offset, False, f"a peak at {below:.0f} HU below the air peak ({seen} HU): shifted?")
    return HuCalibration(peaks, offset, True, f"{seen} HU")


def without_padding(low: np.ndarray) -> np.ndarray:
    """``low`` without the constant padding value(s) outside the reconstruction circle."""
    if low.size == 0:
        return low
    values, counts = np.unique(low, return_counts=True)
    padding = values[counts > PADDING_SHARE * low.size]
    return low[~np.isin(low, padding)] if padding.size else low


def peak_in_window(sample: np.ndarray, mark: Landmark, total: int | None = None) -> float | None:
    """Centre of the highest clear local maximum of the smoothed histogram inside the window;
    ``total``: the voxel count the peak's share is taken of (default: the sample's)."""
    if sample.size == 0:
        return None
    low, high = mark.window_hu
    edges = np.arange(low - REACH_HU, high + REACH_HU + BIN_HU, BIN_HU)
    counts, _ = np.histogram(sample, bins=edges)
    smooth = np.convolve(counts, np.ones(SMOOTH_BINS) / SMOOTH_BINS, mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    inside = np.flatnonzero((centres >= low) & (centres <= high))
    k = int(inside[np.argmax(smooth[inside])])
    height = smooth[k]
    if height < MIN_PEAK_SHARE * (total or sample.size) or k in (inside[0], inside[-1]):
        return None  # too few voxels, or the slope of something outside the window
    left, right = smooth[: k + 1].min(), smooth[k:].min()
    if height < MIN_PROMINENCE * max(left, right, 1e-9):
        return None
    return float(centres[k])
