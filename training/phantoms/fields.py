"""Smooth random fields and tube rasterisation shared by the anatomy modules."""

from __future__ import annotations

import numpy as np


def _lerp_axis(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` to ``n`` samples spanning the same extent."""
    m = a.shape[axis]
    u = np.linspace(0.0, m - 1.0, n, dtype=np.float32)
    lo = np.minimum(u.astype(np.intp), m - 2)
    w = (u - lo).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
    return a.take(lo, axis=axis) * (1 - w) + a.take(lo + 1, axis=axis) * w


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int | tuple[int, ...]) -> np.ndarray:
    """Zero-mean random field of about unit std with ``cells`` random values per axis, linearly upsampled.

    Cheap low-frequency variation (lung boundary wobble, density drifts, lesion placement).
    """
    cells_t = (cells,) * len(shape) if isinstance(cells, int) else tuple(cells)
    coarse_shape = tuple(max(2, min(int(c), n)) for c, n in zip(cells_t, shape))
    field = rng.standard_normal(coarse_shape, dtype=np.float32)
    # Expand the axes with the least growth first: the full-size pass happens once, at the end.
    for axis in np.argsort([n / c for n, c in zip(shape, coarse_shape)]):
        field = _lerp_axis(field, int(axis), shape[axis])
    return field


def polyline_points(nodes_mm: np.ndarray, radii_mm: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_mm`` along a polyline with linearly interpolated radii."""
    pts, rad = [], []
    for a, b, ra, rb in zip(nodes_mm[:-1], nodes_mm[1:], radii_mm[:-1], radii_mm[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step_mm)))
        t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
        pts.append(a + t * (b - a))
        rad.append(ra + t[:, 0] * (rb - ra))
    pts.append(nodes_mm[-1:])
    rad.append(radii_mm[-1:])
    return np.concatenate(pts), np.concatenate(rad)


def segment_points(
    starts_mm: np.ndarray, ends_mm: np.ndarray, radii_mm: np.ndarray, step_mm: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points along many straight segments at once: (points, radius, segment id)."""
    length = np.linalg.norm(ends_mm - starts_mm, axis=1)
    step = np.broadcast_to(np.asarray(step_mm, dtype=float), length.shape)
    counts = np.maximum(1, np.ceil(length / step).astype(int)) + 1
    seg = np.repeat(np.arange(len(length)), counts)
    first = np.cumsum(counts) - counts
    t = (np.arange(counts.sum()) - first[seg]) / np.maximum(counts[seg] - 1, 1)
    pts = starts_mm[seg] + t[:, None] * (ends_mm[seg] - starts_mm[seg])
    return pts, radii_mm[seg], seg


def splat_spheres(
    shape_zyx: tuple[int, int, int],
    centres_idx: np.ndarray,
    radii_mm: np.ndarray,
    spacing_zyx_mm: np.ndarray,
    out: np.ndarray | None = None,
    only_where: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Partial-volume occupancy (0..1) of the union of spheres, max-accumulated into ``out``.

    Spheres at points every fraction of a radius along a centre line make a tube. A sphere thinner
    than a voxel gets a proportionally lower peak, so sub-voxel vessels blur out instead of vanishing.
    ``only_where=(labels, value)`` draws only into voxels whose label equals value (vessels of a
    lobe stay in that lobe: they never cross a fissure).
    """
    if out is None:
        out = np.zeros(shape_zyx, dtype=np.float32)
    if len(radii_mm) == 0:
        return out
    sp = np.asarray(spacing_zyx_mm, dtype=np.float32)
    voxel_mm = float(np.cbrt(np.prod(sp)))
    dims = np.array(shape_zyx)
    strides = np.array([shape_zyx[1] * shape_zyx[2], shape_zyx[2], 1])
    flat = out.reshape(-1)
    labels = None if only_where is None else only_where[0].reshape(-1)
    # Occupancy is zero beyond r + voxel/2: that bounds the stencil of each sphere.
    reach = np.ceil((radii_mm[:, None] + 0.5 * voxel_mm) / sp[None, :]).astype(int)
    bucket = reach.max(axis=1)
    for r in np.unique(bucket):
        sel = np.flatnonzero(bucket == r)
        span = reach[sel].max(axis=0)
        offs = np.stack(np.meshgrid(*[np.arange(-s, s + 1) for s in span], indexing="ij"), axis=-1).reshape(-1, 3)
        off_mm = offs.astype(np.float32) * sp
        off_lin = offs @ strides
        chunk = max(1, 1_000_000 // len(offs))
        for start in range(0, len(sel), chunk):
            part = sel[start : start + chunk]
            c = centres_idx[part].astype(np.float32)
            base = np.floor(c + 0.5).astype(np.intp)
            base = np.clip(base, span, np.maximum(span, dims - 1 - span))  # keep stencils in the array...
            frac_mm = (c - base) * sp
            rr = radii_mm[part].astype(np.float32)[:, None]
            d2 = np.zeros((len(part), len(offs)), dtype=np.float32)
            for a in range(3):
                d2 += (off_mm[None, :, a] - frac_mm[:, a : a + 1]) ** 2
            occ = np.clip((rr - np.sqrt(d2)) / voxel_mm + 0.5, 0.0, 1.0)
            occ *= np.minimum(1.0, 2.0 * rr / voxel_mm) ** 1.5
            lin = (base @ strides)[:, None] + off_lin[None, :]
            keep = occ > 0.01  # ... and drop what a clipped stencil cannot reach
            if (dims <= 2 * span).any():  # grid thinner than a stencil
                keep &= (lin >= 0) & (lin < flat.size)
            lin, occ = lin[keep], occ[keep]
            if labels is not None:
                ok = labels[lin] == only_where[1]
                lin, occ = lin[ok], occ[ok]
            np.maximum.at(flat, lin, occ)
    return out
