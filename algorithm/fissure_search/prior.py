"""The anatomical prior of the global fissure search: what a plausible fissure looks like.

Each term is a soft penalty in band-index units (the band index of a correct fissure is about
0-0.3, of a border cut through the lung about 1), zero inside the anatomical range and growing
outside it, so the scan's evidence decides among plausible hypotheses and anatomy decides where
the evidence has several minima (issue 30). Sources (docs/design.md, "Global fissure search"):

- Oblique fissures: from the posterior lung near the T4-T5 level to the anterior part of the
  diaphragm, about the sixth costochondral junction (Standring S, ed., Gray's Anatomy, 41st ed.,
  2016, chapter "Pleura, lungs, trachea and bronchi"). With the apex at T1 and the posterior
  costophrenic recess at about T11-T12, T4-T5 lies about a third of the lung's height below the
  apex: the posterior end may lie 0.15-0.50 of the height below the apex. It ends on the
  diaphragm's anterior part, so little lower lobe lies in the anterior quarter of the lung.
  Sagittal inclination on CT about 40-60 degrees to the axial plane; allowed 0.4-2.0 mm/mm.
- Horizontal fissure: along the fourth costal cartilage from the sternum to the oblique fissure
  at the mid-axillary line (Gray's, as above), roughly horizontal: slopes up to 0.35 mm/mm.
- Lobe shares: Yamada et al. 2020 (algorithm/report/lobe_shares.py); a lobe's share of its own
  lung is the ratio of the population means, its SD the population SD over the lung's mean.
- The network's border: one weak term (a fissure 20 mm from it costs ``network_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.report.lobe_shares import POPULATION_SHARES


def share_of_lung(lobe: str, lung_lobes: tuple[str, ...]) -> tuple[float, float]:
    """(mean, SD) of ``lobe``'s share of its own lung (fraction) from the population table."""
    lung_mean = sum(POPULATION_SHARES[name].mean_percent for name in lung_lobes)
    population = POPULATION_SHARES[lobe]
    return population.mean_percent / lung_mean, population.sd_percent / lung_mean


@dataclass(frozen=True)
class PriorSettings:
    """Ranges (anatomy, see the module docstring) and the weight of each penalty (index units)."""

    share_weight: float = 0.02  # per squared z beyond ``share_free_z``: z = 3 costs 0.08
    share_free_z: float = 1.0
    oblique_posterior_fraction: tuple[float, float] = (0.15, 0.50)  # below the apex, of the lung's height
    oblique_slope: tuple[float, float] = (0.4, 2.0)  # dz/dy (posterior up), mm/mm
    anterior_lower_share: float = 0.15  # the lower lobe's share of the anterior quarter's lung, at most
    horizontal_slope: float = 0.35  # |dz/dy| and |dz/dx| at most
    horizontal_fraction: tuple[float, float] = (0.25, 0.75)  # anterior height below the apex, of the lung's height
    range_weight: float = 2.0  # per unit of fraction or slope outside its range
    network_weight: float = 0.05  # per (mean distance / network_scale_mm)^2
    network_scale_mm: float = 20.0


def outside(value: float, lo: float, hi: float) -> float:
    """How far ``value`` lies outside [lo, hi] (0 inside)."""
    return float(max(0.0, lo - value, value - hi))


def share_penalty(share: float, mean: float, sd: float, settings: PriorSettings) -> float:
    """Soft penalty on the share's z-score against the population (zero within share_free_z)."""
    z = abs(share - mean) / sd
    return settings.share_weight * max(0.0, z - settings.share_free_z) ** 2


def network_penalty(mean_distance_mm: float, settings: PriorSettings) -> float:
    """The network's border as one term of the prior: quadratic in the mean distance from it."""
    return settings.network_weight * (mean_distance_mm / settings.network_scale_mm) ** 2


def oblique_penalty(posterior_fraction: float, slope: float, anterior_lower_share: float,
                    settings: PriorSettings) -> float:
    """An oblique fissure: posterior end near T4-T5, inclined forward-down, ending on the diaphragm's front."""
    s = settings
    return s.range_weight * (
        outside(posterior_fraction, *s.oblique_posterior_fraction)
        + outside(slope, *s.oblique_slope)
        + max(0.0, anterior_lower_share - s.anterior_lower_share)
    )


def horizontal_penalty(anterior_fraction: float, slope_y: float, slope_x: float, settings: PriorSettings) -> float:
    """The horizontal fissure: roughly level, its anterior part at mid-height of the lung."""
    s = settings
    return s.range_weight * (
        outside(anterior_fraction, *s.horizontal_fraction)
        + outside(abs(slope_y), 0.0, s.horizontal_slope)
        + outside(abs(slope_x), 0.0, s.horizontal_slope)
    )


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Mean of ``values`` with ``weights`` (nan when the weights sum to zero)."""
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0 else float("nan")
