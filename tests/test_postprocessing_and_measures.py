"""Clean-up of the labels and the volumes on the input grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import Lobe
from algorithm.report.volumes import volumes_ml
from algorithm.pipeline.clean_up import outside_air_removed_ml
from algorithm.postprocessing import clean_labels, merge_stray_pieces
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


def _normalized(hu) -> np.ndarray:
    from algorithm.preprocessing import normalize_hu

    return normalize_hu(np.asarray(hu, np.float32))


def _chest(z: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A body (soft tissue) in air holding two lungs of parenchyma (-850 HU with vessel speckle),
    and the labels: right lung RUL/RLL/RML, left lung LUL/LLL."""
    rng = np.random.default_rng(0)
    hu = np.full((z, 40, 60), -1000.0)
    hu[:, 6:38, 4:56] = 40.0  # body, with air in front of it (rows 0-5) and at the sides
    lungs = np.zeros(hu.shape, bool)
    lungs[:, 12:34, 8:26] = lungs[:, 12:34, 34:52] = True
    hu[lungs] = -850.0 + 120.0 * rng.standard_normal(int(lungs.sum()))
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 12:34, 8:26] = Lobe.RLL
    labels[: z // 2, 12:34, 8:26] = Lobe.RUL
    labels[z // 2 :, 12:20, 8:26] = Lobe.RML  # 6 x 8 x 18 = 864 voxels
    labels[:, 12:34, 34:52] = Lobe.LLL
    labels[: z // 2, 12:34, 34:52] = Lobe.LUL
    return hu, labels


def test_air_outside_the_body_taken_for_lung_is_dropped():
    hu, labels = _chest()
    real_rml = labels == Lobe.RML
    predicted = labels.copy()
    predicted[:, 0:5, 10:50] = Lobe.RML  # 12 x 5 x 40 = 2400 voxels of air in front of the chest
    scan = _normalized(hu)
    naive = clean_labels(predicted)
    assert (naive[:, 0:5, 10:50] == Lobe.RML).all() and not (naive[real_rml] == Lobe.RML).any(), \
        "without intensities the air blob wins the RML and the real RML goes to its neighbours"
    cleaned = clean_labels(predicted, scan)
    assert (cleaned[:, 0:5, :] == 0).all()
    assert (cleaned == labels).all()
    grid = PreprocessedScan(array=scan, spacing_mm_zyx=(2.0, 1.0, 1.0), canonical_shape_zyx=scan.shape,
                            canonical_spacing_mm_zyx=(2.0, 1.0, 1.0), input_orientation="LPS")
    assert outside_air_removed_ml(predicted, cleaned, grid) == pytest.approx(2400 * 2.0 / 1000)  # reported


def test_lung_at_the_edge_of_the_field_of_view_and_empty_air_inside_the_body_are_kept():
    hu, labels = _chest()
    # the field of view cuts the left lung: it reaches the slice edge, still with parenchyma
    cut_hu, cut_labels = hu[:, :, :44].copy(), labels[:, :, :44].copy()
    cut_labels[:, 12:34, 26:34] = 0  # and the lungs are two pieces
    assert (clean_labels(cut_labels, _normalized(cut_hu)) == cut_labels).all()
    # an empty, air-filled piece inside the body (a bulla apart from the lungs) is not outside air
    bulla_hu, bulla_labels = hu.copy(), labels.copy()
    bulla = (slice(None), slice(35, 37), slice(18, 42))  # 576 voxels, over 5 % of the lung: not noise
    bulla_hu[bulla] = -1000.0
    bulla_labels[bulla] = Lobe.RLL
    cleaned = clean_labels(bulla_labels, _normalized(bulla_hu))
    assert (cleaned[bulla] > 0).all()


# -- merge_stray_pieces: the scan-grid pass after the lung step and the fissure fit ------------------


def test_a_cluster_of_right_lobe_pieces_inside_the_left_lung_joins_the_left_lobe_around_it():
    labels = _two_lobes()
    # lung the network missed next to the mediastinum, labelled with the nearest network lobes
    # across the gap: an RML piece and an RLL piece touching each other inside the left lung
    labels[8:12, 8:12, 34:36] = Lobe.RLL
    labels[8:12, 8:12, 36:38] = Lobe.RML
    labels[2:6, 2:6, 20:24] = Lobe.RML  # the RML's main body, so the pieces above are strays
    changed = merge_stray_pieces(labels)
    assert changed == 64
    assert (labels[8:12, 8:12, 34:38] == Lobe.LUL).all()
    for lobe in (Lobe.RLL, Lobe.RML, Lobe.LUL):
        assert ndimage.label(labels == lobe, structure=np.ones((3, 3, 3)))[1] == 1


def test_stray_merge_leaves_large_detached_lung_and_drops_specks():
    labels = _two_lobes()
    labels[:, :, 14:28] = 0  # the RLL's place is background now ...
    labels[2:18, 2:18, 20:28] = Lobe.RUL  # ... but for a second RUL piece apart from the first: lung cut apart
    labels[19, 19, 30] = Lobe.LLL  # a one-voxel speck of lung touching nothing
    before = labels.copy()
    merge_stray_pieces(labels)
    assert labels[19, 19, 30] == 0
    before[19, 19, 30] = 0
    np.testing.assert_array_equal(labels, before)


def test_stray_cluster_over_the_size_limit_keeps_its_label():
    labels = _two_lobes()
    labels[8:12, 8:12, 34:38] = Lobe.RLL  # 64 voxels inside the LUL, a stray of the RLL
    assert merge_stray_pieces(labels, max_share=32 / np.count_nonzero(labels)) == 0
    assert (labels[8:12, 8:12, 34:38] == Lobe.RLL).all()
    assert merge_stray_pieces(labels) == 64
