"""Hypotheses of one fissure over its whole anatomical range, each scored by evidence plus prior.

A hypothesis is a surface's control coefficients on the fit's B-spline grid. The coarse family is
planes: for an oblique fissure, through a posterior height (T4-T5 range) and an anterior one (down
to the diaphragm), with a sideways tilt; for the horizontal fissure, a level at the front with
small tilts. A cubic B-spline reproduces a plane exactly when its coefficients are the plane's
heights at the knots, so a plane is a surface of the same family the local fit refines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.fissure_fit import Problem, band_evidence
from algorithm.fissure_search.prior import (
    PriorSettings,
    horizontal_penalty,
    network_penalty,
    oblique_penalty,
    share_penalty,
    weighted_mean,
)

ANTERIOR_QUANTILE = 0.25  # the anterior quarter of the lung's columns (by y)
POSTERIOR_QUANTILE = 0.85  # the posterior 15 %


@dataclass(frozen=True)
class Geometry:
    """One lung's frame for the prior: its height range and its front and back (mm)."""

    top_mm: float
    bottom_mm: float
    anterior_y_mm: float  # y below which a column is in the anterior quarter (y grows posterior)
    posterior_y_mm: float
    centre_x_mm: float

    @property
    def height_mm(self) -> float:
        return self.top_mm - self.bottom_mm

    def height_at(self, fraction_below_apex: float) -> float:
        return self.top_mm - fraction_below_apex * self.height_mm


def geometry(problem: Problem) -> Geometry:
    """The lung's extent along z and its anterior and posterior column bands, lung-weighted."""
    lung = problem.lung
    per_slice = np.diff(lung.cum["lung"].sum(axis=0))
    filled = np.flatnonzero(per_slice > 0)
    bottom = lung.edge0_mm + lung.dz_mm * float(filled[0])
    top = lung.edge0_mm + lung.dz_mm * float(filled[-1] + 1)
    weight = lung.total("lung")
    order = np.argsort(problem.y_columns, kind="stable")
    cdf = np.cumsum(weight[order]) / weight.sum()
    y_sorted = problem.y_columns[order]
    x_mm = np.tile(lung.axis_mm(2), lung.shape_w[0])[lung.columns]
    return Geometry(top, bottom, float(np.interp(ANTERIOR_QUANTILE, cdf, y_sorted)),
                    float(np.interp(POSTERIOR_QUANTILE, cdf, y_sorted)), weighted_mean(x_mm, weight))


def plane(problem: Problem, z_at_mm: float, y_at_mm: float, slope_y: float, slope_x: float, x_at_mm: float) -> np.ndarray:
    """Coefficients of the plane z = z_at + slope_y (y - y_at) + slope_x (x - x_at)."""
    return z_at_mm + slope_y * (problem.knots_y - y_at_mm)[:, None] + slope_x * (problem.knots_x - x_at_mm)[None, :]


def oblique_planes(problem: Problem, geo: Geometry, posterior_fractions, anterior_fractions, lateral_slopes) -> list[np.ndarray]:
    """Planes from a posterior height (fractions below the apex) down to an anterior one."""
    span_mm = max(geo.posterior_y_mm - geo.anterior_y_mm, 1.0)
    out = []
    for p in posterior_fractions:
        for a in anterior_fractions:
            slope = (geo.height_at(p) - geo.height_at(a)) / span_mm
            for c in lateral_slopes:
                out.append(plane(problem, geo.height_at(a), geo.anterior_y_mm, slope, c, geo.centre_x_mm))
    return out


def horizontal_planes(problem: Problem, geo: Geometry, fractions, slopes_y, lateral_slopes) -> list[np.ndarray]:
    """Nearly level planes at anterior heights (fractions below the apex)."""
    return [plane(problem, geo.height_at(h), geo.anterior_y_mm, b, c, geo.centre_x_mm)
            for h in fractions for b in slopes_y for c in lateral_slopes]


@dataclass(frozen=True)
class Scored:
    """One hypothesis: its surface and its score's terms (index units; lower is better)."""

    coef: np.ndarray
    origin: str  # "network", "network+fit", "plane" or "plane+fit"
    evidence: float  # the band excess (the band index, guarded against shrinking bands)
    index: float  # the plain band index
    shape: float  # the anatomical range penalty
    share: float  # the lobe-share penalty
    network: float  # the network-distance penalty
    lower_share: float  # the lower class's share of the lung (RLL/LLL, or RML for the horizontal)
    mean_height_mm: float  # mean height over the fissure's columns, where it lies

    @property
    def total(self) -> float:
        return self.evidence + self.shape + self.share + self.network

    def summary(self) -> dict:
        """The JSON form (docs/outputs.md, fissures)."""
        r = lambda v, n=3: None if not np.isfinite(v) else round(float(v), n)  # noqa: E731
        return {"origin": self.origin, "score": r(self.total), "band_index": r(self.index),
                "prior_shape": r(self.shape), "prior_share": r(self.share), "prior_network": r(self.network),
                "lower_share_of_lung": r(self.lower_share), "mean_height_mm": r(self.mean_height_mm, 1)}


@dataclass(frozen=True)
class Scorer:
    """Scores hypotheses of one fissure (``kind`` "oblique" or "horizontal") on one problem."""

    problem: Problem
    kind: str
    geo: Geometry
    network_mm: np.ndarray  # the network's smoothed surface over the fissure's columns
    ref_region: tuple[float, float]  # the network's band sizes (see fissure_fit.band_excess)
    share_mean_sd: tuple[float, float]
    prior: PriorSettings

    def score(self, coef: np.ndarray, origin: str) -> Scored | None:
        """The hypothesis's score, or None where it breaks the fit's hard limits (shares, RML order)."""
        p = self.problem
        ev = p.evaluate(coef)
        share = p.lung.vessel_share
        if ev.region <= 0 or share <= 0 or not p.feasible(ev):
            return None
        evidence = band_evidence(p, ev, self.ref_region)
        cols = p.fissure_columns
        lower_share = float(ev.lower_volume.sum()) / p.lung_total
        distance = float(np.mean(np.abs(ev.f_mm[cols] - self.network_mm)))
        return Scored(
            coef.copy(), origin, float(evidence), p.index(ev), self._shape(coef, ev),
            share_penalty(lower_share, *self.share_mean_sd, self.prior),
            network_penalty(distance, self.prior), lower_share, float(np.mean(ev.f_mm[cols])),
        )

    def _shape(self, coef: np.ndarray, ev) -> float:
        p, geo = self.problem, self.geo
        cols_all = p.lung.columns
        cols = p.fissure_columns
        slope_y = float(np.mean((p.dby @ coef @ p.bx.T).ravel()[cols_all][cols]))
        slope_x = float(np.mean((p.by @ coef @ p.dbx.T).ravel()[cols_all][cols]))
        anterior = p.y_columns <= geo.anterior_y_mm
        if self.kind == "horizontal":
            front = anterior & cols if (anterior & cols).any() else cols
            fraction = (geo.top_mm - float(np.mean(ev.f_mm[front]))) / geo.height_mm
            return horizontal_penalty(fraction, slope_y, slope_x, self.prior)
        back = (p.y_columns >= geo.posterior_y_mm) & cols
        back = back if back.any() else cols
        posterior_fraction = (geo.top_mm - float(np.mean(ev.f_mm[back]))) / geo.height_mm
        lung_front = float(p.lung.total("lung")[anterior].sum())
        lower_front = float(ev.lower_volume[anterior].sum()) / lung_front if lung_front > 0 else 0.0
        return oblique_penalty(posterior_fraction, slope_y, lower_front, self.prior)


def mean_distance_mm(problem: Problem, a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| (mm, vertical) of two surfaces over the fissure's columns."""
    diff = np.abs(problem.heights(a) - problem.heights(b)).ravel()[problem.lung.columns]
    return float(np.mean(diff[problem.fissure_columns]))


def distinct(problem: Problem, ranked: list[Scored], count: int, apart_mm: float) -> list[Scored]:
    """The best ``count`` hypotheses of ``ranked`` (sorted) that lie ``apart_mm`` from each other."""
    picked: list[Scored] = []
    for h in ranked:
        if len(picked) == count:
            break
        if all(mean_distance_mm(problem, h.coef, q.coef) >= apart_mm for q in picked):
            picked.append(h)
    return picked
