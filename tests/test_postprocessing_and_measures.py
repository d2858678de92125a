"""Clean-up of the labels and the volumes on the input grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import Lobe
from algorithm.measures import volumes_ml
from algorithm.postprocessing import clean_labels
from algorithm.preprocessing import PreprocessedScan, labels_to_canonical, skips_network_voxels


def _two_lobes() -> np.ndarray:
    """A right lung (RUL, RLL) and, apart from it, a left lung (LUL, LLL)."""
    labels = np.zeros((20, 20, 60), np.uint8)
    labels[2:18, 2:18, 2:14] = Lobe.RUL
    labels[2:18, 2:18, 14:28] = Lobe.RLL
    labels[2:18, 2:18, 34:46] = Lobe.LUL
    labels[2:18, 2:18, 46:58] = Lobe.LLL
    return labels


def test_island_goes_to_the_surrounding_lobe():
    labels = _two_lobes()
    labels[8:10, 8:10, 5:7] = Lobe.LUL  # a stray LUL island inside the RUL
    cleaned = clean_labels(labels)
    assert (cleaned[8:10, 8:10, 5:7] == Lobe.RUL).all()
    assert (cleaned[2:18, 2:18, 34:46] == Lobe.LUL).all()


def test_one_component_per_lobe_and_holes_filled():
    labels = _two_lobes()
    labels[3:5, 3:5, 20:22] = Lobe.RUL  # detached RUL piece inside the RLL
    labels[9:11, 9:11, 20:22] = 0  # a hole inside the RLL
    cleaned = clean_labels(labels)
    assert (cleaned[3:5, 3:5, 20:22] == Lobe.RLL).all()
    assert (cleaned[9:11, 9:11, 20:22] == Lobe.RLL).all()
    from scipy import ndimage

    for lobe in (Lobe.RUL, Lobe.RLL):
        assert ndimage.label(cleaned == lobe)[1] == 1


def test_small_detached_lung_pieces_are_dropped():
    labels = _two_lobes()
    labels[0, 0, 31] = Lobe.LLL  # one voxel between the lungs, detached from both
    assert clean_labels(labels)[0, 0, 31] == 0


def test_volumes_with_anisotropic_spacing():
    mask = np.zeros((10, 20, 30), np.uint8)
    mask[:5, :10, :20] = Lobe.LUL  # 1000 voxels
    mask[5:, :, :] = Lobe.RML  # 3000 voxels
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((0.5, 0.8, 2.0))  # 0.8 mm^3 per voxel
    volumes = volumes_ml(image)
    assert volumes["LUL"] == pytest.approx(0.8)
    assert volumes["RML"] == pytest.approx(2.4)
    assert volumes["LLL"] == 0.0
    assert volumes["left_lung"] == pytest.approx(0.8)
    assert volumes["right_lung"] == pytest.approx(2.4)
    assert volumes["total"] == pytest.approx(3.2)


def _thick_slice_scan(network_z: int, input_z: int) -> PreprocessedScan:
    return PreprocessedScan(
        array=np.zeros((network_z, 8, 8), np.float32),
        spacing_mm_zyx=(2.0, 2.0, 2.0),
        canonical_shape_zyx=(input_z, 8, 8),
        canonical_spacing_mm_zyx=(2.0 * network_z / input_z, 2.0, 2.0),
        input_orientation="LPS",
    )


def test_coarser_input_grid_is_detected():
    assert skips_network_voxels(_thick_slice_scan(network_z=10, input_z=5))
    assert not skips_network_voxels(_thick_slice_scan(network_z=10, input_z=10))
    assert not skips_network_voxels(_thick_slice_scan(network_z=10, input_z=25))


def test_lobe_split_by_thick_slices_is_one_piece_after_input_grid_clean():
    # lobe 1 is a U: two pillars joined only in plane z=0, which a 10 -> 5 nearest resampling skips
    labels = np.full((10, 8, 8), 2, np.uint8)
    labels[:, 0:2, 0:2] = 1
    labels[:, 0:2, 6:8] = 1
    labels[0, 0:2, :] = 1
    assert ndimage.label(clean_labels(labels) == 1, structure=np.ones((3, 3, 3)))[1] == 1
    scan = _thick_slice_scan(network_z=10, input_z=5)
    canonical = labels_to_canonical(labels, scan)
    assert ndimage.label(canonical == 1, structure=np.ones((3, 3, 3)))[1] == 2  # the failure mode
    cleaned = clean_labels(canonical)
    assert ndimage.label(cleaned == 1, structure=np.ones((3, 3, 3)))[1] == 1
    assert ((cleaned > 0) == (canonical > 0)).all()  # the lung is unchanged: the piece changed lobe
    assert (cleaned == 1).sum() == (canonical == 1).sum() // 2


def test_small_detached_piece_is_dropped_large_one_keeps_the_nearest_lobe():
    labels = _two_lobes()  # four 16 x 16 x 12 voxel lobes
    lung_voxels = int((labels > 0).sum())
    small = labels.copy()
    small[6:14, 6:14, 29:33] = Lobe.RUL  # 256 voxels in the gap between the lungs: an airway-like island
    assert 0.01 * lung_voxels < 256 < 0.05 * lung_voxels  # survives the 1 % rule; only the new rule drops it
    cleaned = clean_labels(small)
    assert (cleaned[6:14, 6:14, 29:33] == 0).all()
    assert (cleaned == labels).all()
    big = np.pad(_two_lobes(), ((0, 0), (0, 0), (0, 20)))
    big[2:18, 2:18, 62:72] = Lobe.LLL  # 2560 voxels (17 %), detached: lung cut apart by the field of view
    cleaned = clean_labels(big)
    assert (cleaned[2:18, 2:18, 62:72] == Lobe.LLL).all()
    assert (cleaned[2:18, 2:18, 46:58] == Lobe.LLL).all()  # the main body stays LLL


def test_a_piece_nearest_to_a_lobe_across_the_gap_joins_the_lobe_it_touches():
    labels = _two_lobes()
    # the inner 8 voxels of the right lung predicted LUL (a second LUL piece): its voxels next to the
    # mediastinal gap are nearer the LUL body across the gap (7 voxels) than the RLL (8 voxels),
    # so nearest-voxel assignment alone leaves a detached LUL slab in the right lung
    labels[2:18, 2:18, 20:28] = Lobe.LUL
    cleaned = clean_labels(labels)
    assert ndimage.label(cleaned == Lobe.LUL, structure=np.ones((3, 3, 3)))[1] == 1
    assert (cleaned[2:18, 2:18, 14:28] == Lobe.RLL).all()
