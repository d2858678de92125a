"""The two-stage cascade (paper III.A), one module differentiable end to end.

Stage I reads the whole preprocessed scan at half resolution (padded convs). Its lobe
probabilities and border map are upsampled (trilinear) to full resolution, concatenated with the
CT and cropped into patches for stage II (valid convs). A loss on stage II reaches stage I
through the upsampled probabilities.

Coordinates: all patch starts are full-resolution voxel indices (z, y, x) of the preprocessed
scan; a start may be negative or a patch may run past the end, where inputs are zero-padded
(0 is -1200 HU after normalisation, i.e. air, and "no stage-I evidence").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from algorithm.constants import STAGE1_DOWNSAMPLE
from algorithm.labels import NUM_CLASSES
from algorithm.network.criss_cross import NonLocalMode
from algorithm.network.cunet import STAGE1_WIDTHS, STAGE2_WIDTHS, CUNet, valid_bridge_size

STAGE2_IN_CHANNELS = 1 + NUM_CLASSES + 1  # CT, lobe probabilities, border map
_STAGE1_MULTIPLE = 8 * STAGE1_DOWNSAMPLE  # three 2x pools at half resolution


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture switches (Table IV ablations)."""

    nonlocal_mode: NonLocalMode = "geometric"

    def to_dict(self) -> dict:
        return {"nonlocal_mode": self.nonlocal_mode}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        return cls(nonlocal_mode=d.get("nonlocal_mode", "geometric"))


@dataclass
class Stage1Output:
    """Stage-I logits at half resolution and the full-resolution shape they describe."""

    lobe_logits: torch.Tensor  # (N, 6, ceil(Z/2), ceil(Y/2), ceil(X/2))
    border_logits: torch.Tensor  # (N, 1, ...)
    full_shape_zyx: tuple[int, int, int]

    def features(self) -> torch.Tensor:
        """Lobe softmax and border sigmoid stacked: the 7 channels stage II reads."""
        probs = torch.softmax(self.lobe_logits.float(), dim=1)
        border = torch.sigmoid(self.border_logits.float())
        return torch.cat([probs, border], dim=1)


class CTSUNet(nn.Module):
    """Contextual two-stage U-Net."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        mode = self.config.nonlocal_mode
        self.stage1 = CUNet(1, STAGE1_WIDTHS, padded=True, nonlocal_mode=mode)
        self.stage2 = CUNet(STAGE2_IN_CHANNELS, STAGE2_WIDTHS, padded=False, nonlocal_mode=mode)

    def forward_stage1(self, scan: torch.Tensor) -> Stage1Output:
        """scan: (N, 1, Z, Y, X) preprocessed (values in [0, 1]) at full resolution."""
        full_shape = tuple(int(s) for s in scan.shape[2:])
        half = F.avg_pool3d(_pad_to_multiple(scan, _STAGE1_MULTIPLE), STAGE1_DOWNSAMPLE)
        offsets = torch.zeros(scan.shape[0], 3)
        lobe, border = self.stage1(half, offsets, full_shape, float(STAGE1_DOWNSAMPLE))
        half_shape = [-(-s // STAGE1_DOWNSAMPLE) for s in full_shape]
        crop = (slice(None), slice(None), *(slice(0, s) for s in half_shape))
        return Stage1Output(lobe[crop], border[crop], full_shape)

    def stage2_inputs(
        self,
        scan: torch.Tensor,
        stage1: Stage1Output,
        starts_zyx: torch.Tensor,
        size_in: int | tuple[int, int, int],
        batch_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The 8-channel stage-II input patches, (P, 8, *size_in).

        starts_zyx: (P, 3) integer full-resolution starts; size_in: edge or (z, y, x) sizes;
        batch_index: (P,) which scan of the batch each patch comes from (default 0).
        """
        size_in = _as_size3(size_in)
        features = stage1.features()
        patches = []
        for p in range(starts_zyx.shape[0]):
            b = 0 if batch_index is None else int(batch_index[p])
            start = [int(v) for v in starts_zyx[p]]
            ct = _crop_padded(scan[b : b + 1], start, size_in)
            up = upsample_region(features[b : b + 1], start, size_in, stage1.full_shape_zyx)
            patches.append(torch.cat([ct.to(up.dtype), up], dim=1))
        return torch.cat(patches, dim=0)

    def forward_stage2(
        self, inputs: torch.Tensor, starts_zyx: torch.Tensor, full_shape_zyx: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-II logits for input patches whose voxel 0 sits at ``starts_zyx``."""
        for size in inputs.shape[2:]:
            valid_bridge_size(int(size))  # fail early on a size that cannot tile
        return self.stage2(inputs, starts_zyx.float(), full_shape_zyx, 1.0)

    def forward(
        self, scan: torch.Tensor, starts_zyx: torch.Tensor, size_in: int | tuple[int, int, int]
    ) -> tuple[Stage1Output, tuple[torch.Tensor, torch.Tensor]]:
        """End to end: stage I on the scan, stage II on the patches at ``starts_zyx``."""
        stage1 = self.forward_stage1(scan)
        inputs = self.stage2_inputs(scan, stage1, starts_zyx, size_in)
        return stage1, self.forward_stage2(inputs.to(scan.dtype), starts_zyx, stage1.full_shape_zyx)


def _as_size3(size: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (size, size, size) if isinstance(size, int) else tuple(int(s) for s in size)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pads: list[int] = []
    for size in reversed(x.shape[2:]):
        pads += [0, (-size) % multiple]
    return F.pad(x, pads) if any(pads) else x


def _crop_padded(x: torch.Tensor, start: list[int], size: int | tuple[int, int, int]) -> torch.Tensor:
    """x[..., start:start+size] on each spatial axis, zero outside the volume."""
    slices, pads = [], []
    for s, dim, size in zip(start, x.shape[2:], _as_size3(size)):
        lo, hi = max(s, 0), min(s + size, dim)
        slices.append(slice(lo, max(hi, lo)))
        pads.append((lo - s, s + size - max(hi, lo)))
    crop = x[(slice(None), slice(None), *slices)]
    flat = [v for pair in reversed(pads) for v in pair]
    return F.pad(crop, flat) if any(flat) else crop


def upsample_region(
    half: torch.Tensor,
    start: list[int],
    size: int | tuple[int, int, int],
    full_shape_zyx: tuple[int, int, int],
) -> torch.Tensor:
    """The full-resolution trilinear x2 upsampling of ``half`` over one patch, computed from a
    crop so that whole-scan probabilities are never materialised. Zero outside the scan.

    Identical to cropping ``F.interpolate(half, scale_factor=2, mode='trilinear')``: a full-res
    voxel o reads half-res o/2 - 0.25, so a half-res crop [a, b) is exact for o in [2a+1, 2b-2].
    """
    src, offsets, pads = [], [], []
    for s, full, half_size, size in zip(start, full_shape_zyx, half.shape[2:], _as_size3(size)):
        lo, hi = max(s, 0), min(s + size, full)
        hi = max(hi, lo)
        a = max((lo - 1) // 2, 0)
        b = min(-(-(hi + 1) // 2), half_size)
        if hi <= lo:  # patch entirely outside on this axis
            a, b = 0, min(1, half_size)
        src.append(slice(a, b))
        offsets.append((lo - 2 * a, hi - 2 * a))
        pads.append((lo - s, s + size - hi))
    crop = half[(slice(None), slice(None), *src)]
    up = F.interpolate(crop, scale_factor=2.0, mode="trilinear", align_corners=False)
    up = up[(slice(None), slice(None), *(slice(o0, o1) for o0, o1 in offsets))]
    flat = [v for pair in reversed(pads) for v in pair]
    return F.pad(up, flat) if any(flat) else up
