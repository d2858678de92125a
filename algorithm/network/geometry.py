"""Geometric features mu of the non-local module (paper III.C).

mu_i is the centre of the receptive field of bridge voxel i, in the coordinates of the whole
preprocessed scan, normalised to [0, 1] and shifted by -0.5. Both stages use the same
full-resolution frame so that a stage-II patch's features agree with stage I's at the same place.
"""

from __future__ import annotations

import torch

# Each down level: two 3x3x3 convs, then a 2x2x2 max pool; then the bridge's two convs.
_LEVELS = 3
_CONVS_PER_LEVEL = 2


def bridge_center_affine(padded: bool) -> tuple[float, float]:
    """(scale, offset) so that bridge index k has receptive-field centre scale*k + offset
    in network-input voxel indices.

    Walks the encoder from the bridge back to the input: a valid 3x3x3 conv maps output index
    k to input centre k + 1; a padded one to k; a 2x2x2 pool with stride 2 maps k to 2k + 0.5.
    """
    shift = 0.0 if padded else 1.0
    scale, offset = 1.0, 0.0
    # bridge convs
    for _ in range(_CONVS_PER_LEVEL):
        offset += shift * scale
    for _ in range(_LEVELS):
        # pool then the level's convs, going backwards towards the input
        offset = offset * 2.0 + 0.5
        scale *= 2.0
        for _ in range(_CONVS_PER_LEVEL):
            offset += shift
    return scale, offset


def geometric_features(
    bridge_shape_zyx: tuple[int, int, int],
    input_offset_zyx: torch.Tensor,
    input_to_full: float,
    full_shape_zyx: tuple[int, int, int],
    padded: bool,
    device: torch.device | None = None,
) -> torch.Tensor:
    """mu for a batch: (N, 3, D, H, W), channels ordered z, y, x.

    Args:
        bridge_shape_zyx: spatial size of the bridge feature map.
        input_offset_zyx: (N, 3) position of each network input's voxel 0 in the network
            input's own voxel units relative to the whole scan at that resolution (0 for stage I;
            the patch start, which may be negative where the patch is padded, for stage II).
        input_to_full: size of one network-input voxel in full preprocessed voxels (2 for stage
            I which runs at half resolution, 1 for stage II).
        full_shape_zyx: size of the whole preprocessed scan (normalisation).
        padded: the network uses padded (stage I) or valid (stage II) convolutions.
    """
    scale, offset = bridge_center_affine(padded)
    axes = []
    for dim, size in enumerate(bridge_shape_zyx):
        k = torch.arange(size, dtype=torch.float32, device=device)
        centre_in = scale * k + offset  # (size,)
        centre_in = centre_in[None, :] + input_offset_zyx[:, dim : dim + 1].to(device, torch.float32)
        # a voxel of the coarse input grid with index c covers full-res centre input_to_full*c + (input_to_full-1)/2
        centre_full = input_to_full * centre_in + (input_to_full - 1.0) / 2.0
        axes.append((centre_full + 0.5) / float(full_shape_zyx[dim]) - 0.5)
    n = input_offset_zyx.shape[0]
    d, h, w = bridge_shape_zyx
    mu_z = axes[0][:, :, None, None].expand(n, d, h, w)
    mu_y = axes[1][:, None, :, None].expand(n, d, h, w)
    mu_x = axes[2][:, None, None, :].expand(n, d, h, w)
    return torch.stack([mu_z, mu_y, mu_x], dim=1)
