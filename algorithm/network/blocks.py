"""Convolution blocks shared by the U-Nets."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3x3 convolution, batch norm, ReLU (Section III.B; no dropout)."""

    def __init__(self, in_channels: int, out_channels: int, padded: bool) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1 if padded else 0),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two ConvBNReLU layers: in -> mid -> out."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, padded: bool) -> None:
        super().__init__(
            ConvBNReLU(in_channels, mid_channels, padded),
            ConvBNReLU(mid_channels, out_channels, padded),
        )


def center_crop(x: torch.Tensor, size_zyx: tuple[int, int, int]) -> torch.Tensor:
    """Crop the spatial centre of ``x`` (N, C, D, H, W) to ``size_zyx`` (valid-conv skips)."""
    starts = [(have - want) // 2 for have, want in zip(x.shape[2:], size_zyx)]
    return x[
        :,
        :,
        starts[0] : starts[0] + size_zyx[0],
        starts[1] : starts[1] + size_zyx[1],
        starts[2] : starts[2] + size_zyx[2],
    ]


def kaiming_init(module: nn.Module) -> None:
    """Kaiming He initialisation of convolutions (paper IV.A); BN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
