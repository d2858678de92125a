"""Memory planning for the container: pick the stage-II tiling that fits the platform's memory
limit, and refuse a case that cannot fit with a clear message instead of being OOM-killed (an OOM
kill leaves the user no explanation).

The container tiles like the command line (tiles planned per scan within a voxel budget, one per
pass on the CPU) so that both give the same mask; only where memory is short does it plan smaller
tiles (CPU) or, on a GPU, batch fewer of them.

The estimates were measured on CPU (float32, torch 2.13) with the shipped architecture: the
runtime with the model ~300 MB, stage I ~135 B per network-grid voxel, one stage-II tile of
116^3 input voxels ~750 MB (activations grow with the tile's input voxels); the input-grid steps (reorientation, normalisation, resampling the
labels back) ~14 B per input voxel; the grid arrays and the clean-up ~32 B per grid voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
import torch

from algorithm.constants import MAX_TILE_IN_VOXELS, STAGE2_TRAIN_PATCH_IN
from algorithm.errors import InputError, ResourceError  # noqa: F401 (ResourceError: raised here, re-exported)
from algorithm.preprocessing import network_grid

MB = 2**20
RUNTIME_MB = 400.0
STAGE1_BYTES_PER_GRID_VOXEL = 135.0
TILE_MB_AT_116 = 750.0
INPUT_BYTES_PER_VOXEL = 14.0
GRID_BYTES_PER_VOXEL = 32.0
SAFETY = 1.15  # allocator fragmentation and what the measurements missed
GPU_ACTIVATION_SHARE = 0.6  # half precision on CUDA, softmax kept in float32
# Planned-tile budgets (input voxels) tried on the CPU, largest first: the first is the command
# line's default, so a container with enough memory gives the command line's mask.
CPU_TILE_BUDGETS = (MAX_TILE_IN_VOXELS, STAGE2_TRAIN_PATCH_IN**3)
GPU_TILE_BUDGET = MAX_TILE_IN_VOXELS
GPU_MAX_BATCH = 4
GPU_MEMORY_TARGET_MB = 4096.0  # stage I plus a batch of tiles stay under this on any card


@dataclass(frozen=True)
class ImageHeader:
    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    direction: tuple[float, ...]


@dataclass(frozen=True)
class MemoryPlan:
    batch_size: int
    max_tile_in_voxels: int
    host_estimate_mb: float
    limit_mb: float | None


def read_header(path: Path) -> ImageHeader:
    """Size and spacing from the file header, before any voxel is loaded."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"cannot read {path.name}: {lines[-1] if lines else 'unreadable header'}") from exc
    if reader.GetDimension() != 3:
        raise InputError(f"expected a 3D CT volume, got a {reader.GetDimension()}D image of size {reader.GetSize()}")
    return ImageHeader(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetDirection()))


def grid_voxels(header: ImageHeader, inplane_size: int) -> int:
    """Voxels of the network grid the pipeline will resample this image to."""
    letters = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(header.direction)
    slice_axis = next((i for i, letter in enumerate(letters) if letter in "SI"), 2)
    inplane = [i for i in range(3) if i != slice_axis]
    shape = (header.size_xyz[slice_axis], *(header.size_xyz[i] for i in inplane))
    spacing = (header.spacing_xyz[slice_axis], *(header.spacing_xyz[i] for i in inplane))
    (nz, ny, nx), _ = network_grid(shape, spacing, inplane_size)
    return nz * ny * nx


def tile_mb(tile_in_voxels: int) -> float:
    """float32 activation memory of one stage-II tile with this many input voxels."""
    return TILE_MB_AT_116 * tile_in_voxels / float(STAGE2_TRAIN_PATCH_IN) ** 3


def host_estimate_mb(header: ImageHeader, inplane_size: int, tile_in_voxels: int, batch: int, on_gpu: bool) -> float:
    """Peak host memory of one case (the network's activations count only on CPU)."""
    n_input = float(header.size_xyz[0] * header.size_xyz[1] * header.size_xyz[2])
    n_grid = float(grid_voxels(header, inplane_size))
    network = 0.0 if on_gpu else max(n_grid * STAGE1_BYTES_PER_GRID_VOXEL / MB, batch * tile_mb(tile_in_voxels))
    arrays = (n_input * INPUT_BYTES_PER_VOXEL + n_grid * GRID_BYTES_PER_VOXEL) / MB
    return SAFETY * (RUNTIME_MB + arrays + network)


def plan_memory(header: ImageHeader, inplane_size: int, device: torch.device, limit_mb: float | None) -> MemoryPlan:
    """The largest tiling that fits; ResourceError when even the smallest does not."""
    on_gpu = device.type == "cuda"
    if on_gpu:
        options = [(gpu_batch_size(device, GPU_TILE_BUDGET, header, inplane_size), GPU_TILE_BUDGET)]
    else:
        options = [(1, budget) for budget in CPU_TILE_BUDGETS]
    for batch, budget in options:
        estimate = host_estimate_mb(header, inplane_size, budget, batch, on_gpu)
        if limit_mb is None or estimate <= limit_mb:
            return MemoryPlan(batch, budget, round(estimate, 1), limit_mb)
    minimum = host_estimate_mb(header, inplane_size, options[-1][1], 1, on_gpu)
    raise ResourceError(
        f"this CT ({'x'.join(map(str, header.size_xyz))} voxels) needs about {minimum:.0f} MB of memory "
        f"on {device.type}, but the container's limit is {limit_mb:.0f} MB: raise the algorithm's memory "
        "limit (GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB) or run it on a GPU instance"
    )


def gpu_batch_size(device: torch.device, tile_in_voxels: int, header: ImageHeader, inplane_size: int) -> int:
    """Tiles per forward pass: what fits both the free GPU memory and the 4 GB target after stage I."""
    free_bytes, _ = torch.cuda.mem_get_info(device)
    stage1 = GPU_ACTIVATION_SHARE * grid_voxels(header, inplane_size) * STAGE1_BYTES_PER_GRID_VOXEL
    per_tile = GPU_ACTIVATION_SHARE * tile_mb(tile_in_voxels) * MB
    usable = min(0.8 * free_bytes, GPU_MEMORY_TARGET_MB * MB) - stage1
    return int(max(1, min(GPU_MAX_BATCH, usable // per_tile)))


def cgroup_memory_limit_mb(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """``docker run --memory`` as cgroup v2 memory.max, for runs without the platform's variable."""
    try:
        value = (cgroup_root / "memory.max").read_text().strip()
    except OSError:
        return None
    if not value.isdigit():
        return None  # "max": no limit
    return int(value) / MB
