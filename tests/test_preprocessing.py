"""Pre-processing (paper IV.D) and the exact way back to the input grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.constants import HU_MAX, HU_MIN
from algorithm.pipeline.input_grid import to_input_grid
from algorithm.preprocessing import labels_to_canonical, network_grid, normalize_hu, preprocess, preprocess_labels, to_canonical


def test_hu_window_and_rescale():
    hu = np.array([-3024, -1200, -400, 400, 3000], np.int16)
    assert np.allclose(normalize_hu(hu), [0, 0, 0.5, 1, 1])
    assert HU_MIN == -1200 and HU_MAX == 400


def test_network_grid_is_256_in_plane_and_isotropic():
    shape, spacing = network_grid((100, 512, 512), (2.5, 0.7, 0.7))
    assert shape[1:] == (256, 256)
    assert spacing[1] == pytest.approx(1.4) and spacing[2] == pytest.approx(1.4)
    assert shape[0] == round(100 * 2.5 / 1.4)
    assert shape[0] * spacing[0] == pytest.approx(250.0)  # z extent kept


DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped-y (NIfTI RAS-like)": (1, 0, 0, 0, -1, 0, 0, 0, 1),
    "flipped x and y": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "permuted (sagittal acquisition)": (0, 0, 1, 1, 0, 0, 0, 1, 0),
    "oblique 0.8 degrees (within MAX_TILT_DEG: permuted exactly)": (
        math.cos(0.014), -math.sin(0.014), 0, math.sin(0.014), math.cos(0.014), 0, 0, 0, 1,
    ),
}


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_orientation_round_trip_keeps_geometry_and_content(direction):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 400, (24, 24, 24)).astype(np.int16)  # cubic: any permutation keeps the grid
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((12.5, -40.0, 300.25))
    image.SetDirection(direction)
    # in-plane size 24 at isotropic 1 mm: the network grid is the reoriented input grid
    scan = preprocess(image, inplane_size=24)
    labels = (scan.array > 0.5).astype(np.uint8)
    # the scan carries its one reorientation: the lung and fissure steps read it, nothing reorients again
    assert np.array_equal(sitk.GetArrayViewFromImage(scan.canonical), sitk.GetArrayViewFromImage(to_canonical(image)))
    back = to_input_grid(labels_to_canonical(labels, scan), scan, image).mask
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()
    expected = (normalize_hu(hu) > 0.5).astype(np.uint8)
    assert np.array_equal(sitk.GetArrayFromImage(back), expected)


def test_canonical_orientation_puts_patient_left_at_high_x():
    """A blob on the patient's left (physical +x in LPS) lands at high x on the network grid
    whatever the input direction."""
    for direction in ((1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)):
        image = sitk.Image(32, 32, 8, sitk.sitkInt16) - 1000
        image.SetDirection(direction)
        image.SetOrigin((-15.5 * direction[0], -15.5 * direction[4], 0.0))  # x, y in [-15.5, 15.5] mm
        left_index = image.TransformPhysicalPointToIndex((10.0, 0.0, 4.0))  # LPS: +x is patient left
        image[left_index] = 400
        scan = preprocess(image, inplane_size=32)
        x_of_blob = np.unravel_index(np.argmax(scan.array), scan.array.shape)[2]
        assert x_of_blob > 16


def test_reference_labels_follow_the_image():
    image = sitk.GetImageFromArray(np.zeros((10, 20, 20), np.int16))
    label = sitk.GetImageFromArray(np.pad(np.ones((10, 10, 10), np.uint8) * 3, ((0, 0), (0, 10), (0, 10))))
    for im in (image, label):
        im.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
        im.SetSpacing((2.0, 2.0, 4.0))
    scan = preprocess(image, inplane_size=10)
    grid_labels = preprocess_labels(label, scan.array.shape)
    assert grid_labels.shape == scan.array.shape
    assert set(np.unique(grid_labels)) == {0, 3}
    assert grid_labels.mean() == pytest.approx(0.25 * 3, abs=0.05)
