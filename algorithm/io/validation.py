"""Checks that an image can be a chest CT in HU, before any heavy work.

The header is checked before any pixel is read (``check_header``), so that an absurd header
fails in milliseconds instead of allocating; the intensities are checked before preprocessing;
``check_lungs_present`` and ``coverage_warnings`` look for (and at) the lungs. docs/robustness.md
lists every bad input and the behaviour chosen for it.
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.constants import AIR_LUNG_CUT_HU
from algorithm.errors import InputError

MIN_INPLANE_VOXELS = 32
MIN_SLICES = 5
MIN_INPLANE_EXTENT_MM = 100.0  # narrower than any adult hemithorax pair
MIN_Z_EXTENT_MM = 30.0
AIR_HU = -700.0  # lungs and outside air lie below this in any chest CT in HU
MIN_AIR_SHARE = 0.01
MAX_VOXELS = 2_000_000_000  # guard against absurd headers before allocating
BYTES_PER_VOXEL_AT_RUN = 12  # input + float32 HU window + resampled copies, per input voxel
LUNG_HU = AIR_LUNG_CUT_HU  # aerated lung (even dense or fibrotic) lies below this, soft tissue above
MIN_LUNG_ML = 150.0  # air enclosed by the body: a pair of lungs holds litres, sinuses or gas < this
CUT_SIDE_SHARE = 0.4  # a side of the field of view that is this much body cuts through the body
LOOKUP_VOXELS = 128  # per axis, for the lung-presence check on a strided view


def check_geometry(image: sitk.Image) -> None:
    """Dimension, pixel type, size, spacing and direction cosines."""
    check_header(
        image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize(),
        image.GetSpacing(), image.GetDirection(), image.GetSizeOfPixelComponent(),
    )


def check_header(
    dimension: int,
    components: int,
    size: tuple[int, ...],
    spacing: tuple[float, ...],
    direction: tuple[float, ...],
    bytes_per_component: int = 4,
) -> None:
    """The same checks on header values alone (``ImageFileReader.ReadImageInformation``)."""
    if dimension != 3:
        raise InputError(f"expected a 3D CT volume, got a {dimension}D image of size {tuple(size)}")
    if components != 1:
        raise InputError(f"expected a scalar CT volume, got {components} components per voxel")
    if min(size) <= 0:
        raise InputError(f"the image is empty: size {tuple(size)}")
    _check_voxel_count(size, components * bytes_per_component)
    spacing = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        # ITK reads a negative spacing as a flipped axis: a guess that may swap left and right
        raise InputError(f"invalid voxel spacing {tuple(float(s) for s in spacing)} mm: must be positive")
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-3):
        raise InputError(
            "invalid direction cosines: the axes are not orthonormal (degenerate or sheared header)"
        )
    _check_extent(tuple(direction), tuple(size), spacing)


def _check_voxel_count(size: tuple[int, ...], bytes_per_voxel: int) -> None:
    voxels = int(np.prod([int(s) for s in size], dtype=object))
    if voxels > MAX_VOXELS:
        raise InputError(
            f"the header claims {voxels:.3g} voxels (size {tuple(size)}), more than {MAX_VOXELS:.0e}: "
            "a corrupt header?"
        )
    available = _available_memory_bytes()
    needed = voxels * (bytes_per_voxel + BYTES_PER_VOXEL_AT_RUN)
    if available is not None and needed > available:
        raise InputError(
            f"the image of size {tuple(size)} needs about {needed / 2**30:.1f} GiB of memory, "
            f"{available / 2**30:.1f} GiB available"
        )


def _available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _slice_axis(direction: tuple[float, ...]) -> int:
    """Index (x, y, z order) of the image axis closest to the patient's S/I axis."""
    canonical = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)
    return [i for i, letter in enumerate(canonical) if letter in "SI"][0]


def _check_extent(direction: tuple[float, ...], size: tuple[int, ...], spacing: np.ndarray) -> None:
    slice_axis = _slice_axis(direction)
    inplane_axes = [i for i in range(3) if i != slice_axis]
    if min(size[i] for i in inplane_axes) < MIN_INPLANE_VOXELS or size[slice_axis] < MIN_SLICES:
        raise InputError(
            f"image of size {size} is too small to hold the lungs "
            f"(need at least {MIN_INPLANE_VOXELS} voxels in plane and {MIN_SLICES} slices)"
        )
    extent = np.asarray(size) * spacing
    if min(extent[i] for i in inplane_axes) < MIN_INPLANE_EXTENT_MM or extent[slice_axis] < MIN_Z_EXTENT_MM:
        raise InputError(
            f"field of view {' x '.join(f'{e:.1f}' for e in extent)} mm is too small to hold the lungs "
            f"(need at least {MIN_INPLANE_EXTENT_MM:g} mm in plane and {MIN_Z_EXTENT_MM:g} mm along the slices)"
        )


def check_intensities(hu: np.ndarray) -> None:
    """Finite values that look like HU: a chest CT has plenty of air below -700 HU."""
    sample = hu.reshape(-1)[:: max(1, hu.size // 2_000_000)]
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        bad = int(np.count_nonzero(~np.isfinite(hu)))
        raise InputError(f"the image holds NaN or infinite values ({bad} voxels)")
    low = float(np.percentile(sample, 1))
    air_share = float(np.mean(sample < AIR_HU))
    if air_share < MIN_AIR_SHARE:
        raise InputError(
            f"intensities do not look like CT in Hounsfield units (1st percentile {low:.0f}, "
            f"{100 * air_share:.2f} % of voxels below {AIR_HU:.0f}): {_likely_kind(sample)}"
        )


def _likely_kind(sample: np.ndarray) -> str:
    """A guess at what the image is instead, to make the error message actionable."""
    integral = sample.dtype.kind in "iub" or bool(np.all(sample == np.round(sample)))
    values = np.unique(sample) if integral else np.empty(0)
    if integral and 0 < values.size <= 32 and values.min() >= 0 and values.max() <= 255:
        return f"it looks like a label image ({values.size} distinct values from {values.min():g} to {values.max():g})"
    low, high = float(sample.min()), float(sample.max())
    body = sample[sample > 200]
    soft_tissue_at_1024 = body.size > 0 and np.mean(np.abs(body - 1024) < 150) > 0.3
    if integral and low >= 0 and high <= 4095 and soft_tissue_at_1024:
        return (
            f"values {low:.0f} to {high:.0f} with soft tissue near 1024 look like raw stored values "
            "without the rescale intercept (HU = value - 1024)"
        )
    if low >= 0:
        return f"only non-negative values ({low:g} to {high:g}) and no air: an MR image, or raw stored values?"
    return "raw stored values without rescale, an MR image, or a label image?"


def check_lungs_present(image: sitk.Image) -> list[str]:
    """Air enclosed by the body, as a chest CT's lungs are; returns warnings, raises if none.

    Head, neck, abdomen or limb CTs hold at most some tens of mL of enclosed air (sinuses, gas),
    a chest CT litres. Where the field of view cuts through the body, enclosed air cannot be
    told from outside air, so the scan is let through with a warning (a partial scan).
    """
    hu, spacing_zyx = _axial_view(image)
    body = hu > LUNG_HU
    enclosed = np.zeros(body.shape, bool)
    for k in range(body.shape[0]):
        enclosed[k] = ndimage.binary_fill_holes(body[k]) & ~body[k]
    enclosed_ml = float(enclosed.sum() * np.prod(spacing_zyx) / 1000.0)
    if enclosed_ml >= MIN_LUNG_ML:
        return []
    if _body_cut_by_field_of_view(body):
        return [
            f"only {enclosed_ml:.0f} mL of air enclosed by the body and the field of view cuts "
            "through the body: a partial scan? lobes outside it are missing"
        ]
    raise InputError(
        f"no lungs found: only {enclosed_ml:.0f} mL of air inside the body (a chest CT holds litres); "
        "is it a chest CT?"
    )


def _axial_view(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """A strided (slice, row, column) view with the S/I axis first, and its voxel size (mm)."""
    hu = sitk.GetArrayViewFromImage(image)  # (z, y, x) = image axes (2, 1, 0)
    slice_axis_zyx = 2 - _slice_axis(image.GetDirection())
    order = [slice_axis_zyx] + [a for a in range(3) if a != slice_axis_zyx]
    hu = np.transpose(hu, order)
    steps = [max(1, n // LOOKUP_VOXELS) for n in hu.shape]
    spacing_zyx = np.asarray(tuple(reversed(image.GetSpacing())))[order] * steps
    return hu[:: steps[0], :: steps[1], :: steps[2]], spacing_zyx


def _body_cut_by_field_of_view(body: np.ndarray) -> bool:
    """On the median slice holding body, one side of the image is mostly body."""
    filled = [k for k in range(body.shape[0]) if body[k].any()]
    if not filled:
        return False
    middle = body[filled[len(filled) // 2]]
    sides = (middle[0], middle[-1], middle[:, 0], middle[:, -1])
    return max(float(side.mean()) for side in sides) > CUT_SIDE_SHARE


def coverage_warnings(mask: sitk.Image) -> list[str]:
    """Lungs that reach the edge of the scan continue outside it: their volumes are partial."""
    labels = sitk.GetArrayViewFromImage(mask)
    faces = {
        "first slice along x": labels[:, :, 0], "last slice along x": labels[:, :, -1],
        "first slice along y": labels[:, 0, :], "last slice along y": labels[:, -1, :],
        "first slice along z": labels[0], "last slice along z": labels[-1],
    }
    lung_voxels = max(int(np.count_nonzero(labels)), 1)
    touched = [name for name, face in faces.items() if np.count_nonzero(face) > 0.001 * lung_voxels]
    if not touched:
        return []
    return [
        "the lungs reach the edge of the field of view (" + ", ".join(touched) + "): "
        "part of them may lie outside the scan, so lobe volumes may be partial"
    ]
