"""Lobe border reference, precomputed from the lobe reference (paper III.E).

A voxel is a border voxel when it belongs to a lobe and one of its 6 face neighbours belongs to a
*different lobe*. Both sides of an interface are marked, so the border is two voxels thick and
symmetric (neither lobe "owns" the fissure). The lung-background surface is excluded by default:
the border head is an auxiliary fissure detector (the hard, low-contrast part of lobe
segmentation); the pleural surface is high-contrast, already learnt by the lobe head, and would
otherwise make up most border voxels (docs/training.md). ``include_background=True`` adds it.
"""

from __future__ import annotations

import numpy as np
import torch


def lobe_borders(labels: torch.Tensor | np.ndarray, include_background: bool = False) -> torch.Tensor:
    """uint8 border map of a (..., Z, Y, X) label volume (same shape).

    Voxels outside the volume are not neighbours (no border is invented at the array edge).
    """
    lab = torch.as_tensor(labels)
    border = torch.zeros(lab.shape, dtype=torch.bool, device=lab.device)
    ndim = lab.dim()
    for axis in range(ndim - 3, ndim):
        n = lab.shape[axis]
        if n < 2:
            continue
        a = lab.narrow(axis, 0, n - 1)
        b = lab.narrow(axis, 1, n - 1)
        differ = a != b
        if not include_background:
            differ &= (a > 0) & (b > 0)
        # mark both voxels of each differing pair; a background voxel is never a border voxel
        border.narrow(axis, 0, n - 1).logical_or_(differ & (a > 0))
        border.narrow(axis, 1, n - 1).logical_or_(differ & (b > 0))
    return border.to(torch.uint8)
