"""Online hard example mining: integral-image window sums, the hard set, the K schedule."""

from __future__ import annotations

import numpy as np
import torch

from training.loop import ohem
from training.loop.steps import half_resolution_reference


def _brute_sum(volume: np.ndarray, start, size) -> float:
    padded = np.pad(volume, size)
    z, y, x = (s + size for s in start)
    return float(padded[z : z + size, y : y + size, x : x + size].sum())


def test_window_sums_match_brute_force_including_partial_windows():
    rng = np.random.default_rng(1)
    volume = rng.random((11, 9, 13))
    starts = ohem.window_grid(volume.shape, 4, 3, phase_zyx=(2, 1, 0))
    got = ohem.window_sums(torch.from_numpy(volume), starts, 4).numpy()
    expected = [_brute_sum(volume, s, 4) for s in starts.tolist()]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert (starts[:, 0] < 0).any()  # a phase shift makes windows that hang over the edge


def test_window_grid_covers_the_volume():
    starts = ohem.window_grid((10, 7, 4), 4, 4)
    covered = np.zeros((10, 7, 4), bool)
    for z, y, x in starts.tolist():
        covered[max(z, 0) : z + 4, max(y, 0) : y + 4, max(x, 0) : x + 4] = True
    assert covered.all()
    assert len(starts) == 3 * 2 * 1


def test_hard_windows_are_the_largest_error_ones():
    error = torch.zeros(16, 16, 16)
    error[0:4, 8:12, 4:8] = 1.0  # exactly window (0, 8, 4) of a stride-4 grid
    error[12:16, 0:4, 0:4] = 0.5
    error[4:6, 4:6, 4:6] = 0.1
    starts = ohem.window_grid((16, 16, 16), 4, 4)
    gen = torch.Generator().manual_seed(0)
    chosen, sums = ohem.select_hard_windows(error, starts, 4, k=2, count=2, generator=gen)
    assert {tuple(c) for c in chosen.tolist()} == {(0, 8, 4), (12, 0, 0)}
    assert sums.max().item() == 64.0
    # k = 1: always the largest
    for seed in range(5):
        chosen, _ = ohem.select_hard_windows(error, starts, 4, k=1, count=1, generator=torch.Generator().manual_seed(seed))
        assert chosen.tolist() == [[0, 8, 4]]


def test_hard_set_decays_from_all_to_final_coverage():
    n, window, scan = 100, 1000, 100_000  # windows tile the scan exactly
    assert ohem.hard_set_size(n, window, scan, 0.0, 0.2) == 100
    assert ohem.hard_set_size(n, window, scan, 1.0, 0.2) == 20
    assert ohem.hard_set_size(n, window, scan, 0.5, 0.2) == 60
    assert ohem.hard_set_size(n, window, scan, 2.0, 0.2) == 20
    sizes = [ohem.hard_set_size(n, window, scan, t / 10, 0.2) for t in range(11)]
    assert sizes == sorted(sizes, reverse=True)


def test_stage1_error_is_mse_against_soft_half_resolution_reference():
    labels = torch.zeros(4, 4, 4, dtype=torch.uint8)
    labels[:, :, :2] = 3
    labels[0, 0, 0] = 1
    ref, border = half_resolution_reference(labels, torch.zeros_like(labels))
    assert ref.shape == (1, 6, 2, 2, 2)
    assert torch.allclose(ref.sum(dim=1), torch.ones(1, 2, 2, 2))
    assert ref[0, 1, 0, 0, 0].item() == 1 / 8 and ref[0, 3, 0, 0, 0].item() == 7 / 8
    err = ohem.stage1_error_map(ref, ref)
    assert err.abs().max().item() == 0.0
    up = ohem.upsample_nearest(torch.arange(8.0).reshape(2, 2, 2), (3, 4, 4), 2)
    assert up.shape == (3, 4, 4) and up[2, 3, 3].item() == 7.0
