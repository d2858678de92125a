"""Shared fixtures: a small synthetic chest CT and weights the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from algorithm.network.checkpoint import InferenceSettings, save_checkpoint
from algorithm.network import CTSUNet
from training.realism.real_scans import REAL_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REAL = REAL_DIR  # the one definition of where the real scans live


def make_simple_chest(size_zyx=(40, 64, 64), spacing_xyz=(5.5, 5.5, 6.0)) -> sitk.Image:
    """Air, an elliptic body at +40 HU and two ellipsoid lungs at -850 HU (LPS: +x = left)."""
    nz, ny, nx = size_zyx
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx].astype(np.float32)
    hu = np.full(size_zyx, -1000, np.int16)
    hu[((y - ny / 2) / (0.44 * ny)) ** 2 + ((x - nx / 2) / (0.47 * nx)) ** 2 < 1] = 40
    for cx in (0.28 * nx, 0.72 * nx):
        lung = ((y - ny / 2) / (0.31 * ny)) ** 2 + ((x - cx) / (0.17 * nx)) ** 2 + ((z - nz / 2) / (0.45 * nz)) ** 2
        hu[lung < 1] = -850
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing_xyz)
    return image


def make_test_weights(path: Path, inplane_size: int = 32, tile_out: int = 36) -> Path:
    """Random CTSU-Net weights whose stage I calls every voxel lung, so stage II tiles the scan.

    These test the machinery (I/O, tiling, geometry, outputs), not accuracy.
    """
    torch.manual_seed(0)
    model = CTSUNet()
    with torch.no_grad():
        model.stage1.lobe_head.bias.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    settings = InferenceSettings(inplane_size=inplane_size, train_patch_in=100, tile_out=tile_out)
    save_checkpoint(model, settings, path, trained_on="random test weights")
    return path


@pytest.fixture(scope="session")
def test_weights(tmp_path_factory) -> Path:
    return make_test_weights(tmp_path_factory.mktemp("weights") / "test.pt")


@pytest.fixture(scope="session")
def chest_ct_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ct") / "chest.mha"
    sitk.WriteImage(make_simple_chest(), str(path))
    return path


@pytest.fixture
def fast_network(monkeypatch):
    """Replace the network by a fast, orientation-aware stand-in (tests of everything around it)."""
    import algorithm.segmenter
    from robustness_helpers import fake_predict_network_grid

    monkeypatch.setattr(algorithm.segmenter, "predict_network_grid", fake_predict_network_grid)
