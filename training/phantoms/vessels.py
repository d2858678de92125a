"""Pulmonary vessel and bronchial trees, one per lobe, that never leave their lobe.

A tree is grown by recursive partition of random attraction points scattered in the lobe: a branch
runs part of the way from its start to the centroid of the points it serves, then the points are
split in two along their principal axis and each half grows its own branch. Radii follow Murray's
law (r^3 adds up at a bifurcation), so branches taper from the lobar artery down to the terminal
radius. Bronchi run beside the larger arterial branches, as in the bronchovascular bundles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.labels import LEFT_LOBES, LOBES, Lobe

from .body import Thorax
from .fields import segment_points, splat_spheres
from .grid import Grid, PatientFrame


@dataclass
class Tree:
    """Straight segments: start/end (N, 3) mm, radius (N,) mm, attraction points served (N,)."""

    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    served: np.ndarray
    offset_start: np.ndarray  # bronchus offset from the artery at each end (mm)
    offset_end: np.ndarray


def grow_tree(rng: np.random.Generator, root_mm: np.ndarray, points_mm: np.ndarray, r_terminal_mm: float) -> Tree:
    """Recursive-partition tree from ``root_mm`` serving every point of ``points_mm``."""
    side_hint = rng.standard_normal(3)
    starts, ends, radii, served, off0, off1 = [], [], [], [], [], []
    stack = [(root_mm, np.arange(len(points_mm)), np.zeros(3))]
    while stack:
        p, idx, off_p = stack.pop()
        pts = points_mm[idx]
        n = len(idx)
        r = r_terminal_mm * n ** (1.0 / 3.0)
        centroid = pts.mean(axis=0)
        q = pts[0] if n == 1 else p + rng.uniform(0.35, 0.6) * (centroid - p)
        direction = q - p
        length = np.linalg.norm(direction) + 1e-6
        perp = side_hint - direction * (side_hint @ direction) / length**2
        off_q = perp / (np.linalg.norm(perp) + 1e-6) * (2.2 * r + 0.5)
        starts.append(p)
        ends.append(q)
        radii.append(r)
        served.append(n)
        off0.append(off_p)
        off1.append(off_q)
        if n == 1:
            continue
        centred = pts - centroid
        axis = _principal_axis(centred.T @ centred)
        order = np.argsort(centred @ axis)
        cut = int(np.clip(round(n * rng.uniform(0.35, 0.65)), 1, n - 1))
        stack.append((q, idx[order[:cut]], off_q))
        stack.append((q, idx[order[cut:]], off_q))
    return Tree(
        np.array(starts), np.array(ends), np.array(radii), np.array(served), np.array(off0), np.array(off1)
    )


def _principal_axis(cov: np.ndarray) -> np.ndarray:
    """Dominant eigenvector of a 3x3 covariance by power iteration (cheaper than eigh here)."""
    v = cov[:, int(np.argmax(np.diag(cov)))] + 1e-9
    for _ in range(4):
        v = cov @ v
        v = v / (np.abs(v).max() + 1e-12)
    return v


@dataclass
class TreeRender:
    """Occupancies (0..1) on the model grid."""

    vessel: np.ndarray
    airway_wall: np.ndarray  # outer radius of the bronchial wall (includes the lumen)
    airway_lumen: np.ndarray


def _lobe_points(rng: np.random.Generator, label: np.ndarray, lobe: Lobe, n: int, x, y, z) -> np.ndarray:
    idx = np.flatnonzero(label == lobe)
    if len(idx) == 0:
        return np.zeros((0, 3))
    pick = rng.choice(idx, size=min(n, len(idx)), replace=False)
    return np.stack([x.flat[pick], y.flat[pick], z.flat[pick]], axis=1).astype(float)


def _root(th: Thorax, lobe: Lobe, points: np.ndarray, vein: bool) -> np.ndarray:
    """Where a lobe's tree enters: the hilum, veins lower and more anterior (towards the atrium)."""
    side = +1 if lobe in LEFT_LOBES else -1
    hilum = th.hilum(side)
    if vein:
        hilum = hilum + np.array([-side * 8.0, -18.0, -28.0])
    # Start from the lobe point nearest the hilum so that the trunk lies in the lobe.
    nearest = points[np.argmin(np.linalg.norm(points - hilum, axis=1))]
    return 0.5 * (hilum + nearest)


def render_trees(
    th: Thorax,
    grid: Grid,
    frame: PatientFrame,
    label: np.ndarray,
    x,
    y,
    z,
    rng: np.random.Generator,
    airway_wall_factor: float = 1.0,
) -> TreeRender:
    """Arterial, venous and bronchial trees of all five lobes."""
    spacing_zyx = np.array(grid.spacing_mm[::-1])
    voxel_mm = float(np.cbrt(np.prod(spacing_zyx)))
    r_terminal = max(0.3, 0.28 * voxel_mm)
    r_airway_min = max(0.9, 0.5 * voxel_mm)
    out = TreeRender(*(np.zeros(grid.shape_zyx, dtype=np.float32) for _ in range(3)))
    lung_voxels = max(1, int(np.count_nonzero(label)))
    for lobe in LOBES:
        share = np.count_nonzero(label == lobe) / lung_voxels
        r_root = 4.2 * (max(share, 0.02) / 0.2) ** (1.0 / 3.0)
        n_points = int(np.clip((r_root / r_terminal) ** 3, 8, 3000))
        for vein in (False, True):
            points = _lobe_points(rng, label, lobe, n_points, x, y, z)
            if len(points) < 2:
                continue
            points += rng.uniform(-0.5, 0.5, points.shape) * grid.spacing_mm
            tree = grow_tree(rng, _root(th, lobe, points, vein), points, r_terminal)
            _draw(out.vessel, tree.start, tree.end, tree.radius, grid, frame, label, lobe, spacing_zyx)
            if vein:
                continue
            big = tree.radius >= r_airway_min
            r_lumen = 0.85 * tree.radius[big]
            wall = (0.18 * r_lumen + 0.25) * airway_wall_factor
            s, e = tree.start[big] + tree.offset_start[big], tree.end[big] + tree.offset_end[big]
            _draw(out.airway_wall, s, e, r_lumen + wall, grid, frame, label, lobe, spacing_zyx)
            _draw(out.airway_lumen, s, e, r_lumen, grid, frame, label, lobe, spacing_zyx)
    return out


def _draw(out, start, end, radius, grid: Grid, frame: PatientFrame, label, lobe: Lobe, spacing_zyx) -> None:
    if len(radius) == 0:
        return
    step = np.maximum(0.4 * radius, 0.45 * float(spacing_zyx.min()))
    pts, rad, _ = segment_points(start, end, radius, step)
    splat_spheres(grid.shape_zyx, frame.to_index(pts, grid), rad, spacing_zyx, out, only_where=(label, int(lobe)))
