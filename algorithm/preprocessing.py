"""Pre-processing of the paper (IV.D) and the way back to the input grid.

1. Reorient to LPS (identity-like direction: +x patient left, +y posterior, +z superior) by an
   exact permutation/flip of axes, so every later step may assume the array axes.
2. Clamp HU to [HU_MIN, HU_MAX] and rescale to [0, 1].
3. Resample to ``inplane_size`` x ``inplane_size`` in plane with z made isotropic (linear).
Labels come back by nearest-neighbour resampling and the inverse permutation/flip, and carry
the input image's exact size, spacing, origin and direction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from algorithm.constants import HU_MAX, HU_MIN, INPLANE_SIZE

CANONICAL_ORIENTATION = "LPS"


@dataclass(frozen=True)
class PreprocessedScan:
    """A CT on the network grid, the input reoriented to LPS, and what is needed to go back to the
    input grid."""

    array: np.ndarray  # float32 (Z, Y, X) in [0, 1]
    spacing_mm_zyx: tuple[float, float, float]  # spacing of ``array``
    canonical_shape_zyx: tuple[int, int, int]  # input after reorientation
    canonical_spacing_mm_zyx: tuple[float, float, float]
    input_orientation: str  # e.g. "LPS", "LAS", "RAI": to undo the reorientation
    # the input in HU reoriented to LPS, read by the lung and fissure steps (the input image itself
    # when it is LPS already: never written to); None once those steps are done
    canonical: sitk.Image | None = None

    def without_canonical(self) -> PreprocessedScan:
        """The same scan without its canonical image (so that a result does not keep it alive)."""
        return replace(self, canonical=None)


def orientation_of(image: sitk.Image) -> str:
    """The three-letter DICOM orientation closest to the image's direction cosines."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Exact axis permutation/flip to LPS (no interpolation)."""
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def normalize_hu(hu: np.ndarray) -> np.ndarray:
    """Clamp to [HU_MIN, HU_MAX] and rescale to [0, 1] (float32)."""
    # one float32 copy; clipping int16 against float bounds directly would make a float64 scan
    out = np.array(hu, dtype=np.float32, copy=True)
    np.clip(out, HU_MIN, HU_MAX, out=out)
    out -= HU_MIN
    out *= 1.0 / (HU_MAX - HU_MIN)
    return out


def network_grid(
    shape_zyx: tuple[int, int, int],
    spacing_mm_zyx: tuple[float, float, float],
    inplane_size: int = INPLANE_SIZE,
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing of the preprocessed grid: ``inplane_size`` in plane, isotropic z.

    The new in-plane voxels cover the same field of view; z takes the mean in-plane spacing
    (equal to both for square pixels and matrices, the usual case).
    """
    nz, ny, nx = shape_zyx
    sz, sy, sx = spacing_mm_zyx
    new_sy, new_sx = sy * ny / inplane_size, sx * nx / inplane_size
    new_sz = 0.5 * (new_sy + new_sx)
    new_nz = max(1, int(round(nz * sz / new_sz)))
    # keep the physical z extent exact for the chosen number of slices
    new_sz = nz * sz / new_nz
    return (new_nz, inplane_size, inplane_size), (new_sz, new_sy, new_sx)


def resample_array(
    array: np.ndarray | torch.Tensor, shape_zyx: tuple[int, int, int], mode: str
) -> torch.Tensor:
    """Resample a (Z, Y, X) array to ``shape_zyx`` over the same extent (voxel-edge aligned).

    mode: "trilinear" for images, "nearest-exact" for labels (voxel-centre nearest neighbour).
    """
    tensor = torch.as_tensor(array)
    if tuple(tensor.shape) == tuple(shape_zyx):
        return tensor
    dtype = tensor.dtype
    work = tensor if dtype.is_floating_point else tensor.float()
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    out = F.interpolate(work[None, None], size=tuple(shape_zyx), mode=mode, **kwargs)[0, 0]
    return out if dtype.is_floating_point else out.round().to(dtype)


def preprocess(image: sitk.Image, inplane_size: int = INPLANE_SIZE) -> PreprocessedScan:
    """CT image in HU -> network input grid; the scan's one reorientation (kept in ``canonical``)."""
    orientation = orientation_of(image)
    canonical = image if orientation == CANONICAL_ORIENTATION else to_canonical(image)
    hu = sitk.GetArrayViewFromImage(canonical)
    shape = tuple(int(s) for s in hu.shape)
    spacing = tuple(float(s) for s in reversed(canonical.GetSpacing()))
    grid_shape, grid_spacing = network_grid(shape, spacing, inplane_size)
    normalized = normalize_hu(hu)
    resampled = resample_array(normalized, grid_shape, "trilinear").numpy()
    return PreprocessedScan(
        array=np.ascontiguousarray(resampled, dtype=np.float32),
        spacing_mm_zyx=grid_spacing,
        canonical_shape_zyx=shape,
        canonical_spacing_mm_zyx=spacing,
        input_orientation=orientation,
        canonical=canonical,
    )


def preprocess_labels(label_image: sitk.Image, grid_shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """A reference label image on the network grid (nearest neighbour), uint8."""
    canonical = to_canonical(label_image)
    labels = torch.from_numpy(sitk.GetArrayFromImage(canonical).astype(np.uint8))
    return resample_array(labels, grid_shape_zyx, "nearest-exact").numpy().astype(np.uint8)


def labels_to_canonical(labels_zyx: np.ndarray, scan: PreprocessedScan) -> np.ndarray:
    """Network-grid labels -> the reoriented input grid (nearest neighbour), uint8 (Z, Y, X)."""
    canonical = resample_array(torch.from_numpy(labels_zyx), scan.canonical_shape_zyx, "nearest-exact")
    return canonical.numpy().astype(np.uint8, copy=False)


def skips_network_voxels(scan: PreprocessedScan) -> bool:
    """True when some input axis is coarser than the network grid (thick slices, small matrix).

    Nearest-neighbour resampling maps each axis monotonically; where every network voxel is hit
    (upsampling) 26-connected regions stay connected, but where the input is coarser some
    network planes are never sampled and a thin lobe tip can come apart.
    """
    return any(c < n for c, n in zip(scan.canonical_shape_zyx, scan.array.shape))


def canonical_to_input_image(canonical: np.ndarray, scan: PreprocessedScan, reference: sitk.Image) -> sitk.Image:
    """Labels on the reoriented input grid -> a uint8 image with the exact geometry of ``reference``."""
    image = sitk.GetImageFromArray(canonical)
    image.SetSpacing(tuple(reversed(scan.canonical_spacing_mm_zyx)))
    image = sitk.DICOMOrient(image, scan.input_orientation)
    if image.GetSize() != reference.GetSize():
        raise RuntimeError("internal error: reorientation did not restore the input size")
    image.CopyInformation(reference)
    return image
