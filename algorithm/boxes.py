"""Boxes of masks: the one bounding box of a mask (the pipeline steps, the reports and training use
it) and the box of a labelled piece grown by a voxel."""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels (grown by ``margin`` voxels, clipped), or None if empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + margin + 1, mask.shape[axis])))
    return tuple(box)


def grown_by_one(box: tuple[slice, ...]) -> tuple[slice, ...]:
    """A find_objects box grown by one voxel on every side (room for the piece's ring); numpy
    clips the upper ends."""
    return tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
