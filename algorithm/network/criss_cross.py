"""Geometric criss-cross attention: the non-local module of CTSU-Net (paper Eqs. 3-5).

For every voxel i the module attends to the voxels on the three axis-aligned lines through i
(criss-cross connectivity), with energy

    e_ij = (W_theta z_i)^T (W_phi z_j) + max(0, (W_omega mu_i)^T (W_rho mu_j))

and one softmax over the concatenated D + H + W energies, in which the centre voxel (present on
all three lines) is counted once. The output y_i = sum_j a_ij W_g z_j is mapped back to C
channels by W_r and added to the input; T = 3 recurrences share their weights so that every
voxel can reach every other (Eq. 5). W_r starts at zero: the module begins as the identity.

Pure PyTorch (einsum); the softmax runs in float32 even under autocast.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NonLocalMode = Literal["geometric", "appearance", "none"]


class GeometricCrissCrossAttention(nn.Module):
    """Recurrent 3D criss-cross attention with an optional geometric term.

    Args:
        channels: C, the channels of the bridge feature map.
        embed_channels: subspace size of theta, phi, g, omega, rho (32 in Table II).
        recurrences: T (3 in the paper).
        geometric: include the geometric term tau (False for the Table IV ablation).
    """

    def __init__(
        self,
        channels: int,
        embed_channels: int = 32,
        recurrences: int = 3,
        geometric: bool = True,
    ) -> None:
        super().__init__()
        self.recurrences = recurrences
        self.geometric = geometric
        # The paper writes the projections as matrices (no bias terms).
        self.theta = nn.Conv3d(channels, embed_channels, 1, bias=False)
        self.phi = nn.Conv3d(channels, embed_channels, 1, bias=False)
        self.g = nn.Conv3d(channels, embed_channels, 1, bias=False)
        self.r = nn.Conv3d(embed_channels, channels, 1, bias=False)
        if geometric:
            self.omega = nn.Conv3d(3, embed_channels, 1, bias=False)
            self.rho = nn.Conv3d(3, embed_channels, 1, bias=False)
        nn.init.zeros_(self.r.weight)

    def forward(self, x: torch.Tensor, mu: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, C, D, H, W) features; mu: (N, 3, D, H, W) geometric features."""
        geo_energy = None
        if self.geometric:
            if mu is None:
                raise ValueError("the geometric criss-cross module needs geometric features mu")
            mu = mu.to(dtype=x.dtype)
            # tau does not depend on the features: compute once for all T recurrences.
            geo_energy = [F.relu(e) for e in _criss_cross_energy(self.omega(mu), self.rho(mu))]
        z = x
        for _ in range(self.recurrences):
            z = z + self.r(self._attend(z, geo_energy))
        return z

    def _attend(self, z: torch.Tensor, geo_energy: list[torch.Tensor] | None) -> torch.Tensor:
        energies = _criss_cross_energy(self.theta(z), self.phi(z))
        if geo_energy is not None:
            energies = [e + g for e, g in zip(energies, geo_energy)]
        attention = _joint_softmax(energies)
        return _criss_cross_aggregate(attention, self.g(z))


def _criss_cross_energy(q: torch.Tensor, k: torch.Tensor) -> list[torch.Tensor]:
    """Dot products of q_i with k_j for j on the D, H and W lines through i.

    Returns three tensors shaped (N, D, H, W, L) with L = D, H, W respectively.
    """
    e_d = torch.einsum("ncdhw,ncehw->ndhwe", q, k)
    e_h = torch.einsum("ncdhw,ncdgw->ndhwg", q, k)
    e_w = torch.einsum("ncdhw,ncdhv->ndhwv", q, k)
    return [e_d, e_h, e_w]


def _joint_softmax(energies: list[torch.Tensor]) -> list[torch.Tensor]:
    """One softmax over the concatenated D + H + W energies, centre voxel counted once.

    The centre appears on all three lines; it is kept in the W term and masked in D and H.
    """
    e_d, e_h, e_w = energies
    n, d, h, w, _ = e_d.shape
    device = e_d.device
    centre_d = torch.eye(d, dtype=torch.bool, device=device).view(1, d, 1, 1, d)
    centre_h = torch.eye(h, dtype=torch.bool, device=device).view(1, 1, h, 1, h)
    e_d = e_d.float().masked_fill(centre_d, float("-inf"))
    e_h = e_h.float().masked_fill(centre_h, float("-inf"))
    joint = torch.cat([e_d, e_h, e_w.float()], dim=-1)
    attention = torch.softmax(joint, dim=-1)
    return list(torch.split(attention, [d, h, w], dim=-1))


def _criss_cross_aggregate(attention: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """y_i = sum over the criss-cross lines of a_ij v_j, shaped like v."""
    a_d, a_h, a_w = (a.to(v.dtype) for a in attention)
    y = torch.einsum("ndhwe,ncehw->ncdhw", a_d, v)
    y = y + torch.einsum("ndhwg,ncdgw->ncdhw", a_h, v)
    y = y + torch.einsum("ndhwv,ncdhv->ncdhw", a_w, v)
    return y
