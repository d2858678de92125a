"""Is a noisy scan in HU? The landmark test of ``report/hu_landmarks.py`` after smoothing the noise.

Under the noise of a low-dose or sharp-kernel scan (60-100 HU) the fat peak (-100 HU) and the
soft-tissue peak (+40 HU) of the histogram merge into one hump, and the landmark test finds only
the air: a calibrated scan was called "not in HU" and dropped from training sets (issue 29).
Noise is independent from voxel to voxel (or nearly: a sharp kernel correlates it over about a
millimetre); anatomy is not. Averaging blocks of about ``block_mm`` therefore divides the noise by
the square root of the voxels per block while fat and muscle, centimetres thick, keep their HU.

The smoothed histogram is asked the same question with the same windows and limits, so an image
that is not in HU stays so: averaging never moves a landmark (raw stored values keep soft tissue
near +1064 and their air near +24; a scaled image keeps its air at twice -1000). Blocks holding
padding (values below ``PADDING_BELOW_HU``, such as -2048 or -3024 outside the reconstruction
circle) are left out, so that their mean with the air beside them makes no peak below the air.
The smoothed answer is only taken when it finds the air peak, the landmark noise never merges with
another and that no rescaling leaves at -1000 HU (a slope of 0.5 puts the lungs near fat and the
edges of its blocks made a fat peak). The raw answer is kept whenever it says "HU", unless much of
the image lies far below air (a slope) or the smoothed histogram shows a peak below the air (an
offset the noise hid).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from algorithm.report.hu_landmarks import (  # the landmark test itself, and its below-air window
    BELOW_AIR,
    MAX_SAMPLE,
    PADDING_SHARE,
    REACH_HU,
    HuCalibration,
    peak_in_window,
    without_padding,
    hu_calibration,
)

BLOCK_MM = 2.5  # block edge for averaging; fat layers and muscles are several times thicker
MAX_BLOCK_VOXELS = 6  # per axis: keeps a block within 2.5 mm on thin slices, bounds the work
PADDING_BELOW_HU = -1500.0  # no air voxel lies this low, even with 100 HU of noise (5 SD)
MIN_BLOCKS = 20_000  # fewer blocks than this are too few for the histogram's share limits
# Nothing in a scan in HU lies far below air but padding and the tail of the noise (under 1e-4 of
# the air at 100 HU of noise); a scaled image (slope 2: air at -2000, lung at -1700) puts its air
# and lungs there, while its fat and muscle may still fall in their windows.
FAR_BELOW_AIR_HU = -1400.0
MAX_FAR_BELOW_AIR_SHARE = 0.02  # of the voxels that are not padding


def robust_hu_calibration(
    values: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float] | None = None,
    min_landmarks: int = 2,
    max_spread_hu: float = 100.0,
) -> HuCalibration:
    """``hu_calibration`` of ``values``; where it says "not HU" on a 3D (Z, Y, X) volume, asked
    again of the block-averaged volume (``spacing_mm_zyx`` sizes the blocks; None: 1 mm voxels).
    The smoothed answer is taken when it says "HU", with its reason saying so."""
    raw = hu_calibration(values, min_landmarks, max_spread_hu)
    smoothed = np.zeros(0, np.float32)
    if values.ndim == 3:
        smoothed = block_means_without_padding(values, spacing_mm_zyx or (1.0, 1.0, 1.0))
    if smoothed.size < MIN_BLOCKS:
        smoothed = np.zeros(0, np.float32)
    if raw.in_hu:
        return _contradicted(raw, values, smoothed)
    if smoothed.size == 0:
        return raw
    denoised = hu_calibration(smoothed, min_landmarks, max_spread_hu)
    if not denoised.in_hu or denoised.peaks_hu["air"] is None:
        return raw  # the smoothed answer needs the air, which no slope or offset puts at -1000
    return replace(denoised, reason=f"{denoised.reason}, after averaging the noise over {BLOCK_MM:g} mm blocks")


def _contradicted(raw: HuCalibration, values: np.ndarray, smoothed: np.ndarray) -> HuCalibration:
    """``raw`` (in HU by its landmarks) made "not HU" where the values say otherwise: much of the
    image far below air (a slope), or, once the noise is averaged, a peak below the air peak (an
    image shifted down, whose lungs the noisy histogram took for the air: the heart crop at -150 HU)."""
    far_below = far_below_air_share(values)
    if far_below > MAX_FAR_BELOW_AIR_SHARE:
        return replace(raw, in_hu=False, reason=f"{100 * far_below:.0f} % of the voxels lie below "
                       f"{FAR_BELOW_AIR_HU:.0f} HU, far below air (landmarks: {raw.reason}): rescaled?")
    below = below_air_peak_hu(smoothed)
    if below is not None:
        return replace(raw, in_hu=False, reason=f"once the noise is averaged, a peak at {below:.0f} HU lies below "
                       f"the air (landmarks: {raw.reason}): shifted?")
    return raw


def below_air_peak_hu(sample: np.ndarray) -> float | None:
    """A peak in the window below air (hu_landmarks.BELOW_AIR), constant padding left out."""
    low = sample[sample < BELOW_AIR.window_hu[1] + REACH_HU]
    return peak_in_window(without_padding(low), BELOW_AIR, max(sample.size, 1)) if sample.size else None


def far_below_air_share(values: np.ndarray) -> float:
    """Share of the voxels below FAR_BELOW_AIR_HU, constant padding values left out of both counts."""
    sample = values.reshape(-1)[:: max(1, values.size // MAX_SAMPLE)]
    low = sample[sample < FAR_BELOW_AIR_HU]
    if low.size == 0:
        return 0.0
    padding_values, counts = np.unique(low, return_counts=True)
    padding = int(counts[counts > PADDING_SHARE * low.size].sum())
    return (low.size - padding) / max(sample.size - padding, 1)


def block_factors(spacing_mm_zyx: tuple[float, float, float], block_mm: float = BLOCK_MM) -> tuple[int, int, int]:
    """Voxels per block along each axis: about ``block_mm``, at least 1, at most MAX_BLOCK_VOXELS."""
    return tuple(int(min(MAX_BLOCK_VOXELS, max(1, round(block_mm / float(s))))) for s in spacing_mm_zyx)


def block_means_without_padding(values: np.ndarray, spacing_mm_zyx: tuple[float, float, float]) -> np.ndarray:
    """The means of the ``block_factors`` blocks of a (Z, Y, X) volume (flat, float32), blocks that
    hold padding left out; the partial blocks at the far ends are dropped."""
    factors = block_factors(spacing_mm_zyx)
    if max(factors) == 1:  # at least one axis must average, or nothing is gained
        factors = (1, 2, 2)
    shape = [n // f for n, f in zip(values.shape, factors)]
    if min(shape) == 0:
        return np.zeros(0, np.float32)
    sums = np.zeros(shape, np.float64)
    lowest = np.full(shape, np.inf, np.float32)
    fz, fy, fx = factors
    for dz in range(fz):  # a strided sum per block offset: no full float64 copy of the volume
        for dy in range(fy):
            for dx in range(fx):
                part = np.asarray(values[dz:shape[0] * fz:fz, dy:shape[1] * fy:fy, dx:shape[2] * fx:fx], np.float32)
                sums += part
                np.minimum(lowest, part, out=lowest)
    means = (sums / (fz * fy * fx)).astype(np.float32)
    return means[lowest >= PADDING_BELOW_HU]
