"""The network of Table II and the non-local module of Eqs. 3-5."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from algorithm.network import CTSUNet, GeometricCrissCrossAttention, NetworkConfig, UNet3D
from algorithm.network.cascade import upsample_region
from algorithm.network.cunet import valid_input_size, valid_output_size
from algorithm.network.geometry import bridge_center_affine, geometric_features


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_table_ii():
    model = CTSUNet()
    assert abs(n_params(model.stage1) - 3.85e6) / 3.85e6 < 0.01
    assert abs(n_params(model.stage2) - 9.24e6) / 9.24e6 < 0.01
    # Table III: the one-stage 3D U-Net baseline has 16.32 M parameters
    assert abs(n_params(UNet3D()) - 16.32e6) / 16.32e6 < 0.01


def test_ablations_change_only_the_nonlocal_module():
    full = n_params(CTSUNet(NetworkConfig("geometric")))
    appearance = n_params(CTSUNet(NetworkConfig("appearance")))
    none = n_params(CTSUNet(NetworkConfig("none")))
    assert full - appearance == 2 * 2 * 3 * 32  # W_omega, W_rho in both stages
    assert none < appearance


def test_valid_conv_sizes():
    assert valid_output_size(116) == 28
    assert valid_output_size(132) == 44
    assert valid_output_size(180) == 92
    assert valid_input_size(28) == 116
    with pytest.raises(ValueError):
        valid_output_size(117)


def test_shapes_through_both_stages():
    model = CTSUNet().eval()
    scan = torch.rand(1, 1, 30, 42, 36)
    starts = torch.tensor([[-44, -44, -44], [10, 3, 0]])
    with torch.no_grad():
        stage1, (lobe, border) = model(scan, starts, 100)
    assert stage1.lobe_logits.shape == (1, 6, 15, 21, 18)
    assert stage1.border_logits.shape == (1, 1, 15, 21, 18)
    assert lobe.shape == (2, 6, 12, 12, 12)
    assert border.shape == (2, 1, 12, 12, 12)
    with torch.no_grad():
        assert model.stage2(torch.rand(1, 8, 116, 116, 116), torch.zeros(1, 3), (200, 200, 200))[0].shape[2:] == (28, 28, 28)


def test_nonlocal_module_is_identity_at_init():
    module = GeometricCrissCrossAttention(16)
    x = torch.randn(2, 16, 4, 5, 6)
    mu = torch.rand(2, 3, 4, 5, 6) - 0.5
    assert torch.equal(module(x, mu), x)


def _naive_criss_cross(module: GeometricCrissCrossAttention, z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Eq. 4 voxel by voxel: each criss-cross neighbour (centre once) in one softmax."""
    q, k, v = module.theta(z)[0], module.phi(z)[0], module.g(z)[0]
    gq, gk = module.omega(mu)[0], module.rho(mu)[0]
    _, d, h, w = q.shape
    y = torch.zeros_like(v)
    for i in itertools.product(range(d), range(h), range(w)):
        js = {(a, i[1], i[2]) for a in range(d)} | {(i[0], b, i[2]) for b in range(h)} | {(i[0], i[1], c) for c in range(w)}
        js = sorted(js)
        energy = torch.stack([q[(slice(None), *i)] @ k[(slice(None), *j)] + F.relu(gq[(slice(None), *i)] @ gk[(slice(None), *j)]) for j in js])
        weights = torch.softmax(energy, 0)
        y[(slice(None), *i)] = sum(wt * v[(slice(None), *j)] for wt, j in zip(weights, js))
    return y[None]


def test_criss_cross_matches_the_equation_voxel_by_voxel():
    torch.manual_seed(1)
    module = GeometricCrissCrossAttention(8, embed_channels=4, recurrences=1)
    torch.nn.init.normal_(module.r.weight)
    z = torch.randn(1, 8, 3, 4, 5)
    mu = torch.rand(1, 3, 3, 4, 5) - 0.5
    with torch.no_grad():
        expected = z + module.r(_naive_criss_cross(module, z, mu))
        assert torch.allclose(module(z, mu), expected, atol=1e-5)


def test_recurrences_share_weights_and_reach_the_whole_map():
    """T = 3: after three passes every voxel depends on every other; after one it does not."""
    torch.manual_seed(2)
    for recurrences, reaches_corner in ((1, False), (3, True)):
        module = GeometricCrissCrossAttention(4, 4, recurrences)
        torch.nn.init.normal_(module.r.weight)
        x = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
        mu = torch.zeros(1, 3, 3, 3, 3)
        module(x, mu)[0, :, 0, 0, 0].sum().backward()
        assert (x.grad[0, :, 2, 2, 2].abs().sum() > 0) == reaches_corner
    assert len(list(module.parameters())) == 6  # theta, phi, g, r, omega, rho: shared across T


def _bridge(model, x, offsets, full_shape, input_to_full, with_nonlocal):
    net = model.stage1
    for level in net.down:
        x = F.max_pool3d(level(x), 2)
    x = net.bridge(x)
    if with_nonlocal:
        x = net.nonlocal_block(x, net._mu(x, offsets, full_shape, input_to_full))
    return x


def test_nonlocal_gradient_reaches_far_outside_the_receptive_field():
    torch.manual_seed(3)
    model = CTSUNet().eval()  # eval: batch-norm statistics would otherwise couple all voxels
    torch.nn.init.normal_(model.stage1.nonlocal_block.r.weight, std=0.1)
    x = torch.rand(1, 1, 16, 16, 192, requires_grad=True)
    for with_nonlocal in (False, True):
        x.grad = None
        bridge = _bridge(model, x, torch.zeros(1, 3), (32, 32, 384), 2.0, with_nonlocal)
        bridge[0, :, 0, 0, 0].sum().backward()
        far = x.grad[0, 0, :, :, 120:].abs().sum().item()  # > 100 voxels from the bridge voxel's field
        assert (far > 0) == with_nonlocal


def test_receptive_field_centres():
    assert bridge_center_affine(padded=True) == (8.0, 3.5)
    assert bridge_center_affine(padded=False) == (8.0, 33.5)
    # valid 116^3 patch: the middle bridge voxel (k = 3) is the patch centre
    assert 8.0 * 3 + 33.5 == (116 - 1) / 2


def test_geometric_features_follow_the_patch_offset():
    full = (200, 180, 160)
    base = geometric_features((7, 7, 7), torch.zeros(1, 3), 1.0, full, padded=False)
    offset = torch.tensor([[10.0, -20.0, 30.0]])
    shifted = geometric_features((7, 7, 7), offset, 1.0, full, padded=False)
    for axis in range(3):
        assert torch.allclose(shifted[0, axis] - base[0, axis], offset[0, axis] / full[axis])
    # absolute value: bridge voxel 0 of a patch at offset 0 sees full-res centre 33.5
    assert torch.isclose(base[0, 0, 0, 0, 0], torch.tensor((33.5 + 0.5) / 200 - 0.5))
    # stage I at half resolution: bridge voxel 0 centre at half-res 3.5 = full-res 7.5
    half = geometric_features((2, 2, 2), torch.zeros(1, 3), 2.0, full, padded=True)
    assert torch.isclose(half[0, 2, 0, 0, 0], torch.tensor((7.5 + 0.5) / 160 - 0.5))
    assert base.min() >= -0.5 and base.max() <= 0.5


def test_cascade_is_differentiable_end_to_end():
    model = CTSUNet().train()
    scan = torch.rand(1, 1, 24, 24, 24)
    _, (lobe, border) = model(scan, torch.tensor([[-38, -38, -38]]), 100)
    (lobe.sum() + border.sum()).backward()
    grad = model.stage1.down[0][0][0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_patch_upsampling_equals_whole_scan_upsampling():
    torch.manual_seed(4)
    half = torch.rand(1, 7, 16, 20, 18)
    full_shape = (31, 40, 35)
    full = F.interpolate(half, scale_factor=2, mode="trilinear", align_corners=False)[:, :, :31, :40, :35]
    padded = F.pad(full, (30, 30, 30, 30, 30, 30))
    for start in ([0, 0, 0], [5, 7, 9], [-10, 3, 20], [25, 33, 30], [-20, -20, -20]):
        got = upsample_region(half, start, 20, full_shape)
        s = [v + 30 for v in start]
        want = padded[:, :, s[0] : s[0] + 20, s[1] : s[1] + 20, s[2] : s[2] + 20]
        assert torch.allclose(got, want)


def test_stage2_accepts_non_cubic_tiles():
    model = CTSUNet().eval()
    scan = torch.rand(1, 1, 20, 24, 28)
    with torch.no_grad():
        stage1 = model.forward_stage1(scan)
        inputs = model.stage2_inputs(scan, stage1, torch.tensor([[-44, -44, -44]]), (100, 108, 116))
        lobe, _ = model.forward_stage2(inputs, torch.tensor([[-44, -44, -44]]), stage1.full_shape_zyx)
    assert lobe.shape[2:] == (12, 20, 28)
