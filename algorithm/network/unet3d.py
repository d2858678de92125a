"""One-stage 3D U-Net baseline of Table III (Cicek et al., valid convs, 132^3 -> 44^3)."""

from __future__ import annotations

from algorithm.network.cunet import CUNet, UNetWidths

# Cicek et al.: 32-64, 64-128, 128-256, bridge 256-512; up 256, 128, 64.
UNET3D_WIDTHS = UNetWidths(
    down=((32, 64), (64, 128), (128, 256)), bridge=(256, 512), up=((256, 256), (128, 128), (64, 64))
)


class UNet3D(CUNet):
    """The 3D U-Net baseline with the same two heads, no non-local module.

    Trilinear upsampling replaces Cicek's transposed convolutions so that the baseline differs
    from CTSU-Net only in widths, stages and context; the output size (132 -> 44) is the same.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(in_channels, UNET3D_WIDTHS, padded=False, nonlocal_mode="none")
