"""Checks that an image can be a chest CT in HU, before any heavy work."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from algorithm.errors import InputError

MIN_INPLANE_VOXELS = 32
MIN_SLICES = 5
MIN_INPLANE_EXTENT_MM = 100.0  # narrower than any adult hemithorax pair
MIN_Z_EXTENT_MM = 30.0
AIR_HU = -700.0  # lungs and outside air lie below this in any chest CT in HU
MIN_AIR_SHARE = 0.01
MAX_VOXELS = 2_000_000_000  # guard against absurd headers before allocating


def check_geometry(image: sitk.Image) -> None:
    """Dimension, pixel type, size, spacing and direction cosines."""
    if image.GetDimension() != 3:
        raise InputError(
            f"expected a 3D CT volume, got a {image.GetDimension()}D image of size {image.GetSize()}"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected a scalar CT volume, got {image.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    size = image.GetSize()
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"invalid voxel spacing {tuple(spacing)} mm: must be positive")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or not np.allclose(direction @ direction.T, np.eye(3), atol=1e-3):
        raise InputError("invalid direction cosines: the axes are not orthonormal")
    _check_extent(image, size, spacing)


def _check_extent(image: sitk.Image, size: tuple[int, ...], spacing: np.ndarray) -> None:
    canonical = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    # axes of the canonical (L/R, P/A, S/I) frame: find which input axis is the slice axis
    slice_axis = [i for i, letter in enumerate(canonical) if letter in "SI"][0]
    inplane_axes = [i for i in range(3) if i != slice_axis]
    if min(size[i] for i in inplane_axes) < MIN_INPLANE_VOXELS or size[slice_axis] < MIN_SLICES:
        raise InputError(
            f"image of size {size} is too small to hold the lungs "
            f"(need at least {MIN_INPLANE_VOXELS} voxels in plane and {MIN_SLICES} slices)"
        )
    extent = np.asarray(size) * spacing
    if min(extent[i] for i in inplane_axes) < MIN_INPLANE_EXTENT_MM or extent[slice_axis] < MIN_Z_EXTENT_MM:
        raise InputError(
            f"field of view {tuple(np.round(extent, 1))} mm is too small to hold the lungs"
        )


def check_intensities(hu: np.ndarray) -> None:
    """Finite values that look like HU: a chest CT has plenty of air below -700 HU."""
    sample = hu.reshape(-1)[:: max(1, hu.size // 2_000_000)]
    if not np.all(np.isfinite(sample)) or (hu.dtype.kind == "f" and not np.isfinite(hu).all()):
        raise InputError("the image holds NaN or infinite values")
    low = float(np.percentile(sample, 1))
    air_share = float(np.mean(sample < AIR_HU))
    if air_share < MIN_AIR_SHARE:
        raise InputError(
            f"intensities do not look like CT in Hounsfield units (1st percentile {low:.0f}, "
            f"{100 * air_share:.2f} % of voxels below {AIR_HU:.0f}): raw stored values without "
            "rescale, an MR image, or a label image?"
        )
