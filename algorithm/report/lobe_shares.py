"""Each lobe's share of the lungs against the published population: the reference, the z-score
and the range outside which a share is flagged.

Reference: Yamada Y et al., "Differences in lung and lobe volumes between supine and standing
positions scanned with conventional and newly developed 320-detector-row upright CT",
Respiration 2020;99(7):598-605, doi:10.1159/000507265, Table 3: supine inspiratory CT of 32
healthy volunteers, each lobe's volume as a percentage of the total lung volume (mean, SD, min,
max). The phantom generator v2 draws its lobe shares from the same table (training/phantoms).

Why the flag sits at 4 SD: 32 volunteers fix a SD only to about +-25 % (chi distribution, 31
degrees of freedom), disease legitimately shifts the shares (upper-lobe emphysema inflates the
upper lobes, fibrosis and collapse shrink lower ones), and the flag must name segmentations that
are wrong, not lungs that are unusual. At 4 SD a healthy lung's share is flagged with a chance
under 1e-4 even with the SD underestimated by a quarter (then it is 3.2 SD: 1.4e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

from algorithm.labels import LOBES

SOURCE = ("Yamada et al., Respiration 2020;99(7):598-605 (doi:10.1159/000507265), Table 3: "
          "supine inspiratory CT, 32 healthy volunteers")
FAR_OUTSIDE_SD = 4.0


@dataclass(frozen=True)
class PopulationShare:
    """A lobe's volume as a percentage of both lungs in the reference population."""

    mean_percent: float
    sd_percent: float
    min_percent: float  # the smallest and largest share observed among the 32 volunteers
    max_percent: float

    def z_score(self, share_percent: float) -> float:
        return (share_percent - self.mean_percent) / self.sd_percent

    def flag_range_percent(self, n_sd: float = FAR_OUTSIDE_SD) -> tuple[float, float]:
        """Shares outside this range are flagged: mean +- ``n_sd`` SD."""
        return (round(self.mean_percent - n_sd * self.sd_percent, 2),
                round(self.mean_percent + n_sd * self.sd_percent, 2))


POPULATION_SHARES: dict[str, PopulationShare] = {
    "LUL": PopulationShare(23.1, 2.1, 18.1, 26.6),
    "LLL": PopulationShare(23.2, 2.4, 19.4, 28.7),
    "RUL": PopulationShare(17.9, 2.4, 11.8, 22.7),
    "RLL": PopulationShare(26.5, 2.6, 22.3, 34.0),
    "RML": PopulationShare(9.3, 1.6, 6.6, 13.8),
}


def default_flag_ranges_percent(n_sd: float = FAR_OUTSIDE_SD) -> dict[str, tuple[float, float]]:
    """The share range of each lobe (keys 'LUL'...) outside which ``lobe_share_implausible`` fires."""
    return {lobe.name: POPULATION_SHARES[lobe.name].flag_range_percent(n_sd) for lobe in LOBES}


def share_report(measures: dict, flag_ranges_percent: dict[str, tuple[float, float]]) -> dict:
    """The ``lobe_shares`` block of the report: each lobe's share beside the population's.

    ``measures``: ``lobe_measures`` output (its ``share_of_lung_percent`` per lobe)."""
    lobes = {}
    for lobe in LOBES:
        population = POPULATION_SHARES[lobe.name]
        share = measures[lobe.name]["share_of_lung_percent"]
        lobes[lobe.name] = {
            "share_percent": share,
            "population_mean_percent": population.mean_percent,
            "population_sd_percent": population.sd_percent,
            "population_observed_range_percent": [population.min_percent, population.max_percent],
            "z_score": None if share is None else round(population.z_score(share), 2),
            "flag_range_percent": list(flag_ranges_percent[lobe.name]),
        }
    return {"source": SOURCE, "lobes": lobes}
