"""The realism classifier of docs/realism.md (issue 17): features, resampling and the protocol."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from training.realism_classifier import (
    N_FEATURES,
    PATCH,
    Patches,
    leave_one_real_out,
    patch_features,
    real_against_real,
    resample_common,
    sample_patches,
)


def test_features_are_shares_and_moments():
    rng = np.random.default_rng(0)
    patch = rng.uniform(-1024, 600, (PATCH,) * 3).astype(np.float32)
    f = patch_features(patch)
    assert f.shape == (N_FEATURES,)
    assert np.isclose(f[:5].sum(), 1.0)
    air = np.full((PATCH,) * 3, -1024.0, np.float32)
    assert patch_features(air)[0] == 1.0  # all air


def test_resampling_to_the_common_grid_reads_padding_as_air():
    hu = np.full((40, 100, 100), 40, np.int16)
    hu[:, :10, :10] = -3024  # padding outside the reconstruction circle
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 5.0))
    out = resample_common(image, 4.0)
    assert out.shape == (50, 50, 50)
    assert out.min() >= -1024 and out.max() <= 600


def _fake(name: str, rng, shift: float, n: int = 60) -> Patches:
    return Patches(name, rng.normal(shift, 1.0, (n, N_FEATURES)).astype(np.float32), rng.uniform(0, 1, n))


def test_protocol_gives_half_for_lookalikes_and_one_for_obvious_fakes():
    rng = np.random.default_rng(1)
    real = [_fake(f"r{i}", rng, 0.0) for i in range(4)]
    same = {r.name: [_fake(f"{r.name}-p", rng, 0.0, 40)] for r in real}
    different = {r.name: [_fake(f"{r.name}-p", rng, 3.0, 40)] for r in real}
    assert abs(np.mean(list(leave_one_real_out(real, same).values())) - 0.5) < 0.1
    assert np.mean(list(leave_one_real_out(real, different).values())) > 0.95


def test_floor_is_high_when_one_real_scan_stands_out():
    rng = np.random.default_rng(2)
    alike = [_fake(f"r{i}", rng, 0.0) for i in range(4)]
    floor = real_against_real(alike)
    assert len(floor) == 12  # every ordered pair
    assert abs(np.mean(list(floor.values())) - 0.5) < 0.1
    odd = alike[:3] + [_fake("odd", rng, 3.0)]
    with_odd = real_against_real(odd)
    assert np.mean([v for (held, fake), v in with_odd.items() if fake == "odd"]) > 0.9


def test_patches_lie_near_the_body_and_inside_the_volume():
    vol = np.full((60, 60, 60), -1024.0, np.float32)
    vol[20:40, 20:40, 20:40] = 40.0
    p = sample_patches("cube", vol, 30, np.random.default_rng(3))
    assert p.features.shape == (30, N_FEATURES)
    assert (p.features[:, 3] > 0).all()  # every patch holds some soft tissue
