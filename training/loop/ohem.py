"""Online hard example mining for stage II (paper III.D).

The error of stage I is the per-voxel mean squared error between its lobe softmax probabilities
and the (soft) one-hot reference at stage-I resolution. It is integrated over every sliding-window
stage-II *output* window with an integral image (summed-area table), so the cost is one cumsum
per axis whatever the number of windows and no extra forward pass is needed. The K windows with
the largest integral form the hard set; K decays linearly from all windows to the number that
covers about ``final_coverage`` of the scan; the step's stage-II patches are drawn uniformly
without replacement from the hard set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def stage1_error_map(lobe_probs_half: torch.Tensor, reference_half: torch.Tensor) -> torch.Tensor:
    """Per-voxel MSE over the lobe channels, (N, 6, z, y, x) -> (N, z, y, x), no gradient."""
    with torch.no_grad():
        return (lobe_probs_half.float() - reference_half.float()).square().mean(dim=1)


def upsample_nearest(error_half: torch.Tensor, full_shape_zyx: tuple[int, int, int], factor: int) -> torch.Tensor:
    """Half-resolution error (z, y, x) -> full-resolution (Z, Y, X) by voxel repetition."""
    up = error_half
    for axis in range(3):
        up = up.repeat_interleave(factor, dim=axis)
    return up[: full_shape_zyx[0], : full_shape_zyx[1], : full_shape_zyx[2]]


def axis_window_starts(dim: int, size: int, stride: int, phase: int = 0) -> torch.Tensor:
    """Starts of windows of ``size`` every ``stride`` along one axis, shifted by ``-phase``, that
    overlap [0, dim). phase=0 gives 0, stride, ... with the last window ending at or past dim
    (the tiling used at inference)."""
    first = -(phase % stride)
    starts = torch.arange(first, dim, stride)
    return starts[starts + size > 0]


def window_grid(
    shape_zyx: tuple[int, int, int], size: int, stride: int, phase_zyx: tuple[int, int, int] = (0, 0, 0)
) -> torch.Tensor:
    """(W, 3) starts of all sliding windows (every combination of the per-axis starts)."""
    axes = [axis_window_starts(d, size, stride, p) for d, p in zip(shape_zyx, phase_zyx)]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


def integral_image(volume: torch.Tensor) -> torch.Tensor:
    """Summed-area table with a zero first plane on each axis: S[z, y, x] = sum volume[:z, :y, :x]."""
    table = volume.double()
    for axis in range(3):
        table = table.cumsum(dim=axis)
    return F.pad(table, (1, 0, 1, 0, 1, 0))


def window_sums(volume: torch.Tensor, starts_zyx: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of ``volume`` (Z, Y, X) over each cube [start, start + size), zero outside: (W,)."""
    table = integral_image(volume)
    shape = torch.tensor(volume.shape, device=starts_zyx.device)
    lo = starts_zyx.clamp(min=0)
    lo = torch.minimum(lo, shape)
    hi = torch.minimum((starts_zyx + size).clamp(min=0), shape)
    total = torch.zeros(starts_zyx.shape[0], dtype=table.dtype, device=table.device)
    # inclusion-exclusion over the 8 corners of each box
    for cz in (0, 1):
        for cy in (0, 1):
            for cx in (0, 1):
                z = hi[:, 0] if cz else lo[:, 0]
                y = hi[:, 1] if cy else lo[:, 1]
                x = hi[:, 2] if cx else lo[:, 2]
                sign = -1.0 if (3 - cz - cy - cx) % 2 else 1.0
                total += sign * table[z, y, x]
    return total


def hard_set_size(num_windows: int, window_voxels: int, scan_voxels: int, progress: float, final_coverage: float) -> int:
    """K at training progress in [0, 1]: all windows at 0, linearly down to the number of windows
    whose volume is ``final_coverage`` of the scan at 1."""
    k_end = min(num_windows, max(1, math.ceil(final_coverage * scan_voxels / window_voxels)))
    progress = min(max(progress, 0.0), 1.0)
    return max(1, int(round(num_windows + (k_end - num_windows) * progress)))


def select_hard_windows(
    error_full: torch.Tensor,
    starts_zyx: torch.Tensor,
    size: int,
    k: int,
    count: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``count`` windows uniformly from the ``k`` with the largest integrated error.

    Returns (chosen starts (count, 3), integrated errors of all windows (W,)). Ties are broken by
    window order (a stable sort) so the choice is reproducible.
    """
    sums = window_sums(error_full, starts_zyx, size)
    order = torch.sort(sums.cpu(), descending=True, stable=True).indices
    hard = order[: max(1, min(k, len(order)))]
    if len(hard) >= count:
        pick = hard[torch.randperm(len(hard), generator=generator)[:count]]
    else:  # fewer hard windows than the mini-batch: draw with replacement
        pick = hard[torch.randint(len(hard), (count,), generator=generator)]
    return starts_zyx[pick.to(starts_zyx.device)], sums
