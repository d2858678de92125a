"""Step 6: the lobes back on the caller's grid: the inverse of the one reorientation, with the
input's exact size, spacing, origin and direction; warnings where the lungs touch the field of view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from algorithm.io.validation import coverage_warnings
from algorithm.preprocessing import PreprocessedScan, canonical_to_input_image


@dataclass(frozen=True)
class InputGridMask:
    mask: sitk.Image  # uint8 lobes with the input's geometry
    warnings: tuple[str, ...]  # coverage: lungs cut by the field of view


def to_input_grid(labels: np.ndarray, scan: PreprocessedScan, image: sitk.Image) -> InputGridMask:
    """Canonical-grid lobes -> the lobe mask on ``image``'s grid."""
    mask = canonical_to_input_image(labels, scan, image)
    return InputGridMask(mask, tuple(coverage_warnings(mask)))
