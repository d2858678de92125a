"""Scanner simulation for training (training/data/scanner_sim.py): thick slices, kernels, intensity curves."""

import numpy as np
import torch

from algorithm.constants import HU_MIN
from training.data import samples, scanner_sim
from training.config import AugmentConfig


def _impulse_slice(depth: int = 40) -> torch.Tensor:
    image = torch.zeros(depth, 8, 8)
    image[depth // 2] = 1.0
    return image


def test_thick_slices_spread_a_thin_structure_over_the_slab_and_keep_its_mass():
    image = _impulse_slice()
    thick = scanner_sim.thick_slices(image, spacing_z_mm=1.0, thickness_mm=5.0)
    profile = thick[:, 4, 4].numpy()
    assert profile.max() < 0.5  # one bright slice averaged over ~5
    assert (profile > 0.01).sum() >= 5  # and seen on several slices
    assert abs(profile.sum() - 1.0) < 0.35  # roughly its mass, not lost or doubled


def test_thick_slices_at_or_below_the_grid_spacing_change_nothing():
    image = torch.rand(12, 6, 6)
    assert torch.equal(scanner_sim.thick_slices(image, spacing_z_mm=4.0, thickness_mm=3.5), image)


def test_thick_slices_leave_a_structure_constant_along_z_unchanged():
    image = torch.rand(1, 6, 6).expand(30, 6, 6).contiguous()
    thick = scanner_sim.thick_slices(image, spacing_z_mm=1.0, thickness_mm=4.0)
    assert torch.allclose(thick, image, atol=1e-5)


def test_smooth_kernel_lowers_noise_and_sharp_kernel_overshoots_an_edge():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.normal(0.5, 0.05, (4, 32, 32)).astype(np.float32))
    assert scanner_sim.kernel(noise, sigma_vox=1.0, sharpen_amount=0.0).std() < 0.6 * noise.std()
    edge = torch.zeros(4, 32, 32)
    edge[:, :, 16:] = 0.5
    sharp = scanner_sim.kernel(edge, sigma_vox=1.0, sharpen_amount=1.0)
    assert sharp.max() > 0.55 and sharp.min() < -0.05  # the overshoot of a sharp kernel
    assert torch.equal(scanner_sim.kernel(edge, sigma_vox=0.0, sharpen_amount=1.0), edge)


def test_intensity_curve_keeps_tissue_order_and_the_window_ends():
    rng = np.random.default_rng(3)
    values = torch.linspace(0.0, 1.0, 1001).view(1, 1, -1)
    curved = scanner_sim.intensity_curve(values, rng, max_shift_hu=60.0).view(-1)
    assert curved[0] == 0.0 and curved[-1] == 1.0
    assert bool((curved[1:] >= curved[:-1]).all())  # monotone: order kept
    shift_hu = (curved - values.view(-1)).abs().max() * scanner_sim.HU_PER_UNIT
    assert 1.0 < shift_hu <= 60.0 + 1e-3  # it moved, and no more than asked


def test_intensity_curve_moves_lung_density():
    lung = torch.full((1, 1, 1), (-900.0 - HU_MIN) / scanner_sim.HU_PER_UNIT)
    shifts_hu = [
        float((scanner_sim.intensity_curve(lung, np.random.default_rng(s), 50.0) - lung).item()) * scanner_sim.HU_PER_UNIT
        for s in range(20)
    ]
    assert max(shifts_hu) > 15.0 and min(shifts_hu) < -15.0  # real lungs sit ~50 HU below v2's


def test_scanner_effects_switched_off_draw_nothing_so_old_configs_keep_their_stream():
    rng = np.random.default_rng(11)
    before = rng.bit_generator.state
    image = torch.rand(10, 8, 8)
    out = samples.simulate_scanner(image, AugmentConfig(), rng, spacing_z_mm=2.0)
    assert torch.equal(out, image)
    assert rng.bit_generator.state == before


def test_augment_with_scanner_effects_keeps_labels_and_the_intensity_range():
    config = AugmentConfig(
        probability=0.0, slice_thickness_mm_max=6.0, kernel_sigma_vox_max=1.0, sharpen_max=1.0,
        intensity_curve_hu=50.0, scanner_probability=1.0,
    )
    image = torch.rand(20, 16, 16)
    labels = torch.randint(0, 6, (20, 16, 16), dtype=torch.uint8)
    out, out_labels = samples.augment(image, labels, config, np.random.default_rng(5), spacing_z_mm=2.0)
    assert torch.equal(out_labels, labels)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, image, atol=0.05)
