"""The shipped pipeline around a model being trained: training validation and ``training predict``.

Both go through ``LobeSegmenter.from_model``, so that a validation score and a ``training predict``
mask come from the very steps ``algorithm predict`` runs. The one-stage 3D U-Net baseline has no
stage I to find the lungs: its network step (``UNetSegmenter.predict_grid``) tiles its output size
over the whole scan; everything around it is the shipped pipeline.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from algorithm.boxes import bounding_box
from algorithm.constants import STAGE1_DOWNSAMPLE
from algorithm.inference import NetworkPrediction
from algorithm.network import CTSUNet, UNet3D
from algorithm.network.cunet import valid_input_size
from algorithm.segmenter import LobeSegmenter
from training.config import TrainConfig
from training.loop.export import inference_settings
from training.loop.ohem import window_grid
from training.loop.steps import crop_padded


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


class UNetSegmenter(LobeSegmenter):
    """The one-stage 3D U-Net through the same steps; its network step tiles its trained output
    size over the whole scan (it has no stage I to find the lungs)."""

    def predict_grid(self, scan_zyx: np.ndarray, spacing_mm_zyx, on_tile=None) -> NetworkPrediction:
        started = time.perf_counter()
        volume = torch.from_numpy(np.asarray(scan_zyx, dtype=np.float32))[None, None].to(self.device)
        labels = predict_unet(self.model, volume, self.options.tile_out).cpu().numpy()
        return NetworkPrediction(
            labels=labels, confidence=np.ones(labels.shape, np.float16), stage1_labels=labels[::2, ::2, ::2],
            lung_box=bounding_box(labels > 0), timings_s={"stage2": round(time.perf_counter() - started, 3)},
        )


def segmenter_for(
    model: torch.nn.Module, config: TrainConfig, device: str | torch.device = "cpu", tile_out: int | None = None
) -> LobeSegmenter:
    """The shipped pipeline around a model in memory.

    Cascades (any non-local mode) tile stage II as ``algorithm predict`` does (``tile_out`` None:
    the planned tiles); the 3D U-Net tiles ``tile_out`` (default: its trained ``config.tile_out``).
    """
    settings = inference_settings(config)
    if isinstance(model, CTSUNet):
        return LobeSegmenter.from_model(model, settings, device, tile_out=tile_out)
    unet_tile = config.tile_out if tile_out is None else tile_out
    return UNetSegmenter.from_model(model, settings, device, precision="float32", tile_out=unet_tile)


def validation_labels(
    segmenter: LobeSegmenter, scan_zyx: np.ndarray, spacing_mm_zyx: tuple[float, float, float], stage1_only: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels that validation scores on the network grid, from the shipped network step.

    Returns (scored labels, stage-I labels at full resolution or None for the 3D U-Net). While
    stage II is not trained yet (``stage1_only``) the scored labels are stage I's, since the
    cascade's own labels would only measure an untrained stage II.
    """
    prediction = segmenter.predict_grid(np.asarray(scan_zyx, dtype=np.float32), spacing_mm_zyx)
    if isinstance(segmenter, UNetSegmenter):
        return prediction.labels, None
    stage1 = upsample_stage1_labels(prediction.stage1_labels, scan_zyx.shape)
    return (stage1 if stage1_only else prediction.labels), stage1
