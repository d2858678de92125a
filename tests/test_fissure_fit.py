"""The fissure fit (algorithm/fissure_fit.py) on synthetic lungs whose vessels stop at known surfaces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from algorithm.fissure_fit import HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE, FitSettings, fit_fissures, refine_fissures
from algorithm.labels import Lobe
from training.evaluation.metrics import lobe_score

SPACING_MM = (2.0, 2.0, 2.0)  # z, y, x
SHAPE = (80, 90, 130)
GAP_MM = 4.0  # vessel centre lines stop this far from a fissure; their walls reach ~2 mm closer


def oblique_mm(y: np.ndarray, x: np.ndarray, side: int) -> np.ndarray:
    """The true oblique fissure: posterior (large y) higher, curved front to back, a sideways wave."""
    yc = y - 90.0
    return 80.0 + 0.55 * yc - 0.002 * yc**2 + 4.0 * np.sin((x - (40.0 if side > 0 else 200.0)) / 20.0)


def horizontal_mm(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The true horizontal fissure: nearly level, a little higher at the front."""
    return 92.0 - 0.08 * (y - 90.0) + 0.03 * (x - 200.0)


@dataclass
class SyntheticChest:
    labels: np.ndarray  # truth
    vessel: np.ndarray
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray


def _distance(z: np.ndarray, f: np.ndarray, slope: float) -> np.ndarray:
    return (z - f) / np.sqrt(1.0 + slope**2)


def make_chest(seed: int = 0, vessels: bool = True) -> SyntheticChest:
    """Two ellipsoid lungs (patient left at high x); vessels are straight tubes that never come within
    ``GAP_MM`` of a fissure."""
    nz, ny, nx = SHAPE
    z, y, x = (a * s for a, s in zip(np.mgrid[0:nz, 0:ny, 0:nx].astype(float), SPACING_MM))
    labels = np.zeros(SHAPE, np.uint8)
    left = ((z - 80) / 72) ** 2 + ((y - 90) / 80) ** 2 + ((x - 200) / 50) ** 2 < 1  # LPS: +x = patient left
    right = ((z - 80) / 72) ** 2 + ((y - 90) / 80) ** 2 + ((x - 56) / 50) ** 2 < 1
    labels[left] = np.where(z[left] < oblique_mm(y[left], x[left], +1), Lobe.LLL, Lobe.LUL)
    below = z < oblique_mm(y, x, -1)
    labels[right & below] = Lobe.RLL
    labels[right & ~below] = np.where(z[right & ~below] < horizontal_mm(y, x)[right & ~below], Lobe.RML, Lobe.RUL)
    vessel = np.zeros(SHAPE, bool)
    if vessels:
        vessel = _tubes(np.random.default_rng(seed), labels, z, y, x)
    return SyntheticChest(labels, vessel, z, y, x)


def _tubes(rng: np.random.Generator, labels: np.ndarray, z, y, x, n: int = 900) -> np.ndarray:
    """Random straight vessels in each lobe, cut where they would come near a fissure."""
    lung = np.argwhere(labels > 0)
    vessel = np.zeros(labels.shape, bool)
    spacing = np.array(SPACING_MM)
    for _ in range(n):
        p0 = lung[rng.integers(len(lung))] * spacing
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        lobe = labels[tuple((p0 / spacing).astype(int))]
        for t in np.arange(0.0, rng.uniform(15, 40), 1.0):
            p = p0 + t * direction
            idx = tuple(np.round(p / spacing).astype(int))
            if not all(0 <= i < s for i, s in zip(idx, labels.shape)) or labels[idx] != lobe:
                break
            if _near_fissure(p, labels[idx]):
                break
            vessel[idx] = True
    # tubes about 3 voxels thick (a symmetric dilation: the vessel-free band stays centred)
    return ndimage.binary_dilation(vessel) & (labels > 0)


def _near_fissure(p: np.ndarray, lobe: int) -> bool:
    pz, py, px = p
    side = +1 if lobe in (Lobe.LUL, Lobe.LLL) else -1
    if abs(_distance(pz, oblique_mm(py, px, side), 0.55 - 0.004 * (py - 90.0))) < GAP_MM:
        return True
    return side < 0 and lobe != Lobe.RLL and abs(_distance(pz, horizontal_mm(py, px), 0.08)) < GAP_MM


def shifted_labels(chest: SyntheticChest, oblique_shift_mm: float, horizontal_shift_mm: float = 0.0) -> np.ndarray:
    """The truth with its fissures moved up (positive) or down along z: a network that is off."""
    z, y, x = chest.z, chest.y, chest.x
    out = np.zeros_like(chest.labels)
    left = np.isin(chest.labels, [Lobe.LUL, Lobe.LLL])
    right = np.isin(chest.labels, [Lobe.RUL, Lobe.RLL, Lobe.RML])
    out[left] = np.where(z[left] < oblique_mm(y[left], x[left], +1) + oblique_shift_mm, Lobe.LLL, Lobe.LUL)
    below = z < oblique_mm(y, x, -1) + oblique_shift_mm
    hor = z < horizontal_mm(y, x) + horizontal_shift_mm
    out[right & below] = Lobe.RLL
    out[right & ~below & hor] = Lobe.RML
    out[right & ~below & ~hor] = Lobe.RUL
    return out


def surface_error_mm(surface, true_mm, chest: SyntheticChest, lobes: tuple[Lobe, ...]) -> np.ndarray:
    """|fit - truth| (mm) over the columns where both sides of the fissure hold lung."""
    ys = np.arange(SHAPE[1]) * SPACING_MM[1]
    xs = np.arange(SHAPE[2]) * SPACING_MM[2]
    fit = surface.height_mm(ys, xs)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    lab = chest.labels
    both = np.isin(lab, [lobes[0]]).any(axis=0) & np.isin(lab, list(lobes[1:])).any(axis=0)
    return np.abs(fit - true_mm(yy, xx))[both]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """The project's one IoU (training.evaluation.metrics.lobe_score)."""
    return lobe_score(a, b, SPACING_MM, with_hd95=False).iou


@pytest.fixture(scope="module")
def chest() -> SyntheticChest:
    return make_chest()


@pytest.fixture(scope="module")
def off_start(chest) -> np.ndarray:
    """A network 15 mm off on both oblique fissures and 10 mm off on the horizontal one."""
    return shifted_labels(chest, oblique_shift_mm=15.0, horizontal_shift_mm=-10.0)


@pytest.fixture(scope="module")
def off_fit(chest, off_start):
    return fit_fissures(off_start, chest.vessel, SPACING_MM)


@pytest.fixture(scope="module")
def correct_fit(chest):
    return fit_fissures(chest.labels, chest.vessel, SPACING_MM)


def test_fit_recovers_curved_fissures_from_15_mm_off(chest, off_start, off_fit):
    start, result = off_start, off_fit
    for name in (LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL):
        assert result.fissures[name].decision == "fit", result.report()
    left_err = surface_error_mm(result.surfaces[LEFT_OBLIQUE], lambda y, x: oblique_mm(y, x, +1), chest, (Lobe.LLL, Lobe.LUL))
    right_err = surface_error_mm(result.surfaces[RIGHT_OBLIQUE], lambda y, x: oblique_mm(y, x, -1), chest, (Lobe.RLL, Lobe.RUL, Lobe.RML))
    voxel_mm = SPACING_MM[0]
    for err in (left_err, right_err):
        # within one voxel over most of the fissure, about half a voxel at the median; the rest
        # lies where the fissure meets the pleura and the band holds little lung
        assert np.mean(err <= voxel_mm) >= 0.8 and np.median(err) <= 0.6 * voxel_mm, np.quantile(err, [0.5, 0.8, 0.95])
    # the small RML is bounded by both fissures and carries both errors; it grows back only beside
    # where the (here much too thin) network RML is
    for lobe, least in ((Lobe.LUL, 0.95), (Lobe.LLL, 0.95), (Lobe.RUL, 0.93), (Lobe.RLL, 0.95), (Lobe.RML, 0.8)):
        before = iou(start == lobe, chest.labels == lobe)
        after = iou(result.labels == lobe, chest.labels == lobe)
        assert after > max(before, least), (lobe.name, before, after)
    # the lung itself is untouched
    assert np.array_equal(result.labels > 0, chest.labels > 0)


def test_without_vessel_signal_the_network_border_stands(chest, off_start):
    result = fit_fissures(off_start, np.zeros_like(chest.vessel), SPACING_MM)
    assert all(r.decision == "network" for r in result.fissures.values()), result.report()
    assert "vessel signal" in result.fissures[LEFT_OBLIQUE].reason
    assert np.array_equal(result.labels, off_start)


def test_a_correct_border_is_not_moved(chest, correct_fit):
    lung = chest.labels > 0
    changed = np.mean(correct_fit.labels[lung] != chest.labels[lung])
    assert changed < 0.003, correct_fit.report()
    for name in (LEFT_OBLIQUE, RIGHT_OBLIQUE):
        r = correct_fit.fissures[name]
        assert r.decision == "network" or r.mean_shift_mm < 1.0, r


def test_deterministic_and_input_untouched(chest, off_start, off_fit):
    copy = off_start.copy()
    again = fit_fissures(off_start, chest.vessel, SPACING_MM)
    assert np.array_equal(off_start, copy)
    assert np.array_equal(again.labels, off_fit.labels)
    assert again.report() == off_fit.report()


def test_weak_evidence_keeps_the_network(chest, off_start):
    """A fit whose index is not clearly lower is refused, whatever the surface it found."""
    result = fit_fissures(off_start, chest.vessel, SPACING_MM, settings=FitSettings(accept_ratio=0.0))
    assert all(r.decision == "network" for r in result.fissures.values())
    assert np.array_equal(result.labels, off_start)
    assert result.fissures[LEFT_OBLIQUE].index_fit < result.fissures[LEFT_OBLIQUE].index_network


def test_report_has_a_decision_per_fissure(correct_fit, off_fit):
    for fit in (correct_fit, off_fit):
        report = fit.report()
        assert set(report) == {LEFT_OBLIQUE, RIGHT_OBLIQUE, HORIZONTAL}
        for entry in report.values():
            assert entry["decision"] in ("fit", "network") and entry["reason"]
    assert off_fit.report()[LEFT_OBLIQUE]["relabelled_ml"] > 0


def test_missing_lobe_is_reported_not_fitted(chest):
    labels = chest.labels.copy()
    labels[labels == Lobe.RML] = Lobe.RUL
    labels[labels == Lobe.LLL] = Lobe.LUL
    result = fit_fissures(labels, chest.vessel, SPACING_MM)
    for name in (LEFT_OBLIQUE, HORIZONTAL):
        assert result.fissures[name].decision == "network"
        assert "missing" in result.fissures[name].reason


def chest_hu(chest: SyntheticChest) -> np.ndarray:
    """Soft tissue around the lungs, parenchyma at -850 HU, vessels at +40 HU."""
    hu = np.full(chest.labels.shape, 40, np.int16)
    hu[chest.labels > 0] = -850
    hu[chest.vessel] = 40
    return hu


def test_pipeline_step_finds_vessels_in_hu_and_relabels(chest, off_start):
    labels, section = refine_fissures(chest_hu(chest), off_start, SPACING_MM)
    assert section["mode"] == "fit"
    assert section["fissures"][LEFT_OBLIQUE]["decision"] == "fit"
    for lobe in (Lobe.LUL, Lobe.LLL):
        assert iou(labels == lobe, chest.labels == lobe) > iou(off_start == lobe, chest.labels == lobe) + 0.1


def test_network_mode_is_the_papers_path(chest, off_start):
    labels, section = refine_fissures(chest_hu(chest), off_start, SPACING_MM, mode="network")
    assert labels is off_start and section["mode"] == "network"
    with pytest.raises(ValueError, match="fissure mode"):
        refine_fissures(chest_hu(chest), off_start, SPACING_MM, mode="plane")


def test_surfaces_fitted_on_the_lattice_relabel_the_full_grid(chest, off_start):
    """1 mm slices: the fit runs on every second slice and relabels every slice."""
    hu, start, truth = (np.repeat(a, 2, axis=0) for a in (chest_hu(chest), off_start, chest.labels))
    labels, section = refine_fissures(hu, start, (1.0, 2.0, 2.0))
    assert section["fissures"][LEFT_OBLIQUE]["decision"] == "fit"
    for lobe in (Lobe.LUL, Lobe.LLL):
        assert iou(labels == lobe, truth == lobe) > 0.95


def test_mask_step_works_in_any_orientation(chest, off_start):
    """The height fields live in the LPS frame: a scan stored RAS-flipped gets the same lobes."""
    import SimpleITK as sitk

    from algorithm.fissure_fit import refine_mask

    def image(array):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(SPACING_MM[::-1])
        return img

    lps_mask, lps_section = refine_mask(image(chest_hu(chest)), image(off_start))
    flipped = [sitk.DICOMOrient(image(a), "RAS") for a in (chest_hu(chest), off_start)]
    ras_mask, ras_section = refine_mask(*flipped)
    assert ras_section == lps_section and lps_section["fissures"][LEFT_OBLIQUE]["decision"] == "fit"
    assert sitk.GetArrayFromImage(sitk.DICOMOrient(ras_mask, "LPS")).tolist() == sitk.GetArrayFromImage(lps_mask).tolist()
    assert ras_mask.GetDirection() == flipped[1].GetDirection()


def test_coarse_in_plane_voxels_keep_the_network(chest, off_start):
    """At 4 mm in plane (a 64 x 64 matrix) the 4 mm band is one voxel wide: no fit."""
    coarse = tuple(a[:, ::2, ::2] for a in (off_start, chest.vessel))
    result = fit_fissures(coarse[0], coarse[1], (2.0, 4.0, 4.0))
    assert all(r.decision == "network" and "in-plane" in r.reason for r in result.fissures.values())
    assert result.labels is coarse[0]
