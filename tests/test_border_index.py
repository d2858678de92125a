"""The border vessel index (algorithm/report/border_index.py) on synthetic lungs with known vessels."""

from __future__ import annotations

import numpy as np
import pytest

from algorithm.report.border_index import (
    BORDERS,
    BorderIndexSettings,
    border_band,
    border_flags,
    border_interface,
    border_vessel_index,
    vessel_mask,
)
from algorithm.labels import Lobe

SPACING_MM = (1.5, 1.5, 1.5)
SHAPE = (96, 72, 72)  # z, y, x: a 144 x 108 x 108 mm field of view
PLANE_Z = 48  # the vessel-free plane (voxel index along z)


def synthetic_lung(seed: int = 0, vessel_free_mm: float = 6.0, n_vessels: int = 900):
    """Soft tissue with one box lung (-850 HU, noise 15 HU) holding thin vessels (+40 HU, radius
    about 1 mm) everywhere except within ``vessel_free_mm`` of the plane z = PLANE_Z."""
    rng = np.random.default_rng(seed)
    hu = np.full(SHAPE, 40.0)
    lung = np.zeros(SHAPE, bool)
    lung[6:-6, 6:-6, 6:-6] = True
    hu[lung] = -850.0 + 15.0 * rng.standard_normal(int(lung.sum()))
    z, y, x = np.indices(SHAPE)
    centres = rng.uniform((8, 8, 8), (SHAPE[0] - 8, SHAPE[1] - 8, SHAPE[2] - 8), size=(n_vessels, 3))
    directions = rng.standard_normal((n_vessels, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    vessel = np.zeros(SHAPE, bool)
    for c, d in zip(centres, directions):  # short straight tubes of radius ~1 mm (0.7 voxel)
        for t in np.linspace(-4.0, 4.0, 17):
            p = np.round(c + t * d).astype(int)
            vessel[p[0], p[1], p[2]] = True
    vessel &= np.abs(z - PLANE_Z) * SPACING_MM[0] > vessel_free_mm
    hu[vessel & lung] = 40.0
    return hu.astype(np.int16), lung


def two_lobes(lung: np.ndarray, plane_z: int) -> np.ndarray:
    """Left lung split at ``plane_z``: LLL below, LUL above."""
    labels = np.zeros(lung.shape, np.uint8)
    upper = np.arange(lung.shape[0])[:, None, None] >= plane_z
    labels[lung & upper] = Lobe.LUL
    labels[lung & ~upper] = Lobe.LLL
    return labels


def left_oblique(hu, labels, **kwargs) -> dict:
    return border_vessel_index(hu, labels, SPACING_MM, **kwargs)["borders"]["left_oblique"]


def test_index_is_near_0_at_the_vessel_free_plane_and_near_1_in_the_vessels():
    hu, lung = synthetic_lung()
    at_plane = left_oblique(hu, two_lobes(lung, PLANE_Z))
    shifted = left_oblique(hu, two_lobes(lung, PLANE_Z + 20))  # 30 mm into the vessels
    assert at_plane["status"] == "ok" and shifted["status"] == "ok"
    assert at_plane["index"] < 0.1
    assert 0.7 < shifted["index"] < 1.3
    assert at_plane["band_ml"] > 20.0  # the band really was measured


def test_index_grows_as_the_border_moves_off_the_plane():
    hu, lung = synthetic_lung()
    values = [left_oblique(hu, two_lobes(lung, PLANE_Z + k))["index"] for k in (0, 3, 6, 12)]
    assert values == sorted(values) and values[-1] > 3 * max(values[0], 0.05)


def test_warning_fires_on_a_misplaced_border_and_not_on_the_correct_one():
    hu, lung = synthetic_lung()
    good = border_vessel_index(hu, two_lobes(lung, PLANE_Z), SPACING_MM)
    bad = border_vessel_index(hu, two_lobes(lung, PLANE_Z + 20), SPACING_MM)
    assert border_flags(good) == []
    flags = border_flags(bad)
    assert [f["border"] for f in flags] == ["left_oblique"]
    assert flags[0]["severity"] == "warning" and flags[0]["value"] > flags[0]["limit"]


def test_missing_and_tiny_borders_are_reported_as_such_not_as_numbers():
    hu, lung = synthetic_lung()
    labels = two_lobes(lung, PLANE_Z)
    # a right lung of RLL holding a 3 mm RML: their border is under 1 mL of band
    labels[:, :, 40:] = np.where(labels[:, :, 40:] > 0, Lobe.RLL, 0)
    labels[PLANE_Z : PLANE_Z + 2, 30:32, 55:57] = Lobe.RML
    section = border_vessel_index(hu, labels, SPACING_MM)
    borders = section["borders"]
    assert borders["right_oblique_upper"]["status"] == "missing" and borders["right_oblique_upper"]["index"] is None
    assert borders["horizontal"]["status"] == "missing"
    assert borders["right_oblique_middle"]["status"] == "tiny" and borders["right_oblique_middle"]["index"] is None
    assert all(f["border"] not in ("right_oblique_upper", "horizontal", "right_oblique_middle") for f in border_flags(section))


def test_no_lobes_gives_missing_borders_everywhere():
    hu, lung = synthetic_lung()
    section = border_vessel_index(hu, np.zeros(SHAPE, np.uint8), SPACING_MM)
    assert {b.name for b in BORDERS} == set(section["borders"])
    assert all(entry["status"] == "missing" for entry in section["borders"].values())
    assert section["lung_vessel_share"] is None and border_flags(section) == []


def test_consolidation_on_the_border_is_not_counted_as_vessel():
    """A 30 mm dense blob straddling the vessel-free plane would read as vessels there."""
    hu, lung = synthetic_lung()
    z, y, x = np.indices(SHAPE)
    blob = ((z - PLANE_Z) ** 2 + (y - 36) ** 2 + (x - 36) ** 2) * SPACING_MM[0] ** 2 < 15.0**2
    hu[blob & lung] = -20
    labels = two_lobes(lung, PLANE_Z)
    entry = left_oblique(hu, labels)
    assert entry["status"] == "ok" and entry["index"] < 0.1
    masks = vessel_mask(hu, lung, SPACING_MM)
    assert not (masks.domain & blob).any()  # the blob and its rim are out of the analysed lung
    # without the thick-structure and haze rules the blob would have dominated the band
    naive = left_oblique(hu, labels, settings=BorderIndexSettings(thick_mm=100.0, haze_hu=0.0))
    assert naive["index"] > 1.0


def test_fewer_vessels_everywhere_leave_the_index_alone():
    """Emphysema: fewer vessels in the whole lung; the normalisation takes it out."""
    hu_many, lung = synthetic_lung(seed=1, n_vessels=900)
    hu_few, _ = synthetic_lung(seed=1, n_vessels=300)
    labels = two_lobes(lung, PLANE_Z + 20)
    many, few = left_oblique(hu_many, labels), left_oblique(hu_few, labels)
    assert few["band_vessel_share"] < 0.5 * many["band_vessel_share"]
    assert few["index"] == pytest.approx(many["index"], abs=0.25)


def test_thick_slices_mark_the_index_unreliable_and_raise_no_warning():
    hu, lung = synthetic_lung()
    thick = (6.0, 1.5, 1.5)  # every fourth slice of the same lung, 6 mm apart
    section = border_vessel_index(hu[::4], two_lobes(lung, PLANE_Z + 20)[::4], thick)
    assert section["reliable"] is False and "partial volume" in section["note"]
    assert section["borders"]["left_oblique"]["status"] == "ok"
    assert border_flags(section) == []


def test_band_and_interface_are_in_millimetres():
    lung = np.ones((40, 10, 10), bool)
    labels = two_lobes(lung, 20)
    interface = border_interface(labels, Lobe.LUL, Lobe.LLL)
    assert set(np.flatnonzero(interface.any(axis=(1, 2)))) == {19, 20}
    for spacing in ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0)):
        band = border_band(labels, Lobe.LUL, Lobe.LLL, spacing, band_mm=4.0)
        rows = np.flatnonzero(band.any(axis=(1, 2)))
        reach = int(4.0 // spacing[0])
        assert rows.min() == 19 - reach and rows.max() == 20 + reach
    assert border_band(labels, Lobe.RUL, Lobe.RML, (1.0, 1.0, 1.0)) is None


def test_the_definition_is_in_the_section():
    hu, lung = synthetic_lung()
    section = border_vessel_index(hu, two_lobes(lung, PLANE_Z), SPACING_MM)
    settings = section["settings"]
    assert settings["band_mm"] == 4.0 and settings["vessel_hu"] == -500.0
    assert "-500 HU" in section["definition"] and "4 mm" in section["definition"]
    assert section["reliable"] is True and section["analysed_lung_ml"] > 0


def test_the_report_of_a_case_holds_the_index_and_its_warning():
    """The case report: the section and the quality flag of a misplaced border."""
    import SimpleITK as sitk

    from algorithm.report.lobe_report import NetworkRun, WeightsInfo, build_report

    hu, lung = synthetic_lung()
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(SPACING_MM[::-1])
    mask = sitk.GetImageFromArray(two_lobes(lung, PLANE_Z + 20))
    mask.CopyInformation(image)
    network = NetworkRun(SPACING_MM, 1, None, "float32")
    report = build_report(image, mask, network, WeightsInfo("test.pt", "0" * 64), "cpu", 0.0).to_dict()
    section = report["border_vessel_index"]
    assert section["borders"]["left_oblique"]["index"] > section["settings"]["high_index"]
    assert [f["border"] for f in report["quality_flags"] if f["code"] == "border_through_vessels"] == ["left_oblique"]


def test_ground_glass_on_the_border_is_not_analysed():
    """Ground glass (-550 HU, noise 40 HU) along the vessel-free plane: its speckle above -500 HU
    would read as vessels; the haze rule leaves that lung out."""
    hu, lung = synthetic_lung()
    rng = np.random.default_rng(5)
    z = np.arange(SHAPE[0])[:, None, None]
    glass = lung & (np.abs(z - PLANE_Z) * SPACING_MM[0] < 12.0) & (np.arange(SHAPE[1])[None, :, None] < 40)
    hu[glass] = (-550 + 40 * rng.standard_normal(int(glass.sum()))).astype(np.int16)
    labels = two_lobes(lung, PLANE_Z)
    entry = left_oblique(hu, labels)
    assert entry["status"] == "ok" and entry["index"] < 0.15
    kept = vessel_mask(hu, lung, SPACING_MM).domain & glass
    assert kept.sum() < 0.2 * glass.sum()  # only its rim, where the box mean is half clear lung
    assert left_oblique(hu, labels, settings=BorderIndexSettings(haze_hu=0.0))["index"] > 0.5
