"""The surface model of the fissure fit: the fissures, the settings, a fissure as a uniform cubic
B-spline height field z = f(y, x) (mm, LPS frame), and what a fit returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


LEFT_OBLIQUE = "left_oblique"
RIGHT_OBLIQUE = "right_oblique"
HORIZONTAL = "right_horizontal"
FISSURES: tuple[str, ...] = (LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL)
# decisions whose surface relabels the lobes: the fit's, and a surface refitted through user points
ACCEPTED_DECISIONS: tuple[str, ...] = ("fit", "points")

@dataclass(frozen=True)
class FitSettings:
    """Working grid, cost weights, search and decision thresholds (docs/design.md argues each)."""

    column_spacing_mm: float = 6.0  # in-plane size of a working column: fissures are smooth at this scale
    slice_spacing_mm: float = 2.0  # working step along z (never finer than the scan's slices)
    band_half_width_mm: float = 4.0  # half width of the band along the surface normal
    outer_band_weight: float = 0.25  # weight of the index in the band twice as wide (centring)
    control_spacing_mm: float = 40.0  # B-spline control grid: the finest undulation the fit can follow
    move_weight: float = 0.1  # cost of moving the whole fissure by move_scale_mm (index units) ...
    move_scale_mm: float = 10.0  # ... quadratic in the shift along the normal
    beyond_weight: float = 5.0  # cost of relabelling the whole lung in columns where the network has one lobe
    bend_weight: float = 2.0  # cost of the displacement's mean squared curvature (_bending)
    plane_offsets_mm: tuple[float, ...] = tuple(float(v) for v in range(-20, 21, 4))  # coarse planes ...
    plane_slopes: tuple[float, ...] = (-0.2, 0.0, 0.2)  # mm per mm, front-back and sideways
    plane_refine_offsets_mm: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # ... refined around the best
    plane_refine_slopes: tuple[float, ...] = (-0.1, -0.05, 0.0, 0.05, 0.1)
    steps_mm: tuple[float, ...] = (4.0, 2.0, 1.0)
    max_sweeps: int = 2
    polish_offsets_mm: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
    polish_slopes: tuple[float, ...] = (-0.02, 0.0, 0.02)
    polish_max_step_mm: float = 1.0  # the polish (re-anchored descent) uses the steps up to this
    accept_ratio: float = 0.8  # the fit's index must be at most this share of the network's ...
    min_index_drop: float = 0.05  # ... and at least this much lower
    max_inplane_mm: float = 3.0  # coarser in plane, the 4 mm band is under two voxels wide: the network stands
    min_band_vessel_ml: float = 0.1  # vessels expected in the network's band at the lung's mean share
    lower_lobe_share: tuple[float, float] = (0.25, 0.75)  # LLL of the left, RLL of the right lung
    rml_share: tuple[float, float] = (0.03, 0.30)  # RML of the right lung
    rml_keep: float = 0.5  # the right oblique fissure keeps at least this share of the network's RML above it
    growth_mm: float = 10.0  # relabel only within this distance (in plane) of where the network has both sides
    moved_mm: float = 0.5  # columns where the fit moved less keep the network's labels exactly
    relabel_margin_mm: float = 10.0  # where it moved, voxels this far beyond the move take the fit's side too


@dataclass
class Surface:
    """z = f(y, x) in mm: uniform cubic B-spline, ``coef_mm[i, j]`` at (knots_y_mm[i], knots_x_mm[j])."""

    knots_y_mm: np.ndarray
    knots_x_mm: np.ndarray
    coef_mm: np.ndarray

    def height_mm(self, y_mm: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        """Heights on the grid of 1-D axes ``y_mm`` x ``x_mm`` (shape (len(y), len(x)))."""
        return _basis(y_mm, self.knots_y_mm) @ self.coef_mm @ _basis(x_mm, self.knots_x_mm).T

    def slope_squared(self, y_mm: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        """|grad f|^2 on the same grid."""
        by, bx = _basis(y_mm, self.knots_y_mm), _basis(x_mm, self.knots_x_mm)
        dby, dbx = _basis(y_mm, self.knots_y_mm, 1), _basis(x_mm, self.knots_x_mm, 1)
        return (dby @ self.coef_mm @ bx.T) ** 2 + (by @ self.coef_mm @ dbx.T) ** 2


@dataclass
class FissureResult:
    """What happened to one fissure (reported in the JSON)."""

    fissure: str
    decision: str  # "fit" or "network"
    reason: str
    index_network: float | None = None  # band index of the network's border (smooth height field)
    index_fit: float | None = None  # band index of the fitted surface
    mean_shift_mm: float | None = None  # mean |fit - network| over the fissure's columns
    max_shift_mm: float | None = None
    relabelled_ml: float = 0.0

    def as_dict(self) -> dict:
        r = lambda v, n: None if v is None else round(float(v), n)  # noqa: E731
        return {
            "decision": self.decision,
            "reason": self.reason,
            "index_network": r(self.index_network, 3),
            "index_fit": r(self.index_fit, 3),
            "mean_shift_mm": r(self.mean_shift_mm, 1),
            "max_shift_mm": r(self.max_shift_mm, 1),
            "relabelled_ml": round(self.relabelled_ml, 1),
        }


@dataclass
class FissureFit:
    """Relabelled lobes, the per-fissure results and the surfaces (mm frame of the input grid)."""

    labels: np.ndarray
    fissures: dict[str, FissureResult] = field(default_factory=dict)
    surfaces: dict[str, Surface] = field(default_factory=dict)  # fitted surfaces (accepted or not)
    network_surfaces: dict[str, Surface] = field(default_factory=dict)  # the network's, smoothed
    settings: FitSettings = field(default_factory=FitSettings)
    details: dict[str, dict] = field(default_factory=dict)  # per fissure, what a fitter adds to the report

    def accepted(self, name: str) -> bool:
        return name in self.fissures and self.fissures[name].decision in ACCEPTED_DECISIONS

    def report(self) -> dict:
        return {name: {**res.as_dict(), **self.details.get(name, {})} for name, res in self.fissures.items()}


# ---------------------------------------------------------------------------------------------
# B-spline basis


def _bspline3(u: np.ndarray, derivative: int = 0) -> np.ndarray:
    """The centred cubic B-spline (or its first or second derivative) at ``u`` (knot units)."""
    a = np.abs(u)
    inner, outer = a < 1, (a >= 1) & (a < 2)
    if derivative == 0:
        return np.where(inner, 2.0 / 3.0 - a**2 + a**3 / 2.0, np.where(outer, (2.0 - a) ** 3 / 6.0, 0.0))
    if derivative == 1:
        return np.sign(u) * np.where(inner, -2.0 * a + 1.5 * a**2, np.where(outer, -0.5 * (2.0 - a) ** 2, 0.0))
    return np.where(inner, -2.0 + 3.0 * a, np.where(outer, 2.0 - a, 0.0))


def _basis(p_mm: np.ndarray, knots_mm: np.ndarray, derivative: int = 0) -> np.ndarray:
    """(points, knots) basis matrix; derivatives are per mm."""
    h = knots_mm[1] - knots_mm[0]
    return _bspline3((np.asarray(p_mm, float)[:, None] - knots_mm[None, :]) / h, derivative) / h**derivative


def _knots(lo_mm: float, hi_mm: float, spacing_mm: float) -> np.ndarray:
    """Knots one spacing beyond both ends, so that every point in [lo, hi] has full support."""
    n = int(np.ceil((hi_mm - lo_mm) / spacing_mm)) + 3
    return lo_mm - spacing_mm + spacing_mm * np.arange(n)
