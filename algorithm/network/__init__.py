"""CTSU-Net: two cascaded contextualised U-Nets (paper Section III, Table II)."""

from algorithm.network.cascade import CTSUNet, NetworkConfig
from algorithm.network.criss_cross import GeometricCrissCrossAttention
from algorithm.network.cunet import CUNet, STAGE1_WIDTHS, STAGE2_WIDTHS
from algorithm.network.unet3d import UNet3D

__all__ = [
    "CTSUNet",
    "NetworkConfig",
    "GeometricCrissCrossAttention",
    "CUNet",
    "STAGE1_WIDTHS",
    "STAGE2_WIDTHS",
    "UNet3D",
]
