"""Tests of the synthetic chest CT phantoms (issue 3). Small phantoms keep the file under a minute."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import LEFT_LOBES, LOBES, RIGHT_LOBES, Lobe
from training.phantoms import PhantomOptions, generate_case, write_dataset
from training.phantoms.config import TARGET_SHARE_PERCENT
from training.phantoms.lungs import FISSURE_LOBES

SMALL = (64, 64, 48)


@functools.lru_cache(maxsize=None)
def _case(seed: int, pathology: str | None = None, size=SMALL, noise: float | None = None, fissures: bool = False):
    options = PhantomOptions(size_xyz=size, pathology=pathology, noise_sigma_hu=noise, with_fissure_map=fissures)
    return generate_case(seed, options)


def _arrays(case) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


def test_types_and_geometry():
    case = _case(1)
    assert case.image.GetPixelID() == sitk.sitkInt16
    assert case.label.GetPixelID() == sitk.sitkUInt8
    assert case.image.GetSize() == SMALL == case.label.GetSize()
    assert case.image.GetSpacing() == case.label.GetSpacing()
    assert case.image.GetOrigin() == case.label.GetOrigin()
    fov_mm = SMALL[0] * case.image.GetSpacing()[0]
    assert 340 <= fov_mm <= 400
    _, label = _arrays(case)
    assert set(np.unique(label)) <= {int(v) for v in Lobe}


def test_same_seed_same_bytes(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        write_dataset(out, [3, 4], PhantomOptions(size_xyz=(48, 48, 40)), progress=False)
    for rel in ["images/phantom-000003.mha", "labels/phantom-000004.mha", "cases.csv"]:
        assert hashlib.sha256((a / rel).read_bytes()).digest() == hashlib.sha256((b / rel).read_bytes()).digest()
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(a / "images/phantom-000003.mha")))
    small = PhantomOptions(size_xyz=(48, 48, 40))
    assert np.array_equal(written, sitk.GetArrayFromImage(generate_case(3, small).image))
    assert not np.array_equal(written, sitk.GetArrayFromImage(generate_case(5, small).image))


@pytest.mark.parametrize(
    "seed,pathology", [(0, "none"), (1, "copd"), (2, "covid"), (3, "effusion"), (4, None), (11, "effusion")]
)
def test_five_connected_lobes(seed, pathology):
    _, label = _arrays(_case(seed, pathology))
    for lobe in LOBES:
        _, n = ndimage.label(label == lobe)
        assert n == 1, f"{lobe.name}: {n} components"


def test_left_lobes_on_patient_left_in_lps():
    for seed in range(4):
        case = _case(seed)
        _, label = _arrays(case)
        direction = np.array(case.label.GetDirection()).reshape(3, 3)
        spacing, origin = np.array(case.label.GetSpacing()), np.array(case.label.GetOrigin())

        def mean_x_mm(lobes):
            zyx = np.argwhere(np.isin(label, [int(v) for v in lobes]))
            phys = origin + (direction @ (zyx[:, ::-1] * spacing).T).T
            return phys[:, 0].mean()

        # LPS: +x is the patient's left.
        assert mean_x_mm(LEFT_LOBES) > mean_x_mm(RIGHT_LOBES) + 50


def test_fissure_voxels_lie_between_their_two_lobes():
    checked = 0
    for seed in range(3):
        case = _case(seed, "none", fissures=True)
        _, label = _arrays(case)
        fis = case.fissures
        assert fis is not None and fis.shape == label.shape
        for fid, lobes in FISSURE_LOBES.items():
            allowed = [int(v) for v in lobes]
            zyx = np.argwhere(fis == fid)
            assert len(zyx) > 0
            padded = np.pad(label, 1)
            for z, y, x in zyx:
                hood = padded[z : z + 3, y : y + 3, x : x + 3]
                assert label[z, y, x] in allowed
                present = set(np.unique(hood).tolist()) & set(allowed)
                assert len(present) >= 2, (seed, fid, (z, y, x), np.unique(hood))
                if fid == 2:  # the right oblique fissure always has the lower lobe on one side
                    assert int(Lobe.RLL) in present
                checked += 1
    assert checked > 100


def test_median_lobe_shares_match_real_lungs():
    shares = {lobe.name: [] for lobe in LOBES}
    for seed in range(50):
        _, label = _arrays(_case(100 + seed, "none", size=(48, 48, 40)))
        counts = np.bincount(label.ravel(), minlength=6)
        total = counts[1:].sum()
        for lobe in LOBES:
            shares[lobe.name].append(100.0 * counts[lobe] / total)
    for name, values in shares.items():
        assert abs(np.median(values) - TARGET_SHARE_PERCENT[name]) <= 5.0, (name, np.median(values))


def test_healthy_parenchyma_median_hu():
    for seed in range(6):
        image, label = _arrays(_case(seed, "none"))
        assert -900 <= np.median(image[label > 0]) <= -800


def _lung_share(image, label, lo, hi):
    lung = label > 0
    return float(np.mean((image[lung] >= lo) & (image[lung] < hi)))


def test_emphysema_extent_matches_image():
    for seed in range(20, 26):
        copd = _case(seed, "copd", noise=10.0)
        healthy = _case(seed, "none", noise=10.0)
        claimed = copd.meta["emphysema_fraction"]
        assert copd.meta["pathology_extent"] == claimed > 0
        measured = _lung_share(*_arrays(copd), -2000, -950) - _lung_share(*_arrays(healthy), -2000, -950)
        assert abs(measured - claimed) <= 0.03 + 0.15 * claimed, (seed, measured, claimed)


def test_covid_extent_matches_image():
    for seed in range(30, 36):
        sick = _case(seed, "covid", noise=10.0)
        healthy = _case(seed, "none", noise=10.0)
        claimed = sick.meta["ggo_fraction"] + sick.meta["consolidation_fraction"]
        assert claimed > 0
        measured = _lung_share(*_arrays(sick), -750, 3000) - _lung_share(*_arrays(healthy), -750, 3000)
        assert abs(measured - claimed) <= 0.03 + 0.15 * claimed, (seed, measured, claimed)
        dense = _lung_share(*_arrays(sick), -150, 3000) - _lung_share(*_arrays(healthy), -150, 3000)
        assert abs(dense - sick.meta["consolidation_fraction"]) <= 0.03 + 0.2 * claimed


def test_effusion_is_background_and_lung_is_compressed():
    case = _case(3, "effusion", noise=10.0)
    healthy = _case(3, "none", noise=10.0)
    assert case.meta["effusion_ml"] > 0
    image, label = _arrays(case)
    _, label_h = _arrays(healthy)
    fluid = (label_h > 0) & (label == 0)
    assert fluid.sum() * np.prod(case.image.GetSpacing()) / 1000 == pytest.approx(case.meta["effusion_ml"], rel=0.1)
    assert -20 <= np.median(image[fluid]) <= 50


def test_volumes_in_meta_match_labels():
    case = _case(2)
    _, label = _arrays(case)
    voxel_ml = np.prod(case.label.GetSpacing()) / 1000
    for lobe in LOBES:
        assert case.meta[f"volume_ml_{lobe.name}"] == pytest.approx((label == lobe).sum() * voxel_ml, rel=1e-3)


@pytest.mark.slow
def test_model_grid_case_keeps_lobes_connected():
    case = generate_case(7, PhantomOptions(size_xyz=(256, 256, 160), model_voxels_max=1_000_000))
    label = sitk.GetArrayFromImage(case.label)
    for lobe in LOBES:
        assert ndimage.label(label == lobe)[1] == 1
