"""The global fissure search (algorithm/fissure_search) on synthetic lungs whose vessels stop at known surfaces."""

from __future__ import annotations

import numpy as np
import pytest

import json

import jsonschema
import SimpleITK as sitk

from algorithm.fissure_fit import HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE, fit_fissures
from algorithm.fissure_search import SearchSettings, search_fissures, warnings
from algorithm.pipeline.fissures import refine_lobes
from algorithm.fissure_search.prior import (
    PriorSettings,
    horizontal_penalty,
    network_penalty,
    oblique_penalty,
    share_of_lung,
    share_penalty,
)
from algorithm.labels import Lobe
from algorithm.report.quality_flags import fissure_flags
from conftest import REPO_ROOT
from tests.test_fissure_fit import (  # the synthetic chest the local fit is tested on
    GAP_MM,
    SPACING_MM,
    chest_hu,
    horizontal_mm,
    make_chest,
    oblique_mm,
    shifted_labels,
    surface_error_mm,
)

SCHEMA = json.loads((REPO_ROOT / "algorithm/schemas/pulmonary-lobe-volumes.schema.json").read_text())
FISSURES_SCHEMA = {**SCHEMA["properties"]["fissures"], "$defs": SCHEMA["$defs"]}  # the report's "fissures"
DECOY_MM = 50.0  # a level vessel-free band through the left lung: not a fissure (an oblique one slopes) ...
DECOY_HALF_MM = 2.0 * GAP_MM  # ... twice as wide as the fissure's: the evidence alone prefers it
TRUTH = {
    LEFT_OBLIQUE: (lambda y, x: oblique_mm(y, x, +1), (Lobe.LLL, Lobe.LUL)),
    RIGHT_OBLIQUE: (lambda y, x: oblique_mm(y, x, -1), (Lobe.RLL, Lobe.RUL, Lobe.RML)),
    HORIZONTAL: (horizontal_mm, (Lobe.RML, Lobe.RUL)),
}


def median_error_mm(chest, fit, name: str) -> float:
    true_mm, lobes = TRUTH[name]
    return float(np.median(surface_error_mm(fit.surfaces[name], true_mm, chest, lobes)))


@pytest.fixture(scope="module")
def chest():
    return make_chest()


@pytest.fixture(scope="module")
def thirty_off(chest):
    return search_fissures(shifted_labels(chest, 30.0, -10.0), chest.vessel, SPACING_MM)


def test_a_start_30_mm_off_is_recovered(chest, thirty_off):
    for name in (LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL):
        assert thirty_off.fissures[name].decision == "fit", name
        assert median_error_mm(chest, thirty_off, name) <= 3.0, name


def test_the_local_fit_does_not_reach_30_mm(chest):
    """The reason for the global search: the local fit's reach is about 20 mm."""
    local = fit_fissures(shifted_labels(chest, 30.0, -10.0), chest.vessel, SPACING_MM)
    assert median_error_mm(chest, local, RIGHT_OBLIQUE) > 5.0


SHIFTS_MM = (15.0, 25.0, 35.0)  # issue 30's wrong starts: every fissure moved, the right oblique one up over the dome


@pytest.fixture(scope="module")
def shift_errors(chest) -> dict[float, dict[str, tuple[float, float]]]:
    """Per start shift, per fissure: (global, local) median surface error (mm)."""
    out = {}
    for shift in SHIFTS_MM:
        start = shifted_labels(chest, shift, -shift / 3.0)
        found = search_fissures(start, chest.vessel, SPACING_MM)
        local = fit_fissures(start, chest.vessel, SPACING_MM)
        out[shift] = {name: (median_error_mm(chest, found, name), median_error_mm(chest, local, name)) for name in TRUTH}
    print("\nshift mm | fissure | global / local median surface error (mm)")  # docs/results.md, with -s
    for shift, errors in out.items():
        for name, (g, loc) in errors.items():
            print(f"{shift:g} | {name} | {g:.2f} / {loc:.2f}")
    return out


def test_starts_15_and_25_mm_off_are_recovered_to_3_mm(shift_errors):
    """Issue 30's criterion: 25 mm off, median surface error at most 3 mm (15 mm as well)."""
    for shift in (15.0, 25.0):
        assert all(g <= 3.0 for g, _ in shift_errors[shift].values()), shift_errors[shift]


def test_35_mm_off_the_global_search_beats_the_local_fit(shift_errors):
    errors = shift_errors[35.0]
    assert np.median([g for g, _ in errors.values()]) < np.median([loc for _, loc in errors.values()])
    assert errors[RIGHT_OBLIQUE][0] <= 3.0


def decoy_chest():
    """The synthetic chest with a second vessel-free band, level at DECOY_MM, in the left lung, and a
    network whose left oblique border lies on that band."""
    chest = make_chest()
    left = np.isin(chest.labels, [Lobe.LUL, Lobe.LLL])
    vessel = chest.vessel & ~(left & (np.abs(chest.z - DECOY_MM) < DECOY_HALF_MM))
    start = shifted_labels(chest, 0.0)
    start[left] = np.where(chest.z[left] < DECOY_MM, Lobe.LLL, Lobe.LUL)
    return chest, vessel, start


def test_the_prior_picks_the_anatomical_of_two_vessel_free_bands():
    chest, vessel, start = decoy_chest()
    fit = search_fissures(start, vessel, SPACING_MM)
    assert fit.fissures[LEFT_OBLIQUE].decision == "fit"
    assert median_error_mm(chest, fit, LEFT_OBLIQUE) <= 3.0
    # the local fit, anchored at the network's border, stays on the level band
    assert median_error_mm(chest, fit_fissures(start, vessel, SPACING_MM), LEFT_OBLIQUE) > 10.0
    report = fit.report()[LEFT_OBLIQUE]
    assert report["chosen"]["band_index"] < 0.4 and report["runner_up"] is not None
    assert report["runner_up_distance_mm"] >= SearchSettings().far_mm


def test_without_the_prior_the_level_band_can_win():
    """The prior is what chooses: with its shape and share terms off, the decoy band (level, on the
    network's border) is as vessel-free as the fissure and the search does not leave it."""
    chest, vessel, start = decoy_chest()
    blind = SearchSettings(prior=PriorSettings(range_weight=0.0, share_weight=0.0))
    fit = search_fissures(start, vessel, SPACING_MM, settings=blind)
    assert median_error_mm(chest, fit, LEFT_OBLIQUE) > 10.0 or fit.fissures[LEFT_OBLIQUE].decision == "network"


def test_without_fissure_evidence_the_network_border_stands(chest):
    start = shifted_labels(chest, 15.0, -10.0)
    fit = search_fissures(start, np.zeros_like(chest.vessel), SPACING_MM)
    assert all(res.decision == "network" for res in fit.fissures.values())
    assert np.array_equal(fit.labels, start)


def test_uniform_vessels_without_bands_keep_the_network(chest):
    """Vessels everywhere (no fissure gap): no hypothesis is clearly better than the network's border."""
    rng = np.random.default_rng(3)
    vessel = (rng.random(chest.labels.shape) < 0.08) & (chest.labels > 0)
    start = shifted_labels(chest, 15.0, -10.0)
    fit = search_fissures(start, vessel, SPACING_MM)
    assert all(res.decision == "network" for res in fit.fissures.values()), fit.report()


def test_deterministic_and_reported(chest):
    start = shifted_labels(chest, 25.0)
    a = search_fissures(start, chest.vessel, SPACING_MM)
    b = search_fissures(start, chest.vessel, SPACING_MM)
    assert np.array_equal(a.labels, b.labels) and a.report() == b.report()
    for name in (LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL):
        entry = a.report()[name]
        assert {"decision", "chosen", "runner_up"} <= set(entry)
        assert entry["chosen"]["score"] <= entry["runner_up"]["score"]


def test_pipeline_step_runs_the_global_search(chest):
    """``--fissures global`` through the pipeline's fissure step: vessels found in HU, lobes moved."""
    start = shifted_labels(chest, 30.0, -10.0)
    image = sitk.GetImageFromArray(chest_hu(chest))
    image.SetSpacing(tuple(reversed(SPACING_MM)))
    fitted = refine_lobes(image, start, mode="global")
    section = fitted.section
    assert section["mode"] == "global" and isinstance(section["warnings"], list)
    assert section["fissures"][RIGHT_OBLIQUE]["decision"] == "fit"
    assert {"chosen", "runner_up", "runner_up_distance_mm", "warning"} <= set(section["fissures"][RIGHT_OBLIQUE])
    assert np.array_equal(fitted.labels > 0, start > 0)
    right = np.isin(chest.labels, [Lobe.RUL, Lobe.RML, Lobe.RLL])
    agree_before = np.mean(start[right] == chest.labels[right])
    assert np.mean(fitted.labels[right] == chest.labels[right]) > agree_before + 0.1


def twin_chest():
    """The synthetic chest with a second sloped vessel-free band 20 mm below the left oblique
    fissure (anatomically plausible too) and a network border between the two."""
    chest = make_chest()
    left = np.isin(chest.labels, [Lobe.LUL, Lobe.LLL])
    twin = oblique_mm(chest.y, chest.x, +1) - 20.0
    return chest, chest.vessel & ~(left & (np.abs(chest.z - twin) < GAP_MM)), shifted_labels(chest, -10.0)


def test_close_scores_far_apart_warn_and_are_flagged():
    """The runner-up lies over ``far_mm`` away; within ``close_score`` the fissure is called uncertain,
    the report section validates against the JSON schema and the quality flags carry the warning."""
    chest, vessel, start = twin_chest()
    strict = search_fissures(start, vessel, SPACING_MM).report()[LEFT_OBLIQUE]
    gap = strict["runner_up"]["score"] - strict["chosen"]["score"]
    assert strict["runner_up_distance_mm"] >= SearchSettings().far_mm
    assert gap >= SearchSettings().close_score and strict["warning"] is None
    lenient = search_fissures(start, vessel, SPACING_MM, settings=SearchSettings(close_score=gap + 0.01))
    entry = lenient.report()[LEFT_OBLIQUE]
    assert entry["warning"] is not None and "uncertain" in entry["warning"]
    section = {"mode": "global", "definition": "", "fissures": lenient.report(), "warnings": warnings(lenient)}
    assert section["warnings"] == [entry["warning"]]
    jsonschema.validate(section, FISSURES_SCHEMA)
    flags = fissure_flags(section)
    assert [f["fissure"] for f in flags] == [LEFT_OBLIQUE] and flags[0]["severity"] == "warning"
    assert fissure_flags({"mode": "fit", "fissures": {LEFT_OBLIQUE: strict}}) == []


# -- the prior's terms, one by one ------------------------------------------------------------


def test_share_of_lung_follows_the_population_table():
    means = [share_of_lung(lobe, ("RUL", "RLL", "RML"))[0] for lobe in ("RUL", "RLL", "RML")]
    assert sum(means) == pytest.approx(1.0)
    mean, sd = share_of_lung("RML", ("RUL", "RLL", "RML"))
    assert 0.15 < mean < 0.20 and 0.02 < sd < 0.04  # 9.3 % of both lungs, 53.7 % in the right one


def test_share_penalty_is_soft_and_grows_with_z():
    s = PriorSettings()
    assert share_penalty(0.17, 0.17, 0.03, s) == 0.0
    assert share_penalty(0.17 + 0.03, 0.17, 0.03, s) == 0.0  # within share_free_z
    assert 0 < share_penalty(0.17 + 0.09, 0.17, 0.03, s) < share_penalty(0.17 + 0.15, 0.17, 0.03, s)


def test_oblique_penalty_terms():
    s = PriorSettings()
    assert oblique_penalty(0.3, 0.8, 0.05, s) == 0.0
    assert oblique_penalty(0.7, 0.8, 0.05, s) > 0  # posterior end far below T4-T5
    assert oblique_penalty(0.3, -0.3, 0.05, s) > 0  # sloping the wrong way
    assert oblique_penalty(0.3, 0.8, 0.4, s) > 0  # lower lobe over the front of the diaphragm


def test_horizontal_and_network_penalties():
    s = PriorSettings()
    assert horizontal_penalty(0.5, 0.1, -0.1, s) == 0.0
    assert horizontal_penalty(0.5, 0.8, 0.0, s) > 0 and horizontal_penalty(0.9, 0.0, 0.0, s) > 0
    assert network_penalty(0.0, s) == 0.0 < network_penalty(10.0, s) < network_penalty(30.0, s)
