"""Per-lobe, per-lung and total measures of a lobe mask on the input grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from algorithm.labels import LEFT_LOBES, LOBES, RIGHT_LOBES, Lobe


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres (spacing in mm; 1 mL = 1000 mm^3)."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def lobe_voxel_counts(mask_zyx: np.ndarray) -> dict[Lobe, int]:
    counts = np.bincount(mask_zyx.ravel(), minlength=len(Lobe))
    return {lobe: int(counts[lobe]) for lobe in LOBES}


def volumes_ml(mask: sitk.Image) -> dict[str, float]:
    """Volume in mL of each lobe (keys 'LUL'...), each lung ('left_lung', 'right_lung') and 'total'."""
    counts = lobe_voxel_counts(sitk.GetArrayViewFromImage(mask))
    per_voxel = voxel_volume_ml(mask)
    volumes = {lobe.name: counts[lobe] * per_voxel for lobe in LOBES}
    volumes["left_lung"] = sum(volumes[lobe.name] for lobe in LEFT_LOBES)
    volumes["right_lung"] = sum(volumes[lobe.name] for lobe in RIGHT_LOBES)
    volumes["total"] = volumes["left_lung"] + volumes["right_lung"]
    return {key: round(value, 3) for key, value in volumes.items()}
