"""Issue 29, laterality from anatomy: each lung's lobes from its own side of the body; a missing
lung reported per lung (present / airless / absent) and no lobes invented for it."""

from __future__ import annotations

import numpy as np
import pytest

from algorithm.labels import LEFT_LOBES, RIGHT_LOBES, Lobe
from algorithm.laterality import WRONG_SIDE_FLAG_ML, laterality

SPACING_MM_ZYX = (4.0, 3.0, 3.0)
SHAPE_ZYX = (40, 80, 100)


def _chest(midline_x: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """HU and lobes of a box chest (LPS: +x left): body +40 HU, a spine and ribs of bone symmetric
    about ``midline_x``, two lungs at -850 HU with their true lobes (upper/lower by z, RML between)."""
    nz, ny, nx = SHAPE_ZYX
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx]
    hu = np.full(SHAPE_ZYX, -1000, np.int16)
    hu[:, 8:72, 5:95] = 40
    hu[:, 56:68, midline_x - 4:midline_x + 5] = 700  # vertebrae
    for rib_x in (midline_x - 40, midline_x + 40):
        hu[::4, 15:65:6, rib_x - 1:rib_x + 1] = 600  # the two rib cages' sides: a rib every 16 mm
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    ellipsoid = ((y - 38) / 22.0) ** 2 + ((z - 20) / 17.0) ** 2
    for centre, side in ((midline_x + 20, "left"), (midline_x - 20, "right")):
        lung = (ellipsoid + ((x - centre) / 14.0) ** 2) < 1
        hu[lung] = -850
        if side == "left":
            labels[lung] = np.where(z[lung] >= 20, Lobe.LUL, Lobe.LLL)
        else:
            labels[lung] = np.where(z[lung] >= 24, Lobe.RUL, np.where(z[lung] >= 16, Lobe.RML, Lobe.RLL))
    return hu, labels


def _side_lobes(labels: np.ndarray, lobes) -> int:
    return int(np.count_nonzero(np.isin(labels, [int(lobe) for lobe in lobes])))


def test_a_normal_chest_is_left_as_it_is():
    hu, labels = _chest()
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert np.array_equal(found.labels, labels)
    assert {side: found.lungs[side].status for side in ("left", "right")} == {"left": "present", "right": "present"}
    assert found.midline_x_mm == pytest.approx(50 * 3.0)
    assert found.flags() == []


def test_left_lobes_in_the_right_lung_are_relabelled_by_the_right_lobes_probabilities():
    hu, labels = _chest()
    truth = labels.copy()
    right_lung = np.isin(labels, [int(lobe) for lobe in RIGHT_LOBES])
    wrong = right_lung & (np.arange(SHAPE_ZYX[0])[:, None, None] >= 24)  # the network called the RUL "LUL"
    labels[wrong] = Lobe.LUL
    probabilities = np.zeros((6, 20, 40, 50), np.float16)  # a coarser network grid over the same extent
    probabilities[Lobe.RUL] = 0.3  # the right lobes' own ranking: RUL first among them
    probabilities[Lobe.RML] = 0.2
    probabilities[Lobe.LUL] = 0.5
    found = laterality(hu, labels, SPACING_MM_ZYX, probabilities)
    assert _side_lobes(found.labels[:, :, :50], LEFT_LOBES) == 0  # no left lobe right of the midline
    assert np.array_equal(found.labels, truth)
    assert found.relabelled_ml == pytest.approx(np.count_nonzero(wrong) * 0.036, rel=1e-6)
    assert [flag["code"] for flag in found.flags()] == ["lobes_on_wrong_side"]


def test_a_few_millilitres_on_the_wrong_side_are_relabelled_but_not_flagged():
    # the midline's partial-volume voxels: real scans relabel 1-2 mL on every run
    hu, labels = _chest()
    truth = labels.copy()
    right_lung = np.isin(labels, [int(lobe) for lobe in RIGHT_LOBES])
    wrong = right_lung & (np.arange(SHAPE_ZYX[0])[:, None, None] >= 36)  # a small cap of the RUL called "LUL"
    labels[wrong] = Lobe.LUL
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert 0 < found.relabelled_ml < WRONG_SIDE_FLAG_ML
    assert np.array_equal(found.labels, truth)
    assert found.flags() == []
    assert found.section()["other_side_relabelled_ml"] == pytest.approx(found.relabelled_ml, abs=0.05)


def test_an_airless_left_lung_is_reported_and_gets_no_lobes():
    """The issue's case: the left lung filled with soft tissue, the network's lobes of the right
    lung split into left and right labels."""
    hu, labels = _chest()
    left_lung = np.isin(labels, [int(lobe) for lobe in LEFT_LOBES])
    hu[left_lung] = 35
    labels[left_lung] = 0
    right_lung = labels > 0
    labels[right_lung & (np.arange(SHAPE_ZYX[1])[None, :, None] < 30)] = Lobe.LLL  # the anterior part called left
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert _side_lobes(found.labels, LEFT_LOBES) == 0
    assert np.array_equal(found.labels > 0, right_lung)  # the right lung keeps every voxel, all right lobes
    left = found.lungs["left"]
    assert left.status == "airless" and left.dense_mean_hu == pytest.approx(35.0, abs=1.0)
    assert left.dense_ml == pytest.approx(np.count_nonzero(left_lung) * 0.036, rel=0.15)  # the mirror image's volume
    assert found.lungs["right"].status == "present"
    flag = next(f for f in found.flags() if f["code"] == "lung_airless")
    assert flag["side"] == "left" and "left lung" in flag["message"] and "35 HU" in flag["message"]


def test_a_small_remnant_of_a_missing_lung_gets_no_lobes():
    hu, labels = _chest()
    right_lung = np.isin(labels, [int(lobe) for lobe in RIGHT_LOBES])
    hu[right_lung] = 35
    labels[right_lung] = 0
    labels[18:22, 36:40, 28:32] = Lobe.RLL  # 64 voxels, 2.3 mL of aerated remnant labelled by the network
    hu[18:22, 36:40, 28:32] = -800
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert _side_lobes(found.labels, RIGHT_LOBES) == 0 and found.removed_ml == pytest.approx(64 * 0.036)
    assert found.lungs["right"].status == "airless"


def test_a_hemithorax_field_of_view_reports_the_other_lung_absent():
    """A scan of the right chest only: the mirror image of the right lung falls outside the image."""
    hu, labels = _chest()
    hu, labels = hu[:, :, :56], labels[:, :, :56]  # the left rib cage and lung are cut off
    labels[np.isin(labels, [int(lobe) for lobe in LEFT_LOBES])] = 0
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert found.lungs["left"].status == "absent" and found.lungs["right"].status == "present"
    assert [f["code"] for f in found.flags()] == ["lung_absent"]


def test_lungs_touching_at_the_front_are_judged_slice_by_slice():
    """One 3D region for both lungs (an anterior junction bridge): the cross-sections away from
    the bridge still decide the sides."""
    hu, labels = _chest()
    labels[18:22, 20:24, 30:71] = np.where(np.arange(30, 71) >= 50, Lobe.LUL, Lobe.RUL)[None, None, :]
    wrong = labels.copy()
    right_lung = np.isin(labels, [int(lobe) for lobe in RIGHT_LOBES]) & (np.arange(SHAPE_ZYX[0])[:, None, None] < 10)
    wrong[right_lung] = Lobe.LLL
    found = laterality(hu, wrong, SPACING_MM_ZYX)
    assert _side_lobes(found.labels[:10, :, :50], LEFT_LOBES) == 0  # relabelled (first right lobe: no probabilities)
    assert np.array_equal(found.labels[:10, :, 50:], labels[:10, :, 50:])
    assert np.array_equal(found.labels[18:22, 20:24], labels[18:22, 20:24])  # the bridge straddles: left as it was


def test_without_a_skeleton_nothing_is_changed():
    hu, labels = _chest()
    hu[hu > 300] = 40
    labels[labels == Lobe.RUL] = Lobe.LUL
    found = laterality(hu, labels, SPACING_MM_ZYX)
    assert found.midline_x_mm is None and np.array_equal(found.labels, labels)


def _chest_image_with_spine(fill_left_lung_hu: float | None = None):
    """conftest's synthetic chest with a spine behind the mediastinum; optionally its left lung
    (high x in LPS) filled with soft tissue."""
    import SimpleITK as sitk
    from conftest import make_simple_chest

    chest = make_simple_chest()
    hu = sitk.GetArrayFromImage(chest)
    nz, ny, nx = hu.shape
    hu[:, int(0.75 * ny):int(0.88 * ny), nx // 2 - 3:nx // 2 + 3] = 700
    if fill_left_lung_hu is not None:
        left = (hu < -500) & (np.arange(nx)[None, None, :] > nx // 2)
        left &= ndimage_inside_body(hu)
        hu[left] = fill_left_lung_hu
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(chest)
    return image


def ndimage_inside_body(hu: np.ndarray) -> np.ndarray:
    """Air not connected to the slice corners (the lungs), per slice."""
    from scipy import ndimage

    inside = np.zeros(hu.shape, bool)
    for k in range(hu.shape[0]):
        parts, _ = ndimage.label(hu[k] < -500)
        corners = {parts[0, 0], parts[0, -1], parts[-1, 0], parts[-1, -1]} - {0}
        inside[k] = (parts > 0) & ~np.isin(parts, list(corners))
    return inside


def test_the_pipeline_reports_an_airless_lung_and_gives_it_no_lobes(test_weights, fast_network):
    import json

    import jsonschema
    import SimpleITK as sitk
    from conftest import REPO_ROOT

    from algorithm import LobeSegmenter

    schema = json.loads((REPO_ROOT / "algorithm/schemas/pulmonary-lobe-volumes.schema.json").read_text())
    segmenter = LobeSegmenter(test_weights, device="cpu", fissures="network")
    normal = segmenter(_chest_image_with_spine())
    assert normal.report.lungs["left"]["status"] == normal.report.lungs["right"]["status"] == "present"
    assert not any(f["code"].startswith(("lung_", "lobes_on")) for f in normal.report.quality_flags)
    one_lung = segmenter(_chest_image_with_spine(fill_left_lung_hu=35.0))
    mask = sitk.GetArrayFromImage(one_lung.mask)
    assert _side_lobes(mask, LEFT_LOBES) == 0 and _side_lobes(mask, RIGHT_LOBES) > 0
    left = one_lung.report.lungs["left"]
    assert left["status"] == "airless" and left["dense_mean_hu"] == pytest.approx(35.0, abs=5.0)
    assert [f["side"] for f in one_lung.report.quality_flags if f["code"] == "lung_airless"] == ["left"]
    for report in (normal.report, one_lung.report):
        jsonschema.validate(report.to_dict(), schema)
