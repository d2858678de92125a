"""The dense-lung step (algorithm/dense_lung.py, issue 31) on a drawn chest: a rib cage, a spine,
two lungs with their lobes, and what the step must tell apart: a subpleural lesion (joins its
lobe), a pleural effusion (kept out, measured), the mediastinum pressing into a lung (kept out)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from algorithm.dense_lung import fissure_heights, lobes_by_fissures, recover_dense_lung
from algorithm.labels import Lobe

SPACING = (3.0, 2.0, 2.0)  # mm (z, y, x)
SHAPE = (44, 112, 148)
CAVITY_X_MM, CAVITY_Y_MM, CAVITY_Z_MM, MEDIASTINUM_MM = 124.0, 88.0, 62.0, 20.0


def _grid_mm():
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    centre = [(n - 1) / 2.0 for n in SHAPE]
    return tuple((a - c) * s for a, c, s in zip((z, y, x), centre, SPACING))


def _cavity(z, y, x, posterior_shift_mm: float = 0.0):
    """The pleural cavities: a rounded box 4 mm inside the ribs, domed along z; with a shift, its
    back moved forward (a lung pushed off the posterior wall, still convex)."""
    half_y = CAVITY_Y_MM - posterior_shift_mm / 2
    box = (((y + posterior_shift_mm / 2) / half_y) ** 4 + (x / CAVITY_X_MM) ** 4) ** 0.25
    return (z / CAVITY_Z_MM) ** 4 + box**4 <= 1.0  # steep sides: the lung follows the ribs down to its base


def chest(lesion_radius_mm: float = 0.0, effusion_depth_mm: float = 0.0, heart_dent_mm: float = 0.0, seed: int = 0):
    """(hu, labels without the dense lung, reference labels with it, lesion mask, fluid mask).

    LPS: +x is the patient's left, +y posterior, +z superior. The lungs fill the cavities inside the
    ribs on either side of the mediastinum (|x| < 20 mm, the spine behind it); each lung's lobes
    are split by planes (the oblique fissures rise towards the back, the horizontal one is level)."""
    z, y, x = _grid_mm()
    rng = np.random.default_rng(seed)
    full = np.zeros(SHAPE)
    body = (y / 112.0) ** 4 + (x / 146.0) ** 4 <= 1.0
    hu = np.where(body, 40.0, -1000.0) + full
    ring = ((y / (CAVITY_Y_MM + 4)) ** 4 + (x / (CAVITY_X_MM + 4)) ** 4) ** 0.25  # the ribs
    angle = np.arctan2(y, x)
    ribs = (ring >= 1.0) & (ring <= 1.08) & (np.sin(9 * angle + 0.08 * z) > -0.4)  # gaps between ribs
    hu[ribs] = 700.0
    hu[np.broadcast_to((y - 70.0) ** 2 + x**2 <= 18.0**2, SHAPE)] = 450.0  # vertebral bodies
    cavity = _cavity(z, y, x)
    lungs = {"right": cavity & (x + full < -MEDIASTINUM_MM), "left": cavity & (x + full > MEDIASTINUM_MM)}
    if heart_dent_mm:  # the heart presses into the left lung's medial surface
        lungs["left"] &= (z**2 + (y + 10.0) ** 2 + (x - 10.0) ** 2) > (heart_dent_mm + 12.0) ** 2
    fluid = np.zeros(SHAPE, bool)
    if effusion_depth_mm:  # fluid layered behind the right lung
        squeezed = _cavity(z, y, x, effusion_depth_mm)
        fluid = lungs["right"] & ~squeezed & (y + full > 0)
        lungs["right"] &= ~fluid
    lung = lungs["right"] | lungs["left"]
    hu[lung] = -850.0 + rng.normal(0, 20, int(lung.sum()))
    hu[fluid] = 10.0 + rng.normal(0, 5, int(fluid.sum()))
    reference = np.zeros(SHAPE, np.uint8)
    lower = (z + full) < -10.0 + 0.5 * y  # the oblique fissures rise towards the back
    reference[lungs["left"]] = np.where(lower, Lobe.LLL, Lobe.LUL)[lungs["left"]]
    middle = ~lower & ((z + full) < 10.0) & (y < 0)
    right = np.where(lower, Lobe.RLL, np.where(middle, Lobe.RML, Lobe.RUL))
    reference[lungs["right"]] = right[lungs["right"]]
    lesion = np.zeros(SHAPE, bool)
    if lesion_radius_mm:  # centred on the right lung's posterior pleura, in the lower lobe
        cz, cx = -20.0, -70.0
        box4 = 1 - (cz / CAVITY_Z_MM) ** 4 - (cx / CAVITY_X_MM) ** 4
        cy = CAVITY_Y_MM * box4**0.25
        lesion = lungs["right"] & ((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= lesion_radius_mm**2)
        hu[lesion] = 30.0 + rng.normal(0, 12, int(lesion.sum()))
    labels = np.where(lesion, 0, reference).astype(np.uint8)
    return hu.astype(np.float32), labels, reference, lesion, fluid


def test_subpleural_lesion_joins_its_own_lobe():
    hu, labels, reference, lesion, _ = chest(lesion_radius_mm=26.0)
    assert lesion.sum() * np.prod(SPACING) / 1000 > 20  # a lesion of tens of mL
    out = recover_dense_lung(hu, labels, SPACING)
    kept = out.labels[lesion] > 0
    own = out.labels[lesion] == reference[lesion]
    assert kept.mean() >= 0.9
    assert own.mean() >= 0.85
    assert out.recovered_ml["RLL"] > 0.8 * lesion.sum() * np.prod(SPACING) / 1000
    # nothing else changed: every lung voxel keeps its label; of the chest wall only the shell
    # against the lesion (the pleura's voxels: two pixels and a slice at most) is taken, nothing further
    assert np.array_equal(out.labels[labels > 0], labels[labels > 0])
    added = (out.labels > 0) & (labels == 0) & ~lesion
    distance_mm = ndimage.distance_transform_edt(~lesion, sampling=SPACING)
    assert distance_mm[added].max() <= 7.0
    assert added.sum() < 0.2 * lesion.sum()


def test_healthy_chest_gains_nothing():
    hu, labels, _, _, _ = chest()
    out = recover_dense_lung(hu, labels, SPACING)
    assert np.count_nonzero(out.labels != labels) * np.prod(SPACING) / 1000 < 1.0
    assert sum(out.recovered_ml.values()) < 1.0
    assert out.effusion_ml == {"left": 0.0, "right": 0.0}


def test_mediastinum_pressing_into_a_lung_stays_out():
    hu, labels, _, _, _ = chest(heart_dent_mm=25.0)
    out = recover_dense_lung(hu, labels, SPACING)
    assert np.count_nonzero(out.labels != labels) * np.prod(SPACING) / 1000 < 2.0


def test_effusion_is_kept_out_and_measured():
    hu, labels, _, _, fluid = chest(effusion_depth_mm=24.0)
    fluid_ml = fluid.sum() * np.prod(SPACING) / 1000
    assert fluid_ml > 50
    out = recover_dense_lung(hu, labels, SPACING)
    inside = np.count_nonzero((out.labels > 0) & fluid) * np.prod(SPACING) / 1000
    assert inside <= 0.1 * fluid_ml
    assert 0.5 * fluid_ml <= out.effusion_ml["right"] <= 1.2 * fluid_ml
    assert out.effusion_ml["left"] == 0.0


def test_without_the_rib_cage_nothing_is_recovered():
    # the wall is what bounds the lesion: with the ribs drawn as soft tissue the rays find no wall
    hu, labels, _, lesion, _ = chest(lesion_radius_mm=26.0)
    hu = np.where(hu == 700.0, 40.0, hu).astype(np.float32)
    out = recover_dense_lung(hu, labels, SPACING)
    assert (out.labels[lesion] > 0).mean() < 0.2


def test_fissure_height_continues_the_border_into_empty_columns():
    z = np.arange(40)[:, None, None]
    y = np.arange(50)[None, :, None]
    x = np.arange(30)[None, None, :]
    border = 12.0 + 0.3 * y + 0.0 * x
    labels = np.where(z < border, int(Lobe.LLL), int(Lobe.LUL)).astype(np.uint8)
    hole = (slice(None), slice(20, 32), slice(8, 20))
    labels[hole] = 0  # columns without any lung: the border must be continued, not invented
    height = fissure_heights(labels, (int(Lobe.LLL),), (int(Lobe.LUL),), (4.0, 4.0))
    expected = np.ceil(12.0 + 0.3 * np.arange(50)[:, None]) - 0.5  # half-way between the lobes' voxels
    assert np.abs(height[20:32, 8:20] - np.broadcast_to(expected, (50, 30))[20:32, 8:20]).max() < 1.5
    # where the column holds both lobes the height lies between them
    assert np.abs(height[:20] - np.broadcast_to(expected, (50, 30))[:20]).max() <= 0.5


def test_lobes_by_fissures_follow_the_planes_not_the_nearest_voxel():
    hu, labels, reference, lesion, _ = chest(lesion_radius_mm=26.0)
    left = np.zeros(SHAPE, bool)
    got = lobes_by_fissures(labels, lesion, SPACING, 12.0, left)
    assert (got == reference[lesion]).mean() >= 0.95
