"""Pre-processing of the paper (IV.D) and the way back to the input grid.

1. Reorient to LPS (identity-like direction: +x patient left, +y posterior, +z superior) by an
   exact permutation/flip of axes, so every later step may assume the array axes. A scan whose
   direction cosines are more than ``MAX_TILT_DEG`` off every axis permutation (a reformatted or
   tilted series; issue 29) is instead resampled (cubic B-spline) onto an axis-aligned LPS grid that holds
   it: a permutation alone would hand the rotation to the network, trained on upright chests.
2. Clamp HU to [HU_MIN, HU_MAX] and rescale to [0, 1].
3. Resample to ``inplane_size`` x ``inplane_size`` in plane with z made isotropic (linear).
Labels come back by nearest-neighbour resampling and the inverse permutation/flip (or, for a
tilted scan, nearest-neighbour resampling in physical space), and carry the input image's exact
size, spacing, origin and direction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import math

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from algorithm.constants import HU_MAX, HU_MIN, INPLANE_SIZE

CANONICAL_ORIENTATION = "LPS"
# Direction cosines within this of an axis permutation are taken as one (the reorientation is exact);
# headers round their cosines to a few digits, and a degree moves a lobe border by under 3 mm at 15 cm.
MAX_TILT_DEG = 1.0


@dataclass(frozen=True)
class AxisAlignedGrid:
    """The LPS grid a tilted scan was resampled onto for the network (``None`` for other scans)."""

    tilt_deg: float  # largest angle between an image axis and its nearest patient axis
    size_xyz: tuple[int, int, int]
    spacing_mm_xyz: tuple[float, float, float]
    origin_mm_xyz: tuple[float, float, float]

    def section(self) -> dict:
        """What was done, for the report's ``axis_alignment`` section (docs/outputs.md)."""
        return {
            "resampled": True,
            "tilt_deg": round(self.tilt_deg, 2),
            "max_tilt_deg": MAX_TILT_DEG,
            "grid_size_xyz": list(self.size_xyz),
            "grid_spacing_mm_xyz": [round(s, 4) for s in self.spacing_mm_xyz],
            "grid_origin_mm_xyz": [round(s, 3) for s in self.origin_mm_xyz],
        }


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
    axis_aligned: AxisAlignedGrid | None = None  # set when a tilted scan was resampled (not permuted)

    def without_canonical(self) -> PreprocessedScan:
        """The same scan without its canonical image (so that a result does not keep it alive)."""
        return replace(self, canonical=None)


def orientation_of(image: sitk.Image) -> str:
    """The three-letter DICOM orientation closest to the image's direction cosines."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def tilt_deg(direction: tuple[float, ...]) -> float:
    """Largest angle (degrees) between an image axis and the patient axis nearest to it: 0 for
    an axis permutation/flip, 12 for a series tilted 12 degrees about one axis."""
    columns = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    cosines = np.clip(columns.max(axis=0), -1.0, 1.0)  # column j: image axis j in patient space
    return math.degrees(math.acos(float(cosines.min())))


def axis_aligned_grid(image: sitk.Image) -> AxisAlignedGrid:
    """The LPS grid for a tilted ``image``: each patient axis takes the spacing of the image axis
    nearest to it; along the slices' normal (image axis 2) it reaches every voxel of the image, in
    plane it keeps the image's own extent about the image's centre. The network grid of the result
    then has the in-plane spacing the untilted scan would have had (a grid enlarged to every corner
    of a tilted field of view squeezed the anatomy by a third on the 256 x 256 network grid); what
    it cuts off is the corners of the in-plane field of view, outside the reconstruction circle."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    nearest = np.abs(direction).argmax(axis=0)  # image axis j -> patient axis nearest[j]
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = np.asarray(image.GetSize(), dtype=float)
    corners = [image.TransformContinuousIndexToPhysicalPoint(c) for c in
               np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in size], indexing="ij")).reshape(3, -1).T.tolist()]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    if len(set(nearest.tolist())) == 3:
        grid_spacing = np.empty(3)
        grid_spacing[nearest] = spacing
        centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
        for j in (0, 1):  # in plane: the image's own extent, centred
            half = size[j] * spacing[j] / 2.0
            low[nearest[j]], high[nearest[j]] = centre[nearest[j]] - half, centre[nearest[j]] + half
    else:  # two image axes near one patient axis (a 45-degree tilt): every corner, finest spacing
        grid_spacing = np.full(3, spacing.min())
    grid_size = np.maximum(1, np.round((high - low) / grid_spacing)).astype(int)
    origin = (low + high) / 2.0 - grid_spacing * (grid_size - 1) / 2.0  # centred on the box
    return AxisAlignedGrid(tilt_deg(image.GetDirection()), tuple(int(n) for n in grid_size),
                           tuple(float(s) for s in grid_spacing), tuple(float(o) for o in origin))


def resample_onto(image: sitk.Image, grid: AxisAlignedGrid, interpolator: int) -> sitk.Image:
    """``image`` resampled in physical space onto ``grid`` (identity direction), same pixel type,
    the nearest input voxel repeated beyond the input's field of view: air there would open a lung
    cut by the field of view to the outside air, and those voxels never reach the input grid again
    (input voxels outside ``grid``, in the corners of the in-plane field of view, get no lobe)."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(grid.size_xyz)
    resampler.SetOutputSpacing(grid.spacing_mm_xyz)
    resampler.SetOutputOrigin(grid.origin_mm_xyz)
    resampler.SetOutputDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    resampler.SetInterpolator(interpolator)
    resampler.SetUseNearestNeighborExtrapolator(True)
    return resampler.Execute(image)


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


def network_array(hu: np.ndarray, grid_shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """HU (Z, Y, X) -> the network's input on ``grid_shape_zyx`` (normalized, trilinear; float32)."""
    resampled = resample_array(normalize_hu(hu), grid_shape_zyx, "trilinear").numpy()
    return np.ascontiguousarray(resampled, dtype=np.float32)


def preprocess(image: sitk.Image, inplane_size: int = INPLANE_SIZE) -> PreprocessedScan:
    """CT image in HU -> network input grid; the scan's one reorientation (kept in ``canonical``)."""
    orientation, axis_aligned = orientation_of(image), None
    if tilt_deg(image.GetDirection()) > MAX_TILT_DEG:
        axis_aligned = axis_aligned_grid(image)
        orientation, canonical = CANONICAL_ORIENTATION, resample_onto(image, axis_aligned, sitk.sitkBSpline)
    else:
        canonical = image if orientation == CANONICAL_ORIENTATION else to_canonical(image)
    hu = sitk.GetArrayViewFromImage(canonical)
    shape = tuple(int(s) for s in hu.shape)
    spacing = tuple(float(s) for s in reversed(canonical.GetSpacing()))
    grid_shape, grid_spacing = network_grid(shape, spacing, inplane_size)
    return PreprocessedScan(
        array=network_array(hu, grid_shape),
        spacing_mm_zyx=grid_spacing,
        canonical_shape_zyx=shape,
        canonical_spacing_mm_zyx=spacing,
        input_orientation=orientation,
        canonical=canonical,
        axis_aligned=axis_aligned,
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
    """Labels on the reoriented input grid -> a uint8 image with the exact geometry of ``reference``
    (a tilted scan's: nearest neighbour from its axis-aligned grid at each input voxel's centre)."""
    image = sitk.GetImageFromArray(canonical)
    image.SetSpacing(tuple(reversed(scan.canonical_spacing_mm_zyx)))
    if scan.axis_aligned is not None:
        image.SetOrigin(scan.axis_aligned.origin_mm_xyz)
        return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    image = sitk.DICOMOrient(image, scan.input_orientation)
    if image.GetSize() != reference.GetSize():
        raise RuntimeError("internal error: reorientation did not restore the input size")
    image.CopyInformation(reference)
    return image
