"""Per-lobe density measures on the input grid: emphysema, ground glass, consolidation, severity.

Every measure is computed over the voxels of a lobe of the mask, on the HU image the mask was made
from (same grid). The lungs (``left_lung``, ``right_lung``) and ``total`` pool the voxels of their
lobes.

Threshold measures (LAA-950, the 15th percentile, mean and median) use every voxel, as the
emphysema literature does. Ground glass and consolidation need more care: a plain threshold also
counts the vessels (above -250 HU), the partial-volume rims of vessels and of the chest wall, the
fissures (-700...-600 HU) and, in noisy scans, single speckle voxels; in a healthy lung that sums
to 5-15 % of the lobe. So both are taken from structures that are thick in all three directions,
found by morphological openings (ball radius in mm, so independent of the voxel size):

- consolidation: voxels above -250 HU that survive an opening with a ball of
  ``vessel_radius_mm`` (4.5 mm): vessels up to about 9 mm across are removed, consolidated blobs
  kept. The removed bright voxels are the vessels.
- ground glass (``high_attenuation_percent``): voxels from -700 to -250 HU that survive an opening
  of the dense (>= -700 HU) lung with a ball of ``thin_structure_radius_mm`` (3 mm), which removes
  fissures, pleural rims and noise speckle, minus the vessels' partial-volume rim (one voxel
  around each vessel voxel).

Lobar vessels thicker than 9 mm near the hilum would still count as consolidation; on the
phantoms (vessel roots of 11 mm) that leaves a floor of about 0.2 % in healthy lungs.
``high_attenuation_raw_percent`` keeps the plain threshold share (-700...-250 HU, every voxel) for
comparison with the literature's HAA.

The severity band and score are an intensity-based estimate for research, not a diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.boxes import bounding_box
from algorithm.image_ops import dilate_face_neighbours
from algorithm.labels import LEFT_LOBES, LOBES, RIGHT_LOBES, Lobe
from algorithm.report.volumes import voxel_volume_ml

DISCLAIMER = (
    "Intensity-based estimate for research, not a diagnosis: the severity bands come from HU "
    "thresholds inside the lobes, not from a reader's assessment; check the quality flags."
)

REGIONS: dict[str, tuple[Lobe, ...]] = {
    **{lobe.name: (lobe,) for lobe in LOBES},
    "left_lung": LEFT_LOBES,
    "right_lung": RIGHT_LOBES,
    "total": LOBES,
}


@dataclass(frozen=True)
class DensityParameters:
    """Thresholds of the density measures (the issue's defaults); recorded in every output."""

    emphysema_hu: float = -950.0  # LAA: voxels strictly below
    density_percentile: float = 15.0  # the "Perc15" lung density
    ground_glass_min_hu: float = -700.0  # ground glass: from here (inclusive) ...
    consolidation_min_hu: float = -250.0  # ... to here (inclusive); consolidation: strictly above
    thin_structure_radius_mm: float = 3.0  # ground glass: opening ball, removes fissures, rims, speckle
    vessel_radius_mm: float = 4.5  # consolidation: opening ball, removes vessels up to ~9 mm across
    none_below_percent: float = 1.0  # involvement below this is band 0 ("none"): the filtered floor of healthy lungs
    band_upper_percent: tuple[float, float, float, float] = (5.0, 25.0, 50.0, 75.0)  # bands 1-4

    def as_dict(self) -> dict:
        values = asdict(self)
        values["band_upper_percent"] = list(self.band_upper_percent)
        return values


def severity_band(involvement_percent: float, params: DensityParameters) -> int:
    """0: none, 1: < 5 %, 2: 5-25 %, 3: 25-50 %, 4: 50-75 %, 5: > 75 % (with the default bands)."""
    if involvement_percent < params.none_below_percent:
        return 0
    for band, upper in enumerate(params.band_upper_percent, start=1):
        if involvement_percent < upper:
            return band
    return len(params.band_upper_percent) + 1


def opening_mm(mask: np.ndarray, radius_mm: float, spacing_zyx_mm: tuple[float, ...]) -> np.ndarray:
    """Morphological opening of ``mask`` by a ball of ``radius_mm`` (anisotropic spacing).

    Done with two Euclidean distance transforms (erosion: farther than r from the outside;
    dilation: within r of the eroded set) so that its cost does not grow with the ball. Fine
    grids are first binned to voxels of about r / 2 (majority vote), which keeps the shape of
    anything the ball fits in, and the result is cut back to ``mask`` on the fine grid: this makes
    a 0.7 mm scan about 5x cheaper.
    """
    if not mask.any() or radius_mm <= 0:
        return mask.copy()
    factors = tuple(max(1, int(radius_mm / 2 / s)) for s in spacing_zyx_mm)
    coarse = _bin_majority(mask, factors)
    coarse_spacing = tuple(s * f for s, f in zip(spacing_zyx_mm, factors))
    # The ball must reach at least the face neighbours, or the opening would be the identity.
    radius = max(radius_mm, 1.01 * min(coarse_spacing))
    padded = np.pad(coarse, 1)  # outside the crop counts as background
    eroded = ndimage.distance_transform_edt(padded, sampling=coarse_spacing) > radius
    if not eroded.any():
        return np.zeros_like(mask)
    opened = (ndimage.distance_transform_edt(~eroded, sampling=coarse_spacing) <= radius)[1:-1, 1:-1, 1:-1]
    for axis, factor in enumerate(factors):
        opened = np.repeat(opened, factor, axis=axis)
    return opened[tuple(slice(0, n) for n in mask.shape)] & mask


def _bin_majority(mask: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Blocks of ``factors`` voxels -> one voxel, set where at least half the block is set."""
    if all(f == 1 for f in factors):
        return mask
    padded_shape = [-(-n // f) * f for n, f in zip(mask.shape, factors)]
    block_voxels = int(np.prod(factors))
    # One axis at a time in the narrowest integer type that holds a block's count: about 3x
    # faster than one sum over three strided axes.
    count_dtype = np.uint8 if block_voxels <= np.iinfo(np.uint8).max else np.uint32
    counts = np.zeros(padded_shape, count_dtype)
    counts[tuple(slice(0, n) for n in mask.shape)] = mask
    for axis, factor in enumerate(factors):
        shape = list(counts.shape)
        split = shape[:axis] + [shape[axis] // factor, factor] + shape[axis + 1 :]
        counts = counts.reshape(split).sum(axis=axis + 1, dtype=count_dtype)
    return counts.astype(np.uint32) * 2 >= block_voxels


@dataclass
class _Counts:
    """Voxel counts per label (index = label value) of each category."""

    voxels: np.ndarray
    hu_sum: np.ndarray
    laa: np.ndarray
    ground_glass: np.ndarray
    consolidation: np.ndarray
    raw_high_attenuation: np.ndarray


def _count(hu: np.ndarray, labels: np.ndarray, spacing_zyx_mm, params: DensityParameters) -> _Counts:
    lung = labels > 0
    lab = labels[lung]
    values = hu[lung]
    bright = (hu > params.consolidation_min_hu) & lung
    consolidation = opening_mm(bright, params.vessel_radius_mm, spacing_zyx_mm)
    vessel_rim = dilate_face_neighbours(bright & ~consolidation)  # vessels and their 1-voxel rim
    dense = (hu >= params.ground_glass_min_hu) & lung
    ground_glass = opening_mm(dense, params.thin_structure_radius_mm, spacing_zyx_mm) & ~bright & ~vessel_rim
    n = len(Lobe)

    def per_label(selected: np.ndarray) -> np.ndarray:
        return np.bincount(lab[selected], minlength=n)

    return _Counts(
        voxels=np.bincount(lab, minlength=n),
        hu_sum=np.bincount(lab, weights=values.astype(np.float64), minlength=n),
        laa=per_label(values < params.emphysema_hu),
        ground_glass=per_label(ground_glass[lung]),
        consolidation=per_label(consolidation[lung]),
        raw_high_attenuation=per_label((dense & ~bright)[lung]),
    )


def _percentiles(hu: np.ndarray, labels: np.ndarray, lobes: tuple[Lobe, ...], params) -> tuple[float, float] | None:
    selected = np.isin(labels, [int(lobe) for lobe in lobes])
    if not selected.any():
        return None
    perc, median = np.percentile(hu[selected], [params.density_percentile, 50.0])
    return float(perc), float(median)


class _IntegerHistograms:
    """Per-label histograms of integer HU: every region's percentiles from one pass.

    CT is stored as integers, so a histogram holds the sorted values exactly and numpy's linear
    percentile can be read off its cumulative counts; sorting the voxels of each of the eight
    regions instead took about 3 s on a 512 x 512 x 400 scan.
    """

    def __init__(self, lung_hu: np.ndarray, lung_labels: np.ndarray, n_labels: int) -> None:
        self.low = int(lung_hu.min())
        bins = int(lung_hu.max()) - self.low + 1
        flat = lung_labels.astype(np.int64) * bins + (lung_hu.astype(np.int64) - self.low)
        self.counts = np.bincount(flat, minlength=n_labels * bins).reshape(n_labels, bins)

    @staticmethod
    def applies(lung_hu: np.ndarray) -> bool:
        if lung_hu.size == 0 or not np.array_equal(lung_hu, np.rint(lung_hu)):
            return False
        return float(lung_hu.max()) - float(lung_hu.min()) < 2**20  # a histogram of bounded size

    def percentiles(self, lobes: tuple[Lobe, ...], params) -> tuple[float, float] | None:
        cumulative = np.cumsum(self.counts[[int(lobe) for lobe in lobes]].sum(axis=0))
        n = int(cumulative[-1])
        if n == 0:
            return None
        return self._linear(cumulative, n, params.density_percentile), self._linear(cumulative, n, 50.0)

    def _linear(self, cumulative: np.ndarray, n: int, q: float) -> float:
        """numpy's default ('linear') percentile from the cumulative counts."""
        position = q / 100.0 * (n - 1)
        below = int(np.floor(position))
        lower = self._order_statistic(cumulative, below)
        upper = self._order_statistic(cumulative, min(below + 1, n - 1))
        return float(lower + (position - below) * (upper - lower))

    def _order_statistic(self, cumulative: np.ndarray, k: int) -> int:
        """The k-th smallest value (0-based)."""
        return self.low + int(np.searchsorted(cumulative, k, side="right"))


def _region_percentiles(hu: np.ndarray, labels: np.ndarray, params) -> dict[str, tuple[float, float] | None]:
    lung = labels > 0
    lung_hu = hu[lung]
    if _IntegerHistograms.applies(lung_hu):
        histograms = _IntegerHistograms(lung_hu, labels[lung], len(Lobe))
        return {name: histograms.percentiles(lobes, params) for name, lobes in REGIONS.items()}
    return {name: _percentiles(hu, labels, lobes, params) for name, lobes in REGIONS.items()}


def _percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 3)


def _region(lobes: tuple[Lobe, ...], counts: _Counts, percentiles, total_voxels: int, voxel_ml: float, params) -> dict:
    idx = [int(lobe) for lobe in lobes]
    voxels = int(counts.voxels[idx].sum())
    volume_ml = round(voxels * voxel_ml, 3)
    if voxels == 0:  # a missing lobe: no density, never a silent zero
        keys = ("mean_hu", "median_hu", "perc15_hu", "laa950_percent", "high_attenuation_percent",
                "high_attenuation_raw_percent", "consolidation_percent", "involvement_percent")
        return {"volume_ml": 0.0, "share_of_lung_percent": 0.0 if total_voxels else None, **dict.fromkeys(keys)}
    ggo, cons = float(counts.ground_glass[idx].sum()), float(counts.consolidation[idx].sum())
    return {
        "volume_ml": volume_ml,
        "share_of_lung_percent": _percent(voxels, total_voxels),
        "mean_hu": round(float(counts.hu_sum[idx].sum()) / voxels, 1),
        "median_hu": round(percentiles[1], 1),
        "perc15_hu": round(percentiles[0], 1),
        "laa950_percent": _percent(float(counts.laa[idx].sum()), voxels),
        "high_attenuation_percent": _percent(ggo, voxels),
        "high_attenuation_raw_percent": _percent(float(counts.raw_high_attenuation[idx].sum()), voxels),
        "consolidation_percent": _percent(cons, voxels),
        "involvement_percent": _percent(ggo + cons, voxels),
    }


def _add_severity(regions: dict[str, dict], params: DensityParameters) -> dict:
    bands: dict[str, int | None] = {}
    for lobe in LOBES:
        involvement = regions[lobe.name]["involvement_percent"]
        bands[lobe.name] = None if involvement is None else severity_band(involvement, params)
        regions[lobe.name]["severity_band"] = bands[lobe.name]
    for name in ("left_lung", "right_lung", "total"):
        scored = [bands[lobe.name] for lobe in REGIONS[name] if bands[lobe.name] is not None]
        regions[name]["severity_score"] = int(sum(scored))
    return bands


def lobe_measures(image: sitk.Image, mask: sitk.Image, params: DensityParameters | None = None) -> dict:
    """Density measures per lobe, per lung and in total, with the severity estimate.

    ``image``: the CT in HU; ``mask``: the lobe labels on the same grid.
    """
    params = params or DensityParameters()
    if image.GetSize() != mask.GetSize():
        raise ValueError(f"image size {image.GetSize()} and mask size {mask.GetSize()} differ")
    labels_all = sitk.GetArrayViewFromImage(mask)
    box = bounding_box(labels_all)
    spacing_zyx_mm = tuple(float(s) for s in reversed(image.GetSpacing()))
    if box is None:
        labels = np.zeros((1, 1, 1), np.uint8)
        hu = np.zeros((1, 1, 1), np.float32)
    else:
        labels = np.asarray(labels_all[box], dtype=np.uint8)
        hu = np.asarray(sitk.GetArrayViewFromImage(image)[box], dtype=np.float32)
    counts = _count(hu, labels, spacing_zyx_mm, params)
    total_voxels = int(counts.voxels[1:].sum())
    voxel_ml = voxel_volume_ml(mask)
    percentiles = _region_percentiles(hu, labels, params)
    regions = {
        name: _region(lobes, counts, percentiles[name], total_voxels, voxel_ml, params)
        for name, lobes in REGIONS.items()
    }
    bands = _add_severity(regions, params)
    regions["severity"] = {
        "total_score": regions["total"]["severity_score"],
        "max_score": 5 * len(LOBES),
        "per_lobe": bands,
        "disclaimer": DISCLAIMER,
    }
    regions["parameters"] = params.as_dict()
    return regions
