"""The preview picture: a PNG of the expected size showing all five lobe colours and a legend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import io

from algorithm.cli import main
from algorithm.labels import LOBES
from algorithm.report.lobe_report import NetworkRun, WeightsInfo, build_report, low_confidence_share
from algorithm.segmenter import SegmentationResult
from algorithm.report.preview import LOBE_COLOURS, draw_text, preview_shape, render_preview, text_width
from algorithm.io.writing import to_json_safe, write_png

from test_quality_flags import _clean_case


def _case():
    hu, labels = _clean_case()
    image = sitk.GetImageFromArray(np.rint(hu).astype(np.int16))
    mask = sitk.GetImageFromArray(labels)
    for item in (image, mask):
        item.SetSpacing((2.0, 2.0, 2.0))
    return image, mask


def _colour_pixels(rgb: np.ndarray, colour) -> int:
    return int(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).sum())


@pytest.mark.parametrize("panel_px", [256, 128])
def test_preview_png_size_colours_and_legend(tmp_path, panel_px):
    image, mask = _case()
    path = tmp_path / "case_lobes_preview.png"
    write_png(render_preview(image, mask, {"quality_flags": []}, panel_px=panel_px), path)
    rgb = io.imread(path)
    assert rgb.shape == (*preview_shape(panel_px), 3) and rgb.dtype == np.uint8
    panels, legend = rgb[:panel_px], rgb[panel_px:]
    for lobe in LOBES:  # outlines in the solid colour on the slices, a swatch in the legend
        assert _colour_pixels(panels, LOBE_COLOURS[lobe]) > 20, lobe.name
        assert _colour_pixels(legend, LOBE_COLOURS[lobe]) >= (7 * (2 if panel_px >= 200 else 1)) ** 2
    white = np.all(legend == 255, axis=-1)
    assert white.sum() > 500  # legend text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sagittal_and_coronal_views_are_upright():
    """Superior at the top: the upper lobes fill the top of the coronal panel."""
    image, mask = _case()
    rgb = render_preview(image, mask, panel_px=256)
    coronal = rgb[:256, 256:512]
    rows_lul = np.flatnonzero(np.all(coronal == LOBE_COLOURS[LOBES[0]], axis=-1).any(axis=1))
    rows_lll = np.flatnonzero(np.all(coronal == LOBE_COLOURS[LOBES[1]], axis=-1).any(axis=1))
    assert rows_lul.mean() < rows_lll.mean()


def test_text_is_drawn_with_a_real_font():
    """Pillow's built-in font: lower case differs from upper case, and wider text takes more room."""
    lower, upper = np.zeros((20, 260, 3), np.uint8), np.zeros((20, 260, 3), np.uint8)
    draw_text(lower, "RML right middle lobe 12.5 mL", 2, 2, (255, 255, 255), 14)
    draw_text(upper, "RML RIGHT MIDDLE LOBE 12.5 ML", 2, 2, (255, 255, 255), 14)
    assert lower.any() and not np.array_equal(lower, upper)
    assert set(np.unique(lower)) == {0, 255}  # not anti-aliased
    assert text_width("RML right middle lobe", 14) > text_width("RML", 14) > 0


def _fake_report(image, mask, low_confidence: float = 0.0):
    """build_report on a given mask, with stand-ins for the network's outputs."""
    labels = sitk.GetArrayFromImage(mask)
    confidence = np.where(labels > 0, 0.9, 1.0).astype(np.float16)
    network = NetworkRun((2.0, 2.0, 2.0), 1, (8, 8, 8), "float32")
    return build_report(image, mask, network, WeightsInfo("test.pt", "0" * 64), "cpu", low_confidence_share(labels, confidence))


def test_report_holds_measures_and_flags():
    image, mask = _case()
    report = json.loads(json.dumps(to_json_safe(_fake_report(image, mask).to_dict()), allow_nan=False))
    measures = report["measures"]
    assert set(measures) == {lobe.name for lobe in LOBES} | {"left_lung", "right_lung", "total", "severity", "parameters"}
    assert measures["total"]["volume_ml"] == pytest.approx(report["volumes_ml"]["total"])
    assert measures["severity"]["max_score"] == 25 and "not a diagnosis" in measures["severity"]["disclaimer"]
    assert report["quality_flags"] == [] and report["quality_estimates"]["noise_hu"] is not None


def test_cli_writes_the_preview_unless_told_not_to(tmp_path, capsys, monkeypatch, chest_ct_path, test_weights):
    """The command line with the network replaced by a threshold 'segmentation' (fast)."""

    def fake_segment(image, *args, **kwargs):
        hu = sitk.GetArrayFromImage(image)
        labels = np.zeros(hu.shape, np.uint8)
        lung = hu == -850
        half = np.arange(hu.shape[2]) >= hu.shape[2] // 2
        labels[lung & half[None, None, :]] = 1
        labels[lung & ~half[None, None, :]] = 3
        mask = sitk.GetImageFromArray(labels)
        mask.CopyInformation(image)
        return SegmentationResult(mask=mask, report=_fake_report(image, mask), timings_s={}, network_labels=labels, scan=None)

    class FakeSegmenter:
        def __init__(self, *args, **kwargs):
            pass

        __call__ = staticmethod(fake_segment)

    monkeypatch.setattr("algorithm.cli.LobeSegmenter", FakeSegmenter)
    common = ["--weights", str(test_weights), "--device", "cpu", "--quiet"]
    out = tmp_path / "out"
    assert main(["predict", str(chest_ct_path), "-o", str(out), *common]) == 0
    assert io.imread(out / "chest_lobes_preview.png").shape == (*preview_shape(256), 3)
    assert "measures" in json.loads((out / "chest_lobes.json").read_text())
    out2 = tmp_path / "out2"
    assert main(["predict", str(chest_ct_path), "-o", str(out2), *common, "--no-preview"]) == 0
    assert not (out2 / "chest_lobes_preview.png").exists() and (out2 / "chest_lobes.json").exists()
    capsys.readouterr()
