"""Step 1: the input checks, and the scan on the network grid.

``preprocess`` (algorithm/preprocessing.py) reorients the scan once, to LPS; the canonical image
it returns with the network-grid scan is what the lung and fissure steps read, so no later step
reorients the scan again.
"""

from __future__ import annotations

import SimpleITK as sitk

from algorithm.io.validation import check_geometry, check_intensities, check_lungs_present
from algorithm.preprocessing import PreprocessedScan, preprocess

__all__ = ["PreprocessedScan", "check_input", "preprocess"]


def check_input(image: sitk.Image) -> tuple[str, ...]:
    """A 3D image in HU that holds lungs (``InputError`` otherwise); the scan's coverage warnings."""
    check_geometry(image)
    check_intensities(sitk.GetArrayViewFromImage(image))
    return tuple(check_lungs_present(image))  # raises "no lungs found" on a non-chest CT
