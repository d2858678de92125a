"""Trachea and main bronchi (the central airways; the lobar trees are grown in ``vessels``)."""

from __future__ import annotations

import numpy as np

from .body import Thorax, tubes_density
from .grid import Grid, PatientFrame


def central_airways(th: Thorax, z_top_mm: float, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Centre lines and lumen radii (mm) of the trachea and the two main bronchi."""
    r = float(rng.uniform(7.5, 10.0))
    carina = np.array([1.0, th.trachea_y + 4.0, th.carina_z])
    top = np.array([0.0, th.trachea_y - 12.0, z_top_mm + 20.0])
    mid = np.array([0.5, th.trachea_y - 2.0, 0.5 * (z_top_mm + th.carina_z)])
    trachea = (np.stack([top, mid, carina]), np.array([r, r, 0.9 * r]))
    left = (np.stack([carina, th.hilum(+1)]), np.array([0.75 * r, 0.6 * r]))
    right = (np.stack([carina, th.hilum(-1)]), np.array([0.8 * r, 0.7 * r]))
    return [trachea, left, right]


def render_central_airways(
    th: Thorax, grid: Grid, frame: PatientFrame, z_top_mm: float, rng: np.random.Generator, wall_factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wall occupancy, lumen occupancy, exclusion mask for the lungs) on the model grid."""
    tubes = central_airways(th, z_top_mm, rng)
    wall = tubes_density(grid, frame, tubes, extra_mm=1.8 * wall_factor)
    lumen = tubes_density(grid, frame, tubes)
    keep_out = tubes_density(grid, frame, tubes, extra_mm=1.8 * wall_factor + 2.0) > 0.05
    return wall, lumen, keep_out
