"""The lung's extent from the scan, the lobes from the network (algorithm/lung_extent.py).

A synthetic chest at 1 x 1 x 1.5 mm with a known pleura: two ellipsoid lungs with a one-voxel
partial-volume ramp, vessels, a trachea and main bronchi opening into the right lung, and a
"network" answer on a 4 mm grid made from the truth (nearest neighbour, as the network's argmax
reaches the scan today), with soft probabilities at the lobe borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import ndimage

from algorithm.labels import Lobe
from algorithm.lung_extent import (
    LungExtentSettings,
    NetworkLobes,
    lobe_scores,
    lung_extent,
    nearest_lobe_labels,
    nearest_source_indices,
    scan_lung_mask,
)
from algorithm.preprocessing import resample_array
from algorithm.report.quality_flags import QualityLimits

SPACING_MM = (1.5, 1.0, 1.0)  # z, y, x
SHAPE = (100, 160, 200)
NETWORK_SHAPE = (38, 40, 50)  # about 4 mm
LUNG_HU, TISSUE_HU, AIR_HU, FLUID_HU = -850.0, 40.0, -1000.0, 15.0
RIGHT_X, LEFT_X, LUNG_Y, LUNG_Z = 55.0, 145.0, 80.0, 75.0  # mm; LPS: +x is the patient's left
SEMI_AXES = (60.0, 50.0, 32.0)  # z, y, x (mm)


@dataclass
class Chest:
    hu: np.ndarray  # float32
    lobes: np.ndarray  # uint8 truth: the ellipsoids, upper / lower lobe split by z
    distance_mm: np.ndarray  # signed distance to the nearest pleura (negative inside a lung)
    trachea_and_main_bronchi: np.ndarray  # lumen outside the lungs


def _coordinates():
    return np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(SHAPE, SPACING_MM)], indexing="ij", sparse=True)


def _ellipsoid_distance_mm(centre_x: float) -> np.ndarray:
    """Signed distance (mm, first order) to the surface of one lung ellipsoid."""
    z, y, x = _coordinates()
    d = [(z - LUNG_Z), (y - LUNG_Y), (x - centre_x)]
    r = np.sqrt(sum((di / a) ** 2 for di, a in zip(d, SEMI_AXES)))
    gradient = np.sqrt(sum(di**2 / a**4 for di, a in zip(d, SEMI_AXES))) / np.maximum(r, 1e-6)
    return ((r - 1.0) / np.maximum(gradient, 1e-6)).astype(np.float32)


def _tube(points_mm: list[tuple[float, float, float]], radius_mm: float) -> np.ndarray:
    """Voxels within ``radius_mm`` of a polyline of (z, y, x) points."""
    z, y, x = _coordinates()
    inside = np.zeros(SHAPE, bool)
    for a, b in zip(points_mm[:-1], points_mm[1:]):
        a, b = np.array(a), np.array(b)
        ab = b - a
        t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / float(ab @ ab)
        t = np.clip(t, 0.0, 1.0)
        dist2 = (z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2
        inside |= dist2 <= radius_mm**2
    return inside


def make_chest(consolidate: Lobe | None = None, effusion: bool = False) -> Chest:
    z, y, x = _coordinates()
    body = ((y - 80.0) / 70.0) ** 2 + ((x - 100.0) / 95.0) ** 2 < 1.0
    distance = np.minimum(_ellipsoid_distance_mm(RIGHT_X), _ellipsoid_distance_mm(LEFT_X))
    hu = np.where(body, TISSUE_HU, AIR_HU).astype(np.float32)
    lung_share = np.clip(0.5 - distance, 0.0, 1.0)  # one-voxel partial-volume ramp at the pleura
    hu = hu + lung_share * (LUNG_HU - hu)
    lung = distance < 0
    upper = np.broadcast_to(z > LUNG_Z + 0.3 * (y - LUNG_Y), SHAPE)
    left = np.broadcast_to(x > 100.0, SHAPE)
    lobes = np.zeros(SHAPE, np.uint8)
    lobes[lung & left & upper] = Lobe.LUL
    lobes[lung & left & ~upper] = Lobe.LLL
    lobes[lung & ~left & upper] = Lobe.RUL
    lobes[lung & ~left & ~upper] = Lobe.RLL
    for vx in (RIGHT_X, LEFT_X):  # vessels well inside each lung
        hu[_tube([(40.0, 80.0, vx), (110.0, 85.0, vx + 5.0)], 2.0)] = TISSUE_HU
    # trachea from the top down to the carina; main bronchi into the lungs, where each continues
    # (walled) for about 15 mm and opens into the parenchyma: the airway joins the lung's air
    carina = (110.0, 70.0, 100.0)
    airways = [([(150.0, 62.0, 100.0), carina], 7.5), ([carina, (88.0, 75.0, 72.0)], 5.5),
               ([carina, (88.0, 75.0, 128.0)], 5.5)]  # (centre line, lumen radius mm)
    wall = np.zeros(SHAPE, bool)
    lumen = np.zeros(SHAPE, bool)
    for line, radius_mm in airways:
        wall |= _tube(line, radius_mm + 2.0)
        start, end = np.array(line[0]), np.array(line[1])
        past_end = tuple(end + 8.0 * (end - start) / np.linalg.norm(end - start))
        lumen |= _tube([line[0], past_end], radius_mm)
    hu[wall] = TISSUE_HU
    hu[lumen] = AIR_HU
    if consolidate is not None:
        hu[lobes == consolidate] = 30.0
    if effusion:  # fluid behind the left lower lung, between it and the chest wall
        fluid = body & ~lung & (distance < 12.0) & np.broadcast_to(y > LUNG_Y + 20.0, SHAPE) & left & ~upper
        hu[fluid] = FLUID_HU
    return Chest(hu, lobes, distance, lumen & ~lung)


def network_answer(lobes: np.ndarray, keep: np.ndarray | None = None) -> NetworkLobes:
    """The truth as a 4 mm network would give it: argmax by nearest neighbour, probabilities by
    trilinear resampling of the one-hot truth (soft at the lobe borders)."""
    labels = resample_array(torch.from_numpy(lobes), NETWORK_SHAPE, "nearest-exact").numpy().astype(np.uint8)
    one_hot = torch.from_numpy((lobes[None] == np.arange(6)[:, None, None, None]).astype(np.float32))
    probabilities = torch.nn.functional.interpolate(one_hot[None], size=NETWORK_SHAPE, mode="area")[0].numpy()
    if keep is not None:
        labels[~keep] = 0
        probabilities[:, ~keep] = 0.0
        probabilities[0, ~keep] = 1.0
    return NetworkLobes(labels, probabilities.astype(np.float16))


def _upsampled(labels: np.ndarray) -> np.ndarray:
    """What the pipeline did before this step: nearest neighbour to the scan grid."""
    return resample_array(torch.from_numpy(labels), SHAPE, "nearest-exact").numpy()


def _near_airway(chest: Chest) -> np.ndarray:
    """Within 10 mm of the trachea and main bronchi: the hilum, where the bronchi enter the lung."""
    return ndimage.distance_transform_edt(~chest.trachea_and_main_bronchi, sampling=SPACING_MM) < 10.0


@pytest.fixture(scope="module")
def chest() -> Chest:
    return make_chest()


@pytest.fixture(scope="module")
def extent(chest):
    return lung_extent(chest.hu, SPACING_MM, network_answer(chest.lobes))


def test_lung_boundary_follows_the_pleura_within_one_voxel(chest, extent):
    lung = extent.labels > 0
    truth = chest.distance_mm < 0
    wrong = lung ^ truth
    near_airway = _near_airway(chest)  # tested below
    # there the first millimetres of each bronchus inside the lung (lumen within airway_reach_mm of the
    # main bronchus, the wall at the hilum) are lost: of the 5 mL of walled bronchi inside the lungs
    assert (truth & ~lung & near_airway).sum() * np.prod(SPACING_MM) / 1000 < 4.0
    wrong &= ~near_airway
    assert np.abs(chest.distance_mm[wrong]).max() <= max(SPACING_MM)  # only at the pleura, within one voxel
    assert wrong.sum() < 0.02 * truth.sum()
    # the network's nearest-neighbour lung misses the pleura by up to half its 4 mm voxel
    before = _upsampled(network_answer(chest.lobes).labels) > 0
    assert np.abs(chest.distance_mm[before ^ truth]).max() > 1.5 * max(SPACING_MM)


def test_every_lung_voxel_takes_the_network_lobe(chest, extent):
    truth_lung = chest.distance_mm < -1.0
    agree = extent.labels[truth_lung] == chest.lobes[truth_lung]
    assert agree.mean() > 0.97  # lobe borders: 4 mm probabilities interpolated
    before = _upsampled(network_answer(chest.lobes).labels)
    assert agree.mean() > (before[truth_lung] == chest.lobes[truth_lung]).mean()


def test_interpolated_lobes_equal_the_network_at_its_voxel_centres(chest):
    network = network_answer(chest.lobes)
    nearest = nearest_lobe_labels(network.labels)
    scores = lobe_scores(network, nearest)
    assert (np.argmax(scores, axis=0) + 1 == nearest).all()
    assert (nearest[network.labels > 0] == network.labels[network.labels > 0]).all()
    assert (nearest > 0).all()


def test_trachea_and_main_bronchi_stay_out(chest, extent):
    assert chest.trachea_and_main_bronchi.sum() > 2000
    assert not (extent.labels > 0)[chest.trachea_and_main_bronchi].any()
    assert extent.airway_ml > 0.5 * chest.trachea_and_main_bronchi.sum() * np.prod(SPACING_MM) / 1000
    # without the airway rule the trachea would be lung: it is air joined to the lung's air
    air = chest.hu < -400
    pieces, _ = ndimage.label(air & (chest.distance_mm < 40))
    assert pieces[chest.trachea_and_main_bronchi].max() == pieces[chest.distance_mm < -5].max()


def test_a_consolidated_lobe_keeps_its_dense_part():
    chest = make_chest(consolidate=Lobe.RLL)
    result = lung_extent(chest.hu, SPACING_MM, network_answer(chest.lobes))
    dense = chest.lobes == Lobe.RLL
    kept = result.labels[dense] == Lobe.RLL
    assert kept.mean() > 0.9
    network_voxel_mm = max(s * n / m for s, n, m in zip(SPACING_MM, SHAPE, NETWORK_SHAPE))
    deep = dense & (chest.distance_mm < -2.5 * network_voxel_mm)  # the rim: one voxel of the 4 mm grid, diagonally
    assert (result.labels[deep] > 0).mean() > 0.999  # only the network's rim at the pleura may go
    assert (result.labels[deep] == Lobe.RLL).mean() > 0.99  # the lobe border: 4 mm probabilities


def _subpleural_patch(chest: Chest, radius_mm: float = 12.0) -> np.ndarray:
    """Patchy consolidation on the right lung's lateral pleura: a ball centred on the pleura, its
    lung half dense, aerated lung all around it."""
    z, y, x = _coordinates()
    centre = (LUNG_Z + 15.0, LUNG_Y, RIGHT_X - SEMI_AXES[2])
    ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < radius_mm**2
    return ball & (chest.distance_mm < 0)


def test_consolidation_at_the_pleura_keeps_its_lobe_in_the_network_rim():
    chest = make_chest()
    patch = _subpleural_patch(chest)
    hu = chest.hu.copy()
    hu[patch] = 30.0
    network = network_answer(chest.lobes)
    said_lung = _upsampled(network.labels) > 0
    core = _upsampled(ndimage.binary_erosion(network.labels > 0, structure=np.ones((3, 3, 3))).astype(np.uint8)) > 0
    ours = patch & said_lung  # what the network gave the patch; a threshold cannot add the rest
    assert (ours & ~core).sum() > 0.4 * ours.sum()  # half of it lies in the network's one-voxel rim
    result = lung_extent(hu, SPACING_MM, network)
    assert (result.labels[ours] == chest.lobes[ours]).mean() > 0.9
    # the thick-dense rule keeps it: without it the rim next to aerated lung went, half the patch
    rim_dropped = lung_extent(hu, SPACING_MM, network, LungExtentSettings(dense_thick_blocks=99))
    assert (rim_dropped.labels[ours] == chest.lobes[ours]).mean() < 0.7
    # the chest wall the network's voxels reach into, beside the patch too, stays out
    wall = chest.distance_mm > max(SPACING_MM)
    assert (said_lung & wall & (ndimage.distance_transform_edt(~patch, sampling=SPACING_MM) < 5.0)).any()
    assert not (result.labels > 0)[wall].any()


def test_effusion_and_chest_wall_stay_out():
    chest = make_chest(effusion=True)
    fluid = chest.hu == FLUID_HU
    assert fluid.sum() > 5000
    network = network_answer(chest.lobes)
    assert (_upsampled(network.labels) > 0)[fluid].any()  # the network's voxels reach into the fluid
    lung = lung_extent(chest.hu, SPACING_MM, network).labels > 0
    assert not lung[fluid].any()
    assert not lung[chest.distance_mm > max(SPACING_MM)].any()  # chest wall, mediastinum, fluid
    assert lung[chest.distance_mm < -max(SPACING_MM)].mean() > 0.99


def test_flag_value_fires_when_the_network_misses_half_the_lung(chest):
    z_centres = (np.arange(NETWORK_SHAPE[0]) + 0.5) * SHAPE[0] * SPACING_MM[0] / NETWORK_SHAPE[0]
    upper_half = np.broadcast_to((z_centres > LUNG_Z)[:, None, None], NETWORK_SHAPE)
    half = lung_extent(chest.hu, SPACING_MM, network_answer(chest.lobes, keep=upper_half))
    full = lung_extent(chest.hu, SPACING_MM, network_answer(chest.lobes))
    limit = QualityLimits().max_network_unlabelled_share
    assert half.network_unlabelled_share == pytest.approx(0.5, abs=0.1)
    assert half.network_unlabelled_share > limit > full.network_unlabelled_share
    # the step gives the missed half a lobe all the same: the lung is whole again
    truth = chest.distance_mm < -1.0
    assert (half.labels[truth] > 0).mean() > 0.99
    assert half.aerated_lung_ml == pytest.approx(full.aerated_lung_ml, rel=0.01)


def test_slabs_do_not_change_the_result(chest, extent):
    small = lung_extent(chest.hu, SPACING_MM, network_answer(chest.lobes), LungExtentSettings(slab_slices=3))
    assert np.array_equal(small.labels, extent.labels)
    mask = scan_lung_mask(chest.hu, SPACING_MM, network_answer(chest.lobes).labels)
    assert np.array_equal(mask, extent.labels > 0)


def test_nearest_source_indices_match_nearest_exact_resampling():
    for n_source, n_scan in ((38, 100), (50, 200), (7, 5)):
        source = torch.arange(n_source, dtype=torch.float32)[None, None, :, None, None]
        expected = torch.nn.functional.interpolate(source, size=(n_scan, 1, 1), mode="nearest-exact")[0, 0, :, 0, 0]
        assert np.array_equal(nearest_source_indices(n_source, n_scan), expected.numpy().astype(int))


def test_lung_cut_by_the_field_of_view_stays_lung(chest):
    """Its air reaches the slice edge like the air around the body, but it is the network's lung."""
    cut_x = 40  # scan voxels (40 mm): through the right lung; 10 network voxels
    hu = chest.hu[:, :, cut_x:]
    network = network_answer(chest.lobes)
    cropped = NetworkLobes(network.labels[:, :, cut_x // 4 :], network.probabilities[:, :, :, cut_x // 4 :])
    lung = lung_extent(hu, SPACING_MM, cropped).labels > 0
    truth = chest.distance_mm[:, :, cut_x:] < -max(SPACING_MM)
    assert truth[:, :, 0].any()  # the lung reaches the edge
    assert lung[truth].mean() > 0.99
    assert not lung[(hu <= -990) & ~truth].any()  # no air around the body


def test_lung_cut_by_the_field_of_view_stays_lung_where_the_network_missed_its_slices(chest):
    """A crop's apex: in the top slices the network labelled none of the cut lung, but that air is
    joined in 3D to the lung the network did label, never to the air around the body."""
    cut_x = 40
    hu = chest.hu[:, :, cut_x:]
    network = network_answer(chest.lobes)
    labels = network.labels[:, :, cut_x // 4 :].copy()
    probabilities = network.probabilities[:, :, :, cut_x // 4 :].copy()
    top = slice(labels.shape[0] - 12, None)  # about the top 48 mm of the lungs' 120
    right = np.isin(labels[top], (Lobe.RUL, Lobe.RML, Lobe.RLL))
    labels[top][right] = 0
    probabilities[:, top][:, right] = 0
    probabilities[0, top][right] = 1
    lung = lung_extent(hu, SPACING_MM, NetworkLobes(labels, probabilities)).labels > 0
    truth = chest.distance_mm[:, :, cut_x:] < -max(SPACING_MM)
    top_scan = slice(hu.shape[0] - 12 * 100 // 38, None)
    missed_and_cut = truth.copy()
    missed_and_cut[: top_scan.start] = False
    missed_and_cut[:, :, 60:] = False  # the right lung (x < 100 mm in the full chest), cut at 40 mm
    assert missed_and_cut[:, :, 0].any()
    assert lung[missed_and_cut].mean() > 0.99
    assert not lung[(hu <= -990) & ~truth].any()


def test_lung_behind_a_chest_wall_thinner_than_a_work_block_stays_lung(chest):
    """A wall worn thin along a strip (a sharp kernel's undershoot under the arms): on the 2 mm work
    grid the lung's air runs through a slit into the air around the body, and the joined piece in
    each slice is mostly outside air."""
    hu = chest.hu.copy()
    _, y, x = _coordinates()
    slit = np.broadcast_to((x < 22.0) & (np.abs(y - LUNG_Y) < 1.6), SHAPE)  # 3 mm wide, every slice
    hu[slit] = AIR_HU  # the right lung reaches x = 23 mm: a 1 mm wall left at the strip
    hu[np.broadcast_to(x < 4.0, SHAPE)] = AIR_HU  # the slit opens into the air around the body
    truth = chest.distance_mm < -max(SPACING_MM)
    wall_thin = np.broadcast_to(x < 28.0, SHAPE) & truth
    assert wall_thin.any()
    lung = lung_extent(hu, SPACING_MM, network_answer(chest.lobes)).labels > 0
    assert lung[truth].mean() > 0.99
    assert lung[wall_thin].mean() > 0.95
    assert not lung[(hu <= -990) & ~truth & ~slit].any()
    slit_ml = np.count_nonzero(lung & slit) * np.prod(SPACING_MM) / 1000.0
    assert slit_ml < 0.25 * np.count_nonzero(slit) * np.prod(SPACING_MM) / 1000.0  # the slit's inner end only


def test_trachea_the_network_labelled_as_lung_stays_out(chest):
    """The v2 weights label the distal trachea as lung on a real scan: the airway is followed into
    the network's lung from the carina's slices up, and stays out of the lobes."""
    network = network_answer(chest.lobes)
    z, _, _ = _coordinates()
    distal = chest.trachea_and_main_bronchi & np.broadcast_to(z < 128.0, SHAPE)  # 18 mm above the carina
    on_network = resample_array(torch.from_numpy(distal.astype(np.uint8)), NETWORK_SHAPE, "nearest-exact").numpy() > 0
    on_network = ndimage.binary_dilation(on_network)  # the network's lung reaches over the lumen and its wall
    labels = network.labels.copy()
    labels[on_network & (labels == 0)] = Lobe.RUL
    probabilities = network.probabilities.copy()
    probabilities[:, on_network] = 0
    probabilities[Lobe.RUL, on_network] = 1
    result = lung_extent(chest.hu, SPACING_MM, NetworkLobes(labels, probabilities))
    assert distal.sum() > 500
    assert (result.labels[chest.trachea_and_main_bronchi] > 0).mean() < 0.05  # old rule: 0.61; left: bronchus ends
    truth = chest.distance_mm < -max(SPACING_MM)
    assert (result.labels[truth] > 0).mean() > 0.99  # the lung and its own airways stay lung
