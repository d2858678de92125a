"""Two-stage inference on the network grid: stage I on the whole scan, stage II tiled over the
stage-I lung bounding box (valid-conv tiles without overlap, as in the paper, batched).

Out of memory, the one policy (every front end, the container included, relies on it): stage II
halves its tile batch and, at one tile, a GPU run continues on the CPU (``_shrink_or_fall_back``);
stage I, which has no smaller unit to retry with, and stage II on the CPU with one tile raise
``ResourceError`` with what to do.

Tiles: the paper tiles 28^3 outputs (116^3 inputs). Valid convolutions spend most of a small
tile's work on its 44-voxel context margin, so by default the tile plan picks, per axis, the
fewest tiles of valid size (8k - 28) that cover the box within a memory budget: the same
outputs per voxel up to the non-local module's wider context (measured in docs/performance.md).
"""

from __future__ import annotations

import itertools
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from algorithm.constants import MAX_TILE_IN_VOXELS, PRECISIONS
from algorithm.cpu_bf16 import bf16_support
from algorithm.errors import ResourceError
from algorithm.labels import NUM_CLASSES

from algorithm.network import CTSUNet
from algorithm.network.cunet import valid_input_size
from algorithm.boxes import bounding_box


VALID_CONTEXT = 44  # stage-II input margin on each side of the output tile (valid convs)


@dataclass(frozen=True)
class TilingSettings:
    tile_out: int | None = None  # fixed cubic output tile (8k - 28; the paper: 28); None: planned
    max_tile_in_voxels: int = MAX_TILE_IN_VOXELS  # memory budget of one planned tile's input
    batch_size: int = 1
    bbox_margin_vox: int = 8
    crop_to_lungs: bool = True  # False: tile the whole scan (the paper-faithful reference path)
    precision: str = "auto"  # see compute_dtype: "auto", "float32", "bfloat16", "float16"


@dataclass(frozen=True)
class TilePlan:
    size_out_zyx: tuple[int, int, int]
    starts_zyx: list[tuple[int, int, int]]

    @property
    def size_in_zyx(self) -> tuple[int, int, int]:
        return tuple(s + 2 * VALID_CONTEXT for s in self.size_out_zyx)


@dataclass(frozen=True)
class NetworkPrediction:
    labels: np.ndarray  # uint8 (Z, Y, X) argmax on the network grid
    confidence: np.ndarray  # float16 (Z, Y, X): winning softmax probability
    stage1_labels: np.ndarray  # uint8 at half resolution
    lung_box: tuple[slice, ...] | None  # full-res box tiled by stage II
    timings_s: dict[str, float]
    plan: "TilePlan | None" = None
    warnings: list[str] = field(default_factory=list)  # e.g. out of GPU memory, fell back to CPU
    probabilities: np.ndarray | None = None  # float16 (6, Z, Y, X) softmax (lung_extent interpolates it)


def bbox_margin_voxels(margin_mm: float, spacing_mm_zyx: tuple[float, float, float]) -> int:
    """The stage-I lung box margin in network-grid voxels (rounded up, along the finest axis)."""
    return int(math.ceil(margin_mm / min(spacing_mm_zyx)))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 / AMX, honouring the
    ONEDNN_MAX_CPU_ISA and ATEN_CPU_CAPABILITY caps); elsewhere bfloat16 is emulated and slower
    than float32 (algorithm.cpu_bf16 says why)."""
    return bf16_support().native


def compute_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The autocast dtype of the network's convolutions for ``precision`` on ``device``.

    "auto": float16 on CUDA; bfloat16 on CPUs with native bfloat16 (1.7x faster stage II, same
    accuracy on the phantom test set: docs/tiling.md), else float32: emulated bfloat16 is 3x
    (AVX512 without BF16) to over 10x (AVX2) slower than float32 (docs/performance.md). The
    attention softmax and the final softmax stay float32 whatever the choice.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if precision == "float16" and device.type == "cpu":
        raise ValueError("precision float16 needs CUDA, which needs a CUDA GPU: use bfloat16 or float32 on the CPU")
    return getattr(torch, precision)


def autocast_for(device: torch.device, precision: str = "auto"):
    dtype = compute_dtype(device, precision)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    warnings = _precision_warnings(device, compute_dtype(device, tiling.precision))  # a bad choice fails here
    try:
        with autocast_for(device, tiling.precision):
            stage1 = model.forward_stage1(scan)
    except torch.OutOfMemoryError as exc:  # the whole scan at once: no smaller batch to retry with
        _release_cuda_cache()
        raise ResourceError(f"out of memory on {device} in stage I (the whole scan at half resolution): "
                            "run on the CPU (--device cpu) or free memory") from exc
    stage1_labels = stage1.lobe_logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
    timings = {"stage1": round(time.perf_counter() - started, 3)}
    labels = np.zeros(scan_zyx.shape, np.uint8)
    confidence = np.ones(scan_zyx.shape, np.float16)
    probabilities = np.zeros((NUM_CLASSES,) + scan_zyx.shape, np.float16)
    probabilities[0] = 1.0  # outside the lung box: background
    box = _lung_box(stage1_labels, scan_zyx.shape, tiling.bbox_margin_vox)
    if box is None:
        return NetworkPrediction(labels, confidence, stage1_labels, None, timings, warnings=warnings, probabilities=probabilities)
    if not tiling.crop_to_lungs:
        box = tuple(slice(0, dim) for dim in scan_zyx.shape)
    started = time.perf_counter()
    plan = plan_tiles(box, tiling)
    state = _Stage2State(model, scan, stage1, device, tiling.batch_size, tiling.precision)
    try:
        done = 0
        while done < len(plan.starts_zyx):
            batch = plan.starts_zyx[done : done + state.batch_size]
            try:
                winner, best, probs = _predict_tiles(state, batch, plan)
            except torch.OutOfMemoryError:
                warnings.append(_shrink_or_fall_back(state, len(batch)))
                continue
            _write_tiles((labels, confidence, probabilities), batch, (winner, best, probs))
            done += len(batch)
            if on_tile is not None:
                on_tile(len(batch), len(plan.starts_zyx))  # tiles just done, tiles in all
    finally:
        state.restore()
    timings["stage2"] = round(time.perf_counter() - started, 3)
    return NetworkPrediction(labels, confidence, stage1_labels, box, timings, plan, warnings, probabilities)


def _precision_warnings(device: torch.device, dtype: torch.dtype) -> list[str]:
    """bfloat16 asked for on a CPU that only emulates it: slower than float32, say so."""
    if device.type != "cpu" or dtype != torch.bfloat16:
        return []
    support = bf16_support()
    if support.native:
        return []
    return [f"bfloat16 was asked for, but {support.reason}: float32 (--precision auto) is faster here"]


class _Stage2State:
    """Where stage II runs and with how many tiles a batch: both shrink on out-of-memory."""

    def __init__(self, model: CTSUNet, scan: torch.Tensor, stage1, device: torch.device, batch_size: int, precision: str = "auto"):
        self.model, self.scan, self.stage1 = model, scan, stage1
        self.device, self.home = device, device
        self.batch_size = max(1, batch_size)
        self.precision = precision

    def move_to_cpu(self) -> None:
        self.device = torch.device("cpu")
        self.model.to(self.device)
        self.scan = self.scan.cpu()
        self.stage1 = type(self.stage1)(
            self.stage1.lobe_logits.cpu(), self.stage1.border_logits.cpu(), self.stage1.full_shape_zyx
        )
        _release_cuda_cache()

    def restore(self) -> None:
        """The model goes back to its device for the next case (it is shared by a batch run)."""
        if self.device != self.home:
            try:
                self.model.to(self.home)
            except torch.OutOfMemoryError:
                self.model.to("cpu")  # stays usable; the next case falls back again


def _predict_tiles(state: _Stage2State, batch: list, plan: "TilePlan") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tile: argmax (uint8), its probability (float16) and the softmax (float16, 6 channels)."""
    in_starts = torch.tensor(batch) - VALID_CONTEXT
    precision = state.precision if state.device == state.home else "auto"  # fell back to CPU: its own default
    with autocast_for(state.device, precision):
        inputs = state.model.stage2_inputs(state.scan, state.stage1, in_starts, plan.size_in_zyx)
        lobe_logits, _ = state.model.forward_stage2(
            inputs.to(state.scan.dtype), in_starts, state.stage1.full_shape_zyx
        )
    probs = torch.softmax(lobe_logits.float(), dim=1)
    best, winner = probs.max(dim=1)
    return winner.to(torch.uint8).cpu().numpy(), best.half().cpu().numpy(), probs.half().cpu().numpy()


def _shrink_or_fall_back(state: _Stage2State, failed_batch: int) -> str:
    """Halve the tile batch after an out-of-memory error; at one tile, move to the CPU."""
    _release_cuda_cache()
    if failed_batch > 1:
        state.batch_size = max(1, failed_batch // 2)
        return f"out of memory on {state.device} with {failed_batch} tiles a batch: retried with {state.batch_size}"
    if state.device.type != "cpu":
        failed_on = state.device
        state.move_to_cpu()
        return f"out of memory on {failed_on} with one tile a batch: stage II continued on the CPU (slower)"
    raise ResourceError("out of memory on the CPU with one stage-II tile a batch: lower --max-tile-voxels")


def _release_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan_tiles(box: tuple[slice, ...], tiling: TilingSettings) -> TilePlan:
    """Output tiles covering ``box`` without overlap (the last ones may run past it)."""
    if tiling.tile_out is not None:
        valid_input_size(tiling.tile_out)  # raises on a size that cannot tile
        size = (tiling.tile_out,) * 3
    else:
        size = _planned_tile_size([s.stop - s.start for s in box], tiling.max_tile_in_voxels)
    ranges = [range(s.start, s.stop, t) for s, t in zip(box, size)]
    return TilePlan(size, list(itertools.product(*ranges)))


def _planned_tile_size(extents: list[int], max_in_voxels: int) -> tuple[int, int, int]:
    """Per-axis valid tile sizes minimising the input voxels processed, within the budget."""
    best, best_cost = None, None
    for counts in itertools.product(range(1, 13), repeat=3):
        size = tuple(_valid_out_at_least(math.ceil(e / n)) for e, n in zip(extents, counts))
        tile_in = math.prod(t + 2 * VALID_CONTEXT for t in size)
        if tile_in > max_in_voxels:
            continue
        cost = (math.prod(counts) * tile_in, math.prod(counts))
        if best_cost is None or cost < best_cost:
            best, best_cost = size, cost
    if best is None:
        raise ValueError(f"no stage-II tile fits the budget of {max_in_voxels} input voxels")
    return best


def _valid_out_at_least(size: int) -> int:
    """Smallest valid stage-II output size (8k - 28, k >= 5) that is at least ``size``."""
    k = max(5, math.ceil((size + 28) / 8))
    return 8 * k - 28


def _lung_box(stage1_labels: np.ndarray, full_shape: tuple[int, ...], margin_vox: int) -> tuple[slice, ...] | None:
    half_box = bounding_box(stage1_labels > 0)
    if half_box is None:
        return None
    return tuple(
        slice(max(2 * s.start - margin_vox, 0), min(2 * s.stop + margin_vox, dim))
        for s, dim in zip(half_box, full_shape)
    )


def _write_tiles(grids: tuple[np.ndarray, ...], starts, tiles: tuple[np.ndarray, ...]) -> None:
    """Copy each tile's outputs (labels, confidence, probabilities; channels first where any) into
    the network-grid arrays, cropped where a tile runs past the scan."""
    for index, (z, y, x) in enumerate(starts):
        for grid, tile in zip(grids, tiles):
            out = tile[index]
            dz, dy, dx = (min(t, dim - s) for t, s, dim in zip(out.shape[-3:], (z, y, x), grid.shape[-3:]))
            grid[..., z : z + dz, y : y + dy, x : x + dx] = out[..., :dz, :dy, :dx]
