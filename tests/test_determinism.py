"""Load and determinism: identical bytes run after run; the same lobes in physical space whatever
the file format or axis order; flat memory over a batch of 50 small cases (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import algorithm.segmenter
from algorithm.cli import main
from algorithm.segmenter import LobeSegmenter
from algorithm.io.reading import read_image
from conftest import make_simple_chest
from robustness_helpers import fake_predict_network_grid, write_dicom_series


def _predict(source: Path, out: Path, weights: Path) -> int:
    return main(["predict", str(source), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--quiet", "--no-preview"])


def test_same_input_same_weights_identical_mask_bytes(tmp_path, chest_ct_path, test_weights):
    """The real network, twice: byte-identical masks (and identical label arrays)."""
    for run in ("a", "b"):
        assert _predict(chest_ct_path, tmp_path / run, test_weights) == 0
    first, second = ((tmp_path / run / "chest_lobes.mha").read_bytes() for run in ("a", "b"))
    assert first == second


def _flipped(image: sitk.Image) -> sitk.Image:
    """The same physical image stored with x and z reversed (direction cosines -1)."""
    array = sitk.GetArrayFromImage(image)[::-1, :, ::-1]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(image.GetSpacing())
    size = image.GetSize()
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((size[0] - 1, 0, size[2] - 1)))
    direction = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag([-1.0, 1.0, -1.0])
    flipped.SetDirection(tuple(direction.ravel()))
    return flipped


def _inputs(tmp_path: Path) -> dict[str, Path]:
    chest = make_simple_chest()
    paths = {"mha": tmp_path / "in" / "scan.mha", "nii": tmp_path / "in" / "scan.nii.gz", "flipped": tmp_path / "in" / "flipped.mha"}
    paths["mha"].parent.mkdir()
    sitk.WriteImage(chest, str(paths["mha"]))
    sitk.WriteImage(chest, str(paths["nii"]))
    sitk.WriteImage(_flipped(chest), str(paths["flipped"]))
    paths["dicom"] = write_dicom_series(chest, tmp_path / "in" / "dicom")
    return paths


def _on_reference_grid(mask_path: Path, reference: sitk.Image) -> np.ndarray:
    mask = sitk.ReadImage(str(mask_path))
    return sitk.GetArrayFromImage(sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def _check_same_lobes(tmp_path: Path, weights: Path) -> None:
    paths = _inputs(tmp_path)
    reference = sitk.ReadImage(str(paths["mha"]))
    masks = {}
    for kind, path in paths.items():
        out = tmp_path / f"out-{kind}"
        assert _predict(path, out, weights) == 0
        name = "flipped" if kind == "flipped" else ("dicom" if kind == "dicom" else "scan")
        masks[kind] = _on_reference_grid(out / f"{name}_lobes.mha", reference)
    assert len(np.unique(masks["mha"])) >= 4  # lobes on both sides, not one label everywhere
    for kind in ("nii", "dicom", "flipped"):
        assert np.array_equal(masks[kind], masks["mha"]), kind


def test_format_and_axis_order_give_the_same_lobes(tmp_path, test_weights, monkeypatch):
    """.mha, .nii.gz, a DICOM series and x/z-flipped storage: the same lobes voxel for voxel in
    physical space. The orientation-aware stand-in network (lobes by side and height) makes a
    left/right or up/down mix-up in reading, reorientation or writing visible."""
    monkeypatch.setattr(algorithm.segmenter, "predict_network_grid", fake_predict_network_grid)
    _check_same_lobes(tmp_path, test_weights)


@pytest.mark.slow
def test_format_and_axis_order_with_the_real_network(tmp_path, test_weights):
    _check_same_lobes(tmp_path, test_weights)


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_fifty_cases_with_flat_memory(tmp_path, test_weights):
    """The real network over 50 tiny phantoms in one process: RSS after case 50 within 40 MiB of
    its value after case 10 (allocator warm-up happens in the first cases)."""
    segmenter = LobeSegmenter(test_weights, "cpu")
    rng = np.random.default_rng(0)
    base = make_simple_chest((24, 48, 48), (7.3, 7.3, 8.0))
    hu = sitk.GetArrayFromImage(base)
    rss = {}
    for case in range(1, 51):
        image = sitk.GetImageFromArray(hu + rng.integers(0, 25, hu.shape).astype(np.int16))
        image.CopyInformation(base)
        path = tmp_path / "case.mha"
        sitk.WriteImage(image, str(path))
        result = segmenter(read_image(path).image)
        sitk.WriteImage(result.mask, str(tmp_path / "mask.mha"))
        del result
        if case in (10, 50):
            rss[case] = _rss_mib()
    assert rss[50] - rss[10] < 40.0, rss
