"""The one API, ``LobeSegmenter``: built once, called per image, never touching its inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm import LobeSegmenter
from algorithm.errors import SettingsError
from algorithm.io.writing import to_json_safe
from algorithm.network.checkpoint import load_checkpoint
from algorithm.report.lobe_report import LobeReport
from conftest import make_simple_chest


def _oblique_chest() -> sitk.Image:
    image = make_simple_chest()
    image.SetOrigin((-120.0, 35.5, 300.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))  # stored right-to-left: reoriented inside
    return image


def test_mask_on_the_input_grid_report_and_untouched_input(test_weights, fast_network):
    image = _oblique_chest()
    before = sitk.GetArrayFromImage(image).copy()
    geometry = (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    result = LobeSegmenter(test_weights, "cpu")(image)
    assert (result.mask.GetSize(), result.mask.GetSpacing(), result.mask.GetOrigin(), result.mask.GetDirection()) == geometry
    assert np.array_equal(sitk.GetArrayFromImage(image), before)
    assert isinstance(result.report, LobeReport)
    labels = sitk.GetArrayViewFromImage(result.mask)
    for name, value in (("LUL", 1), ("RML", 5)):
        assert result.report.volumes_ml[name] == pytest.approx(
            (labels == value).sum() * np.prod(image.GetSpacing()) / 1000, rel=1e-3)
    document = json.loads(json.dumps(to_json_safe(result.report.to_dict()), allow_nan=False))
    assert list(document)[:3] == ["software", "label_map", "volumes_ml"]
    assert document["network_grid"]["stage2_tiles"] >= 1 and document["weights"]["sha256"] == result.report.weights.sha256
    assert set(result.timings_s) >= {"preprocess", "stage1", "stage2", "postprocess", "measures"}


def test_the_steps_run_in_order(test_weights, fast_network):
    stages: list[str] = []
    LobeSegmenter(test_weights, "cpu")(make_simple_chest(), progress=lambda stage, *counts: stages.append(stage))
    ordered = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert ordered == ["preprocess", "network", "tile", "postprocess", "fissures", "measures"]


def test_options_make_a_new_segmenter_and_share_the_network(test_weights):
    segmenter = LobeSegmenter(test_weights, "cpu", batch_size=1)
    other = segmenter.with_options(batch_size=3, max_tile_in_voxels=100**3)
    assert other.model is segmenter.model and other.weights == segmenter.weights
    assert (segmenter.options.batch_size, other.options.batch_size) == (1, 3)
    assert segmenter.tiling_for((2.0, 2.0, 2.0)) is not segmenter.tiling_for((2.0, 2.0, 2.0))  # a new one per call


def test_float16_without_cuda_is_refused_before_the_weights_load(tmp_path):
    with pytest.raises(SettingsError, match="float16 needs CUDA"):
        LobeSegmenter(tmp_path / "no-such-weights.pt", "cpu", precision="float16")
    with pytest.raises(SettingsError):
        LobeSegmenter(tmp_path / "no-such-weights.pt", "cpu", precision="double")
    with pytest.raises(SettingsError, match="fissures must be one of"):
        LobeSegmenter(tmp_path / "no-such-weights.pt", "cpu", fissures="plane")


def test_training_validation_uses_the_inference_margin(test_weights):
    """The lung-box margin is the checkpoint's 10 mm on every path, in voxels of the scan's grid."""
    checkpoint = load_checkpoint(test_weights)
    segmenter = LobeSegmenter.from_model(checkpoint.model, checkpoint.settings, "cpu", tile_out=36)
    assert checkpoint.settings.bbox_margin_mm == 10.0
    for spacing in ((2.0, 2.0, 2.0), (1.2, 3.7, 3.7), (5.0, 5.0, 5.0)):
        assert segmenter.tiling_for(spacing).bbox_margin_vox == math.ceil(10.0 / min(spacing))
    assert segmenter.tiling_for((2.0, 2.0, 2.0)).tile_out == 36


def test_from_model_gives_the_loaded_segmenters_mask(test_weights, fast_network):
    checkpoint = load_checkpoint(test_weights)
    image = make_simple_chest()
    loaded = LobeSegmenter(test_weights, "cpu")(image)
    in_memory = LobeSegmenter.from_model(checkpoint.model, checkpoint.settings, "cpu")(image)
    assert np.array_equal(sitk.GetArrayViewFromImage(loaded.mask), sitk.GetArrayViewFromImage(in_memory.mask))
    assert loaded.report.volumes_ml == in_memory.report.volumes_ml


def test_no_lungs_is_an_input_error(test_weights):
    from algorithm.errors import InputError

    hu = np.full((40, 64, 64), 40, np.int16)  # all soft tissue
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((5.5, 5.5, 6.0))
    with pytest.raises(InputError):
        LobeSegmenter(test_weights, "cpu")(image)


def test_the_api_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "from algorithm import LobeSegmenter" in readme
