"""Issue 29, calibration judged robustly: a scan in HU is never called "not in HU" at any noise level
up to 100 HU (synthetic chests, a phantom, the real scans with noise added), an uncalibrated one
(raw stored values, an offset, a slope) still is, and ``import-dataset`` keeps the noisy case."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from test_hu_landmarks import REAL_SCANS, _synthetic_chest

from algorithm.calibration import block_factors, block_means_without_padding, robust_hu_calibration
from algorithm.labels import LOBES
from algorithm.report.hu_landmarks import hu_calibration
from algorithm.report.quality_flags import assess_quality
from conftest import SHARED_REAL
from training.data import import_dataset
from training.data import layout_writers as layouts
from training.data.label_maps import LABEL_REMAPS
from training.phantoms import PhantomOptions, generate_case

NOISE_LEVELS_HU = (0.0, 25.0, 50.0, 75.0, 100.0)
UNCALIBRATED = {
    "raw stored values (+1024)": lambda v: v + 1024.0,
    "offset +300": lambda v: v + 300.0,
    "offset -300": lambda v: v - 300.0,
    "slope 2": lambda v: v * 2.0,
    "slope 0.5": lambda v: v * 0.5,
}


def _noisy(values: np.ndarray, noise_hu: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = values.astype(np.float32)
    if noise_hu:
        out += rng.normal(0.0, noise_hu, values.shape).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def noisy_phantom() -> sitk.Image:
    """Case 77 of the issue (an effusion, a sharp kernel) with 100 HU of noise, on a small grid:
    the plain landmark test calls it "not HU" (fat and soft tissue merge)."""
    return generate_case(77, PhantomOptions(size_xyz=(128, 128, 96), noise_sigma_hu=100.0)).image


@pytest.mark.parametrize("noise_hu", NOISE_LEVELS_HU)
def test_a_synthetic_chest_in_hu_stays_in_hu_at_every_noise_level(noise_hu):
    calibration = robust_hu_calibration(_synthetic_chest(np.random.default_rng(11), noise_hu), (2.0, 2.0, 2.0))
    assert calibration.in_hu, (noise_hu, calibration.reason)
    assert abs(calibration.offset_hu) < 30.0


def test_the_plain_landmark_test_fails_where_the_robust_one_holds(noisy_phantom):
    """The reason for the module: at 100 HU the histogram of the voxels alone finds no fat/soft
    tissue pair, the block means do."""
    values = sitk.GetArrayFromImage(noisy_phantom)
    spacing_zyx = tuple(reversed(noisy_phantom.GetSpacing()))
    assert not hu_calibration(values).in_hu
    robust = robust_hu_calibration(values, spacing_zyx)
    assert robust.in_hu and "after averaging the noise" in robust.reason, robust


@pytest.mark.parametrize("name", sorted(UNCALIBRATED))
@pytest.mark.parametrize("noise_hu", (0.0, 50.0, 100.0))
def test_an_uncalibrated_chest_stays_not_hu_at_every_noise_level(name, noise_hu):
    values = UNCALIBRATED[name](_synthetic_chest(np.random.default_rng(12), noise_hu))
    calibration = robust_hu_calibration(values, (2.0, 2.0, 2.0))
    assert not calibration.in_hu, (name, noise_hu, calibration)


@pytest.mark.parametrize("name", sorted(UNCALIBRATED))
def test_the_noisy_phantom_uncalibrated_is_not_hu(noisy_phantom, name):
    values = UNCALIBRATED[name](sitk.GetArrayFromImage(noisy_phantom).astype(np.float32))
    assert not robust_hu_calibration(values, tuple(reversed(noisy_phantom.GetSpacing()))).in_hu, name


def test_the_quality_report_of_the_noisy_phantom_has_no_not_hu_error(noisy_phantom):
    mask = sitk.Image(noisy_phantom.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(noisy_phantom)
    measures = {lobe.name: {"volume_ml": 0.0, "share_of_lung_percent": None} for lobe in LOBES}
    flags = assess_quality(noisy_phantom, mask, measures).flags
    assert "intensity_not_hu" not in {flag["code"] for flag in flags}
    shifted = sitk.Cast(noisy_phantom, sitk.sitkFloat32) + 1024.0
    flags = assess_quality(shifted, mask, measures).flags
    assert "intensity_not_hu" in {flag["code"] for flag in flags}


def test_padding_blocks_make_no_peak_below_the_air():
    """Blocks across the edge of the reconstruction circle (-3024 beside -1000) are left out."""
    values = _noisy(_synthetic_chest(np.random.default_rng(13), 0.0), 100.0)
    values[:, :10, :] = -3024.0
    values[:, 10:12, ::2] = -3024.0  # a ragged circle edge: blocks mixing padding and air
    means = block_means_without_padding(values, (2.0, 2.0, 2.0))
    assert means.min() > -1500.0
    assert robust_hu_calibration(values, (2.0, 2.0, 2.0)).in_hu


def test_block_factors_follow_the_spacing():
    assert block_factors((1.25, 0.53, 0.53)) == (2, 5, 5)
    assert block_factors((5.0, 0.3, 0.3)) == (1, 6, 6)  # at most 6 voxels per axis
    assert block_factors((3.0, 2.8, 2.8)) == (1, 1, 1)


def test_import_dataset_keeps_the_noisy_case_and_leaves_out_its_raw_values(noisy_phantom, tmp_path):
    label = generate_case(77, PhantomOptions(size_xyz=(128, 128, 96), noise_sigma_hu=100.0)).label
    labels = sitk.GetArrayFromImage(label)
    source = layouts.to_source_values(labels, LABEL_REMAPS["lola11"])
    raw = sitk.Cast(noisy_phantom, sitk.sitkInt16) + 1024
    for name, image in (("noisy", noisy_phantom), ("noisy-raw", raw)):
        layouts.folder_case(tmp_path / "src", name, image, source)
    out = tmp_path / "out"
    import_dataset.main(["--layout", "folder", str(tmp_path / "src"), "--out", str(out), "--label-map", "lola11"])
    with open(out / "cases.csv", newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert (rows["noisy"]["status"], rows["noisy"]["reason"]) == ("ok", ""), rows["noisy"]
    assert rows["noisy-raw"]["status"] == "excluded" and "not in HU" in rows["noisy-raw"]["reason"]


@pytest.mark.real_data
@pytest.mark.parametrize("name", REAL_SCANS or ["(none)"])
def test_every_real_scan_with_noise_added_stays_in_hu_and_uncalibrated_does_not(name):
    if not REAL_SCANS:
        pytest.skip(f"{SHARED_REAL} is absent")
    from algorithm.io.reading import read_image

    image = read_image(SHARED_REAL / name).image
    values, spacing_zyx = sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing()))
    for noise_hu in (50.0, 100.0):
        noisy = _noisy(values, noise_hu, seed=int(noise_hu))
        calibration = robust_hu_calibration(noisy, spacing_zyx)
        assert calibration.in_hu, (noise_hu, calibration.reason)
        for kind in ("raw stored values (+1024)", "slope 2"):
            assert not robust_hu_calibration(UNCALIBRATED[kind](noisy), spacing_zyx).in_hu, (noise_hu, kind)
