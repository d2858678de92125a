"""Relabelling by the accepted surfaces, on any grid of the fit's frame: only the columns where the
fit moved change."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from algorithm.boxes import bounding_box
from algorithm.fissure_fit.model import FISSURES, HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE, FissureFit, Surface
from algorithm.labels import Lobe


def apply_fit(labels: np.ndarray, spacing_mm_zyx: tuple[float, float, float], fit: FissureFit) -> np.ndarray:
    """Relabel ``labels`` (any grid whose voxel i lies at ``i * spacing`` mm in the fit's frame) by
    the accepted surfaces. Only columns where the fit moved change (``_slabs``), so wherever it
    did not move the network's labels stand exactly (including shapes a height field cannot
    follow); fissures left to the network keep the network's labels. The work is proportional to
    the moved columns' slabs, not to the scan.
    Returns a copy (the input itself when nothing was accepted); the lung extent never changes."""
    if not any(fit.accepted(name) for name in FISSURES):
        return labels
    out = np.ascontiguousarray(labels).copy()
    flat = out.reshape(-1)
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    if fit.accepted(LEFT_OBLIQUE):
        box = bounding_box((out == Lobe.LUL) | (out == Lobe.LLL))
        if box is not None:
            down, up = _slabs(out.shape, box, spacing, fit, LEFT_OBLIQUE, out[box], (Lobe.LLL,), (Lobe.LUL,))
            _set(flat, down, (Lobe.LUL,), Lobe.LLL)
            _set(flat, up, (Lobe.LLL,), Lobe.LUL)
    if fit.accepted(RIGHT_OBLIQUE) or fit.accepted(HORIZONTAL):
        box = bounding_box(out >= Lobe.RUL)  # RUL, RLL, RML are 3, 4, 5
        if box is not None:
            _relabel_right(flat, out.shape, box, spacing, fit)
    return out


def _column_heights(box: tuple[slice, ...], spacing, surface: Surface) -> np.ndarray:
    """The surface's height (mm) at every column of ``box`` (shape (ny, nx))."""
    y_mm, x_mm = (np.arange(sl.start, sl.stop) * s for sl, s in zip(box[1:], spacing[1:]))
    return surface.height_mm(y_mm, x_mm)


def _voxels_between(shape, box, spacing, lo_mm: np.ndarray, hi_mm: np.ndarray) -> np.ndarray:
    """Flat indices of the box's voxels with lo <= z < hi in their column (voxel i at i * dz mm)."""
    dz = spacing[0]
    first = np.clip(np.ceil(lo_mm / dz), box[0].start, box[0].stop).astype(np.int64)
    stop = np.clip(np.ceil(hi_mm / dz), box[0].start, box[0].stop).astype(np.int64)
    count = np.maximum(stop - first, 0).ravel()
    cols = np.flatnonzero(count)
    if len(cols) == 0:
        return np.zeros(0, np.int64)
    n = count[cols]
    offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    z = np.repeat(first.ravel()[cols], n) + offsets
    nx_box = box[2].stop - box[2].start
    y = np.repeat(cols // nx_box + box[1].start, n)
    x = np.repeat(cols % nx_box + box[2].start, n)
    return (z * shape[1] + y) * shape[2] + x


def _slabs(shape, box, spacing, fit: FissureFit, name: str, labels_box: np.ndarray,
           lower: tuple[Lobe, ...], upper: tuple[Lobe, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(voxels to put below the fissure, voxels to put above it) where the fit moved.

    In the columns where the fitted surface F lies at least ``moved_mm`` from the network's
    smoothed surface S, every voxel within ``relabel_margin_mm`` of the span between them takes
    its side of F: the network's own border there (which S only approximates) is replaced whole,
    leaving no sliver of the old lobe beside the new border. Elsewhere nothing changes, and
    neither does a column farther than ``growth_mm`` (in plane) from every column where the
    network has both of the fissure's sides: where the network saw no fissure (the front of the
    lower lobes, behind the RML) its lobe stands, so a vessel-poor patch there cannot grow a lobe.
    """
    settings = fit.settings
    start = _column_heights(box, spacing, fit.network_surfaces[name])
    new = _column_heights(box, spacing, fit.surfaces[name])
    moved = (np.abs(new - start) >= settings.moved_mm) & _fissure_columns(labels_box, lower, upper, spacing, settings.growth_mm)
    lo = np.where(moved, np.minimum(start, new) - settings.relabel_margin_mm, new)
    hi = np.where(moved, np.maximum(start, new) + settings.relabel_margin_mm, new)
    return _voxels_between(shape, box, spacing, lo, new), _voxels_between(shape, box, spacing, new, hi)


def _fissure_columns(labels_box: np.ndarray, lower, upper, spacing, reach_mm: float) -> np.ndarray:
    """Columns within ``reach_mm`` (in plane) of a column holding both sides of a fissure."""
    both = np.isin(labels_box, [int(v) for v in lower]).any(axis=0) & np.isin(labels_box, [int(v) for v in upper]).any(axis=0)
    reach = [max(1, int(round(reach_mm / s))) for s in spacing[1:]]
    return ndimage.maximum_filter(both, size=(2 * reach[0] + 1, 2 * reach[1] + 1))


def _set(flat: np.ndarray, voxels: np.ndarray, from_lobes: tuple[Lobe, ...], to: Lobe) -> None:
    hit = voxels[np.isin(flat[voxels], [int(v) for v in from_lobes])]
    flat[hit] = to


def _relabel_right(flat: np.ndarray, shape, box, spacing, fit: FissureFit) -> None:
    network_box = flat.reshape(shape)[box].copy()  # the network's right lobes, before any change
    if fit.accepted(RIGHT_OBLIQUE):
        down, up = _slabs(shape, box, spacing, fit, RIGHT_OBLIQUE, network_box, (Lobe.RLL,), (Lobe.RUL, Lobe.RML))
        _set(flat, down, (Lobe.RUL, Lobe.RML), Lobe.RLL)
        lifted = up[flat[up] == Lobe.RLL]
        # voxels the oblique fissure lifts out of the RLL take their side of the horizontal fissure,
        # RML only beside columns where the network has both RML and RUL (no stray RML behind it)
        surface = fit.surfaces[HORIZONTAL] if fit.accepted(HORIZONTAL) else fit.network_surfaces.get(HORIZONTAL)
        if surface is None:
            flat[lifted] = Lobe.RUL
        else:
            heights = _column_heights(box, spacing, surface).ravel()
            near_rml = _fissure_columns(network_box, (Lobe.RML,), (Lobe.RUL,), spacing, fit.settings.growth_mm).ravel()
            z, rest = np.divmod(lifted, shape[1] * shape[2])
            y, x = np.divmod(rest, shape[2])
            column = (y - box[1].start) * (box[2].stop - box[2].start) + (x - box[2].start)
            rml = (z * spacing[0] < heights[column]) & near_rml[column]
            flat[lifted] = np.where(rml, Lobe.RML, Lobe.RUL)
    if fit.accepted(HORIZONTAL):
        down, up = _slabs(shape, box, spacing, fit, HORIZONTAL, network_box, (Lobe.RML,), (Lobe.RUL,))
        _set(flat, down, (Lobe.RUL,), Lobe.RML)
        _set(flat, up, (Lobe.RML,), Lobe.RUL)
