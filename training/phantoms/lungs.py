"""Lung shapes, lobes, fissures and parenchyma.

Each fissure is a height field Z = f(X, Y) (a tilted, curved plane with a random low-frequency
undulation). A lobe is the set of lung voxels on one side of it, so the lobes are bounded by smooth
surfaces and the fissure sheet drawn in the image lies exactly on the label boundary. The level of
each fissure is set from the quantile of Z - f over the lung voxels, which hits the case's sampled
lobe volume share exactly (before clean-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from algorithm.boxes import bounding_box
from algorithm.labels import Lobe

from .body import Thorax
from .config import LungParams
from .fields import smooth_field
from .grid import Grid

FISSURE_THICKNESS_MM = 1.0
# Fissure ids in the fissure map, and the lobes each one separates.
LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL = 1, 2, 3
FISSURE_NAMES = {LEFT_OBLIQUE: "left_oblique", RIGHT_OBLIQUE: "right_oblique", HORIZONTAL: "right_horizontal"}
LOBES_ALL = (Lobe.LUL, Lobe.LLL, Lobe.RUL, Lobe.RLL, Lobe.RML)
# The first lobe lies on one side of the fissure, the others on the other side.
FISSURE_LOBES: dict[int, tuple[Lobe, ...]] = {
    LEFT_OBLIQUE: (Lobe.LUL, Lobe.LLL),
    RIGHT_OBLIQUE: (Lobe.RLL, Lobe.RUL, Lobe.RML),
    HORIZONTAL: (Lobe.RUL, Lobe.RML),
}
# A fissure sheet to draw: id, flat indices of its lung, signed distance, voxel extent, visibility score.
Sheet = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class LungModel:
    """Labels on the model grid plus what the renderer needs."""

    label: np.ndarray  # uint8 [z, y, x]
    fissure_occupancy: np.ndarray  # float32, partial-volume share of visible fissure sheet
    fissure_id: np.ndarray  # uint8, id of the fissure whose surface passes through the voxel (visible part)
    fissure_visible: dict[int, float]  # measured visible share of each fissure's surface voxels


@dataclass(frozen=True)
class _Surface:
    """A height field Z = f(X, Y) in the lateral/normalised coordinates of one lung."""

    slope_y: float
    curvature_y: float
    slope_x: float
    twist: float  # lateral tilt that changes from front to back (the fissure's propeller shape)
    waves: tuple[tuple[float, float, float, float], ...]  # (amplitude mm, kx, ky, phase)

    def height(self, xl: np.ndarray, yn: np.ndarray, half_depth_mm: float) -> np.ndarray:
        f = half_depth_mm * (self.slope_y * yn + self.curvature_y * yn**2) + (self.slope_x + self.twist * yn) * xl
        for amp, kx, ky, phase in self.waves:
            f = f + amp * np.sin(kx * xl / half_depth_mm + ky * yn + phase)
        return f


def _surface(rng: np.random.Generator, slope_y: float, curvature: float, slope_x: float, wobble_mm: float) -> _Surface:
    waves = tuple(
        (
            wobble_mm * float(rng.uniform(0.4, 1.0)),
            float(rng.uniform(-4, 4)),
            float(rng.uniform(-4, 4)),
            float(rng.uniform(0, 2 * np.pi)),
        )
        for _ in range(3)
    )
    twist = float(rng.uniform(-0.3, 0.3))
    return _Surface(slope_y, curvature, slope_x, twist, waves)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """``algorithm.boxes.bounding_box``; an empty box (not None) for an empty mask."""
    return bounding_box(mask, margin) or tuple(slice(0, 0) for _ in range(mask.ndim))


def lung_masks(
    th: Thorax, x, y, z, mediastinum: np.ndarray, domes: dict[int, np.ndarray], rng: np.random.Generator
) -> dict[int, np.ndarray]:
    """Left (+1) and right (-1) lung masks on the model grid."""
    wobble = smooth_field(rng, x.shape, 8) * 0.07
    cage = th.cage(x, y, z)
    out = {}
    for side in (+1, -1):
        mask = (th.lung_ellipse(x, y, z, side) * (1.0 + wobble) < 1.0) & (cage < 0.97)
        mask &= (z > domes[side]) & (side * x > 0) & ~mediastinum
        out[side] = _largest_component(mask)
    return out


def _fissure_occupancy(d_mm: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    """Share of a voxel (extent ``voxel_mm`` along the normal) covered by a thin sheet at distance d."""
    half = FISSURE_THICKNESS_MM / 2
    lo = np.maximum(-half, d_mm - voxel_mm / 2)
    hi = np.minimum(half, d_mm + voxel_mm / 2)
    return np.clip(hi - lo, 0.0, None) / voxel_mm


def _signed_distance(
    surf: _Surface, px: np.ndarray, py: np.ndarray, pz: np.ndarray, side: int, th: Thorax, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Z - f, voxel extent along the surface normal) for lung points."""
    d = th.p.lung_half_depth_mm
    xl = side * px
    yn = (py - th.cy) / d
    h = 0.5
    f = surf.height(xl, yn, d)
    fx = (surf.height(xl + h, yn, d) - surf.height(xl - h, yn, d)) / (2 * h) * side
    fy = (surf.height(xl, yn + h / d, d) - surf.height(xl, yn - h / d, d)) / (2 * h)
    norm = np.sqrt(1 + fx**2 + fy**2)
    extent = (np.abs(fx) * spacing[0] + np.abs(fy) * spacing[1] + spacing[2]) / norm
    return (pz - f) / norm, extent


def _visibility(score: np.ndarray, visible_share: float) -> np.ndarray:
    """Hide the lowest-scoring part of a fissure (incomplete fissures lack their medial part)."""
    if visible_share >= 1.0 or len(score) == 0:
        return np.ones(score.shape, dtype=bool)
    if visible_share <= 0.0:  # an absent fissure
        return np.zeros(score.shape, dtype=bool)
    return score >= np.quantile(score, 1.0 - visible_share)


def _reassign_islands(label: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """Make every lobe one 6-connected piece.

    A stray piece of a lobe joins the lobe it touches most; a piece that touches no other lobe
    (cut off by fluid or the scan range) becomes background.
    """
    box = _bbox(lung)
    lab = label[box].copy()
    for _ in range(4):
        changed = False
        for lobe in Lobe:
            if lobe == Lobe.BACKGROUND:
                continue
            comps, n = ndimage.label(lab == lobe)
            if n <= 1:
                continue
            sizes = np.bincount(comps.ravel())
            sizes[0] = 0
            for piece, sl in enumerate(ndimage.find_objects(comps), start=1):
                if piece == int(np.argmax(sizes)):
                    continue
                grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
                mask = comps[grown] == piece
                shell = ndimage.binary_dilation(mask) & ~mask
                around = lab[grown][shell]
                around = around[(around != 0) & (around != lobe)]
                new = np.bincount(around).argmax() if len(around) else 0
                lab[grown][mask] = new
                changed = True
        if not changed:
            break
    out = label.copy()
    out[box] = lab
    return out


def build_lobes(
    th: Thorax, lp: LungParams, grid: Grid, x, y, z, lungs: dict[int, np.ndarray], rng: np.random.Generator
) -> LungModel:
    """Split the lungs into lobes and draw the fissure sheets."""
    spacing = np.array(grid.spacing_mm)
    label = np.zeros(grid.shape_zyx, dtype=np.uint8)
    score_field = smooth_field(rng, grid.shape_zyx, 6)
    sheets: list[Sheet] = []
    for side in (+1, -1):
        idx = np.flatnonzero(lungs[side])
        if len(idx) == 0:
            continue
        px, py, pz = x.flat[idx], y.flat[idx], z.flat[idx]
        k = 0 if side > 0 else 1
        obl = _surface(rng, lp.oblique_slope[k], lp.oblique_curvature[k], float(rng.uniform(-0.35, 0.35)), lp.fissure_wobble_mm[k])
        d_obl, ext_obl = _signed_distance(obl, px, py, pz, side, th, spacing)
        share_lower = lp.share_lll_of_left if side > 0 else lp.share_rll_of_right
        d_obl = d_obl - np.quantile(d_obl, share_lower)
        lower = d_obl < 0
        lateral = side * px / th.cage_half_width + 0.5 * score_field.flat[idx]
        if side > 0:
            label.flat[idx] = np.where(lower, Lobe.LLL, Lobe.LUL)
            sheets.append((LEFT_OBLIQUE, idx, d_obl, ext_obl, lateral))
            continue
        hor = _surface(rng, lp.horizontal_tilt[0], 0.0, lp.horizontal_tilt[1], lp.fissure_wobble_mm[2])
        d_hor, ext_hor = _signed_distance(hor, px, py, pz, side, th, spacing)
        upper = ~lower
        d_hor = d_hor - np.quantile(d_hor[upper], lp.share_rml_of_upper_right)
        label.flat[idx] = np.where(lower, Lobe.RLL, np.where(d_hor < 0, Lobe.RML, Lobe.RUL))
        sheets.append((RIGHT_OBLIQUE, idx, d_obl, ext_obl, lateral))
        sheets.append((HORIZONTAL, idx[upper], d_hor[upper], ext_hor[upper], lateral[upper]))
    lung = lungs[+1] | lungs[-1]
    cleaned = _reassign_islands(label, lung)
    wanted = {LEFT_OBLIQUE: lp.fissure_visible[0], RIGHT_OBLIQUE: lp.fissure_visible[1], HORIZONTAL: lp.fissure_visible[2]}
    return draw_sheets(label, cleaned, sheets, wanted)


def draw_sheets(label: np.ndarray, cleaned: np.ndarray, sheets: list[Sheet], wanted: dict[int, float]) -> LungModel:
    """Partial-volume fissure sheets, each showing its ``wanted`` share (the highest-scoring part).

    ``label`` is the split before island clean-up; a sheet is not drawn where clean-up moved voxels.
    """
    occ = np.zeros(label.shape, dtype=np.float32)
    fid = np.zeros(label.shape, dtype=np.uint8)
    visible: dict[int, float] = {}
    for fissure, idx, d, ext, lateral in sheets:
        on_surface = np.abs(d) <= ext / 2
        show = _visibility(lateral[on_surface], wanted[fissure])
        seen = np.zeros(len(idx), dtype=bool)
        seen[np.flatnonzero(on_surface)[show]] = True
        # Near-surface voxels take the visibility of the sheet they belong to (by the score threshold).
        thr = np.min(lateral[on_surface][show]) if show.any() else np.inf
        vis = (lateral >= thr) & (cleaned.flat[idx] == label.flat[idx])
        o = _fissure_occupancy(d, ext) * vis
        occ.flat[idx] = np.maximum(occ.flat[idx], o)
        seen &= vis
        fid.flat[idx[seen]] = fissure
        visible[fissure] = float(seen.sum() / max(1, on_surface.sum()))
    return LungModel(label=cleaned, fissure_occupancy=occ, fissure_id=fid, fissure_visible=visible)


def parenchyma_hu(th: Thorax, lp: LungParams, shape, y: np.ndarray, lung: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HU of healthy parenchyma at the lung voxels (flat, in ``np.flatnonzero(lung)`` order).

    Dependent (posterior) lung is denser; low-frequency drift plus fine texture from unresolved
    vessels and interlobular septa.
    """
    idx = np.flatnonzero(lung)
    drift = smooth_field(rng, shape, 8).flat[idx] * 0.6 * lp.texture_hu
    fine = smooth_field(rng, shape, tuple(max(4, n // 2) for n in shape)).flat[idx] * lp.texture_hu
    posterior = np.clip((y.flat[idx] - th.cy) / th.p.lung_half_depth_mm, -1.0, 1.0)
    return (lp.parenchyma_hu + 0.5 * lp.gravity_gradient_hu * posterior + drift + fine).astype(np.float32)


def fissure_map_on_boundaries(fissure_id: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Keep the fissure voxels that touch (26-neighbourhood) a lobe on the fissure's other side.

    Where a fissure meets the pleura the surface can pass through a voxel whose other side lies
    outside the lung; such voxels are not *between* two lobes and are dropped from the map.
    """
    out = np.zeros_like(fissure_id)
    box = _bbox(fissure_id > 0)
    fid, lab = fissure_id[box], label[box]
    near = {lobe: ndimage.binary_dilation(lab == lobe, structure=np.ones((3, 3, 3), bool)) for lobe in LOBES_ALL}
    for fissure, lobes in FISSURE_LOBES.items():
        first, rest = lobes[0], lobes[1:]
        near_rest = np.logical_or.reduce([near[lobe] for lobe in rest])
        ok = ((lab == first) & near_rest) | (np.isin(lab, [int(v) for v in rest]) & near[first])
        sel = (fid == fissure) & ok
        out[box][sel] = fissure
    return out
