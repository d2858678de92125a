"""The not-HU rule from landmarks (air, fat, soft tissue): no real scan in HU is called "not HU",
and raw stored values, MR-like intensities, shifted and rescaled images are."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.report.hu_landmarks import hu_calibration
from conftest import SHARED_REAL

REAL_SCANS = sorted(p.name for p in SHARED_REAL.iterdir()) if SHARED_REAL.is_dir() else []


def _synthetic_chest(rng: np.random.Generator, noise_hu: float = 15.0, outside_air: bool = True) -> np.ndarray:
    """Air outside; a body of muscle and organs (+45 HU) under a fat layer (-100); two lungs
    (-850) with mediastinal fat between them and the trachea (air); noisy."""
    z, y, x = np.mgrid[0:40, 0:96, 0:96]
    body = ((y - 48) / 44.0) ** 2 + ((x - 48) / 46.0) ** 2
    hu = np.full(body.shape, -1000.0)
    hu[body < 1.0] = -100.0  # subcutaneous fat
    hu[body < 0.8] = 45.0  # muscle and organs
    for cx in (30, 66):
        hu[((y - 48) / 28.0) ** 2 + ((x - cx) / 14.0) ** 2 < 1.0] = -850.0
    hu[((y - 40) / 10.0) ** 2 + ((x - 48) / 4.0) ** 2 < 1.0] = -100.0  # mediastinal fat
    hu[((y - 36) / 3.0) ** 2 + ((x - 48) / 3.0) ** 2 < 1.0] = -1000.0  # trachea
    if not outside_air:  # a crop inside the body (heart, lungs cut at the sides)
        hu = hu[:, 22:74, 26:70]
    return hu + rng.normal(0.0, noise_hu, hu.shape)


@pytest.mark.real_data
@pytest.mark.parametrize("name", REAL_SCANS or ["(none)"])
def test_every_real_scan_is_in_hu(name):
    if not REAL_SCANS:
        pytest.skip(f"{SHARED_REAL} is absent")
    from algorithm.io.reading import read_image

    values = sitk.GetArrayFromImage(read_image(SHARED_REAL / name).image)
    calibration = hu_calibration(values)
    assert calibration.in_hu, calibration.reason
    assert abs(calibration.offset_hu) <= 60.0, calibration


@pytest.mark.real_data
def test_the_heart_crop_is_in_hu_although_its_lowest_peak_is_the_lung():
    path = SHARED_REAL / "totalseg-heart-crop-partial-lungs.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    from algorithm.io.reading import read_image

    values = sitk.GetArrayFromImage(read_image(path).image)
    calibration = hu_calibration(values)
    assert calibration.in_hu, calibration.reason
    assert calibration.peaks_hu["fat"] == pytest.approx(-100.0, abs=25.0)
    assert calibration.peaks_hu["soft_tissue"] == pytest.approx(50.0, abs=30.0)
    # the lowest big peak is the lung's, not the air's
    counts, edges = np.histogram(values, bins=np.arange(-1300, -495, 10))
    assert -860 < edges[np.argmax(counts)] < -760


@pytest.mark.parametrize("noise_hu", [5.0, 15.0, 60.0])
def test_a_synthetic_chest_in_hu_is_in_hu(noise_hu):
    calibration = hu_calibration(_synthetic_chest(np.random.default_rng(0), noise_hu))
    assert calibration.in_hu, calibration.reason
    assert abs(calibration.offset_hu) < 20.0


def test_a_crop_without_outside_air_is_in_hu():
    calibration = hu_calibration(_synthetic_chest(np.random.default_rng(1), outside_air=False))
    assert calibration.in_hu, calibration.reason
    assert calibration.peaks_hu["fat"] is not None and calibration.peaks_hu["soft_tissue"] is not None


def test_raw_stored_values_without_the_rescale_are_not_hu():
    """0..4095 as stored by a scanner (HU + 1024), the intercept never applied."""
    raw = np.clip(np.rint(_synthetic_chest(np.random.default_rng(2)) + 1024.0), 0, 4095).astype(np.uint16)
    calibration = hu_calibration(raw)
    assert not calibration.in_hu
    assert "no air" in calibration.reason


@pytest.mark.parametrize("shift_hu", [-500.0, -300.0, -150.0, -100.0, 100.0, 150.0, 300.0, 500.0])
def test_shifted_intensities_are_not_hu(shift_hu):
    calibration = hu_calibration(_synthetic_chest(np.random.default_rng(3)) + shift_hu)
    assert not calibration.in_hu, (shift_hu, calibration)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_rescaled_intensities_are_not_hu(scale):
    calibration = hu_calibration(_synthetic_chest(np.random.default_rng(4)) * scale)
    assert not calibration.in_hu, (scale, calibration)


def test_mr_like_intensities_are_not_hu():
    """Non-negative, arbitrary units: background near 0, tissue classes at a few hundred."""
    rng = np.random.default_rng(5)
    hu = _synthetic_chest(rng)
    mr = np.select([hu < -500, hu < -50, hu < 200], [5.0, 900.0, 350.0], 600.0) + rng.normal(0, 20, hu.shape)
    calibration = hu_calibration(np.clip(mr, 0, None))
    assert not calibration.in_hu, calibration


def test_landmarks_that_disagree_are_not_hu():
    """Air at the top of its window and soft tissue at the bottom of its own: each is near its
    HU, but they disagree on the offset by over 100 HU (a wrong slope?)."""
    rng = np.random.default_rng(6)
    values = np.concatenate([rng.normal(-935, 8, 300_000), rng.normal(-8, 8, 300_000), rng.normal(-500, 300, 100_000)])
    calibration = hu_calibration(values)
    assert calibration.peaks_hu["air"] is not None and calibration.peaks_hu["soft_tissue"] is not None
    assert not calibration.in_hu and "disagree" in calibration.reason, calibration


def test_padding_below_the_air_is_not_a_shift():
    """-3024 outside the reconstruction circle and -1024 padding: constant values, not air."""
    hu = _synthetic_chest(np.random.default_rng(7))
    hu[:, :8, :] = -3024.0
    hu[:, -8:, :] = -1124.0
    calibration = hu_calibration(hu)
    assert calibration.in_hu, calibration.reason
