"""Prediction helpers for validation during training.

The cascade uses ``algorithm.inference.predict_network_grid`` (the shipped tiling); this module
only adds the one-stage baseline's tiling and the stage-I label upsampling.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithm.constants import STAGE1_DOWNSAMPLE
from algorithm.network import UNet3D
from algorithm.network.cunet import valid_input_size
from training.ohem import window_grid
from training.steps import crop_padded


def upsample_stage1_labels(stage1_labels: np.ndarray, full_shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Half-resolution stage-I labels -> full resolution by voxel repetition (nearest)."""
    up = stage1_labels
    for axis in range(3):
        up = np.repeat(up, STAGE1_DOWNSAMPLE, axis=axis)
    z, y, x = full_shape_zyx
    return up[:z, :y, :x]


@torch.no_grad()
def predict_unet(model: UNet3D, image: torch.Tensor, tile_out: int) -> torch.Tensor:
    """One-stage baseline: non-overlapping output tiles over the whole scan."""
    full = tuple(image.shape[2:])
    out = torch.zeros(full, dtype=torch.uint8, device=image.device)
    size_in = valid_input_size(tile_out)
    for start in window_grid(full, tile_out, tile_out).tolist():
        out_start = torch.tensor([start])
        x = crop_padded(image[0, 0], out_start - (size_in - tile_out) // 2, size_in)[:, None]
        lobe, _ = model(x)
        _paste(out, lobe.argmax(dim=1)[0].to(torch.uint8), start, list(full))
    return out


def _paste(out: torch.Tensor, tile: torch.Tensor, start: list[int], limit: list[int]) -> None:
    """out[start:start+tile] = tile, clipped to [0, limit) on each axis."""
    dst, src = [], []
    for s, n, lim in zip(start, tile.shape, limit):
        lo, hi = max(s, 0), min(s + n, lim)
        dst.append(slice(lo, hi))
        src.append(slice(lo - s, hi - s))
    out[tuple(dst)] = tile[tuple(src)]
