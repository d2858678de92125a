"""The optimiser: the cost of a surface, the start (the smooth least-squares height field through
the network's border), the deterministic search (planes, then control points, then a polish) and
the decision per fissure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from algorithm.fissure_fit.evidence import Evaluation, Problem
from algorithm.fissure_fit.model import FissureResult, Surface

LEAST_SQUARES_SMOOTHING = 0.1  # weight of the second differences when the start follows the network


def _bending(problem: Problem, d_coef: np.ndarray) -> float:
    """Mean squared curvature of a displacement over the fissure's columns, in units of the
    control spacing ((mm/mm^2 * mm)^2): the surface's smoothness beyond what the B-spline gives."""
    curv = (problem.ddby @ d_coef @ problem.bx.T) ** 2 + (problem.by @ d_coef @ problem.ddbx.T) ** 2
    cols = problem.lung.columns[problem.fissure_columns]
    return float(np.mean(curv.ravel()[cols])) * problem.settings.control_spacing_mm**2


def band_excess(vessels: float, region: float, share: float, ref_region: float) -> float:
    """The band index written as (vessels - share * region) / (share * max(region, ref_region)) + 1.

    With ``ref_region`` the network band's size this is the index itself for bands at least that
    large, but a band cannot lower it by shrinking (pushing the surface out of the lung or into the
    other fissure's band to drop columns) nor by growing over vessel-poor lung.
    """
    return (vessels - share * region) / (share * max(region, ref_region)) + 1.0


def band_evidence(problem: Problem, ev: Evaluation, ref: tuple[float, float]) -> float:
    """The band term of the cost: the band's excess plus the twice-as-wide band's, weighted
    (``ref``: the network band's sizes, see ``band_excess``)."""
    share = problem.lung.vessel_share
    band = band_excess(ev.vessels, ev.region, share, ref[0])
    if problem.settings.outer_band_weight > 0:
        band += problem.settings.outer_band_weight * band_excess(ev.outer_vessels, ev.outer_region, share, ref[1])
    return band


def _cost(problem: Problem, coef: np.ndarray, anchor: np.ndarray, anchor_mm: np.ndarray, cos2: np.ndarray,
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
    band = band_evidence(problem, ev, ref)
    moved = float(np.mean((ev.f_mm[problem.fissure_columns] - anchor_mm) ** 2 * cos2)) / s.move_scale_mm**2
    bend = _bending(problem, coef - anchor)
    beyond = max(0.0, ev.changed_beyond - base_beyond) / problem.lung_total
    return float(band + s.move_weight * moved + s.bend_weight * bend + s.beyond_weight * beyond)


# ---------------------------------------------------------------------------------------------
# Start: the smooth height field through the network's border


def _network_targets(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
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


def _least_squares(problem: Problem, targets_mm: np.ndarray, weight: np.ndarray) -> np.ndarray:
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


def local_search(problem: Problem, start: np.ndarray) -> np.ndarray:
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


def _plane_search(cost, problem: Problem, start: np.ndarray, around: tuple[float, float, float], offsets_mm, slopes):
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


def _anchored_cost(problem: Problem, anchor: np.ndarray, ref_region: tuple[float, float]):
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


def _active_points(problem: Problem) -> list[tuple[int, int]]:
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


def share_limits(network_share: float, plausible: tuple[float, float]) -> tuple[float, float]:
    """A lobe's share may move within the anatomical range, widened to hold the network's own."""
    return min(plausible[0], network_share), max(plausible[1], network_share)


@dataclass
class Fitted:
    """One fissure's outcome: the decision, the network's smoothed border and the fitted surface;
    ``details`` holds what a fitter reports beyond ``result`` (the global search's hypotheses)."""

    result: FissureResult
    start: Surface
    fit: Surface
    details: dict = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.result.decision == "fit"

    @property
    def chosen(self) -> Surface:
        """The surface the lobes follow: the fit where it was accepted, else the network's border."""
        return self.fit if self.accepted else self.start


@dataclass
class NetworkStart:
    """The smooth height field through the network's border and its band; ``refusal`` is set
    (the network's border stands) when the band holds too little vessel signal to judge."""

    coef: np.ndarray
    surface: Surface
    evaluation: Evaluation
    index: float
    refusal: Fitted | None


def network_start(name: str, problem: Problem, voxel_ml: float) -> NetworkStart:
    """Where every fitter of ``problem`` starts: the network's border, and whether to judge at all."""
    targets, weight = _network_targets(problem)
    start = _least_squares(problem, targets, weight)
    start_surface = Surface(problem.knots_y, problem.knots_x, start)
    ev_net = problem.evaluate(start)
    index_net = problem.index(ev_net)
    expected_ml = ev_net.region * problem.lung.vessel_share * voxel_ml
    refusal = None
    if not np.isfinite(index_net) or expected_ml < problem.settings.min_band_vessel_ml:
        reason = f"too little vessel signal in the band ({expected_ml:.2f} mL of vessels expected)"
        result = FissureResult(name, "network", reason, None if not np.isfinite(index_net) else index_net)
        refusal = Fitted(result, start_surface, start_surface)
    return NetworkStart(start, start_surface, ev_net, index_net, refusal)


def fit_one(name: str, problem: Problem, voxel_ml: float) -> Fitted:
    """The local fit of one fissure: the search from the network's border, accepted when its band
    index is clearly lower."""
    s = problem.settings
    net = network_start(name, problem, voxel_ml)
    if net.refusal is not None:
        return net.refusal
    start, start_surface, ev_net, index_net = net.coef, net.surface, net.evaluation, net.index
    lung = problem.lung
    coef = local_search(problem, start)
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
    return Fitted(result, start_surface, fit_surface)
