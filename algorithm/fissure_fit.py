"""Fit each fissure to the scan: smooth height fields through the vessel-sparse bands.

Vessels and bronchi do not cross the fissures, so on CT a band along a correct fissure holds few
vessels even where the fissure itself is too thin to see (the border vessel index). This module
moves the network's fissures to where that band is emptiest, as little as the evidence requires.

Model (docs/design.md, "Fissure fit"): each fissure is a height field z = f(y, x) in the LPS frame
(z superior, y posterior, x to the patient's left; all in mm, ``index * spacing``), a uniform
cubic B-spline on a coarse control grid, as the phantom generator models fissures. A lung voxel
lies above or below each surface; the lobes follow:

- left lung: LUL above the left oblique fissure, LLL below;
- right lung: RLL below the right oblique fissure; above it, RML below the horizontal fissure and
  RUL above it. The RML is thus always bounded by both right fissures and lies below the RUL; the
  optimiser also keeps it anterior to the RLL and its share plausible.

Cost of a surface (lower is better), evaluated on working columns (``column_spacing_mm`` in plane,
``slice_spacing_mm`` along z) from per-column cumulative counts, so one evaluation costs
O(columns):

    J = band index + move_weight * share of the lung relabelled + bend_weight * bending

The band index is the vessel share within ``band_half_width_mm`` (measured along the surface
normal) of the surface, over the vessel share of the whole lung (issue 20's border vessel index
restricted to the caller's ``region``). The optimiser is deterministic: the smooth least-squares
height field through the network's border, then a grid search over planes added to it (level and
two tilts), then coordinate descent on the control points with halving steps.

Decision: a fitted fissure replaces the network's only when its index is clearly lower
(``accept_ratio`` and ``min_index_drop``) and the band holds enough vessels to judge
(``min_band_vessel_ml``); otherwise the network's border stands, with the reason reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.boxes import bounding_box
from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES
from algorithm.labels import Lobe
from algorithm.preprocessing import CANONICAL_ORIENTATION, orientation_of, to_canonical
from algorithm.report.border_index import lattice_steps, vessel_mask

LEFT_OBLIQUE = "left_oblique"
RIGHT_OBLIQUE = "right_oblique"
HORIZONTAL = "right_horizontal"
FISSURES: tuple[str, ...] = (LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL)
LEAST_SQUARES_SMOOTHING = 0.1  # weight of the second differences when the start follows the network


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

    def accepted(self, name: str) -> bool:
        return name in self.fissures and self.fissures[name].decision == "fit"

    def report(self) -> dict:
        return {name: res.as_dict() for name, res in self.fissures.items()}


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


# ---------------------------------------------------------------------------------------------
# Working grid: per-column cumulative counts of one lung


@dataclass
class _Lung:
    """One lung on the working grid: columns (y, x) and cumulative counts along z (fine voxels)."""

    box: tuple[slice, slice, slice]  # fine-grid box (multiples of the block factor from its start)
    factor: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]  # fine grid (z, y, x)
    shape_w: tuple[int, int]  # working (ny, nx)
    columns: np.ndarray  # flat indices of the working columns that hold lung
    cum: dict[str, np.ndarray]  # name -> (ncol, nzw + 1)
    vessel_share: float  # vessel voxels / region voxels in this lung

    @property
    def dz_mm(self) -> float:
        return self.factor[0] * self.spacing_mm[0]

    @property
    def edge0_mm(self) -> float:
        return (self.box[0].start - 0.5) * self.spacing_mm[0]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Working column centres along y (1) or x (2), in mm."""
        k, s, n = self.factor[axis], self.spacing_mm[axis], self.shape_w[axis - 1]
        return (self.box[axis].start + k * np.arange(n) + (k - 1) / 2.0) * s

    def u(self, z_mm: np.ndarray) -> np.ndarray:
        """Fractional position along the cumulative arrays of a height (mm)."""
        return np.clip((z_mm - self.edge0_mm) / self.dz_mm, 0.0, self.cum["lung"].shape[1] - 1)

    def at(self, name: str, u: np.ndarray) -> np.ndarray:
        """Cumulative count of ``name`` below fractional position ``u`` in each column."""
        cum = self.cum[name]
        i = np.minimum(u.astype(np.int64), cum.shape[1] - 2)
        rows = np.arange(cum.shape[0])
        lo = cum[rows, i]
        return lo + (u - i) * (cum[rows, i + 1] - lo)

    def total(self, name: str) -> np.ndarray:
        return self.cum[name][:, -1]


def _block_sum(mask: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Counts of True per block (one axis at a time; the array is padded to whole blocks)."""
    pad = [(0, (-n) % k) for n, k in zip(mask.shape, factor)]
    a = np.pad(mask, pad) if any(p[1] for p in pad) else mask
    nz, ny, nx = a.shape
    kz, ky, kx = factor
    a = a.reshape(nz // kz, kz, ny, nx).sum(axis=1, dtype=np.uint16)
    a = a.reshape(nz // kz, ny // ky, ky, nx).sum(axis=2, dtype=np.uint16)
    return a.reshape(nz // kz, ny // ky, nx // kx, kx).sum(axis=3, dtype=np.uint16)


def _lung(
    labels: np.ndarray,
    lobes: tuple[Lobe, ...],
    vessel: np.ndarray,
    region: np.ndarray,
    spacing_mm: tuple[float, float, float],
    settings: FitSettings,
) -> _Lung | None:
    side = np.isin(labels, [int(v) for v in lobes])
    box = bounding_box(side)
    if box is None:
        return None
    wanted = (settings.slice_spacing_mm, settings.column_spacing_mm, settings.column_spacing_mm)
    factor = tuple(max(1, int(round(w / s))) for w, s in zip(wanted, spacing_mm))
    lab = labels[box]
    side_box = side[box]
    counts = {f"lobe{int(v)}": _block_sum(lab == int(v), factor) for v in lobes}
    counts["lung"] = sum(counts.values())
    in_region = region[box] & side_box
    counts["region"] = _block_sum(in_region, factor)
    counts["vessel"] = _block_sum(in_region & vessel[box], factor)
    nzw, nyw, nxw = counts["lung"].shape
    columns = np.flatnonzero(counts["lung"].reshape(nzw, -1).sum(axis=0) > 0)
    cum = {}
    for name, c in counts.items():
        per_col = c.reshape(nzw, -1)[:, columns].T.astype(np.float64)
        cum[name] = np.concatenate([np.zeros((len(columns), 1)), np.cumsum(per_col, axis=1)], axis=1)
    n_region = cum["region"][:, -1].sum()
    share = float(cum["vessel"][:, -1].sum() / n_region) if n_region > 0 else 0.0
    return _Lung(box, factor, spacing_mm, (nyw, nxw), columns, cum, share)


# ---------------------------------------------------------------------------------------------
# One fissure's cost


class _Stack:
    """Several cumulative counts of one lung stacked, read together at fractional positions."""

    def __init__(self, channels: list[np.ndarray]) -> None:
        self.n = channels[0].shape[1]  # nzw + 1
        self.flat = np.stack([c.ravel() for c in channels])  # (channels, ncol * n): take() is fast
        self.base = np.arange(channels[0].shape[0]) * self.n

    def at(self, u: np.ndarray) -> np.ndarray:
        """(channels, ncol) cumulative counts below ``u`` (linear inside a working voxel)."""
        i = u.astype(np.int64)
        np.minimum(i, self.n - 2, out=i)
        idx = self.base + i
        lo = self.flat.take(idx, axis=1)
        return lo + (u - i) * (self.flat.take(idx + 1, axis=1) - lo)


@dataclass
class _Evaluation:
    """What one surface does: band counts, relabelled voxels, lower-class volume per column."""

    vessels: float
    region: float
    changed: float
    lower_volume: np.ndarray
    u: np.ndarray
    f_mm: np.ndarray  # surface height per column
    slope2: np.ndarray  # squared slope per column
    outer_vessels: float = 0.0  # the same counts in the band twice as wide
    outer_region: float = 0.0
    changed_beyond: float = 0.0  # relabelled voxels in the columns where the network has one lobe only


class _Problem:
    """One fissure on one lung: the network's classes below (``lower``) and above (``upper``) it.

    ``floor_u`` (per column, fractional working index) is where the surface's domain starts: 0 for
    the oblique fissures, the oblique fissure for the horizontal one; ``band_floor_u`` keeps the
    horizontal fissure's band out of the oblique fissure's band.
    """

    def __init__(
        self,
        lung: _Lung,
        lower: tuple[Lobe, ...],
        upper: tuple[Lobe, ...],
        settings: FitSettings,
        floor_u: np.ndarray | None = None,
        band_floor_u: np.ndarray | None = None,
        share_limits: tuple[float, float] = (0.0, 1.0),
        anterior_of: np.ndarray | None = None,
        keep: tuple[Lobe, float] | None = None,
    ) -> None:
        self.lung, self.settings, self.share_limits = lung, settings, share_limits
        zeros = np.zeros(len(lung.columns))
        self.floor_u = zeros if floor_u is None else floor_u
        self.band_floor_u = zeros if band_floor_u is None else band_floor_u
        y_mm, x_mm = lung.axis_mm(1), lung.axis_mm(2)
        self.knots_y = _knots(float(y_mm[0]), float(y_mm[-1]), settings.control_spacing_mm)
        self.knots_x = _knots(float(x_mm[0]), float(x_mm[-1]), settings.control_spacing_mm)
        self.by, self.bx = _basis(y_mm, self.knots_y), _basis(x_mm, self.knots_x)
        self.dby, self.dbx = _basis(y_mm, self.knots_y, 1), _basis(x_mm, self.knots_x, 1)
        self.ddby, self.ddbx = _basis(y_mm, self.knots_y, 2), _basis(x_mm, self.knots_x, 2)
        cum = lung.cum
        self.lower_cum = sum((cum[f"lobe{int(v)}"] for v in lower), np.zeros_like(cum["lung"]))
        self.upper_cum = sum((cum[f"lobe{int(v)}"] for v in upper), np.zeros_like(cum["lung"]))
        self.band_stack = _Stack([cum["vessel"], cum["region"]])
        self.class_stack = _Stack([cum["lung"], self.upper_cum, self.lower_cum])
        self.at_floor = self.class_stack.at(self.floor_u)
        self.lung_total = float(cum["lung"][:, -1].sum())
        self.lower_total = float(self.lower_cum[:, -1].sum())
        self.y_columns = np.repeat(y_mm, len(x_mm))[lung.columns]
        self.anterior_of = anterior_of
        # (lobe above the surface, share of its network voxels that must stay above it)
        self.keep = None
        if keep is not None:
            kept_cum = cum[f"lobe{int(keep[0])}"]
            stack = _Stack([kept_cum])
            total = float(kept_cum[:, -1].sum())
            self.keep = (stack, stack.at(self.floor_u)[0], total, keep[1] * total)
        self.fissure_columns = np.ones(len(lung.columns), bool)  # set from the network's targets
        if anterior_of is not None and anterior_of.sum() > 0:
            self.anterior_y = float((anterior_of * self.y_columns).sum() / anterior_of.sum())
        else:
            self.anterior_y = None

    def heights(self, coef: np.ndarray) -> np.ndarray:
        return self.by @ coef @ self.bx.T

    def evaluate(self, coef: np.ndarray) -> _Evaluation:
        lung = self.lung
        f = self.heights(coef)
        slope2 = (self.dby @ coef @ self.bx.T) ** 2 + (self.by @ coef @ self.dbx.T) ** 2
        f_c = f.ravel()[lung.columns]
        # the band is measured along the normal: its vertical half height grows with the slope
        half = self.settings.band_half_width_mm * np.sqrt(1.0 + slope2.ravel()[lung.columns])
        band = self._band(f_c, half)
        outer = self._band(f_c, 2.0 * half) if self.settings.outer_band_weight > 0 else (0.0, 0.0)
        u = lung.u(f_c)
        top = self.class_stack.at(np.maximum(u, self.floor_u)) - self.at_floor
        # relabelled per column: network upper voxels now below the surface + lower voxels above it
        changed = top[1] + self.lower_cum[:, -1] - (self.at_floor[2] + top[2])
        return _Evaluation(
            band[0], band[1], float(changed.sum()), top[0], u, f_c, slope2.ravel()[lung.columns], outer[0], outer[1],
            float(changed[~self.fissure_columns].sum()),
        )

    def _band(self, f_c: np.ndarray, half_mm: np.ndarray) -> tuple[float, float]:
        """(vessel, region) voxels within ``half_mm`` (vertical, per column) of the surface."""
        lo = np.maximum(self.lung.u(f_c - half_mm), self.band_floor_u)
        hi = np.maximum(self.lung.u(f_c + half_mm), lo)
        band = (self.band_stack.at(hi) - self.band_stack.at(lo)).sum(axis=1)
        return float(band[0]), float(band[1])

    def index(self, ev: _Evaluation) -> float:
        if ev.region <= 0 or self.lung.vessel_share <= 0:
            return float("nan")
        return ev.vessels / ev.region / self.lung.vessel_share

    def feasible(self, ev: _Evaluation) -> bool:
        lo, hi = self.share_limits
        total = ev.lower_volume.sum()
        if not lo <= total / self.lung_total <= hi:
            return False
        if self.keep is not None:
            stack, at_floor, total, least = self.keep
            if total - float((stack.at(np.maximum(ev.u, self.floor_u))[0] - at_floor).sum()) < least:
                return False
        if self.anterior_y is None or total <= 0:
            return True
        return float((ev.lower_volume * self.y_columns).sum() / total) < self.anterior_y


def _bending(problem: _Problem, d_coef: np.ndarray) -> float:
    """Mean squared curvature of a displacement over the fissure's columns, in units of the
    control spacing ((mm/mm^2 * mm)^2): the surface's smoothness beyond what the B-spline gives."""
    curv = (problem.ddby @ d_coef @ problem.bx.T) ** 2 + (problem.by @ d_coef @ problem.ddbx.T) ** 2
    cols = problem.lung.columns[problem.fissure_columns]
    return float(np.mean(curv.ravel()[cols])) * problem.settings.control_spacing_mm**2


def _excess(vessels: float, region: float, share: float, ref_region: float) -> float:
    """The band index written as (vessels - share * region) / (share * max(region, ref_region)) + 1.

    With ``ref_region`` the network band's size this is the index itself for bands at least that
    large, but a band cannot lower it by shrinking (pushing the surface out of the lung or into the
    other fissure's band to drop columns) nor by growing over vessel-poor lung.
    """
    return (vessels - share * region) / (share * max(region, ref_region)) + 1.0


def _cost(problem: _Problem, coef: np.ndarray, anchor: np.ndarray, anchor_mm: np.ndarray, cos2: np.ndarray,
          ref: tuple[float, float], base_beyond: float = 0.0) -> float:
    """Band excess (plus the twice-as-wide band's, which centres the surface where the vessel-free
    zone is wider than the band) + move + bending + lung relabelled where the network saw no
    fissure (columns of one lobe: the move term, over the fissure's columns, does not see them);
    ``ref`` the network's band sizes."""
    ev = problem.evaluate(coef)
    share = problem.lung.vessel_share
    if ev.region <= 0 or share <= 0 or min(ref) <= 0 or not problem.feasible(ev):
        return float("inf")
    s = problem.settings
    band = _excess(ev.vessels, ev.region, share, ref[0])
    if s.outer_band_weight > 0:
        band += s.outer_band_weight * _excess(ev.outer_vessels, ev.outer_region, share, ref[1])
    moved = float(np.mean((ev.f_mm[problem.fissure_columns] - anchor_mm) ** 2 * cos2)) / s.move_scale_mm**2
    bend = _bending(problem, coef - anchor)
    beyond = max(0.0, ev.changed_beyond - base_beyond) / problem.lung_total
    return float(band + s.move_weight * moved + s.bend_weight * bend + s.beyond_weight * beyond)


# ---------------------------------------------------------------------------------------------
# Start: the smooth height field through the network's border


def _network_targets(problem: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the height (mm) that best splits the network's classes, and its weight.

    Columns holding only one class get a target just outside their domain (below it for upper-only
    columns, above for lower-only ones) with a small weight: the fissure passes beyond them.
    """
    lung = problem.lung
    nzw = lung.cum["lung"].shape[1] - 1
    edges = np.arange(nzw + 1, dtype=float)
    lower, upper = problem.lower_cum, problem.upper_cum
    floor = problem.floor_u[:, None]
    # errors at each edge e above the floor: upper voxels below e + lower voxels above e
    up_b = upper - _interp_rows(upper, problem.floor_u)[:, None]
    err = np.maximum(up_b, 0) + (lower[:, -1:] - lower)
    err = np.where(edges[None, :] >= floor, err, np.inf)
    best = err.min(axis=1, keepdims=True)
    tied = err <= best + 1e-9
    first = np.argmax(tied, axis=1)
    last = nzw - np.argmax(tied[:, ::-1], axis=1)
    e = 0.5 * (first + last)
    n_low = lower[:, -1] - _interp_rows(lower, problem.floor_u)
    n_up = upper[:, -1] - _interp_rows(upper, problem.floor_u)
    weight = np.minimum(n_low, n_up)
    one_class = weight <= 0
    dom = _interp_rows(lung.cum["lung"], problem.floor_u)
    has = lung.cum["lung"] > dom[:, None]
    bottom = np.maximum(np.argmax(has, axis=1) - 1, problem.floor_u)
    top = nzw + 1 - np.argmax((lung.cum["lung"] < lung.cum["lung"][:, -1:])[:, ::-1], axis=1)
    e = np.where(one_class & (n_up > 0), bottom - 0.5, e)
    e = np.where(one_class & (n_low > 0), top + 0.5, e)
    # two-class columns count alike once they hold a working voxel of each class
    block = float(np.prod(lung.factor))
    weight = np.where(one_class, 0.1, np.clip(weight / block, 0.1, 1.0))
    problem.fissure_columns = ~one_class if (~one_class).any() else np.ones(len(weight), bool)
    return lung.edge0_mm + lung.dz_mm * e, weight


def _interp_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    i = np.minimum(u.astype(np.int64), cum.shape[1] - 2)
    rows = np.arange(cum.shape[0])
    return cum[rows, i] + (u - i) * (cum[rows, i + 1] - cum[rows, i])


def _least_squares(problem: _Problem, targets_mm: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Control coefficients of the smooth height field through the targets (weighted, regularised)."""
    ny, nx = len(problem.knots_y), len(problem.knots_x)
    cols = problem.lung.columns
    nxw = problem.lung.shape_w[1]
    rows_y, rows_x = cols // nxw, cols % nxw
    design = (problem.by[rows_y][:, :, None] * problem.bx[rows_x][:, None, :]).reshape(len(cols), ny * nx)
    w = np.sqrt(weight / max(weight.max(), 1e-12))
    reg = []
    for axis in (0, 1):
        eye = np.eye(ny * nx).reshape(ny, nx, ny * nx)
        d2 = np.diff(eye, 2, axis=axis).reshape(-1, ny * nx)
        reg.append(d2)
    a = design * w[:, None]
    r = np.concatenate(reg)
    # normal equations: a few hundred unknowns; the regulariser keeps knots without data defined
    lhs = a.T @ a + LEAST_SQUARES_SMOOTHING**2 * (r.T @ r)
    coef = np.linalg.solve(lhs, a.T @ (targets_mm * w))
    return coef.reshape(ny, nx)


# ---------------------------------------------------------------------------------------------
# Search


def _search(problem: _Problem, start: np.ndarray) -> np.ndarray:
    """Deterministic descent: planes added to the start, then control points one at a time, then a
    polish anchored at the result.

    The anchored search finds the vessel-sparse valley near the network's border; its pull towards
    the network would leave the surface short of the valley's floor, so the polish re-anchors the
    move and bending terms at the searched surface and descends with small steps only.
    """
    s = problem.settings
    active = _active_points(problem)
    ev = problem.evaluate(start)
    ref_region = (ev.region, ev.outer_region)
    cost = _anchored_cost(problem, start, ref_region)
    coef, plane = _plane_search(cost, problem, start, (0.0, 0.0, 0.0), s.plane_offsets_mm, s.plane_slopes)
    coef, _ = _plane_search(cost, problem, start, plane, s.plane_refine_offsets_mm, s.plane_refine_slopes)
    coef = _descend(cost, coef, active, s.steps_mm, s.max_sweeps)
    cost = _anchored_cost(problem, coef.copy(), ref_region)
    coef, _ = _plane_search(cost, problem, coef, (0.0, 0.0, 0.0), s.polish_offsets_mm, s.polish_slopes)
    polish = tuple(step for step in s.steps_mm if step <= s.polish_max_step_mm)
    return _descend(cost, coef, active, polish, s.max_sweeps)


def _plane_search(cost, problem: _Problem, start: np.ndarray, around: tuple[float, float, float], offsets_mm, slopes):
    """The best of ``start`` plus a plane (level, front-back and sideways tilt) on the grid of
    candidates centred on the plane ``around``; returns (coefficients, plane)."""
    ky = problem.knots_y - problem.knots_y.mean()
    kx = problem.knots_x - problem.knots_x.mean()
    best_plane = around
    best = start + around[0] + around[1] * ky[:, None] + around[2] * kx[None, :]
    best_cost = cost(best)
    for a in offsets_mm:
        for b in slopes:
            for c in slopes:
                plane = (around[0] + a, around[1] + b, around[2] + c)
                trial = start + plane[0] + plane[1] * ky[:, None] + plane[2] * kx[None, :]
                v = cost(trial)
                if v < best_cost - 1e-12:
                    best, best_cost, best_plane = trial, v, plane
    return best.copy(), best_plane


def _anchored_cost(problem: _Problem, anchor: np.ndarray, ref_region: tuple[float, float]):
    """The cost with its move and bending terms measured from ``anchor``."""
    ev = problem.evaluate(anchor)
    base_beyond = ev.changed_beyond
    anchor_mm = ev.f_mm[problem.fissure_columns]
    cos2 = 1.0 / (1.0 + ev.slope2[problem.fissure_columns])  # vertical -> normal shift, squared
    return lambda c: _cost(problem, c, anchor, anchor_mm, cos2, ref_region, base_beyond)


def _descend(cost, coef: np.ndarray, active: list[tuple[int, int]], steps_mm: tuple[float, ...], max_sweeps: int) -> np.ndarray:
    """Coordinate descent on the control points, each step size until a sweep improves nothing."""
    best_cost = cost(coef)
    for step in steps_mm:
        for _ in range(max_sweeps):
            improved = False
            for i, j in active:
                for delta in (step, -step):
                    coef[i, j] += delta
                    v = cost(coef)
                    if v < best_cost - 1e-12:
                        best_cost, improved = v, True
                        break
                    coef[i, j] -= delta
            if not improved:
                break
    return coef


def _active_points(problem: _Problem) -> list[tuple[int, int]]:
    """Control points whose support holds lung columns (the others cannot change the cost)."""
    nxw = problem.lung.shape_w[1]
    cols = problem.lung.columns
    used_y = (problem.by[cols // nxw] > 0).any(axis=0)
    used_x = (problem.bx[cols % nxw] > 0).any(axis=0)
    grid = np.zeros((len(problem.knots_y), len(problem.knots_x)), bool)
    ys, xs = np.nonzero(used_y)[0], np.nonzero(used_x)[0]
    present = np.zeros(problem.lung.shape_w, bool).ravel()
    present[cols] = True
    present = present.reshape(problem.lung.shape_w)
    for i in ys:
        for j in xs:
            sy = problem.by[:, i] > 0
            sx = problem.bx[:, j] > 0
            grid[i, j] = present[np.ix_(sy, sx)].any()
    return [tuple(p) for p in np.argwhere(grid)]


# ---------------------------------------------------------------------------------------------
# Public entry


def _share_limits(network_share: float, plausible: tuple[float, float]) -> tuple[float, float]:
    """A lobe's share may move within the anatomical range, widened to hold the network's own."""
    return min(plausible[0], network_share), max(plausible[1], network_share)


@dataclass
class _Fitted:
    result: FissureResult
    start: Surface
    fit: Surface

    @property
    def accepted(self) -> bool:
        return self.result.decision == "fit"


def _fit_one(name: str, problem: _Problem, voxel_ml: float) -> _Fitted:
    s = problem.settings
    targets, weight = _network_targets(problem)
    start = _least_squares(problem, targets, weight)
    start_surface = Surface(problem.knots_y, problem.knots_x, start)
    lung = problem.lung
    ev_net = problem.evaluate(start)
    index_net = problem.index(ev_net)
    expected_ml = ev_net.region * lung.vessel_share * voxel_ml
    if not np.isfinite(index_net) or expected_ml < s.min_band_vessel_ml:
        reason = f"too little vessel signal in the band ({expected_ml:.2f} mL of vessels expected)"
        result = FissureResult(name, "network", reason, None if not np.isfinite(index_net) else index_net)
        return _Fitted(result, start_surface, start_surface)
    coef = _search(problem, start)
    fit_surface = Surface(problem.knots_y, problem.knots_x, coef)
    ev_fit = problem.evaluate(coef)
    index_fit = problem.index(ev_fit)
    shift = np.abs(problem.heights(coef) - problem.heights(start)).ravel()[lung.columns]
    clearly = index_fit <= s.accept_ratio * index_net and index_net - index_fit >= s.min_index_drop
    if clearly:
        decision, reason = "fit", f"band index {index_fit:.2f} against the network's {index_net:.2f}"
    else:
        decision = "network"
        reason = f"the fit's band index {index_fit:.2f} is not clearly below the network's {index_net:.2f}"
    relabel_ml = (ev_fit.changed - ev_net.changed) * voxel_ml if clearly else 0.0
    result = FissureResult(name, decision, reason, index_net, index_fit, float(shift.mean()), float(shift.max()), relabel_ml)
    return _Fitted(result, start_surface, fit_surface)


def fit_fissures(
    labels: np.ndarray,
    vessel: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    region: np.ndarray | None = None,
    settings: FitSettings | None = None,
) -> FissureFit:
    """Fit the three fissures to the vessel-sparse bands and relabel the lobes where the fit wins.

    labels: uint8 lobe labels (``Lobe`` values), [z, y, x] in the LPS frame (z superior).
    vessel: boolean vessel mask on the same grid.
    region: where the band index counts (the lung away from pleura and hilum); default the lobes.
    spacing_mm_zyx: the grid's spacing; heights are ``index * spacing`` (mm), so a sub-lattice
        ``a[::k]`` with spacing ``k * s`` shares the frame of the full grid (see ``apply_fit``).
    Returns new labels (a copy; lung extent unchanged), the decisions and the surfaces.
    """
    settings = settings or FitSettings()
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    region = labels > 0 if region is None else region
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = FissureFit(labels=labels, settings=settings)
    if max(spacing[1:]) > settings.max_inplane_mm:
        # vessels are resolved in plane; on a coarse in-plane grid the band is one voxel wide and
        # the index of a smooth surface no longer agrees with the border index of the labels
        reason = f"in-plane voxels of {max(spacing[1:]):.1f} mm (over {settings.max_inplane_mm:g} mm): too coarse for the band"
        out.fissures = {name: FissureResult(name, "network", reason) for name in FISSURES}
        return out
    left = _lung(labels, (Lobe.LUL, Lobe.LLL), vessel, region, spacing, settings)
    if left is None or min(left.total(f"lobe{int(Lobe.LUL)}").sum(), left.total(f"lobe{int(Lobe.LLL)}").sum()) == 0:
        out.fissures[LEFT_OBLIQUE] = FissureResult(LEFT_OBLIQUE, "network", "a left lobe is missing")
    else:
        net_share = left.total(f"lobe{int(Lobe.LLL)}").sum() / left.total("lung").sum()
        limits = _share_limits(net_share, settings.lower_lobe_share)
        fitted = _fit_one(LEFT_OBLIQUE, _Problem(left, (Lobe.LLL,), (Lobe.LUL,), settings, share_limits=limits), voxel_ml)
        _record(out, LEFT_OBLIQUE, fitted)
    _fit_right(labels, vessel, region, spacing, settings, voxel_ml, out)
    out.labels = apply_fit(labels, spacing, out)
    return out


def _record(out: FissureFit, name: str, fitted: _Fitted) -> None:
    out.fissures[name] = fitted.result
    out.surfaces[name] = fitted.fit
    out.network_surfaces[name] = fitted.start


def _fit_right(labels, vessel, region, spacing, settings: FitSettings, voxel_ml: float, out: FissureFit) -> None:
    right = _lung(labels, (Lobe.RUL, Lobe.RLL, Lobe.RML), vessel, region, spacing, settings)
    counts = {} if right is None else {v: right.total(f"lobe{int(v)}").sum() for v in (Lobe.RUL, Lobe.RLL, Lobe.RML)}
    if right is None or counts[Lobe.RLL] == 0 or counts[Lobe.RUL] + counts[Lobe.RML] == 0:
        out.fissures[RIGHT_OBLIQUE] = FissureResult(RIGHT_OBLIQUE, "network", "a right lobe is missing")
        out.fissures[HORIZONTAL] = FissureResult(HORIZONTAL, "network", "a right lobe is missing")
        return
    total = right.total("lung").sum()
    limits = _share_limits(counts[Lobe.RLL] / total, settings.lower_lobe_share)
    oblique = _fit_one(
        RIGHT_OBLIQUE,
        _Problem(right, (Lobe.RLL,), (Lobe.RUL, Lobe.RML), settings, share_limits=limits, keep=(Lobe.RML, settings.rml_keep)),
        voxel_ml,
    )
    _record(out, RIGHT_OBLIQUE, oblique)
    if counts[Lobe.RML] == 0 or counts[Lobe.RUL] == 0:
        out.fissures[HORIZONTAL] = FissureResult(HORIZONTAL, "network", "the RML or the RUL is missing")
        return
    obl = oblique.fit if oblique.accepted else oblique.start
    obl_grid = obl.height_mm(right.axis_mm(1), right.axis_mm(2))
    obl_mm = obl_grid.ravel()[right.columns]
    floor_u = right.u(obl_mm)
    rll = right.at("lung", floor_u)  # right-lung voxels below the oblique fissure, per column
    # the horizontal fissure's band stays out of the oblique fissure's (along its normal)
    slope2 = obl.slope_squared(right.axis_mm(1), right.axis_mm(2))
    band_floor = right.u(obl_mm + settings.band_half_width_mm * np.sqrt(1.0 + slope2.ravel()[right.columns]))
    limits = _share_limits(counts[Lobe.RML] / total, settings.rml_share)
    problem = _Problem(right, (Lobe.RML,), (Lobe.RUL,), settings, floor_u, band_floor, share_limits=limits, anterior_of=rll)
    _record(out, HORIZONTAL, _fit_one(HORIZONTAL, problem, voxel_ml))


# ---------------------------------------------------------------------------------------------
# Relabelling on any grid of the same frame


def apply_fit(labels: np.ndarray, spacing_mm_zyx: tuple[float, float, float], fit: FissureFit) -> np.ndarray:
    """Relabel ``labels`` (any grid whose voxel i lies at ``i * spacing`` mm in the fit's frame) by
    the accepted surfaces. Only columns where the fit moved change (``_slabs``), so wherever it
    did not move the network's labels stand exactly (including shapes a height field cannot
    follow); fissures left to the network keep the network's labels. The work is proportional to
    the moved columns' slabs, not to the scan.
    Returns a copy (the input itself when nothing was accepted); the lung extent never changes."""
    if not any(fit.accepted(name) for name in FISSURES):
        return labels
    out = np.ascontiguousarray(labels).copy()
    flat = out.reshape(-1)
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    if fit.accepted(LEFT_OBLIQUE):
        box = bounding_box((out == Lobe.LUL) | (out == Lobe.LLL))
        if box is not None:
            down, up = _slabs(out.shape, box, spacing, fit, LEFT_OBLIQUE, out[box], (Lobe.LLL,), (Lobe.LUL,))
            _set(flat, down, (Lobe.LUL,), Lobe.LLL)
            _set(flat, up, (Lobe.LLL,), Lobe.LUL)
    if fit.accepted(RIGHT_OBLIQUE) or fit.accepted(HORIZONTAL):
        box = bounding_box(out >= Lobe.RUL)  # RUL, RLL, RML are 3, 4, 5
        if box is not None:
            _relabel_right(flat, out.shape, box, spacing, fit)
    return out


def _column_heights(box: tuple[slice, ...], spacing, surface: Surface) -> np.ndarray:
    """The surface's height (mm) at every column of ``box`` (shape (ny, nx))."""
    y_mm, x_mm = (np.arange(sl.start, sl.stop) * s for sl, s in zip(box[1:], spacing[1:]))
    return surface.height_mm(y_mm, x_mm)


def _voxels_between(shape, box, spacing, lo_mm: np.ndarray, hi_mm: np.ndarray) -> np.ndarray:
    """Flat indices of the box's voxels with lo <= z < hi in their column (voxel i at i * dz mm)."""
    dz = spacing[0]
    first = np.clip(np.ceil(lo_mm / dz), box[0].start, box[0].stop).astype(np.int64)
    stop = np.clip(np.ceil(hi_mm / dz), box[0].start, box[0].stop).astype(np.int64)
    count = np.maximum(stop - first, 0).ravel()
    cols = np.flatnonzero(count)
    if len(cols) == 0:
        return np.zeros(0, np.int64)
    n = count[cols]
    offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    z = np.repeat(first.ravel()[cols], n) + offsets
    nx_box = box[2].stop - box[2].start
    y = np.repeat(cols // nx_box + box[1].start, n)
    x = np.repeat(cols % nx_box + box[2].start, n)
    return (z * shape[1] + y) * shape[2] + x


def _slabs(shape, box, spacing, fit: FissureFit, name: str, labels_box: np.ndarray,
           lower: tuple[Lobe, ...], upper: tuple[Lobe, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(voxels to put below the fissure, voxels to put above it) where the fit moved.

    In the columns where the fitted surface F lies at least ``moved_mm`` from the network's
    smoothed surface S, every voxel within ``relabel_margin_mm`` of the span between them takes
    its side of F: the network's own border there (which S only approximates) is replaced whole,
    leaving no sliver of the old lobe beside the new border. Elsewhere nothing changes, and
    neither does a column farther than ``growth_mm`` (in plane) from every column where the
    network has both of the fissure's sides: where the network saw no fissure (the front of the
    lower lobes, behind the RML) its lobe stands, so a vessel-poor patch there cannot grow a lobe.
    """
    settings = fit.settings
    start = _column_heights(box, spacing, fit.network_surfaces[name])
    new = _column_heights(box, spacing, fit.surfaces[name])
    moved = (np.abs(new - start) >= settings.moved_mm) & _fissure_columns(labels_box, lower, upper, spacing, settings.growth_mm)
    lo = np.where(moved, np.minimum(start, new) - settings.relabel_margin_mm, new)
    hi = np.where(moved, np.maximum(start, new) + settings.relabel_margin_mm, new)
    return _voxels_between(shape, box, spacing, lo, new), _voxels_between(shape, box, spacing, new, hi)


def _fissure_columns(labels_box: np.ndarray, lower, upper, spacing, reach_mm: float) -> np.ndarray:
    """Columns within ``reach_mm`` (in plane) of a column holding both sides of a fissure."""
    both = np.isin(labels_box, [int(v) for v in lower]).any(axis=0) & np.isin(labels_box, [int(v) for v in upper]).any(axis=0)
    reach = [max(1, int(round(reach_mm / s))) for s in spacing[1:]]
    return ndimage.maximum_filter(both, size=(2 * reach[0] + 1, 2 * reach[1] + 1))


def _set(flat: np.ndarray, voxels: np.ndarray, from_lobes: tuple[Lobe, ...], to: Lobe) -> None:
    hit = voxels[np.isin(flat[voxels], [int(v) for v in from_lobes])]
    flat[hit] = to


def _relabel_right(flat: np.ndarray, shape, box, spacing, fit: FissureFit) -> None:
    network_box = flat.reshape(shape)[box].copy()  # the network's right lobes, before any change
    if fit.accepted(RIGHT_OBLIQUE):
        down, up = _slabs(shape, box, spacing, fit, RIGHT_OBLIQUE, network_box, (Lobe.RLL,), (Lobe.RUL, Lobe.RML))
        _set(flat, down, (Lobe.RUL, Lobe.RML), Lobe.RLL)
        lifted = up[flat[up] == Lobe.RLL]
        # voxels the oblique fissure lifts out of the RLL take their side of the horizontal fissure,
        # RML only beside columns where the network has both RML and RUL (no stray RML behind it)
        surface = fit.surfaces[HORIZONTAL] if fit.accepted(HORIZONTAL) else fit.network_surfaces.get(HORIZONTAL)
        if surface is None:
            flat[lifted] = Lobe.RUL
        else:
            heights = _column_heights(box, spacing, surface).ravel()
            near_rml = _fissure_columns(network_box, (Lobe.RML,), (Lobe.RUL,), spacing, fit.settings.growth_mm).ravel()
            z, rest = np.divmod(lifted, shape[1] * shape[2])
            y, x = np.divmod(rest, shape[2])
            column = (y - box[1].start) * (box[2].stop - box[2].start) + (x - box[2].start)
            rml = (z * spacing[0] < heights[column]) & near_rml[column]
            flat[lifted] = np.where(rml, Lobe.RML, Lobe.RUL)
    if fit.accepted(HORIZONTAL):
        down, up = _slabs(shape, box, spacing, fit, HORIZONTAL, network_box, (Lobe.RML,), (Lobe.RUL,))
        _set(flat, down, (Lobe.RUL,), Lobe.RML)
        _set(flat, up, (Lobe.RML,), Lobe.RUL)


# ---------------------------------------------------------------------------------------------
# The pipeline's step


NETWORK_SECTION = {"mode": "network", "fissures": None}  # the report when the network's borders stand


def _check_mode(mode: str) -> str:
    if mode not in FISSURE_MODES:
        raise ValueError(f"fissure mode must be one of {FISSURE_MODES}, not {mode!r}")
    return mode


def refine_fissures(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    lung: np.ndarray | None = None,
    mode: str = DEFAULT_FISSURES,
    settings: FitSettings | None = None,
) -> tuple[np.ndarray, dict]:
    """The fissure step of the pipeline: (lobe labels, report section) for a canonical (LPS) scan.

    hu, labels (and ``lung``, the scan's lung, default the lobes) share one grid. The vessels are
    issue 20's (``border_index.vessel_mask``: lung above -500 HU away from pleura and hilum) on
    the border index's sub-lattice (every k-th voxel, at most 2.5 mm); the surfaces are fitted
    there and the full grid is relabelled by them. ``mode="network"`` returns the labels as they
    are (the paper's path) and says so.
    """
    if _check_mode(mode) == "network":
        return labels, NETWORK_SECTION
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    steps = lattice_steps(spacing)
    sample = tuple(slice(None, None, k) for k in steps)
    lattice_mm = tuple(s * k for s, k in zip(spacing, steps))
    labels_s = np.asarray(labels[sample])
    lung_s = labels_s > 0 if lung is None else np.asarray(lung[sample], dtype=bool)
    vessels = vessel_mask(np.asarray(hu[sample]), lung_s, lattice_mm)
    fit = fit_fissures(labels_s, vessels.vessel, lattice_mm, region=vessels.domain, settings=settings)
    section = {
        "mode": "fit",
        "definition": (
            "each fissure is a smooth height field fitted to the vessel-sparse band from the network's "
            "border; 'fit' where its band index is clearly lower than the network's, else the network's "
            "border stands (docs/design.md, Fissure fit)"
        ),
        "fissures": fit.report(),
    }
    return apply_fit(labels, spacing, fit), section


def refine_mask(image: sitk.Image, mask: sitk.Image, mode: str = DEFAULT_FISSURES) -> tuple[sitk.Image, dict]:
    """``refine_fissures`` on a CT and its lobe mask (SimpleITK images, same grid, any orientation).

    The surfaces are height fields over the patient's axial plane, so the arrays are taken in the
    canonical LPS orientation (an exact axis permutation, a copy only when the scan is not LPS
    already) and the relabelled mask goes back to the input's orientation and geometry.
    """
    if _check_mode(mode) == "network":
        return mask, NETWORK_SECTION
    canonical = orientation_of(image) == CANONICAL_ORIENTATION
    image_c = image if canonical else to_canonical(image)
    mask_c = mask if canonical else to_canonical(mask)
    spacing = tuple(float(s) for s in image_c.GetSpacing()[::-1])
    labels = sitk.GetArrayViewFromImage(mask_c)
    out, section = refine_fissures(sitk.GetArrayViewFromImage(image_c), labels, spacing, mode=mode)
    if out is labels:
        return mask, section
    refined = sitk.GetImageFromArray(out)
    refined.CopyInformation(mask_c)
    for key in mask.GetMetaDataKeys():
        refined.SetMetaData(key, mask.GetMetaData(key))
    if not canonical:
        refined = sitk.DICOMOrient(refined, orientation_of(mask))
    return refined, section
