"""Per-lobe IoU and HD95: a thin wrapper around ``grand_challenge_metrics.stats``.

The numbers are the ones grand-challenge evaluation containers compute: IoU is the Jaccard of
``calculate_confusion_matrix`` / ``jaccard_from_confusion_matrix`` and HD95 is
``percentile_hausdorff_distance(pred, ref, percentile=0.95, voxelspacing=...)`` (surface voxels by
6-connected erosion, Euclidean distance in mm, the larger of the two directed 95th percentiles).

The wrapper adds only what the library leaves undefined or slow:
* A lobe missing from the prediction (or present only in the prediction) scores IoU 0 and HD95
  equal to the image diagonal in mm; a lobe absent from both scores IoU 1 and HD95 0. Never NaN.
* Both masks are cropped to the bounding box of their union plus one voxel before calling the
  library. This is exact: the Jaccard of a lobe ignores voxels outside both masks, the
  one-voxel margin keeps every surface voxel's erosion neighbourhood, and all surface voxels of
  both masks are inside the box. It makes the library's 36-pass confusion matrix cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from grand_challenge_metrics.stats import (
    calculate_confusion_matrix,
    jaccard_from_confusion_matrix,
    percentile_hausdorff_distance,
)

from algorithm.boxes import bounding_box
from algorithm.labels import LOBES


@dataclass(frozen=True)
class LobeScore:
    iou: float
    hd95_mm: float | None  # None when not computed


def image_diagonal_mm(shape_zyx: tuple[int, ...], spacing_mm_zyx: tuple[float, ...]) -> float:
    """Length of the image's diagonal (extent = voxels x spacing on each axis)."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape_zyx, spacing_mm_zyx))))


def lobe_score(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    with_hd95: bool = True,
) -> LobeScore:
    """IoU and HD95 (mm) of two binary masks on the same grid (array axes = spacing order)."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return LobeScore(1.0, 0.0 if with_hd95 else None)
    if not has_pred or not has_ref:
        return LobeScore(0.0, image_diagonal_mm(pred.shape, spacing_mm_zyx) if with_hd95 else None)
    box = bounding_box(pred | ref, margin=1)
    p, r = pred[box], ref[box]
    cm = calculate_confusion_matrix(r.astype(np.uint8), p.astype(np.uint8), labels=[0, 1])
    iou = float(jaccard_from_confusion_matrix(cm)[1])
    hd95 = None
    if with_hd95:
        hd95 = float(percentile_hausdorff_distance(p, r, percentile=0.95, voxelspacing=tuple(spacing_mm_zyx)))
    return LobeScore(iou, hd95)


def lobe_scores(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    with_hd95: bool = True,
) -> dict[str, LobeScore]:
    """Scores of every lobe of two label volumes, keyed by lobe abbreviation (LUL, ...)."""
    return {
        lobe.name: lobe_score(pred_labels == int(lobe), ref_labels == int(lobe), spacing_mm_zyx, with_hd95)
        for lobe in LOBES
    }


def mean_lobe_iou(pred_labels: np.ndarray, ref_labels: np.ndarray) -> float:
    """Mean IoU over the lobes present in either label map; NaN when neither has a lobe.

    A lobe absent from both is left out of the mean rather than counted as a free 1 (a scan
    without a right middle lobe must not raise the agreement); per lobe, the IoU is ``lobe_score``'s.
    """
    ious = [
        lobe_score(pred_labels == int(lobe), ref_labels == int(lobe), (1.0, 1.0, 1.0), with_hd95=False).iou
        for lobe in LOBES
        if (pred_labels == int(lobe)).any() or (ref_labels == int(lobe)).any()
    ]
    return float(np.mean(ious)) if ious else float("nan")
