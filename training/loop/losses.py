"""Learning objectives (paper III.E and IV.A).

* Generalized Dice loss (Sudre et al.) with w_l = 1 / (sum_n r_ln)^2, summed over every voxel of
  the mini-batch. A class absent from the reference would get an infinite weight; it gets the
  largest finite weight instead (as MONAI does), so predicting an absent class is still penalised
  through the denominator and the loss never becomes NaN.
* The border GDL treats the sigmoid border map as two classes (border, not border).
* Top-K cross-entropy: voxel-wise CE, back-propagating only the K voxels with the largest loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithm.labels import NUM_CLASSES

_EPS = 1e-6  # smoothing of the Dice ratio; negligible against any non-empty volume


def generalized_dice_loss(probs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """GDL = 1 - 2 sum_l w_l sum_n r_ln p_ln / sum_l w_l sum_n (r_ln + p_ln).

    probs, reference: (N, L, ...) probabilities and (soft or one-hot) reference, same shape.
    Computed in float32 whatever the autocast dtype (the weights span many orders of magnitude).
    """
    if probs.shape != reference.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and reference {tuple(reference.shape)} differ")
    p = probs.float().transpose(0, 1).reshape(probs.shape[1], -1)
    r = reference.float().transpose(0, 1).reshape(reference.shape[1], -1)
    volume = r.sum(dim=1)
    weights = 1.0 / volume.square()
    empty = torch.isinf(weights)
    finite_max = torch.where(empty, torch.zeros_like(weights), weights).max()
    # all classes empty (cannot happen with a background class): fall back to equal weights
    fallback = torch.where(finite_max > 0, finite_max, torch.ones_like(finite_max))
    weights = torch.where(empty, fallback, weights)
    # The ratio does not depend on the weights' scale; normalising keeps _EPS negligible (raw
    # weights of 1/N^2 are ~1e-10 and would let _EPS dominate, even drive the loss below 0).
    weights = weights / weights.sum()
    numerator = (weights * (r * p).sum(dim=1)).sum()
    denominator = (weights * (r + p).sum(dim=1)).sum()
    return 1.0 - 2.0 * (numerator + _EPS) / (denominator + _EPS)


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(N, ...) integer labels -> (N, C, ...) float32 one-hot."""
    out = F.one_hot(labels.long(), num_classes)  # (N, ..., C)
    return out.movedim(-1, 1).float()


def lobe_gdl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """GDL of lobe logits (N, 6, ...) against integer labels (N, ...) or a soft (N, 6, ...) reference."""
    reference = labels if labels.dim() == logits.dim() else one_hot(labels, logits.shape[1])
    return generalized_dice_loss(torch.softmax(logits.float(), dim=1), reference)


def border_gdl(logits: torch.Tensor, border: torch.Tensor) -> torch.Tensor:
    """GDL of border logits (N, 1, ...) against a (N, 1, ...) or (N, ...) border reference in [0, 1]."""
    ref = border.float()
    if ref.dim() == logits.dim() - 1:
        ref = ref.unsqueeze(1)
    p = torch.sigmoid(logits.float())
    return generalized_dice_loss(torch.cat([p, 1.0 - p], dim=1), torch.cat([ref, 1.0 - ref], dim=1))


def topk_count(num_voxels: int, fraction: float) -> int:
    """K = ceil(fraction * voxels), at least 1."""
    return max(1, min(num_voxels, int(-(-fraction * num_voxels // 1))))


def topk_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """Mean CE over the K = fraction * voxels voxels with the largest CE (IV.A, fine-tuning)."""
    ce = F.cross_entropy(logits.float(), labels.long(), reduction="none").flatten()
    k = topk_count(ce.numel(), fraction)
    return torch.topk(ce, k, sorted=False).values.mean()


def topk_binary_cross_entropy(logits: torch.Tensor, border: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """Top-K BCE of border logits (N, 1, ...) against a border reference (N, 1, ...) or (N, ...)."""
    ref = border.float()
    if ref.dim() == logits.dim() - 1:
        ref = ref.unsqueeze(1)
    bce = F.binary_cross_entropy_with_logits(logits.float(), ref, reduction="none").flatten()
    k = topk_count(bce.numel(), fraction)
    return torch.topk(bce, k, sorted=False).values.mean()
