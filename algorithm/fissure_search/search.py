"""Global fissure search (issue 30): every fissure searched over its anatomical range, anatomy choosing.

Per fissure: the network's border (smoothed, as the local fit starts) and a coarse family of planes
over the anatomical range (hypotheses.py) are scored by the band evidence plus the anatomical prior
(prior.py); the best few that lie apart, and the network's start, are refined by the local fit's
descent (fissure_fit._search) and scored again. The best refined hypothesis wins when it scores
clearly better than the network's own border; the best one lying far from it is the runner-up,
and a fissure whose two lie far apart but score close is reported uncertain.

The right oblique fissure is chosen first; the horizontal one is searched above it (the local
fit's order and constraints). Relabelling is the local fit's (fissure_fit.apply_fit), allowed in
every column: a global search may move a fissure where the network saw none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from algorithm.fissure_fit import (
    FISSURES,
    HORIZONTAL,
    LEFT_OBLIQUE,
    RIGHT_OBLIQUE,
    FissureFit,
    FissureResult,
    FitSettings,
    Surface,
    _least_squares,
    _lung,
    _network_targets,
    _Problem,
    _search,
    _share_limits,
    apply_fit,
)
from algorithm.fissure_search.hypotheses import (
    Scored,
    Scorer,
    distinct,
    geometry,
    horizontal_planes,
    mean_distance_mm,
    oblique_planes,
)
from algorithm.fissure_search.prior import PriorSettings, share_of_lung
from algorithm.labels import Lobe


@dataclass(frozen=True)
class SearchSettings:
    """The hypothesis family, how many are refined and when a fissure is uncertain."""

    fit: FitSettings = field(default_factory=lambda: FitSettings(growth_mm=1000.0))  # relabel in every column
    prior: PriorSettings = field(default_factory=PriorSettings)
    oblique_posterior_fractions: tuple[float, ...] = (0.15, 0.25, 0.35, 0.45, 0.55)  # below the apex
    oblique_anterior_fractions: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
    horizontal_fractions: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    horizontal_slopes: tuple[float, ...] = (-0.15, 0.0, 0.15)
    lateral_slopes: tuple[float, ...] = (-0.15, 0.0, 0.15)
    refine_count: int = 3  # planes refined besides the network's start
    distinct_mm: float = 10.0  # the refined planes lie at least this far apart (mean vertical distance)
    min_gain: float = 0.05  # the winner's score must beat the network border's by this much
    close_score: float = 0.05  # chosen and runner-up closer than this in score ...
    far_mm: float = 10.0  # ... and farther apart than this: the fissure is uncertain


@dataclass
class GlobalFit(FissureFit):
    """The local fit's result plus, per fissure, the chosen hypothesis and the runner-up."""

    hypotheses: dict[str, dict] = field(default_factory=dict)

    def report(self) -> dict:
        return {name: {**res.as_dict(), **self.hypotheses.get(name, {})} for name, res in self.fissures.items()}

    def warnings(self) -> list[str]:
        """One sentence per uncertain fissure (quality warning)."""
        return [h["warning"] for h in self.hypotheses.values() if h.get("warning")]


@dataclass
class _Chosen:
    result: FissureResult
    start: Surface
    chosen: Surface
    report: dict


def _choose(name: str, problem: _Problem, kind: str, share_mean_sd: tuple[float, float],
            settings: SearchSettings, voxel_ml: float) -> _Chosen:
    """Search one fissure: score the family, refine the best few and the network's, pick."""
    targets, weight = _network_targets(problem)
    start = _least_squares(problem, targets, weight)
    start_surface = Surface(problem.knots_y, problem.knots_x, start)
    ev_net = problem.evaluate(start)
    index_net = problem.index(ev_net)
    expected_ml = ev_net.region * problem.lung.vessel_share * voxel_ml
    if not np.isfinite(index_net) or expected_ml < settings.fit.min_band_vessel_ml:
        reason = f"too little vessel signal in the band ({expected_ml:.2f} mL of vessels expected)"
        result = FissureResult(name, "network", reason, None if not np.isfinite(index_net) else index_net)
        return _Chosen(result, start_surface, start_surface, {})
    geo = geometry(problem)
    scorer = Scorer(problem, kind, geo, ev_net.f_mm[problem.fissure_columns], (ev_net.region, ev_net.outer_region),
                    share_mean_sd, settings.prior)
    network = scorer.score(start, "network")
    planes = _planes(problem, kind, geo, settings)
    ranked = sorted((h for h in (scorer.score(c, "plane") for c in planes) if h is not None), key=lambda h: h.total)
    seeds = distinct(problem, ranked, settings.refine_count, settings.distinct_mm)
    refined = [scorer.score(_search(problem, start.copy()), "network+fit")]
    refined += [scorer.score(_search(problem, h.coef.copy()), "plane+fit") for h in seeds]
    pool = sorted((h for h in refined + [network] if h is not None), key=lambda h: h.total)
    return _decide(name, problem, start_surface, network, pool, settings, voxel_ml)


def _planes(problem: _Problem, kind: str, geo, settings: SearchSettings) -> list[np.ndarray]:
    if kind == "oblique":
        return oblique_planes(problem, geo, settings.oblique_posterior_fractions,
                              settings.oblique_anterior_fractions, settings.lateral_slopes)
    return horizontal_planes(problem, geo, settings.horizontal_fractions, settings.horizontal_slopes, settings.lateral_slopes)


def _decide(name: str, problem: _Problem, start_surface: Surface, network: Scored | None, pool: list[Scored],
            settings: SearchSettings, voxel_ml: float) -> _Chosen:
    """The winner (or the network's border when nothing beats it clearly), the runner-up, the warning."""
    best = pool[0]
    net_total = network.total if network is not None else float("inf")
    moved = best.origin != "network" and best.total <= net_total - settings.min_gain
    chosen = best if moved else network
    index_net = network.index if network is not None else None
    if chosen is None:  # the network's own border breaks the hard limits and nothing else was found
        return _Chosen(FissureResult(name, "network", "no hypothesis within the limits"), start_surface, start_surface, {})
    rivals = [h for h in pool if h is not chosen and mean_distance_mm(problem, h.coef, chosen.coef) >= settings.far_mm]
    runner = rivals[0] if rivals else None
    report = {"chosen": chosen.summary(), "runner_up": None if runner is None else runner.summary()}
    if runner is not None:
        apart_mm = mean_distance_mm(problem, runner.coef, chosen.coef)
        report["runner_up_distance_mm"] = round(apart_mm, 1)
        if runner.total - chosen.total < settings.close_score:
            report["warning"] = (
                f"{name}: uncertain; two hypotheses {apart_mm:.0f} mm apart score within {settings.close_score:g} "
                f"(chosen at a mean height of {chosen.mean_height_mm:.0f} mm, runner-up at {runner.mean_height_mm:.0f} mm)")
    fit_surface = Surface(problem.knots_y, problem.knots_x, chosen.coef)
    shift = np.abs(problem.heights(chosen.coef) - problem.heights(start_surface.coef_mm))
    shift = shift.ravel()[problem.lung.columns]
    if moved:
        reason = f"{best.origin} scores {best.total:.2f} against the network border's {net_total:.2f}"
    else:
        reason = f"no hypothesis scores clearly below the network border's {net_total:.2f}"
    changed = (problem.evaluate(chosen.coef).changed - problem.evaluate(start_surface.coef_mm).changed) * voxel_ml
    result = FissureResult(name, "fit" if moved else "network", reason, index_net, chosen.index,
                           float(shift.mean()), float(shift.max()), changed if moved else 0.0)
    return _Chosen(result, start_surface, fit_surface if moved else start_surface, report)


def _record(out: GlobalFit, name: str, chosen: _Chosen) -> None:
    out.fissures[name] = chosen.result
    out.surfaces[name] = chosen.chosen
    out.network_surfaces[name] = chosen.start
    out.hypotheses[name] = chosen.report


def search_fissures(
    labels: np.ndarray,
    vessel: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    region: np.ndarray | None = None,
    settings: SearchSettings | None = None,
) -> GlobalFit:
    """The global search on the same inputs as ``fissure_fit.fit_fissures`` (see there); returns the
    relabelled lobes, the decisions, the surfaces and per fissure the chosen hypothesis and runner-up."""
    settings = settings or SearchSettings()
    fit_settings = settings.fit
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    region = labels > 0 if region is None else region
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = GlobalFit(labels=labels, settings=fit_settings)
    if max(spacing[1:]) > fit_settings.max_inplane_mm:
        reason = f"in-plane voxels of {max(spacing[1:]):.1f} mm (over {fit_settings.max_inplane_mm:g} mm): too coarse for the band"
        out.fissures = {name: FissureResult(name, "network", reason) for name in FISSURES}
        return out
    left = _lung(labels, (Lobe.LUL, Lobe.LLL), vessel, region, spacing, fit_settings)
    if left is None or min(left.total(f"lobe{int(Lobe.LUL)}").sum(), left.total(f"lobe{int(Lobe.LLL)}").sum()) == 0:
        out.fissures[LEFT_OBLIQUE] = FissureResult(LEFT_OBLIQUE, "network", "a left lobe is missing")
    else:
        limits = _share_limits(left.total(f"lobe{int(Lobe.LLL)}").sum() / left.total("lung").sum(), fit_settings.lower_lobe_share)
        problem = _Problem(left, (Lobe.LLL,), (Lobe.LUL,), fit_settings, share_limits=limits)
        _record(out, LEFT_OBLIQUE, _choose(LEFT_OBLIQUE, problem, "oblique", share_of_lung("LLL", ("LUL", "LLL")), settings, voxel_ml))
    _search_right(labels, vessel, region, spacing, settings, voxel_ml, out)
    out.labels = apply_fit(labels, spacing, out)
    return out


RIGHT_LOBES = ("RUL", "RLL", "RML")


def _search_right(labels, vessel, region, spacing, settings: SearchSettings, voxel_ml: float, out: GlobalFit) -> None:
    fit_settings = settings.fit
    right = _lung(labels, (Lobe.RUL, Lobe.RLL, Lobe.RML), vessel, region, spacing, fit_settings)
    counts = {} if right is None else {v: right.total(f"lobe{int(v)}").sum() for v in (Lobe.RUL, Lobe.RLL, Lobe.RML)}
    if right is None or counts[Lobe.RLL] == 0 or counts[Lobe.RUL] + counts[Lobe.RML] == 0:
        for name in (RIGHT_OBLIQUE, HORIZONTAL):
            out.fissures[name] = FissureResult(name, "network", "a right lobe is missing")
        return
    total = right.total("lung").sum()
    limits = _share_limits(counts[Lobe.RLL] / total, fit_settings.lower_lobe_share)
    problem = _Problem(right, (Lobe.RLL,), (Lobe.RUL, Lobe.RML), fit_settings, share_limits=limits,
                       keep=(Lobe.RML, fit_settings.rml_keep))
    oblique = _choose(RIGHT_OBLIQUE, problem, "oblique", share_of_lung("RLL", RIGHT_LOBES), settings, voxel_ml)
    _record(out, RIGHT_OBLIQUE, oblique)
    if counts[Lobe.RML] == 0 or counts[Lobe.RUL] == 0:
        out.fissures[HORIZONTAL] = FissureResult(HORIZONTAL, "network", "the RML or the RUL is missing")
        return
    obl = oblique.chosen
    obl_mm = obl.height_mm(right.axis_mm(1), right.axis_mm(2)).ravel()[right.columns]
    floor_u = right.u(obl_mm)
    slope2 = obl.slope_squared(right.axis_mm(1), right.axis_mm(2)).ravel()[right.columns]
    band_floor = right.u(obl_mm + fit_settings.band_half_width_mm * np.sqrt(1.0 + slope2))
    limits = _share_limits(counts[Lobe.RML] / total, fit_settings.rml_share)
    horizontal = _Problem(right, (Lobe.RML,), (Lobe.RUL,), fit_settings, floor_u, band_floor, share_limits=limits,
                          anterior_of=right.at("lung", floor_u))
    _record(out, HORIZONTAL, _choose(HORIZONTAL, horizontal, "horizontal", share_of_lung("RML", RIGHT_LOBES), settings, voxel_ml))


def with_settings(settings: SearchSettings, **fit_changes) -> SearchSettings:
    """``settings`` with some of its local-fit settings replaced (benchmarks, tests)."""
    return replace(settings, fit=replace(settings.fit, **fit_changes))


def global_section(labels: np.ndarray, vessel: np.ndarray, spacing_mm_zyx: tuple[float, float, float],
                   region: np.ndarray) -> tuple[GlobalFit, dict]:
    """The search and the report section of the pipeline's fissure step in ``--fissures global``."""
    fit = search_fissures(labels, vessel, spacing_mm_zyx, region=region)
    section = {
        "mode": "global",
        "definition": (
            "each fissure is searched over its anatomical range: planes and the network's border, refined "
            "by the local fit and scored by band index plus an anatomical prior; 'fit' where the best scores "
            "clearly below the network's border, else the network's border stands (docs/design.md, Global fissure search)"
        ),
        "fissures": fit.report(),
        "warnings": fit.warnings(),
    }
    return fit, section
