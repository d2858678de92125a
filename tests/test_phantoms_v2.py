"""Tests of phantoms v2 (issue 17): each new part present, in range and deterministic per seed;
v1 still reproducible. Small grids keep the file fast."""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import LOBES, Lobe
from training.phantoms import PhantomOptions, generate_case
from training.phantoms.body import Thorax, render_body
from training.phantoms.config import fit_to_fov, stream
from training.phantoms.sampling import sample_case
from training.phantoms.config_v2 import ARM_POSES, PAD_VALUES, sample_surroundings
from training.phantoms.generate import _thorax, model_grid, output_grid, patient_frame
from training.phantoms.lungs_v2 import LOBULAR_TEXTURE_HU, lobular_texture_hu

SMALL = (64, 64, 48)
# sha256 (first 16 hex digits) of image + label bytes of v1 case 7 at 64 x 64 x 48, made by the
# generator before v2 existed (commit 3b8c4d5): version=1 must keep producing exactly these bytes.
V1_CASE7_SHA = "43284363f9d60fcb"


def _seed_where(predicate, start: int = 0) -> int:
    return next(s for s in range(start, start + 500) if predicate(sample_surroundings(s)))


@functools.lru_cache(maxsize=None)
def _body(seed: int, size=(96, 96, 72), spacing=None):
    """The v2 body render of a case on its model grid: (hu, inside_body, thorax, params, coords)."""
    params, frame, model, coords, th, body = _rendered_body(seed, PhantomOptions(size_xyz=size, spacing_mm=spacing))
    return body.hu, body.inside_body, th, params, coords


def _rendered_body(seed: int, options: PhantomOptions):
    """What generate_case has made of a case up to the body render."""
    params = sample_case(seed, options)
    frame = patient_frame(params)
    model = model_grid(output_grid(params, float(frame.translation_mm[2])), options.model_voxels_max)
    coords = frame.patient_coords(model)
    th = _thorax(params)
    body = render_body(th, model, frame, *coords, stream(seed, "body-render"))
    return params, frame, model, coords, th, body


def test_version_1_reproduces_the_v1_bytes():
    case = generate_case(7, PhantomOptions(size_xyz=SMALL, version=1))
    data = sitk.GetArrayFromImage(case.image).tobytes() + sitk.GetArrayFromImage(case.label).tobytes()
    assert hashlib.sha256(data).hexdigest()[:16] == V1_CASE7_SHA
    v2 = generate_case(7, PhantomOptions(size_xyz=SMALL))
    assert not np.array_equal(sitk.GetArrayFromImage(v2.image), sitk.GetArrayFromImage(case.image))


def test_version_is_validated():
    with pytest.raises(ValueError, match="version"):
        PhantomOptions(version=3)


def test_v2_same_seed_same_bytes():
    a = generate_case(5, PhantomOptions(size_xyz=SMALL))
    b = generate_case(5, PhantomOptions(size_xyz=SMALL))
    assert np.array_equal(sitk.GetArrayFromImage(a.image), sitk.GetArrayFromImage(b.image))
    assert np.array_equal(sitk.GetArrayFromImage(a.label), sitk.GetArrayFromImage(b.label))


def test_torso_is_elliptical_and_tapers():
    for seed in (1, 2, 3):
        hu, inside, th, params, (x, y, z) = _body(seed)
        z0 = np.zeros(1)
        top = np.array([0.9 * params.body.apex_height_mm])
        assert th.torso_half_width_mm(top)[0] < 0.95 * th.torso_half_width_mm(z0)[0]
        # The torso outline at the dome level fills about pi/4 of its bounding box (an ellipse),
        # not the ~0.9 of a box with rounded corners.
        xs = np.linspace(-250, 250, 501)
        gx, gy = np.meshgrid(xs, xs)
        inside_outline = th.torso(gx, gy, np.zeros_like(gx), 0.0) < 1.0
        rows, cols = np.nonzero(inside_outline)
        fill = inside_outline.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))
        assert 0.72 < fill < 0.86, (seed, fill)
        # Width over depth of an adult chest: about 1.2-1.7.
        ratio = (np.ptp(cols) + 1) / (np.ptp(rows) + 1)
        assert 1.15 < ratio < 1.8, (seed, ratio)


def test_subcutaneous_fat_varies_and_stays_in_range():
    _, _, th, params, (x, y, z) = _body(4)
    fat = th.fat_inset_mm(x, y, z)
    assert fat.min() >= 0.3 * params.body.fat_mm - 1e-3 and fat.max() <= 2.0 * params.body.fat_mm + 1e-3
    assert fat.std() > 0.05 * params.body.fat_mm


@pytest.mark.parametrize("pose", ["down", "raised"])
def test_arms_present_where_the_pose_puts_them(pose):
    seed = _seed_where(lambda s: s.arms == pose and s.arm_gap_mm > 4)
    hu, inside, th, params, (x, y, z) = _body(seed, spacing=(6.5, 6.5, 5.0))  # a 620 mm field of view
    s = params.v2.surroundings
    mid = np.abs(z - 0.4 * params.body.apex_height_mm) < 8  # a slab through the mid chest
    beside = mid & (np.abs(x) > th.torso_half_width_mm(z) + s.arm_gap_mm + 0.5 * s.arm_radius_mm)
    beside &= np.abs(y - th.cy) < 0.5 * s.arm_radius_mm
    tissue = np.mean(inside[beside])
    if pose == "down":
        assert tissue > 0.5, (seed, tissue)
        assert (hu[beside] > 300).any()  # the humerus
    else:
        assert tissue < 0.05, (seed, tissue)
        top = (z > params.body.apex_height_mm) & (np.abs(x) > 0.5 * th.torso_half_width_mm(z))
        assert inside[top].any()  # the raised arms beside the neck


def test_arm_poses_drawn_in_proportion():
    poses = [sample_surroundings(s).arms for s in range(400)]
    shares = {p: poses.count(p) / len(poses) for p in ARM_POSES}
    assert 0.5 < shares["raised"] < 0.7 and 0.2 < shares["down"] < 0.4


def test_blanket_encloses_air_pockets_touching_the_skin():
    found = 0
    for seed in range(30):
        s = sample_surroundings(seed)
        if not (s.blanket and s.blanket_gap_mm > 6):
            continue
        hu, inside, *_ = _body(seed)
        solid = hu > -600
        pockets = np.stack([ndimage.binary_fill_holes(k) for k in solid]) & ~solid & ~inside
        touching = pockets & ndimage.binary_dilation(inside)
        assert pockets.sum() > 50 and touching.any(), seed
        found += 1
        if found == 3:
            break
    assert found == 3


def test_cushion_and_table_lie_under_the_back():
    seed = _seed_where(lambda s: s.cushion_mm > 25 and s.table_mm > 15)
    hu, inside, th, params, coords = _body(seed)
    s = params.v2.surroundings
    rows = np.flatnonzero(inside.any(axis=(0, 2)))
    below = hu[:, rows[-1] + 2 :, :]
    assert np.isclose(below, s.cushion_hu).any()
    assert np.isclose(below, 250.0).any()  # the table's shell
    above = hu[:, : rows[0], :]
    assert not np.isclose(above, s.cushion_hu).any()


def test_breasts_only_when_drawn():
    seed = _seed_where(lambda s: s.breast_radius_mm > 60 and s.breast_projection_mm > 40)
    plain = _seed_where(lambda s: s.breast_radius_mm == 0)
    for sd, expect in ((seed, True), (plain, False)):
        hu, inside, th, params, (x, y, z) = _body(sd)
        front = th.cy - (th.cage_half_depth + 3.0 + 0.5 * params.body.muscle_mm + 0.7 * params.body.fat_mm)
        ahead = inside & (y < front - 25.0) & (np.abs(z - th.carina_z + 55.0) < 20)
        assert ahead.any() == expect, sd


def test_padding_values_include_minus_1024():
    pads = {sample_case(s, PhantomOptions()).scan.pad_value_hu for s in range(60)}
    assert pads == set(PAD_VALUES)
    seed = next(s for s in range(200) if sample_case(s, PhantomOptions(size_xyz=SMALL)).scan.pad_value_hu == -1024)
    image = sitk.GetArrayFromImage(generate_case(seed, PhantomOptions(size_xyz=SMALL)).image)
    corner = image[:, :4, :4]
    assert (corner == -1024).all()


# --- lobes -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _lobes(seed: int, size=(64, 64, 56)):
    """Labels of a healthy v2 case with the patient coordinates of its voxels: (label, th, params, x, y, z)."""
    options = PhantomOptions(size_xyz=size, pathology="none")
    case = generate_case(seed, options)
    params = sample_case(seed, options)
    frame = patient_frame(params)
    out = output_grid(params, float(frame.translation_mm[2]))
    x, y, z = frame.patient_coords(out)
    return sitk.GetArrayFromImage(case.label), _thorax(params), params, x, y, z


def test_lobe_shares_follow_the_published_population():
    from training.phantoms.config_v2 import LOBE_SHARE_PERCENT

    shares = {lobe.name: [] for lobe in LOBES}
    for seed in range(200, 230):
        label = _lobes(seed, (48, 48, 40))[0]
        counts = np.bincount(label.ravel(), minlength=6)
        for lobe in LOBES:
            shares[lobe.name].append(100.0 * counts[lobe] / counts[1:].sum())
    for name, values in shares.items():
        mean, sd, lo, hi = LOBE_SHARE_PERCENT[name]
        assert abs(np.median(values) - mean) <= 2.5, (name, np.median(values), mean)
        assert lo - 4 <= min(values) and max(values) <= hi + 4, (name, min(values), max(values))


def test_oblique_fissure_runs_from_t4_t5_to_the_anterior_diaphragm():
    anterior_upper = []
    for seed in range(4):
        label, th, params, x, y, z = _lobes(seed)
        for lower, upper in ((Lobe.RLL, (Lobe.RUL, Lobe.RML)), (Lobe.LLL, (Lobe.LUL,))):
            top = z[label == lower].max()
            assert th.carina_z - 40 <= top <= th.carina_z + 40, (seed, lower.name, top, th.carina_z)
            # The lower lobe's highest point is posterior (the fissure rises towards the back).
            assert y[(label == lower) & (z > top - 15)].mean() > y[label > 0].mean()
            # It meets the diaphragm anteriorly: the lowest lung voxel of the most anterior columns
            # (on the diaphragm or in the anterior recess) belongs to the upper or middle lobe.
            side = np.isin(label, [int(lower)] + [int(u) for u in upper])
            cols = side.any(axis=0)
            lowest = np.argmax(side, axis=0)  # arrays run from the bottom slice up
            iy, ix = np.nonzero(cols)
            front = iy <= np.percentile(iy, 5)
            on_diaphragm = label[lowest[iy[front], ix[front]], iy[front], ix[front]]
            anterior_upper.append(np.isin(on_diaphragm, [int(u) for u in upper]).mean())
            back = iy >= np.percentile(iy, 60)
            assert (label[lowest[iy[back], ix[back]], iy[back], ix[back]] == lower).mean() > 0.9
    assert np.mean(anterior_upper) > 0.6 and min(anterior_upper) > 0.2, anterior_upper


def test_horizontal_fissure_near_the_fourth_costal_cartilage():
    for seed in range(3):
        label, th, params, x, y, z = _lobes(seed)
        rml = label == Lobe.RML
        front = rml & (y < np.percentile(y[label > 0], 20))
        top = z[front].max()
        assert th.carina_z - 75 <= top <= th.carina_z + 5, (seed, top, th.carina_z)


def test_incomplete_and_accessory_fissure_frequencies():
    from training.phantoms.config_v2 import P_ACCESSORY, P_INCOMPLETE, sample_fissures

    draws = [sample_fissures(s) for s in range(1500)]
    for k, name in enumerate(("left_oblique", "right_oblique", "horizontal")):
        incomplete = np.mean([d.visible[k] < 1.0 for d in draws])
        assert abs(incomplete - P_INCOMPLETE[name]) < 0.05, (name, incomplete)
    for name, p in P_ACCESSORY.items():
        seen = np.mean([name in d.accessory for d in draws])
        assert abs(seen - p) < 0.02 + 0.3 * p, (name, seen)


def test_accessory_fissures_lie_inside_their_lobe():
    from training.phantoms.config_v2 import sample_fissures
    from training.phantoms.generate import _compose_lungs
    from training.phantoms.lungs_v2 import ACCESSORY_IDS

    for name, lobe in (("left_minor", Lobe.LUL), ("inferior_accessory", Lobe.RLL)):
        seed = next(s for s in range(3000) if name in sample_fissures(s).accessory)
        options = PhantomOptions(size_xyz=(96, 96, 72), pathology="none")
        params, frame, model, coords, th, body = _rendered_body(seed, options)
        _, label, lobes, _, _ = _compose_lungs(params, th, model, frame, coords, body, seed)
        sheet = lobes.fissure_id == ACCESSORY_IDS[name]
        assert sheet.sum() > 20, (name, seed)
        assert (label[sheet] == lobe).all()
        assert lobes.fissure_occupancy[sheet].mean() > 0.2


# --- lungs and mediastinum ---------------------------------------------------------------------


def test_heart_lies_mostly_left_and_anterior_on_the_diaphragm():
    for seed in (1, 2):
        hu, inside, th, params, (x, y, z) = _body(seed)
        heart = th.heart(x, y, z) < 1.0
        assert (x[heart] > 0).mean() > 0.6  # about two thirds left of the midline
        assert y[heart].mean() < th.cy  # anterior
        assert z[heart].min() < 0.0  # reaches down to the domes


def test_right_dome_higher_in_most_cases():
    from training.phantoms.config import sample_body
    from training.phantoms.config_v2 import adjust_body, sample_anatomy

    drops = np.array([adjust_body(s, sample_body(s), sample_anatomy(s)).left_dome_drop_mm for s in range(500)])
    assert 0.8 < (drops > 0).mean() < 0.97  # some cases have level domes or a higher left one
    assert 8 < np.median(drops) < 20


def test_expiration_makes_smaller_denser_lungs():
    from training.phantoms.config_v2 import sample_anatomy

    expired = next(s for s in range(500) if sample_anatomy(s).expiration > 0.8)
    inspired = [s for s in range(500) if sample_anatomy(s).expiration == 0.0][:4]
    options = PhantomOptions(size_xyz=(64, 64, 56), spacing_mm=(6.0, 6.0, 6.0), pathology="none", noise_sigma_hu=5.0)

    def volume_and_hu(seed):
        case = generate_case(seed, options)
        image, label = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)
        return (label > 0).sum() * 0.216, np.median(image[label > 0])

    v_exp, hu_exp = volume_and_hu(expired)
    ins = [volume_and_hu(s) for s in inspired]
    assert v_exp < min(v for v, _ in ins)
    assert hu_exp > max(h for _, h in ins) + 30


def test_contrast_brightens_the_blood():
    from training.phantoms.config_v2 import sample_anatomy

    with_c = next(s for s in range(100) if sample_anatomy(s).contrast)
    without = next(s for s in range(100) if not sample_anatomy(s).contrast)
    assert sample_case(with_c, PhantomOptions()).body.blood_hu > 150
    assert sample_case(without, PhantomOptions()).body.blood_hu < 60


def test_lung_apices_rise_above_the_clavicles():
    for seed in (1, 3):
        hu, inside, th, params, (x, y, z) = _body(seed, spacing=(4.5, 4.5, 3.0))
        bone = (hu > 0.6 * params.body.bone_hu) & (z > params.body.apex_height_mm - 60) & (y < th.cy)
        bone &= np.abs(x) < 0.6 * th.cage_half_width  # the clavicles' medial two thirds, in front
        assert bone.any()
        assert z[bone].max() < params.body.apex_height_mm - 10


def test_v2_fits_a_wide_shallow_field_of_view_side_by_side():
    """A field of view cropped to the body (wide L-R, shallow A-P): v2 bounds the lung width by the
    L-R side and the depth by the A-P side; v1 shrank both to the smaller side."""
    wide = PhantomOptions(size_xyz=(233, 167, 191), spacing_mm=(1.5, 1.5, 1.5))
    fov_x, fov_y = 233 * 1.5, 167 * 1.5
    wider = 0
    for seed in range(20):
        b2 = sample_case(seed, wide).body
        b1 = sample_case(seed, PhantomOptions(size_xyz=(233, 167, 191), spacing_mm=(1.5, 1.5, 1.5), version=1)).body
        assert 2.12 * (b2.lung_center_x_mm + b2.lung_half_width_mm) + 25.0 <= fov_x  # lungs and most of the wall in view
        assert 2.12 * b2.lung_half_depth_mm + 25.0 <= fov_y
        assert b2.lung_half_width_mm >= b1.lung_half_width_mm * (1.0 - 1e-9) or b2.lung_half_depth_mm < b1.lung_half_depth_mm
        wider += b2.lung_half_width_mm > 1.05 * b1.lung_half_width_mm
    assert wider >= 10  # most chests are no longer shrunk to the A-P side
    square = sample_case(3, PhantomOptions(size_xyz=(96, 96, 80))).body
    assert fit_to_fov(square, 200.0, 200.0) == fit_to_fov(square, 200.0)  # square fields: as before


def test_tissue_texture_adds_fat_planes_septa_and_mottle():
    params, frame, model, coords, th, body = _rendered_body(5, PhantomOptions(size_xyz=(64, 64, 48)))
    p = th.p
    hu = np.full(model.shape_zyx, p.muscle_hu, np.float32)
    hu[:, :, : model.shape_zyx[2] // 2] = p.fat_hu
    inside = np.ones(model.shape_zyx, bool)
    before = hu.copy()
    Thorax(p).texture_tissue(before, inside, model)  # v1: untouched
    assert np.array_equal(before, hu)
    a, b = hu.copy(), hu.copy()
    th.texture_tissue(a, inside, model)
    th.texture_tissue(b, inside, model)
    assert np.array_equal(a, b)  # deterministic per seed
    muscle_side, fat_side = a[:, :, model.shape_zyx[2] // 2 :], a[:, :, : model.shape_zyx[2] // 2]
    planes = np.mean(np.abs(muscle_side - p.fat_hu) < 40.0)  # fat planes through the muscle
    septa = np.mean(fat_side > p.fat_hu + 60.0)  # soft-tissue strands through the fat
    assert 0.02 < planes < 0.35 and 0.01 < septa < 0.3
    mottle = a[np.abs(a - p.muscle_hu) < 60.0] - p.muscle_hu
    assert 5.0 < mottle.std() < 40.0
    assert -200.0 < a.min() and a.max() < 200.0  # still fat and soft tissue


def test_lobular_texture_is_a_zero_mean_mottle():
    params, frame, model, coords, th, body = _rendered_body(5, PhantomOptions(size_xyz=(64, 64, 48)))
    idx = np.arange(0, int(np.prod(model.shape_zyx)), 7)
    t = lobular_texture_hu(model, idx, stream(5, "parenchyma-v2"))
    assert np.array_equal(t, lobular_texture_hu(model, idx, stream(5, "parenchyma-v2")))
    assert abs(float(t.mean())) < 0.3 * LOBULAR_TEXTURE_HU
    assert 0.3 * LOBULAR_TEXTURE_HU < float(t.std()) < 1.5 * LOBULAR_TEXTURE_HU


def test_v2_fat_is_adipose_density():
    fats = [sample_case(s, PhantomOptions(size_xyz=SMALL)).body.fat_hu for s in range(50)]
    assert -125.0 <= min(fats) and max(fats) <= -95.0


# --- COPD hyperinflation -----------------------------------------------------------------------


def test_hyperinflation_only_for_copd_and_deterministic():
    from training.phantoms.config_v2 import NO_HYPERINFLATION

    changed = 0
    for seed in range(10):
        bodies = {k: sample_case(seed, PhantomOptions(size_xyz=SMALL, pathology=k)) for k in ("none", "covid", "effusion", "copd")}
        assert bodies["none"].body == bodies["covid"].body == bodies["effusion"].body  # healthy chest unchanged
        assert bodies["none"].v2.hyperinflation == NO_HYPERINFLATION
        healthy, copd = bodies["none"].body, bodies["copd"].body
        assert copd == sample_case(seed, PhantomOptions(size_xyz=SMALL, pathology="copd")).body  # same seed, same chest
        assert copd.apex_height_mm >= healthy.apex_height_mm  # the domes descend
        assert copd.lung_half_depth_mm >= healthy.lung_half_depth_mm  # barrel chest
        assert copd.recess_depth_mm <= healthy.recess_depth_mm and copd.recess_posterior_mm <= healthy.recess_posterior_mm
        changed += copd.apex_height_mm > 1.02 * healthy.apex_height_mm
    assert changed >= 5


def test_hyperinflation_draws_follow_the_cited_ranges():
    from training.phantoms.config import sample_pathology
    from training.phantoms.config_v2 import DIAPHRAGM_INDEX_RANGE, dome_factor_from_index, sample_hyperinflation

    options = PhantomOptions(pathology="copd")
    draws = [(sample_pathology(s, options).extent, sample_hyperinflation(s, sample_pathology(s, options))) for s in range(600)]
    volume = np.array([h.volume_factor for _, h in draws])
    dome = np.array([h.dome_factor for _, h in draws])
    extent = np.array([e for e, _ in draws])
    assert 1.0 <= volume.min() and volume.max() <= 1.5  # TLC 100-150 % predicted
    assert dome_factor_from_index(DIAPHRAGM_INDEX_RANGE[0]) - 1e-9 <= dome.min() and dome.max() <= 1.0 + 1e-9
    mild, severe = extent < 0.05, extent > 0.2
    # Sci Rep 2016 Table 1: TLC 111 % (GOLD 1) to 133 % (GOLD 4) predicted; Bakker 2024: flatter domes with severity.
    assert 1.06 < volume[mild].mean() < 1.18 and 1.22 < volume[severe].mean() < 1.38
    assert dome[severe].mean() < dome[mild].mean() - 0.05
    assert 0.75 < dome[severe].mean() < 0.9


@functools.lru_cache(maxsize=None)
def _lung_and_domes(seed: int, pathology: str):
    """Lung volume (ml) and (right, left) dome heights above the recesses (mm) of a case at 6 mm,
    a field of view tall enough for any chest."""
    from training.realism.report import _dome_tops

    case = generate_case(seed, PhantomOptions(size_xyz=(64, 64, 84), spacing_mm=(6.0, 6.0, 6.0), pathology=pathology, noise_sigma_hu=5.0))
    image, label = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)
    lung = label > 0
    assert not lung[0].any() and not lung[-1].any()  # nothing cut by the scan range
    right, left, _ = _dome_tops(lung, image > -500, case.image.GetSpacing())
    return lung.sum() * 0.216, (right, left), case.meta


def test_hyperinflated_lungs_are_larger_with_flatter_domes():
    ratios, dome_ratios, factors = [], [], []
    for seed in (20, 21, 24, 29):
        v_h, domes_h, _ = _lung_and_domes(seed, "none")
        v_c, domes_c, meta = _lung_and_domes(seed, "copd")
        assert abs(v_c / v_h - meta["hyperinflation_volume_factor"]) < 0.07, (seed, v_c / v_h, meta)
        for h, c in zip(domes_h, domes_c):
            assert c <= h + 6.0  # one voxel
            dome_ratios.append(c / h)
            factors.append(meta["dome_factor"])
        ratios.append(v_c / v_h)
    assert np.mean(ratios) > 1.1
    assert abs(np.mean(dome_ratios) - np.mean(factors)) < 0.12, (dome_ratios, factors)


def test_hyperinflated_lobes_still_partition_the_lungs():
    from training.phantoms.config_v2 import LOBE_SHARE_PERCENT

    seed = 308  # severe emphysema (about 26 % of the lung), volume factor 1.39
    case = generate_case(seed, PhantomOptions(size_xyz=(64, 64, 72), pathology="copd"))
    assert case.meta["hyperinflation_volume_factor"] > 1.3
    label = sitk.GetArrayFromImage(case.label)
    counts = np.bincount(label.ravel(), minlength=6)
    for lobe in LOBES:
        assert ndimage.label(label == lobe)[1] == 1, lobe.name
        mean, sd, lo, hi = LOBE_SHARE_PERCENT[lobe.name]
        assert lo - 4 <= 100.0 * counts[lobe] / counts[1:].sum() <= hi + 4, lobe.name
    assert set(np.unique(label)) == {0, 1, 2, 3, 4, 5}


# --- dense tissue: bone, cartilage, contrast -----------------------------------------------------


def test_cancellous_bone_and_cortex_in_their_ranges():
    from training.phantoms.body import _spine
    from training.phantoms.config_v2 import CANCELLOUS_HU, CORTEX_RIM_HU

    for s in range(40):
        b = sample_case(s, PhantomOptions(size_xyz=SMALL)).body
        assert CANCELLOUS_HU[0] <= b.cancellous_hu <= CANCELLOUS_HU[1] and CORTEX_RIM_HU[0] <= b.bone_hu <= CORTEX_RIM_HU[1]
        assert sample_case(s, PhantomOptions(size_xyz=SMALL, version=1)).body.cancellous_hu is None  # v1: 0.3 x cortex
    for seed in (1, 2):
        hu, inside, th, params, (x, y, z) = _body(seed)
        p = params.body
        cortex, posterior, marrow, canal = _spine(th, x, y, z)
        assert marrow.sum() > 50 and cortex.sum() > 50
        assert np.median(np.abs(hu[marrow] - p.cancellous_hu)) < 8.0  # vertebral bodies: cancellous bone
        assert np.median(np.abs(hu[cortex] - p.bone_hu)) < 8.0  # their rims: a thin cortex, partial-volumed
        drawn = posterior & (hu > p.cancellous_hu - 10.0)
        assert np.median(np.abs(hu[drawn] - 0.5 * (p.bone_hu + p.cancellous_hu))) < 8.0  # arches and processes


def test_ribs_lie_in_muscle_and_spinous_processes_under_the_skin():
    from training.phantoms.body import _ribs_and_scapulae
    from training.phantoms.torso import SPINOUS_COVER_MM

    for seed in (1, 3):
        hu, inside, th, params, (x, y, z) = _body(seed)
        p = params.body
        cortex, marrow, _ = _ribs_and_scapulae(th, x, y, z, th.cage(x, y, z))
        ribs = np.concatenate([cortex, marrow])
        # v1 lost about 60 % of its ribs where the subcutaneous fat reached them
        assert np.mean(hu.flat[ribs] > min(p.cancellous_hu, p.bone_hu) - 15.0) > 0.85
        back = inside & (y > th.spine_y) & (np.abs(x) < 6.0) & (hu > p.cancellous_hu - 10.0)  # the spinous processes
        assert back.sum() > 5
        assert (th.torso(x[back], y[back], z[back], SPINOUS_COVER_MM - 1.0) < 1.0).all()


def test_costal_cartilages_join_the_ribs_to_the_sternum():
    from training.phantoms.body import STERNUM_HALF_WIDTH_MM, _costal_cartilages
    from training.phantoms.config_v2 import CARTILAGE_HU

    assert sample_case(1, PhantomOptions(size_xyz=SMALL, version=1)).body.cartilage_hu is None  # none in v1
    for seed in (1, 2):
        hu, inside, th, params, (x, y, z) = _body(seed)
        c = params.body.cartilage_hu
        assert CARTILAGE_HU[0] <= c <= CARTILAGE_HU[1]
        cart = _costal_cartilages(th, x, y, z, th.cage(x, y, z))
        px, py, pz = x.flat[cart], y.flat[cart], z.flat[cart]
        assert len(cart) > 50
        assert (py < th.cy - 0.5 * th.cage_half_depth).all()  # in front
        assert np.abs(px).min() < STERNUM_HALF_WIDTH_MM + 8.0  # reaching the sternum's edge
        assert pz.max() < params.body.apex_height_mm and pz.min() > -80.0  # ribs 1-7
        assert np.mean(np.abs(hu.flat[cart] - c) < 10.0) > 0.6  # drawn (where the wall is muscle)


def test_humeral_heads_at_the_shoulders():
    seed = _seed_where(lambda s: s.arms == "raised")
    hu, inside, th, params, (x, y, z) = _body(seed)
    p = params.body
    from training.phantoms.torso import HUMERAL_HEAD_RADIUS_MM

    for axis in th._arm_axes():
        c = axis[0]
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
        core = (d < HUMERAL_HEAD_RADIUS_MM - 3.0) & inside & (th.cage(x, y, z) > 1.2)
        assert core.sum() > 20
        assert np.mean(np.abs(hu[core] - p.cancellous_hu) < 10.0) > 0.7  # cancellous bone
        assert not (inside[d < HUMERAL_HEAD_RADIUS_MM] == 0).all()


def test_contrast_enhances_liver_and_myocardium():
    from training.phantoms.body import MYOCARDIUM_INNER
    from training.phantoms.config import sample_body
    from training.phantoms.config_v2 import CONTRAST_BLOOD_HU, MYOCARDIUM_ENHANCEMENT_HU, _contrast_tissue, sample_anatomy

    with_c = next(s for s in range(100) if sample_anatomy(s).contrast)
    without = next(s for s in range(100) if not sample_anatomy(s).contrast)
    plain = sample_case(without, PhantomOptions(size_xyz=SMALL)).body
    assert plain.myocardium_hu is None and plain.liver_hu == sample_body(without).liver_hu
    b = sample_case(with_c, PhantomOptions(size_xyz=SMALL)).body
    assert CONTRAST_BLOOD_HU[0] <= b.blood_hu <= CONTRAST_BLOOD_HU[1]
    assert 15.0 <= b.liver_hu - sample_body(with_c).liver_hu <= 60.0
    assert MYOCARDIUM_ENHANCEMENT_HU[0] <= b.myocardium_hu - b.muscle_hu <= MYOCARDIUM_ENHANCEMENT_HU[1]
    v1 = sample_body(with_c)
    arterial, portal = _contrast_tissue(with_c, v1, 540.0), _contrast_tissue(with_c, v1, 160.0)
    assert arterial["liver_hu"] < portal["liver_hu"]  # the liver enhances later than the blood peaks
    hu, inside, th, params, (x, y, z) = _body(with_c)
    m = th.heart(x, y, z)
    wall = (m >= MYOCARDIUM_INNER + 0.04) & (m < 0.96) & inside & (z > 0.0)
    chamber = (m < 0.4) & inside & (z > 0.0)
    assert np.median(np.abs(hu[wall] - b.myocardium_hu)) < 10.0
    assert np.median(np.abs(hu[chamber] - b.blood_hu)) < 10.0


def test_paraspinal_muscle_behind_the_vertebrae():
    for seed in (1, 2):
        hu, inside, th, params, (x, y, z) = _body(seed)
        p = params.body
        assert Thorax(p).paraspinal(x, y, z) is None  # v1: fat there
        r = p.spine_radius_mm
        behind = inside & th.paraspinal(x, y, z) & (np.abs(x) > 10.0) & (y < th.spine_y + 1.5 * r + 20.0) & (z > 0.0)
        soft = behind & (hu < p.cancellous_hu - 30.0)  # not bone
        assert soft.sum() > 50
        assert abs(np.median(hu[soft]) - p.muscle_hu) < 15.0  # muscle, not fat
