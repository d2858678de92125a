"""Global fissure search (issue 30): every fissure searched over its anatomical range, anatomy choosing.

Per fissure: the network's border (smoothed, as the local fit starts) and a coarse family of planes
over the anatomical range (hypotheses.py) are scored by the band evidence plus the anatomical prior
(prior.py); the best few that lie apart, and the network's start, are refined by the local fit's
descent (``fissure_fit.local_search``) and scored again. The best refined hypothesis wins when it
scores clearly better than the network's own border; the best one lying far from the chosen one is
the runner-up, and a fissure whose two lie far apart but score close is reported uncertain.

The order, the problems and their hard limits are the local fit's (``fissure_fit.fit_each_fissure``:
the right oblique fissure first, the horizontal one above the chosen oblique surface); relabelling
is ``fissure_fit.apply_fit``, allowed in every column (``growth_mm``): a global search may move a
fissure where the network saw none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from algorithm.fissure_fit import (
    HORIZONTAL,
    LEFT_OBLIQUE,
    RIGHT_OBLIQUE,
    FissureFit,
    FissureResult,
    Fitted,
    FitSettings,
    Problem,
    Surface,
    apply_fit,
    fit_each_fissure,
    fit_on_lattice,
    local_search,
    network_start,
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

GLOBAL_MODE = "global"  # the --fissures value (algorithm.constants.FISSURE_MODES)
LEFT_LOBES = ("LUL", "LLL")
RIGHT_LOBES = ("RUL", "RLL", "RML")
LOBE_BELOW = {LEFT_OBLIQUE: ("LLL", LEFT_LOBES), RIGHT_OBLIQUE: ("RLL", RIGHT_LOBES), HORIZONTAL: ("RML", RIGHT_LOBES)}


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
    min_gain: float = 0.05  # the winner's score must beat the network border's by this much ...
    max_band_index: float = 0.5  # ... and its band look like a fissure's (about 0-0.3; a cut through lung about 1):
    # without that evidence the prior alone would move a border (vessels everywhere, no band)
    close_score: float = 0.05  # chosen and runner-up closer than this in score ...
    far_mm: float = 10.0  # ... and farther apart than this: the fissure is uncertain


def choose(name: str, problem: Problem, voxel_ml: float, settings: SearchSettings) -> Fitted:
    """Search one fissure (a ``fissure_fit.Fitter``): score the family, refine the best few and the
    network's border, pick; ``details`` holds the chosen hypothesis, the runner-up and any warning."""
    net = network_start(name, problem, voxel_ml)
    if net.refusal is not None:
        return net.refusal
    kind = "horizontal" if name == HORIZONTAL else "oblique"
    lobe, lung_lobes = LOBE_BELOW[name]
    geo = geometry(problem)
    scorer = Scorer(problem, kind, geo, net.evaluation.f_mm[problem.fissure_columns],
                    (net.evaluation.region, net.evaluation.outer_region), share_of_lung(lobe, lung_lobes), settings.prior)
    network = scorer.score(net.coef, "network")
    ranked = sorted((h for h in (scorer.score(c, "plane") for c in _planes(problem, kind, geo, settings)) if h is not None),
                    key=lambda h: h.total)
    seeds = distinct(problem, ranked, settings.refine_count, settings.distinct_mm)
    refined = [scorer.score(local_search(problem, net.coef.copy()), "network+fit")]
    refined += [scorer.score(local_search(problem, h.coef.copy()), "plane+fit") for h in seeds]
    pool = sorted((h for h in refined + [network] if h is not None), key=lambda h: h.total)
    return _decide(name, problem, net.surface, network, pool, settings, voxel_ml)


def _planes(problem: Problem, kind: str, geo, settings: SearchSettings) -> list[np.ndarray]:
    if kind == "oblique":
        return oblique_planes(problem, geo, settings.oblique_posterior_fractions,
                              settings.oblique_anterior_fractions, settings.lateral_slopes)
    return horizontal_planes(problem, geo, settings.horizontal_fractions, settings.horizontal_slopes, settings.lateral_slopes)


def _decide(name: str, problem: Problem, start: Surface, network: Scored | None, pool: list[Scored],
            settings: SearchSettings, voxel_ml: float) -> Fitted:
    """The winner (or the network's border when nothing beats it clearly), the runner-up, the warning."""
    if not pool:  # every hypothesis, the network's border included, breaks the hard limits
        return Fitted(FissureResult(name, "network", "no hypothesis within the limits"), start, start)
    # only a hypothesis whose band looks like a fissure may replace the network's border
    movable = [h for h in pool if h.origin != "network" and h.index <= settings.max_band_index]
    net_total = network.total if network is not None else float("inf")
    moved = bool(movable) and movable[0].total <= net_total - settings.min_gain
    best = movable[0] if movable else pool[0]  # the fit's surface, reported even where it is not taken
    chosen = best if moved else network
    details = ambiguity(name, problem, chosen, pool, settings) if chosen is not None else NO_CHOICE
    if moved:
        reason = f"{best.origin} scores {best.total:.2f} against the network border's {net_total:.2f}"
    elif not movable:
        reason = f"no hypothesis has a band index of at most {settings.max_band_index:g}: no fissure-like band"
    else:
        reason = f"no hypothesis scores clearly below the network border's {net_total:.2f}"
    shift = np.abs(problem.heights(best.coef) - problem.heights(start.coef_mm)).ravel()[problem.lung.columns]
    changed_ml = (problem.evaluate(best.coef).changed - problem.evaluate(start.coef_mm).changed) * voxel_ml
    result = FissureResult(name, "fit" if moved else "network", reason, None if network is None else network.index,
                           best.index, float(shift.mean()), float(shift.max()), changed_ml if moved else 0.0)
    return Fitted(result, start, Surface(problem.knots_y, problem.knots_x, best.coef), details)


NO_CHOICE = {"chosen": None, "runner_up": None, "runner_up_distance_mm": None, "warning": None}


def ambiguity(name: str, problem: Problem, chosen: Scored, pool: list[Scored], settings: SearchSettings) -> dict:
    """The report's ``chosen`` and ``runner_up`` (the best hypothesis at least ``far_mm`` from the
    chosen one: nearer ones are the same fissure), their distance, and ``warning`` when they score
    within ``close_score`` of each other (docs/outputs.md, fissures)."""
    rivals = [h for h in pool if h is not chosen and mean_distance_mm(problem, h.coef, chosen.coef) >= settings.far_mm]
    runner = rivals[0] if rivals else None
    report = {"chosen": chosen.summary(), "runner_up": None if runner is None else runner.summary(),
              "runner_up_distance_mm": None, "warning": None}
    if runner is None:
        return report
    apart_mm = mean_distance_mm(problem, runner.coef, chosen.coef)
    report["runner_up_distance_mm"] = round(apart_mm, 1)
    if runner.total - chosen.total < settings.close_score:
        report["warning"] = (
            f"{name}: uncertain; two hypotheses {apart_mm:.0f} mm apart score within {settings.close_score:g} "
            f"(chosen at a mean height of {chosen.mean_height_mm:.0f} mm, runner-up at {runner.mean_height_mm:.0f} mm)")
    return report


def search_fissures(
    labels: np.ndarray,
    vessel: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    region: np.ndarray | None = None,
    settings: SearchSettings | None = None,
) -> FissureFit:
    """The global search on the same inputs as ``fissure_fit.fit_fissures`` (see there); returns the
    relabelled lobes, the decisions, the surfaces and in ``details`` per fissure the chosen
    hypothesis and the runner-up."""
    settings = settings or SearchSettings()
    out = FissureFit(labels=labels, settings=settings.fit)
    return fit_each_fissure(labels, vessel, spacing_mm_zyx, region, partial(choose, settings=settings), out)


def warnings(fit: FissureFit) -> list[str]:
    """One sentence per uncertain fissure."""
    return [d["warning"] for d in fit.details.values() if d.get("warning")]


def with_settings(settings: SearchSettings, **fit_changes) -> SearchSettings:
    """``settings`` with some of its local-fit settings replaced (benchmarks, tests)."""
    return replace(settings, fit=replace(settings.fit, **fit_changes))


GLOBAL_DEFINITION = (
    "each fissure is searched over its anatomical range: planes and the network's border, refined "
    "by the local fit and scored by band index plus an anatomical prior; 'fit' where the best scores "
    "clearly below the network's border, else the network's border stands (docs/design.md, Global fissure search)"
)


def refine_global(hu: np.ndarray, labels: np.ndarray, spacing_mm_zyx: tuple[float, float, float],
                  lung: np.ndarray | None = None, settings: SearchSettings | None = None) -> tuple[np.ndarray, dict]:
    """The pipeline's fissure step in ``--fissures global``: (lobe labels, report section) for a
    canonical (LPS) scan, on the inputs of ``fissure_fit.refine_fissures``."""
    fit = fit_on_lattice(hu, labels, spacing_mm_zyx, lung,
                         lambda labels_s, vessel, spacing_s, region: search_fissures(labels_s, vessel, spacing_s, region, settings))
    section = {"mode": GLOBAL_MODE, "definition": GLOBAL_DEFINITION, "fissures": fit.report(), "warnings": warnings(fit)}
    return apply_fit(labels, tuple(float(s) for s in spacing_mm_zyx), fit), section
