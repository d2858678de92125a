"""The contextualised U-Net (CU-Net) of Table II."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from algorithm.labels import NUM_CLASSES
from algorithm.network.blocks import DoubleConv, center_crop, kaiming_init
from algorithm.network.criss_cross import GeometricCrissCrossAttention, NonLocalMode
from algorithm.network.geometry import geometric_features


@dataclass(frozen=True)
class UNetWidths:
    """Channel widths of Table II: (mid, out) of each level's two convolutions."""

    down: tuple[tuple[int, int], ...]
    bridge: tuple[int, int]
    up: tuple[tuple[int, int], ...]  # deepest first


STAGE1_WIDTHS = UNetWidths(
    down=((16, 24), (24, 48), (64, 128)), bridge=(128, 256), up=((128, 128), (48, 48), (24, 24))
)
STAGE2_WIDTHS = UNetWidths(
    down=((24, 48), (48, 96), (96, 192)), bridge=(192, 384), up=((192, 192), (96, 96), (48, 48))
)
NONLOCAL_EMBED_CHANNELS = 32
NONLOCAL_RECURRENCES = 3


class CUNet(nn.Module):
    """3D U-Net with a (geometric) criss-cross non-local module at the bridge.

    Three down levels (two 3x3x3 convs, 2x2x2 max pool), a bridge of two convs, the non-local
    module, three up levels (trilinear x2, skip concatenation, two convs) and two 1x1x1 heads:
    6 lobe logits (softmax) and 1 border logit (sigmoid). Returns logits.

    Args:
        in_channels: 1 for stage I (CT), 8 for stage II (CT + 6 lobe probs + border).
        widths: Table II channel widths.
        padded: padded convolutions (stage I) or valid ones (stage II).
        nonlocal_mode: "geometric" (CTSU-Net), "appearance" (Table IV w/o geometric) or "none".
    """

    def __init__(
        self,
        in_channels: int,
        widths: UNetWidths,
        padded: bool,
        nonlocal_mode: NonLocalMode = "geometric",
    ) -> None:
        super().__init__()
        self.padded = padded
        self.nonlocal_mode = nonlocal_mode
        self.down = nn.ModuleList()
        channels = in_channels
        for mid, out in widths.down:
            self.down.append(DoubleConv(channels, mid, out, padded))
            channels = out
        skip_channels = [out for _, out in widths.down]
        self.bridge = DoubleConv(channels, widths.bridge[0], widths.bridge[1], padded)
        channels = widths.bridge[1]
        self.nonlocal_block = None
        if nonlocal_mode != "none":
            self.nonlocal_block = GeometricCrissCrossAttention(
                channels,
                NONLOCAL_EMBED_CHANNELS,
                NONLOCAL_RECURRENCES,
                geometric=nonlocal_mode == "geometric",
            )
        self.up = nn.ModuleList()
        for (mid, out), skip in zip(widths.up, reversed(skip_channels)):
            self.up.append(DoubleConv(channels + skip, mid, out, padded))
            channels = out
        self.lobe_head = nn.Conv3d(channels, NUM_CLASSES, 1)
        self.border_head = nn.Conv3d(channels, 1, 1)
        kaiming_init(self)
        if self.nonlocal_block is not None:
            nn.init.zeros_(self.nonlocal_block.r.weight)

    def forward(
        self,
        x: torch.Tensor,
        input_offset_zyx: torch.Tensor | None = None,
        full_shape_zyx: tuple[int, int, int] | None = None,
        input_to_full: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C, D, H, W). The geometry arguments place the input in the whole scan (see
        ``geometry.geometric_features``); by default the input is the whole scan."""
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = self.bridge(x)
        if self.nonlocal_block is not None:
            mu = None
            if self.nonlocal_mode == "geometric":
                mu = self._mu(x, input_offset_zyx, full_shape_zyx, input_to_full)
            x = self.nonlocal_block(x, mu)
        for level, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)
            if not self.padded:
                skip = center_crop(skip, tuple(x.shape[2:]))
            x = level(torch.cat([x, skip], dim=1))
        return self.lobe_head(x), self.border_head(x)

    def _mu(
        self,
        bridge: torch.Tensor,
        input_offset_zyx: torch.Tensor | None,
        full_shape_zyx: tuple[int, int, int] | None,
        input_to_full: float,
    ) -> torch.Tensor:
        n = bridge.shape[0]
        if input_offset_zyx is None:
            input_offset_zyx = torch.zeros(n, 3)
        if full_shape_zyx is None:
            raise ValueError("geometric features need full_shape_zyx (the whole scan's size)")
        return geometric_features(
            tuple(bridge.shape[2:]),
            input_offset_zyx,
            input_to_full,
            full_shape_zyx,
            self.padded,
            device=bridge.device,
        )


def valid_output_size(input_size: int) -> int:
    """Output size of a valid-conv CU-Net for one axis: out = in - 88 (116 -> 28)."""
    bridge = valid_bridge_size(input_size)
    return 8 * bridge - 28


def valid_bridge_size(input_size: int) -> int:
    """Bridge size of a valid-conv CU-Net; raises unless ``input_size`` tiles exactly."""
    size = input_size
    for _ in range(3):
        size -= 4
        if size <= 0 or size % 2:
            raise ValueError(f"valid-conv input size {input_size} does not pool evenly")
        size //= 2
    size -= 4
    if size < 1:
        raise ValueError(f"valid-conv input size {input_size} is too small")
    return size


def valid_input_size(output_size: int) -> int:
    """Input size that yields ``output_size`` (must be 8k - 28 for k >= 1)."""
    if (output_size + 28) % 8 or output_size < 4:
        raise ValueError(f"valid-conv output size {output_size} must be 8k - 28")
    return output_size + 88
