"""Lobe shares against the published population (algorithm/report/lobe_shares.py)."""

from __future__ import annotations

import pytest

from algorithm.labels import LOBES
from algorithm.report.lobe_shares import FAR_OUTSIDE_SD, POPULATION_SHARES, default_flag_ranges_percent, share_report
from algorithm.report.quality_flags import QualityLimits, _lobe_flags


def test_the_population_table_is_transcribed_consistently():
    # Yamada et al. 2020, Table 3: the five mean shares of one lung pair add to 100 %, the right
    # lung's three to its reported 53.6 %, and every mean lies inside its observed range.
    assert sum(p.mean_percent for p in POPULATION_SHARES.values()) == pytest.approx(100.0, abs=0.15)
    right = sum(POPULATION_SHARES[name].mean_percent for name in ("RUL", "RML", "RLL"))
    assert right == pytest.approx(53.6, abs=0.15)
    for share in POPULATION_SHARES.values():
        assert share.min_percent < share.mean_percent < share.max_percent and share.sd_percent > 0


def test_flag_range_is_mean_plus_minus_four_sd_and_holds_every_observed_share():
    ranges = default_flag_ranges_percent()
    for name, (lo, hi) in ranges.items():
        population = POPULATION_SHARES[name]
        assert population.z_score(lo) == pytest.approx(-FAR_OUTSIDE_SD, abs=0.01)
        assert population.z_score(hi) == pytest.approx(FAR_OUTSIDE_SD, abs=0.01)
        assert lo < population.min_percent and population.max_percent < hi  # no healthy volunteer is flagged
    assert QualityLimits().lobe_share_range_percent == ranges


def _measures(shares: dict[str, float | None]) -> dict:
    return {name: {"volume_ml": 500.0, "share_of_lung_percent": share} for name, share in shares.items()}


def test_flag_fires_just_outside_the_range_only():
    ranges = default_flag_ranges_percent()
    lo, hi = ranges["RML"]
    shares = {lobe.name: POPULATION_SHARES[lobe.name].mean_percent for lobe in LOBES}
    no_contacts = {lobe: [] for lobe in LOBES}
    for rml, fires in ((hi - 0.05, False), (hi + 0.05, True), (lo + 0.05, False), (lo - 0.05, True)):
        flags = _lobe_flags(_measures({**shares, "RML": rml}), no_contacts, QualityLimits())
        share_flags = [f for f in flags if f["code"] == "lobe_share_implausible"]
        assert bool(share_flags) == fires, (rml, share_flags)
        if fires:
            assert share_flags[0]["lobe"] == "RML" and share_flags[0]["limit"] == [lo, hi]
            assert "9.3 +- 1.6 %" in share_flags[0]["message"]


def test_share_report_gives_z_scores_and_keeps_missing_shares_empty():
    shares = {"LUL": 23.1, "LLL": 23.2 + 2.4, "RUL": 17.9 - 2 * 2.4, "RLL": 26.5, "RML": None}
    report = share_report(_measures(shares), default_flag_ranges_percent())
    assert "Yamada" in report["source"]
    lobes = report["lobes"]
    assert [lobes[n]["z_score"] for n in ("LUL", "LLL", "RUL", "RLL")] == [0.0, 1.0, -2.0, 0.0]
    assert lobes["RML"]["z_score"] is None and lobes["RML"]["share_percent"] is None
    assert lobes["RUL"]["population_observed_range_percent"] == [11.8, 22.7]
