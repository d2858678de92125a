"""Voxel grids, the patient frame, and resampling from the model grid to the output grid.

Arrays are indexed [z, y, x] (SimpleITK's ``GetArrayFromImage`` order). Physical coordinates are
LPS as ITK uses them: +x towards the patient's left, +y posterior, +z superior. The image direction
is the identity, so the patient's anatomy is placed in LPS directly.

The anatomy is built on a *model grid* that covers the same field of view as the output grid with
at most ``model_voxels_max`` voxels, and never finer than the output on any axis. Nearest
resampling of the labels to the output then keeps each lobe connected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A regular grid: shape [z, y, x], spacing and origin (x, y, z) in mm."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return (self.shape_zyx[2], self.shape_zyx[1], self.shape_zyx[0])

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def axis_mm(self, axis_xyz: int) -> np.ndarray:
        """Physical coordinates of the voxel centres along x (0), y (1) or z (2)."""
        n = self.size_xyz[axis_xyz]
        return (self.origin_mm[axis_xyz] + self.spacing_mm[axis_xyz] * np.arange(n)).astype(np.float32)


def model_grid(out: Grid, voxels_max: int) -> Grid:
    """The coarsest-needed grid over the same field of view as ``out`` (see module doc)."""
    if int(np.prod(out.shape_zyx)) <= voxels_max:
        return out
    extent = [n * s for n, s in zip(out.size_xyz, out.spacing_mm)]
    iso_mm = min(out.spacing_mm)
    while True:  # grow an isotropic floor on the spacing until the grid fits
        size = [max(1, math.ceil(e / max(s, iso_mm))) for e, s in zip(extent, out.spacing_mm)]
        size = [min(n, m) for n, m in zip(size, out.size_xyz)]
        if int(np.prod(size)) <= voxels_max:
            break
        iso_mm *= 1.03
    spacing = tuple(e / n for e, n in zip(extent, size))
    # Same outer edges: the first voxel centre moves by half the difference of the spacings.
    origin = tuple(o - so / 2 + sm / 2 for o, so, sm in zip(out.origin_mm, out.spacing_mm, spacing))
    return Grid((size[2], size[1], size[0]), spacing, origin)


def rotation_matrix(deg_xyz: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = (math.radians(d) for d in deg_xyz)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class PatientFrame:
    """Patient frame -> scanner (LPS) frame: scanner = rotation @ patient + translation_mm."""

    rotation: np.ndarray
    translation_mm: np.ndarray

    def patient_coords(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient X, Y, Z (mm, float32 arrays [z, y, x]) of every voxel centre of ``grid``."""
        x = grid.axis_mm(0) - self.translation_mm[0]
        y = grid.axis_mm(1) - self.translation_mm[1]
        z = grid.axis_mm(2) - self.translation_mm[2]
        r = self.rotation.astype(np.float32)
        out = []
        for i in range(3):  # patient_i = sum_j R[j, i] * scanner_j (R is orthonormal)
            out.append(r[0, i] * x[None, None, :] + r[1, i] * y[None, :, None] + r[2, i] * z[:, None, None])
        return out[0], out[1], out[2]

    def to_index(self, points_mm: np.ndarray, grid: Grid) -> np.ndarray:
        """Continuous [z, y, x] indices in ``grid`` of patient points (N, 3) given as X, Y, Z."""
        scanner = points_mm @ self.rotation.T + self.translation_mm
        idx_xyz = (scanner - np.asarray(grid.origin_mm)) / np.asarray(grid.spacing_mm)
        return idx_xyz[:, ::-1]


def _source_index(n_out: int, s_out: float, n_src: int, s_src: float) -> np.ndarray:
    """Continuous source index of each output voxel centre (grids share their outer edges)."""
    return np.clip((np.arange(n_out) + 0.5) * s_out / s_src - 0.5, 0, n_src - 1)


def nearest_indices(src: Grid, dst: Grid) -> list[np.ndarray]:
    """Per axis [z, y, x]: the source voxel nearest to each destination voxel."""
    out = []
    for a in range(3):
        i = 2 - a
        u = _source_index(dst.size_xyz[i], dst.spacing_mm[i], src.size_xyz[i], src.spacing_mm[i])
        out.append(np.floor(u + 0.5).astype(np.intp))
    return out


def linear_weights(src: Grid, dst: Grid) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per axis [z, y, x]: (lower index, upper index, upper weight) for linear interpolation."""
    out = []
    for a in range(3):
        i = 2 - a
        u = _source_index(dst.size_xyz[i], dst.spacing_mm[i], src.size_xyz[i], src.spacing_mm[i])
        lo = np.floor(u).astype(np.intp)
        hi = np.minimum(lo + 1, src.size_xyz[i] - 1)
        out.append((lo, hi, (u - lo).astype(np.float32)))
    return out


def upsample_nearest(volume: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """Nearest-neighbour resampling between grids with shared edges."""
    if src == dst:
        return volume
    iz, iy, ix = nearest_indices(src, dst)
    return volume.take(ix, axis=2).take(iy, axis=1).take(iz, axis=0)


def upsample_linear_xy(volume: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """Linear resampling in x and y only (z is left at the source's slices)."""
    (_, (ylo, yhi, yw), (xlo, xhi, xw)) = linear_weights(src, dst)
    if src.size_xyz[0] != dst.size_xyz[0] or src.spacing_mm[0] != dst.spacing_mm[0]:
        volume = volume.take(xlo, axis=2) * (1 - xw) + volume.take(xhi, axis=2) * xw
    if src.size_xyz[1] != dst.size_xyz[1] or src.spacing_mm[1] != dst.spacing_mm[1]:
        yw = yw[:, None]
        volume = volume.take(ylo, axis=1) * (1 - yw) + volume.take(yhi, axis=1) * yw
    return volume.astype(np.float32, copy=False)
