"""Label conventions (training/data/label_maps.py) and the field-of-view rule of case selection."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.labels import Lobe
from training.data.case_selection import SelectionRules, edge_percent, select_case
from training.data.label_maps import LabelMapError, lobe_of_name, map_from_yaml, remap_labels, resolve_label_map


@pytest.mark.parametrize(
    ("name", "lobe"),
    [
        ("lung_upper_lobe_left", Lobe.LUL), ("lung_lower_lobe_left", Lobe.LLL), ("lung_upper_lobe_right", Lobe.RUL),
        ("lung_middle_lobe_right", Lobe.RML), ("lung_lower_lobe_right", Lobe.RLL), ("Left upper lobe", Lobe.LUL),
        ("RightMiddleLobe", Lobe.RML), ("RLL", Lobe.RLL), ("lobe_lll", Lobe.LLL), ("right inferior lobe", Lobe.RLL),
        ("left lung", None), ("trachea", None), ("background", None), ("left middle lobe", None), ("upper lobe", None),
        ("left right upper lobe", None),
    ],
)
def test_lobe_names(name, lobe):
    assert lobe_of_name(name) == lobe


def test_named_maps_reach_the_paper_values():
    paper = [0, 1, 2, 3, 4, 5]  # background, LUL, LLL, RUL, RLL, RML
    order = ["LUL", "LLL", "RUL", "RML", "RLL"]  # how the sources list them
    expected = [0] + [Lobe[n] for n in order]
    np.testing.assert_array_equal(remap_labels(np.array([0, 10, 11, 20, 21, 22]), "lola11"), expected)
    np.testing.assert_array_equal(remap_labels(np.array([0, 13, 14, 15, 16, 17]), "totalsegmentator_v1"), expected)
    np.testing.assert_array_equal(remap_labels(np.array([0, 10, 11, 12, 13, 14]), "totalsegmentator_v2"), expected)
    np.testing.assert_array_equal(remap_labels(np.array([0, 1, 2, 3, 4, 5]), "lungmask"), expected)
    # values outside a map are background, also past uint8 and below zero
    np.testing.assert_array_equal(remap_labels(np.array([*paper, 6, 256 + 1, -1]), "paper"), [*paper, 0, 0, 0])
    np.testing.assert_array_equal(remap_labels(np.array([12, 99, 15]), "totalsegmentator_v1"), [0, 0, 3])


def test_yaml_map_and_its_errors(tmp_path):
    good = tmp_path / "m.yaml"
    good.write_text("7: LUL\n8: lll\n9: 3\n10: RLL\n11: RML\n")
    assert map_from_yaml(good) == {7: 1, 8: 2, 9: 3, 10: 4, 11: 5}
    assert resolve_label_map(str(good)) == {7: 1, 8: 2, 9: 3, 10: 4, 11: 5}
    for text, message in (("7: XYZ\n", "not a lobe"), ("a: LUL\n", "not a non-negative integer"),
                          ("- 1\n", "expected a mapping"), ("7: [1\n", "cannot read")):
        good.write_text(text)
        with pytest.raises(LabelMapError, match=message):
            map_from_yaml(good)
    with pytest.raises(LabelMapError, match="unknown label map 'lola12'"):
        resolve_label_map("lola12")


def _box_case(z_range: tuple[int, int], size=(20, 30, 30)) -> tuple[sitk.Image, np.ndarray]:
    """Five lobes as blocks inside a body; lungs on slices z_range (array z: inferior -> superior)."""
    hu = np.full(size, -1000, np.int16)
    hu[:, 3:-3, 3:-3] = 40
    labels = np.zeros(size, np.uint8)
    z0, z1 = z_range
    for i, lobe in enumerate((Lobe.LUL, Lobe.LLL, Lobe.RUL, Lobe.RLL, Lobe.RML)):
        labels[z0:z1, 6:24, 5 + 4 * i: 9 + 4 * i] = lobe
    hu[labels > 0] = -850
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    return image, labels


def test_field_of_view_rule_names_the_cut_face():
    image, labels = _box_case((2, 18))
    assert max(edge_percent(image, labels > 0).values()) == 0
    assert select_case(image, labels, SelectionRules()).keep
    image, labels = _box_case((2, 20))  # reaches the last slice: the superior face (identity direction)
    shares = edge_percent(image, labels > 0)
    assert shares["superior edge"] == 100.0 and shares["inferior edge"] == 0.0
    selection = select_case(image, labels, SelectionRules())
    assert not selection.keep and "the superior edge crosses 100.0 %" in selection.reason
    # a small tip on the face is allowed up to the limit
    labels[-1] = 0
    labels[-1, 10:12, 5:7] = Lobe.LUL  # 4 of 360 voxels: 1.1 %
    assert select_case(image, labels, SelectionRules(max_edge_percent=5.0)).keep
    assert not select_case(image, labels, SelectionRules(max_edge_percent=1.0)).keep
