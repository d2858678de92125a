"""The realism classifier of docs/realism.md (issue 17): features, resampling and the protocol."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from training.realism.classifier import (
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


def test_spread_over_draws_reports_mean_and_range():
    from training.realism.classifier import RealismNumbers, markdown, spread_line

    def numbers(floor: float, v1: float, v2: float) -> RealismNumbers:
        return RealismNumbers(
            floor={("a", "b"): floor}, by_version={1: {"a": v1}, 2: {"a": v2}},
            fine_floor={("a", "b"): floor}, fine_by_version={1: {"a": v1}, 2: {"a": v2}},
        )

    draws = [numbers(0.7, 0.6, 0.5), numbers(0.8, 0.7, 0.55)]
    line = spread_line(draws)
    assert "floor 0.75 (0.70-0.80)" in line and "v1 0.65 (0.60-0.70)" in line and "v2 0.53 (0.50-0.55)" in line
    assert line in markdown(draws[0], draws) and line not in markdown(draws[0])


def test_gradient_feature_follows_the_spacing():
    from training.realism.classifier import fine_features

    ramp = np.broadcast_to(np.arange(PATCH, dtype=np.float32)[None, None, :] * 40.0, (PATCH,) * 3)
    at_4, at_2 = fine_features(ramp, 4.0), fine_features(ramp, 2.0)
    assert np.isclose(np.expm1(at_4[-1]), 10.0, rtol=0.01) and np.isclose(np.expm1(at_2[-1]), 20.0, rtol=0.01)  # HU per mm


def test_draws_must_be_positive(capsys):
    from training.realism.classifier import main

    assert main(["--draws", "0", "--real", "/nonexistent"]) == 2
    assert "error: --draws must be at least 1" in capsys.readouterr().err


def test_hu_shares_count_the_body_and_its_surroundings():
    from training.realism.classifier import SHARE_EDGES_HU, hu_shares

    vol = np.full((30, 30, 30), -1024.0, np.float32)
    vol[10:20, 10:20, 10:20] = 120.0  # a cube of cancellous bone
    shares = hu_shares(vol)
    assert len(shares) == len(SHARE_EDGES_HU) - 1 and np.isclose(shares.sum(), 100.0)
    bone = shares[SHARE_EDGES_HU.index(100)]
    assert 0 < bone < 100 and np.isclose(bone + shares[0], 100.0)  # the cube and air within 20 mm
