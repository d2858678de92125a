"""Two-stage inference on the network grid: stage I on the whole scan, stage II tiled over the
stage-I lung bounding box (valid-conv tiles without overlap, as in the paper, batched)."""

from __future__ import annotations

import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from algorithm.network import CTSUNet
from algorithm.network.cunet import valid_input_size
from algorithm.postprocessing import bounding_box


@dataclass
class TilingSettings:
    tile_out: int = 28  # stage-II output tile edge (8k - 28); the paper trains and tiles 28
    batch_size: int = 2
    bbox_margin_vox: int = 8
    crop_to_lungs: bool = True  # False: tile the whole scan (the paper-faithful reference path)


@dataclass
class NetworkPrediction:
    labels: np.ndarray  # uint8 (Z, Y, X) argmax on the network grid
    confidence: np.ndarray  # float16 (Z, Y, X): winning softmax probability
    stage1_labels: np.ndarray  # uint8 at half resolution
    lung_box: tuple[slice, ...] | None  # full-res box tiled by stage II
    timings_s: dict[str, float]


def autocast_for(device: torch.device):
    """Half precision on CUDA (softmax stays float32 in the model); plain float32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def predict_network_grid(
    model: CTSUNet,
    scan_zyx: np.ndarray,
    device: torch.device,
    tiling: TilingSettings,
    on_tile=None,
) -> NetworkPrediction:
    """Run both stages on a preprocessed scan (float32 (Z, Y, X) in [0, 1])."""
    started = time.perf_counter()
    scan = torch.from_numpy(scan_zyx)[None, None].to(device)
    with autocast_for(device):
        stage1 = model.forward_stage1(scan)
    stage1_labels = stage1.lobe_logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
    timings = {"stage1": round(time.perf_counter() - started, 3)}
    labels = np.zeros(scan_zyx.shape, np.uint8)
    confidence = np.ones(scan_zyx.shape, np.float16)
    box = _lung_box(stage1_labels, scan_zyx.shape, tiling.bbox_margin_vox)
    if box is None:
        return NetworkPrediction(labels, confidence, stage1_labels, None, timings)
    if not tiling.crop_to_lungs:
        box = tuple(slice(0, dim) for dim in scan_zyx.shape)
    started = time.perf_counter()
    starts = tile_starts(box, tiling.tile_out)
    size_in = valid_input_size(tiling.tile_out)
    context = (size_in - tiling.tile_out) // 2
    for batch in _batches(starts, tiling.batch_size):
        out_starts = torch.tensor(batch)
        in_starts = out_starts - context
        with autocast_for(device):
            inputs = model.stage2_inputs(scan, stage1, in_starts, size_in)
            lobe_logits, _ = model.forward_stage2(inputs.to(scan.dtype), in_starts, stage1.full_shape_zyx)
        probs = torch.softmax(lobe_logits.float(), dim=1)
        best, winner = probs.max(dim=1)
        _write_tiles(labels, confidence, batch, winner.to(torch.uint8).cpu().numpy(), best.half().cpu().numpy())
        if on_tile is not None:
            on_tile(len(batch))
    timings["stage2"] = round(time.perf_counter() - started, 3)
    return NetworkPrediction(labels, confidence, stage1_labels, box, timings)


def tile_starts(box: tuple[slice, ...], tile_out: int) -> list[tuple[int, int, int]]:
    """Output-tile starts covering ``box`` without overlap (the last tile may run past it)."""
    ranges = [range(s.start, s.stop, tile_out) for s in box]
    return list(itertools.product(*ranges))


def count_tiles(box: tuple[slice, ...] | None, tile_out: int) -> int:
    if box is None:
        return 0
    return int(np.prod([len(range(s.start, s.stop, tile_out)) for s in box]))


def _lung_box(stage1_labels: np.ndarray, full_shape: tuple[int, ...], margin_vox: int) -> tuple[slice, ...] | None:
    half_box = bounding_box(stage1_labels > 0)
    if half_box is None:
        return None
    return tuple(
        slice(max(2 * s.start - margin_vox, 0), min(2 * s.stop + margin_vox, dim))
        for s, dim in zip(half_box, full_shape)
    )


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _write_tiles(labels, confidence, starts, tile_labels, tile_confidence) -> None:
    for (z, y, x), lab, conf in zip(starts, tile_labels, tile_confidence):
        dz, dy, dx = (min(t, dim - s) for t, s, dim in zip(lab.shape, (z, y, x), labels.shape))
        labels[z : z + dz, y : y + dy, x : x + dx] = lab[:dz, :dy, :dx]
        confidence[z : z + dz, y : y + dy, x : x + dx] = conf[:dz, :dy, :dx]
