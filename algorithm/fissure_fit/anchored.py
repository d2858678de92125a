"""Public hooks for fits anchored at points (algorithm/fissure_points/): the network's smoothed
fissures without any search, and one fissure's height field refitted through anchor points.

A user's point on a fissure is the strongest evidence there is: the refit moves the network's
surface by the smoothest displacement (thin-plate energy on the B-spline's control grid) that
carries it through the points, so a fissure misplaced as a whole moves as a whole and the shape
the network gave it survives between the points. Where the control grid is too coarse for the
points to be met within the tolerance, it is refined (halved) and the surface resampled exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from algorithm.fissure_fit.evidence import _lung, Problem
from algorithm.fissure_fit.model import HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE, FitSettings, Surface, _basis
from algorithm.fissure_fit.optimiser import _active_points, _anchored_cost, _descend, _least_squares, _network_targets
from algorithm.labels import Lobe


@dataclass(frozen=True)
class AnchorSettings:
    """How a surface is carried through anchor points (``refit_through_points``)."""

    tolerance_mm: float = 0.5  # largest vertical residual at a point before the control grid is refined
    max_refinements: int = 3  # control spacing halved at most this often (40 mm -> 5 mm)
    tilt_length_mm: float = 50.0  # a tilt of t weighs like a misfit of t * this length ...
    tilt_points: float = 3.0  # ... at this many points: few points shift a fissure more than they tilt it
    reach_mm: float = 25.0  # what the plane leaves at the points fades over about this distance
    stiffness: float = 1e-2  # energy of that local correction against the points' squared misfit
    evidence: bool = False  # polish between the points by the vessel-sparse band (off: on phantoms it did not help)
    point_weight: float = 0.05  # evidence polish: cost of a mean squared misfit at the points of 1 mm^2 (index units)
    polish_steps_mm: tuple[float, ...] = (4.0, 2.0, 1.0)  # evidence polish: control-point steps


def network_surfaces(
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    settings: FitSettings | None = None,
    right_oblique: Surface | None = None,
    extrapolate: bool = False,
) -> dict[str, Surface]:
    """The smooth least-squares height field through the network's border of each fissure present
    (the fit's start, ``fit_fissures``' ``network_surfaces``), in the frame of ``labels``' grid.

    ``right_oblique``: the oblique surface that bounds the horizontal fissure's domain (default the
    network's own), so that a corrected oblique fissure can carry the horizontal one's domain.
    ``extrapolate``: beyond the columns where the network has both sides, the surface continues
    smoothly (instead of bending to pass just outside the lung there): what points move.
    """
    settings = settings or FitSettings()
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    no_vessels = np.zeros(labels.shape, bool)  # the start reads the lobes only
    region = labels > 0
    out: dict[str, Surface] = {}
    left = _lung(labels, (Lobe.LUL, Lobe.LLL), no_vessels, region, spacing, settings)
    if left is not None and min(left.total(f"lobe{int(v)}").sum() for v in (Lobe.LUL, Lobe.LLL)) > 0:
        out[LEFT_OBLIQUE] = _start(Problem(left, (Lobe.LLL,), (Lobe.LUL,), settings), extrapolate)
    right = _lung(labels, (Lobe.RUL, Lobe.RLL, Lobe.RML), no_vessels, region, spacing, settings)
    if right is None:
        return out
    counts = {v: right.total(f"lobe{int(v)}").sum() for v in (Lobe.RUL, Lobe.RLL, Lobe.RML)}
    if counts[Lobe.RLL] > 0 and counts[Lobe.RUL] + counts[Lobe.RML] > 0:
        out[RIGHT_OBLIQUE] = _start(Problem(right, (Lobe.RLL,), (Lobe.RUL, Lobe.RML), settings), extrapolate)
    if RIGHT_OBLIQUE in out and counts[Lobe.RML] > 0 and counts[Lobe.RUL] > 0:
        oblique = right_oblique or out[RIGHT_OBLIQUE]
        floor_u = right.u(oblique.height_mm(right.axis_mm(1), right.axis_mm(2)).ravel()[right.columns])
        out[HORIZONTAL] = _start(Problem(right, (Lobe.RML,), (Lobe.RUL,), settings, floor_u), extrapolate)
    return out


def _start(problem: Problem, extrapolate: bool) -> Surface:
    targets, weight = _network_targets(problem)
    if extrapolate and problem.fissure_columns.sum() >= 3:
        # where the network saw one lobe only its fissure is unknown: the smoothness carries it on
        weight = np.where(problem.fissure_columns, weight, 0.0)
    return Surface(problem.knots_y, problem.knots_x, _least_squares(problem, targets, weight))


def polish_with_evidence(
    surface: Surface,
    fissure: str,
    labels: np.ndarray,
    vessel: np.ndarray,
    region: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    points_zyx_mm: np.ndarray,
    settings: FitSettings | None = None,
    anchor: AnchorSettings | None = None,
    right_oblique: Surface | None = None,
) -> Surface:
    """``surface`` (on the fit's control grid of ``labels``' lung, as ``network_surfaces`` gives it)
    moved towards the scan's vessel-sparse band between the points: coordinate descent on the fit's
    cost (band index, move and bending from ``surface``) plus the points' mean squared misfit times
    ``point_weight``. The points still decide where the fissure is; the band shapes it between them.
    Returns ``surface`` unchanged where the lung holds no vessels to judge by."""
    settings, anchor = settings or FitSettings(), anchor or AnchorSettings()
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    problem = _fissure_problem(fissure, labels, vessel, region, spacing, settings, right_oblique)
    if problem is None or problem.lung.vessel_share <= 0 or surface.coef_mm.shape != (len(problem.knots_y), len(problem.knots_x)):
        return surface
    _network_targets(problem)  # sets the fissure's columns, which the move and bending terms average over
    coef = surface.coef_mm.copy()
    ev = problem.evaluate(coef)
    if ev.region <= 0:
        return surface
    fit_cost = _anchored_cost(problem, coef.copy(), (ev.region, ev.outer_region))
    p = np.asarray(points_zyx_mm, float).reshape(-1, 3)
    by, bx = _basis(p[:, 1], problem.knots_y), _basis(p[:, 2], problem.knots_x)

    def cost(c: np.ndarray) -> float:
        misfit = p[:, 0] - np.einsum("pi,ij,pj->p", by, c, bx)
        return fit_cost(c) + anchor.point_weight * float(np.mean(misfit**2))

    if not np.isfinite(cost(coef)):  # the anchored surface breaks a lobe constraint: nothing to polish from
        return surface
    coef = _descend(cost, coef, _active_points(problem), anchor.polish_steps_mm, settings.max_sweeps)
    return Surface(problem.knots_y, problem.knots_x, coef)


def _fissure_problem(fissure, labels, vessel, region, spacing, settings, right_oblique) -> Problem | None:
    """The fissure's problem with its vessels and no share limits (the points bound the lobes)."""
    if fissure == LEFT_OBLIQUE:
        left = _lung(labels, (Lobe.LUL, Lobe.LLL), vessel, region, spacing, settings)
        return None if left is None else Problem(left, (Lobe.LLL,), (Lobe.LUL,), settings)
    right = _lung(labels, (Lobe.RUL, Lobe.RLL, Lobe.RML), vessel, region, spacing, settings)
    if right is None:
        return None
    if fissure == RIGHT_OBLIQUE:
        return Problem(right, (Lobe.RLL,), (Lobe.RUL, Lobe.RML), settings)
    if right_oblique is None:
        return None
    y_mm, x_mm = right.axis_mm(1), right.axis_mm(2)
    obl_mm = right_oblique.height_mm(y_mm, x_mm).ravel()[right.columns]
    slope2 = right_oblique.slope_squared(y_mm, x_mm).ravel()[right.columns]
    band_floor = right.u(obl_mm + settings.band_half_width_mm * np.sqrt(1.0 + slope2))
    return Problem(right, (Lobe.RML,), (Lobe.RUL,), settings, right.u(obl_mm), band_floor)


def point_residuals_mm(surface: Surface, points_zyx_mm: np.ndarray) -> np.ndarray:
    """Distance (mm) of each point to the surface along its normal (signed: positive above).

    The vertical offset times the cosine of the surface's slope: exact for a plane, and for a
    smooth fissure within a fraction of a millimetre at the distances a correction leaves.
    """
    p = np.asarray(points_zyx_mm, float).reshape(-1, 3)
    vertical = p[:, 0] - _at_points(surface, p)
    by, bx = _basis(p[:, 1], surface.knots_y_mm), _basis(p[:, 2], surface.knots_x_mm)
    dby, dbx = _basis(p[:, 1], surface.knots_y_mm, 1), _basis(p[:, 2], surface.knots_x_mm, 1)
    gy = np.einsum("pi,ij,pj->p", dby, surface.coef_mm, bx)
    gx = np.einsum("pi,ij,pj->p", by, surface.coef_mm, dbx)
    return vertical / np.sqrt(1.0 + gy**2 + gx**2)


def plane_through_points(surface: Surface, points_zyx_mm: np.ndarray, settings: AnchorSettings | None = None) -> Surface:
    """``surface`` plus the plane that best meets the points (the first step of
    ``refit_through_points``; same control grid)."""
    return _plus_plane(surface, np.asarray(points_zyx_mm, float).reshape(-1, 3), settings or AnchorSettings())


def refit_through_points(
    surface: Surface, points_zyx_mm: np.ndarray, settings: AnchorSettings | None = None
) -> Surface:
    """``surface`` carried through the points: a plane added to it, then a local correction.

    points_zyx_mm: (n, 3) points in the surface's frame (z, y, x mm). The network places a
    misplaced fissure's shape better than its position, so the points first move the surface by a
    plane (least squares, the tilt held back by a prior worth ``tilt_points`` points: three points
    mostly shift it), then what remains at the points is met by a correction that fades over
    ``reach_mm`` (membrane and bending energy on the control grid, pulled to zero away from the
    points) instead of extrapolating across the lung. Returns the first result, over control grids
    halved from the input's (each with a tenth of the stiffness), whose vertical residual at every
    point is within ``tolerance_mm`` (the finest tried otherwise).
    """
    settings = settings or AnchorSettings()
    p = np.asarray(points_zyx_mm, float).reshape(-1, 3)
    planed = _plus_plane(surface, p, settings)
    for level in range(settings.max_refinements + 1):
        current = _refined(planed, 2**level) if level else planed
        # each level also stiffens less: a finer grid alone cannot make a membrane meet the points
        moved = _local_correction(current, p, settings.stiffness * 0.1**level, settings.reach_mm)
        if np.max(np.abs(p[:, 0] - _at_points(moved, p))) <= settings.tolerance_mm:
            return moved
    return moved


def _at_points(surface: Surface, p: np.ndarray) -> np.ndarray:
    by, bx = _basis(p[:, 1], surface.knots_y_mm), _basis(p[:, 2], surface.knots_x_mm)
    return np.einsum("pi,ij,pj->p", by, surface.coef_mm, bx)


def _plus_plane(surface: Surface, p: np.ndarray, settings: AnchorSettings) -> Surface:
    """The surface plus the plane a + b (y - y0) + c (x - x0) that best meets the points, its tilt
    (b, c) ridged; a cubic B-spline reproduces a plane from its values at the knots."""
    centre = p[:, 1:].mean(axis=0)
    design = np.column_stack([np.ones(len(p)), p[:, 1] - centre[0], p[:, 2] - centre[1]])
    misfit = p[:, 0] - _at_points(surface, p)
    prior = settings.tilt_points * settings.tilt_length_mm**2 * np.diag([0.0, 1.0, 1.0])
    a, b, c = np.linalg.solve(design.T @ design + prior + 1e-9 * np.eye(3), design.T @ misfit)
    ky, kx = surface.knots_y_mm - centre[0], surface.knots_x_mm - centre[1]
    return Surface(surface.knots_y_mm, surface.knots_x_mm, surface.coef_mm + a + b * ky[:, None] + c * kx[None, :])


def _local_correction(surface: Surface, p: np.ndarray, stiffness: float, reach_mm: float) -> Surface:
    """The surface plus the displacement d minimising the points' squared misfit plus
    ``stiffness`` * (|d|^2 / reach^2 + |grad d|^2 + reach^2 |hess d|^2) over the plane (discretised
    on the control grid of spacing h): d meets the points and fades to zero beyond ``reach_mm``."""
    ny, nx = surface.coef_mm.shape
    h = float(surface.knots_y_mm[1] - surface.knots_y_mm[0])
    by, bx = _basis(p[:, 1], surface.knots_y_mm), _basis(p[:, 2], surface.knots_x_mm)
    design = sparse.csr_matrix((by[:, :, None] * bx[:, None, :]).reshape(len(p), ny * nx))
    misfit = p[:, 0] - design @ surface.coef_mm.ravel()
    # sparse: a refined grid has thousands of control points
    eye_y, eye_x = sparse.identity(ny), sparse.identity(nx)
    d2y, d2x = sparse.kron(_diff(ny, 2), eye_x), sparse.kron(eye_y, _diff(nx, 2))
    dxy = sparse.kron(_diff(ny, 1), _diff(nx, 1))
    dy, dx = sparse.kron(_diff(ny, 1), eye_x), sparse.kron(eye_y, _diff(nx, 1))
    reach = reach_mm / h  # in control spacings
    energy = (
        sparse.identity(ny * nx) / reach**2
        + dy.T @ dy + dx.T @ dx
        + reach**2 * (d2y.T @ d2y + d2x.T @ d2x + 2.0 * (dxy.T @ dxy))
    )
    lhs = design.T @ design + stiffness * energy
    shift = sparse_linalg.spsolve(sparse.csc_matrix(lhs), design.T @ misfit)
    return Surface(surface.knots_y_mm, surface.knots_x_mm, surface.coef_mm + shift.reshape(ny, nx))


def _diff(n: int, order: int) -> sparse.csr_matrix:
    """(n - order, n) finite-difference matrix (empty when the grid is too small for it)."""
    return sparse.csr_matrix(np.diff(np.eye(n), order, axis=0))


def _refined(surface: Surface, factor: int) -> Surface:
    """The same height field on a control grid ``factor`` times finer, spanning the same range.

    A uniform cubic B-spline is exactly a B-spline on any grid that subdivides its knots; the
    coefficients are found by least squares on samples twice as dense as the new grid.
    """
    ky, kx = surface.knots_y_mm, surface.knots_x_mm
    h_y, h_x = (ky[1] - ky[0]) / factor, (kx[1] - kx[0]) / factor
    new_y = ky[0] + h_y * np.arange(factor * (len(ky) - 1) + 1)
    new_x = kx[0] + h_x * np.arange(factor * (len(kx) - 1) + 1)
    # samples where the input has full support (one old spacing inside its outer knots)
    sy = np.arange(ky[1], ky[-2] + 1e-9, h_y / 2.0)
    sx = np.arange(kx[1], kx[-2] + 1e-9, h_x / 2.0)
    heights = surface.height_mm(sy, sx)
    b_y, b_x = _basis(sy, new_y), _basis(sx, new_x)
    # separable least squares: (B_y^T B_y)^-1 B_y^T H B_x (B_x^T B_x)^-1, ridged for the outer knots
    gy = b_y.T @ b_y + 1e-9 * np.eye(len(new_y))
    gx = b_x.T @ b_x + 1e-9 * np.eye(len(new_x))
    coef = np.linalg.solve(gy, np.linalg.solve(gx, (b_y.T @ heights @ b_x).T).T)
    return Surface(new_y, new_x, coef)
