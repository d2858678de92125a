"""COPD (emphysema, bullae), COVID-19 (GGO, consolidation, crazy paving) and pleural effusion.

Each function works on the lung voxels (flat indices into the model grid) and returns the new HU
values there plus the extents it produced, measured on the voxels it changed, so that
``cases.csv`` states what the image holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .body import Thorax
from .config import PathologyParams
from .fields import smooth_field
from .grid import Grid

EMPHYSEMA_HU = (-995.0, -965.0)  # destroyed parenchyma: below the -950 HU emphysema threshold


@dataclass
class LungPoints:
    """The lung voxels of the model grid: flat indices, patient coordinates, and the grid."""

    idx: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    grid: Grid


def distance_to_pleura_mm(lung: np.ndarray, grid: Grid, idx: np.ndarray) -> np.ndarray:
    """Distance (mm) from each lung voxel to the nearest non-lung voxel."""
    if len(idx) == 0:
        return np.zeros(0, dtype=np.float32)
    box = tuple(slice(max(0, a.min()), a.max() + 1) for a in np.unravel_index(idx, lung.shape))
    crop = np.pad(lung[box], 1)  # the crop's border is outside the lung
    dist = np.zeros(lung.shape, dtype=np.float32)
    dist[box] = ndimage.distance_transform_edt(crop, sampling=grid.spacing_mm[::-1])[1:-1, 1:-1, 1:-1]
    return dist.flat[idx]


def _top_share(score: np.ndarray, share: float) -> np.ndarray:
    """Mask of the ``share`` of points with the highest score."""
    if share <= 0 or len(score) == 0:
        return np.zeros(score.shape, dtype=bool)
    return score >= np.quantile(score, 1.0 - min(share, 1.0))


def emphysema(
    th: Thorax, pp: PathologyParams, pts: LungPoints, hu: np.ndarray, pleura_mm: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Clusters below -950 HU (centrilobular: upper zones; panlobular: diffuse, lower) and bullae."""
    shape = pts.grid.shape_zyx
    height = np.clip(pts.z / th.p.apex_height_mm, -0.4, 1.0)
    cluster_cells = tuple(max(4, int(n * s / 9.0)) for n, s in zip(shape, pts.grid.spacing_mm[::-1]))
    clusters = smooth_field(rng, shape, cluster_cells).flat[pts.idx]
    regional = smooth_field(rng, shape, 5).flat[pts.idx]
    if pp.emphysema_pattern == "panlobular":
        score = 0.5 * clusters + 0.8 * regional - 1.2 * height
    else:
        score = 1.0 * clusters + 0.5 * regional + 1.6 * height
    mask = _top_share(score, pp.extent)
    for _ in range(pp.bullae):
        # Subpleural, upper zone: centre a few cm under the pleura.
        cand = np.flatnonzero((pleura_mm > 5) & (pleura_mm < 25) & (height > 0.45))
        if len(cand) == 0:
            break
        c = cand[rng.integers(len(cand))]
        r_mm = float(rng.uniform(12, 35))
        d2 = (pts.x - pts.x[c]) ** 2 + (pts.y - pts.y[c]) ** 2 + (pts.z - pts.z[c]) ** 2
        mask |= d2 < r_mm**2
    out = hu.copy()
    out[mask] = rng.uniform(*EMPHYSEMA_HU, size=int(mask.sum())).astype(np.float32)
    return out, float(mask.mean()) if len(mask) else 0.0


def covid(
    th: Thorax, pp: PathologyParams, pts: LungPoints, hu: np.ndarray, pleura_mm: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float, float]:
    """Peripheral, posterior, lower, multifocal GGO with consolidating cores and crazy paving."""
    shape = pts.grid.shape_zyx
    posterior = np.clip((pts.y - th.cy) / th.p.lung_half_depth_mm, -1, 1)
    height = np.clip(pts.z / th.p.apex_height_mm, -0.4, 1.0)
    prior = np.exp(-pleura_mm / 18.0) * (1.2 + 0.6 * posterior) * (1.3 - 0.6 * height)
    prior = np.clip(prior, 1e-6, None)
    foci = rng.choice(len(pts.idx), size=pp.covid_foci, p=prior / prior.sum())
    field = np.zeros(len(pts.idx), dtype=np.float32)
    for c in foci:
        s_mm = float(rng.uniform(25, 60))
        d2 = (pts.x - pts.x[c]) ** 2 + (pts.y - pts.y[c]) ** 2 + (pts.z - pts.z[c]) ** 2
        field += np.exp(-d2 / (2 * s_mm**2)).astype(np.float32)
    edges = smooth_field(rng, shape, tuple(max(4, int(n * s / 20.0)) for n, s in zip(shape, pts.grid.spacing_mm[::-1])))
    score = field * (0.4 + prior) * (1.0 + 0.35 * edges.flat[pts.idx])
    lesion = _top_share(score, pp.extent)
    core = np.zeros_like(lesion)
    if lesion.any() and pp.consolidation_share > 0:
        core[lesion] = _top_share(score[lesion], pp.consolidation_share)
    ggo = lesion & ~core
    out = hu.copy()
    rank = np.zeros(len(hu), dtype=np.float32)
    if ggo.any():  # denser towards the lesion core: -700 at the rim to -350 inside
        s = score[ggo]
        rank[ggo] = (s - s.min()) / (np.ptp(s) + 1e-6)
        out[ggo] = -690.0 + 330.0 * rank[ggo] + rng.normal(0, 20, int(ggo.sum()))
    if pp.crazy_paving and ggo.any():
        cells = tuple(max(4, int(n * s / 8.0)) for n, s in zip(shape, pts.grid.spacing_mm[::-1]))
        septa = np.abs(smooth_field(rng, shape, cells).flat[pts.idx]) < 0.18
        out[ggo & septa] += 180.0
    out[core] = rng.normal(-20.0, 25.0, int(core.sum())).astype(np.float32)
    out = np.clip(out, -740.0, 60.0, where=lesion, out=out)
    n = max(1, len(hu))
    return out, float(ggo.sum() / n), float(core.sum() / n)


def effusion(
    th: Thorax,
    pp: PathologyParams,
    lung_sides: dict[int, np.ndarray],
    grid: Grid,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(fluid mask, compression weight 0..1 of the lung next to it) on the model grid.

    Fluid layers in the dependent (posterior) pleural space as a crescent along the chest wall,
    thicker posteriorly and towards the base; the lung beside it is compressed (denser).
    """
    fluid = np.zeros(grid.shape_zyx, dtype=bool)
    for side, code in ((+1, "L"), (-1, "R")):
        if code not in pp.effusion_sides:
            continue
        lung = lung_sides[side]
        idx = np.flatnonzero(lung)
        pleura = distance_to_pleura_mm(lung, grid, idx)
        posterior = np.clip((y.flat[idx] - th.cy) / th.p.lung_half_depth_mm + 0.35, 0, 1.35)
        low = np.clip(1.0 - z.flat[idx] / (0.7 * th.p.apex_height_mm), 0.15, 1.3)
        fluid.flat[idx[pleura < pp.effusion_depth_mm * posterior**1.5 * low]] = True
    if not fluid.any():
        return fluid, np.zeros(grid.shape_zyx, dtype=np.float32)
    dist = ndimage.distance_transform_edt(~fluid, sampling=grid.spacing_mm[::-1]).astype(np.float32)
    compression = np.exp(-dist / 6.0) * (dist < 20.0)
    return fluid, compression.astype(np.float32)
