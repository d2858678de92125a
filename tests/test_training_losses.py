"""Generalized Dice, border GDL, top-K cross-entropy and the border reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.data.borders import lobe_borders
from training.loop.losses import (
    border_gdl,
    generalized_dice_loss,
    lobe_gdl,
    one_hot,
    topk_binary_cross_entropy,
    topk_cross_entropy,
)


def test_gdl_matches_formula_on_hand_case():
    # 2 classes, 4 voxels: r = one-hot of [0, 0, 0, 1]
    ref = torch.tensor([[[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])  # (N=1, L=2, n=4)
    probs = torch.tensor([[[0.9, 0.8, 0.4, 0.3], [0.1, 0.2, 0.6, 0.7]]])
    w0, w1 = 1 / 3**2, 1 / 1**2
    num = w0 * (0.9 + 0.8 + 0.4) + w1 * 0.7
    den = w0 * (3 + 0.9 + 0.8 + 0.4 + 0.3) + w1 * (1 + 0.1 + 0.2 + 0.6 + 0.7)
    expected = 1 - 2 * num / den
    assert generalized_dice_loss(probs, ref).item() == pytest.approx(expected, rel=1e-5)


def test_gdl_perfect_prediction_is_zero_and_sums_over_batch():
    labels = torch.randint(0, 6, (2, 5, 5, 5))
    ref = one_hot(labels)
    assert generalized_dice_loss(ref, ref).item() == pytest.approx(0.0, abs=1e-5)
    # voxels of the whole mini-batch enter one sum: equal to the GDL of the concatenation
    probs = torch.softmax(torch.randn(2, 6, 5, 5, 5), dim=1)
    joined = generalized_dice_loss(probs.transpose(0, 1).reshape(1, 6, -1), ref.transpose(0, 1).reshape(1, 6, -1))
    assert generalized_dice_loss(probs, ref).item() == pytest.approx(joined.item(), rel=1e-6)


def test_gdl_empty_class_is_finite_and_penalises_false_positives():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, :2] = 1  # classes 2..5 absent
    good = one_hot(labels)
    bad = good.clone()
    bad[:, 1] *= 0.5
    bad[:, 3] += 0.5  # probability mass on an absent class
    loss_good, loss_bad = generalized_dice_loss(good, good), generalized_dice_loss(bad, good)
    assert torch.isfinite(loss_bad) and loss_bad > loss_good


def test_gdl_gradient_is_finite_with_empty_classes():
    logits = torch.randn(1, 6, 4, 4, 4, requires_grad=True)
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    lobe_gdl(logits, labels).backward()
    assert torch.isfinite(logits.grad).all()


def test_border_gdl_two_class_form():
    border = torch.zeros(1, 1, 4, 4, 4)
    border[..., 1, :, :] = 1
    logits = torch.where(border > 0, 20.0, -20.0)
    assert border_gdl(logits, border).item() == pytest.approx(0.0, abs=1e-5)
    assert border_gdl(-logits, border).item() == pytest.approx(1.0, abs=1e-3)
    # a patch without any border voxel stays finite
    assert torch.isfinite(border_gdl(torch.randn(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4)))


def test_topk_cross_entropy_keeps_the_largest_losses():
    logits = torch.randn(1, 6, 10, 10, 1)
    labels = torch.randint(0, 6, (1, 10, 10, 1))
    ce = F.cross_entropy(logits, labels, reduction="none").flatten()
    expected = ce.sort(descending=True).values[:30].mean()  # K = 30 % of 100 voxels
    assert topk_cross_entropy(logits, labels, 0.3).item() == pytest.approx(expected.item(), rel=1e-6)
    assert topk_cross_entropy(logits, labels, 1.0).item() == pytest.approx(ce.mean().item(), rel=1e-6)
    border = (torch.rand(1, 1, 10, 10, 1) > 0.5).float()
    blogits = torch.randn(1, 1, 10, 10, 1)
    bce = F.binary_cross_entropy_with_logits(blogits, border, reduction="none").flatten()
    assert topk_binary_cross_entropy(blogits, border, 0.3).item() == pytest.approx(bce.sort(descending=True).values[:30].mean().item(), rel=1e-6)


def _brute_force_borders(labels: np.ndarray, include_background: bool) -> np.ndarray:
    out = np.zeros(labels.shape, np.uint8)
    for idx in np.ndindex(labels.shape):
        a = labels[idx]
        if a == 0:
            continue
        for axis in range(3):
            for step in (-1, 1):
                j = list(idx)
                j[axis] += step
                if not 0 <= j[axis] < labels.shape[axis]:
                    continue
                b = labels[tuple(j)]
                if b != a and (include_background or b > 0):
                    out[idx] = 1
    return out


@pytest.mark.parametrize("include_background", [False, True])
def test_border_extraction_matches_brute_force(include_background):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(6, 7, 5)).astype(np.uint8)
    got = lobe_borders(torch.from_numpy(labels), include_background).numpy()
    np.testing.assert_array_equal(got, _brute_force_borders(labels, include_background))


def test_border_of_two_half_boxes_is_two_voxels_thick():
    labels = np.zeros((6, 6, 10), np.uint8)
    labels[1:5, 1:5, 1:5] = 1
    labels[1:5, 1:5, 5:9] = 2
    border = lobe_borders(labels).numpy()
    assert border.sum() == 2 * 16  # both sides of the interface, nothing at the lung surface
    assert border[1:5, 1:5, 4].all() and border[1:5, 1:5, 5].all()
    with_surface = lobe_borders(labels, include_background=True).numpy()
    assert with_surface.sum() == (labels > 0).sum() - 2 * 8  # all but the 2x2x2 interior of each box


def test_border_gdl_stays_in_range_when_a_patch_has_no_border():
    """Raw weights 1/N^2 are ~1e-10 for a large patch: the smoothing term must not dominate."""
    import torch

    from training.loop.losses import border_gdl, generalized_dice_loss

    logits = torch.full((1, 1, 44, 44, 44), -3.0)
    no_border = torch.zeros(1, 1, 44, 44, 44)
    loss = border_gdl(logits, no_border)
    assert 0.0 <= loss.item() < 0.1
    probs = torch.rand(1, 2, 40, 40, 40)
    ref = torch.nn.functional.one_hot((torch.rand(1, 40, 40, 40) > 0.5).long(), 2).movedim(-1, 1).float()
    assert 0.0 <= generalized_dice_loss(probs, ref).item() <= 1.0
