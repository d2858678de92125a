"""Evaluation: the grand-challenge-metrics wrapper against analytic cases and an independent
implementation, and the report command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from grand_challenge_metrics.stats import percentile_hausdorff_distance
from scipy import ndimage
from scipy.spatial import cKDTree

from training.evaluation import evaluate
from training.evaluation.metrics import image_diagonal_mm, lobe_score, lobe_scores


def _cube(shape, start, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(s, s + size) for s in start)] = True
    return m


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.0, 3.0)])
def test_shifted_cubes(spacing):
    a = _cube((30, 30, 30), (5, 5, 5), 10)
    b = _cube((30, 30, 30), (5, 5, 7), 10)  # shifted 2 voxels along x (last axis)
    score = lobe_score(b, a, spacing)
    assert score.iou == pytest.approx(800 / 1200)
    assert score.hd95_mm == pytest.approx(2 * spacing[2])


def test_concentric_spheres():
    z, y, x = np.mgrid[:40, :40, :40] - 19.5
    r = np.sqrt(x**2 + y**2 + z**2)
    big, small = r < 12, r < 8
    score = lobe_score(small, big, (1.0, 1.0, 1.0))
    assert score.iou == pytest.approx(small.sum() / big.sum())
    assert score.iou == pytest.approx((8 / 12) ** 3, rel=0.05)
    assert abs(score.hd95_mm - 4.0) <= 1.0


def test_missing_lobe_scores_zero_and_diagonal_never_nan():
    ref = np.zeros((10, 20, 30), np.uint8)
    ref[2:8, 2:18, 2:14] = 1
    ref[2:8, 2:18, 16:28] = 3
    pred = ref.copy()
    pred[pred == 3] = 0  # RUL missing
    spacing = (2.0, 1.0, 0.5)
    scores = lobe_scores(pred, ref, spacing)
    assert scores["LUL"].iou == 1.0 and scores["LUL"].hd95_mm == 0.0
    assert scores["RUL"].iou == 0.0
    assert scores["RUL"].hd95_mm == pytest.approx(math.sqrt(20**2 + 20**2 + 15**2))
    assert scores["RUL"].hd95_mm == image_diagonal_mm(ref.shape, spacing)
    assert scores["RML"].iou == 1.0 and scores["RML"].hd95_mm == 0.0  # absent from both
    assert all(math.isfinite(s.iou) and math.isfinite(s.hd95_mm) for s in scores.values())


def _independent_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Surface voxels by 6-neighbour erosion (own code), distances with a KD-tree in mm."""

    def surface(m):
        padded = np.pad(m, 1)
        interior = padded.copy()
        for axis in range(3):
            interior &= np.roll(padded, 1, axis) & np.roll(padded, -1, axis)
        return m & ~interior[1:-1, 1:-1, 1:-1]

    pa = np.argwhere(surface(a)) * np.asarray(spacing)
    pb = np.argwhere(surface(b)) * np.asarray(spacing)
    da = np.sort(cKDTree(pb).query(pa)[0])
    db = np.sort(cKDTree(pa).query(pb)[0])
    return max(da[int((len(da) - 1) * 0.95)], db[int((len(db) - 1) * 0.95)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wrapper_matches_independent_implementation_and_uncropped_library(seed):
    rng = np.random.default_rng(seed)
    spacing = (2.0, 0.7, 1.3)
    field_a = ndimage.gaussian_filter(rng.standard_normal((24, 32, 28)), 3)
    field_b = field_a + 0.3 * ndimage.gaussian_filter(rng.standard_normal((24, 32, 28)), 2)
    a, b = field_a > 0.05, field_b > 0.05
    score = lobe_score(b, a, spacing)
    expected_iou = (a & b).sum() / (a | b).sum()
    assert score.iou == pytest.approx(expected_iou, rel=1e-6)
    assert score.hd95_mm == pytest.approx(_independent_hd95(b, a, spacing), rel=1e-6)
    # cropping is exact: same as the library on the whole arrays
    assert score.hd95_mm == pytest.approx(percentile_hausdorff_distance(b, a, 0.95, spacing), rel=1e-9)


def _write(path, array, spacing_xyz=(1.5, 1.5, 2.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    sitk.WriteImage(image, str(path))


def test_evaluate_command_writes_table_plots_and_wilcoxon(tmp_path):
    rng = np.random.default_rng(0)
    dirs = {k: tmp_path / k for k in ("ref", "a", "b")}
    for d in dirs.values():
        d.mkdir()
    for case in range(6):
        ref = np.zeros((12, 24, 24), np.uint8)
        ref[2:10, 2:22, 2:12] = 1
        ref[2:6, 2:22, 13:22] = 3
        ref[6:10, 2:22, 13:22] = 4
        ref[2:10, 2:8, 2:12] = 2
        ref[4:6, 15:22, 13:22] = 5
        _write(dirs["ref"] / f"c{case}.mha", ref)
        good = ref.copy()
        good[:, :, 12 - (case % 2)] = good[:, :, 11]
        bad = np.roll(ref, 1 + case % 2, axis=2)
        if case == 0:
            bad[bad == 5] = 0  # a missing lobe in one case
        _write(dirs["a"] / f"c{case}.nii.gz", good)
        _write(dirs["b"] / f"c{case}_lobes.mha", bad)  # the name algorithm predict writes
    out = tmp_path / "report"
    code = evaluate.main(["--pred", str(dirs["a"]), "--ref", str(dirs["ref"]), "--vs", str(dirs["b"]), "--out", str(out)])
    assert code == 0
    text = (out / "report.md").read_text(encoding="utf-8")  # written as UTF-8 (±), whatever the locale
    assert "| Method | Metric | Overall | LUL | LLL | RUL | RLL | RML |" in text
    assert "Wilcoxon" in text and "nan" not in text.lower()
    rows = (out / "cases.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 6 * 5
    assert (out / "boxplot_iou.png").stat().st_size > 1000


def test_evaluate_compares_the_first_method_with_each_other_bonferroni_over_all(tmp_path):
    dirs = {k: tmp_path / k for k in ("ref", "a", "b", "c")}
    for d in dirs.values():
        d.mkdir()
    for case in range(8):
        ref = np.zeros((12, 24, 24), np.uint8)
        ref[2:10, 2:22, 2:12] = 1
        ref[2:10, 2:22, 13:22] = 3
        _write(dirs["ref"] / f"c{case}.mha", ref)
        _write(dirs["a"] / f"c{case}.mha", ref)
        _write(dirs["b"] / f"c{case}.mha", np.roll(ref, 1, axis=2))
        _write(dirs["c"] / f"c{case}.mha", np.roll(ref, 1 + case % 3, axis=1))
    out = tmp_path / "report"
    args = ["--pred", str(dirs["a"]), "--ref", str(dirs["ref"]), "--vs", str(dirs["b"]), str(dirs["c"]),
            "--names", "A", "B", "C", "--out", str(out)]
    assert evaluate.main(args) == 0
    text = (out / "report.md").read_text(encoding="utf-8")  # written as UTF-8 (±), whatever the locale
    assert "## Wilcoxon signed-rank: A vs B" in text and "## Wilcoxon signed-rank: A vs C" in text
    assert "Bonferroni over 12 tests per metric" in text
    table_rows = [line for line in text.splitlines() if line.startswith(("| A |", "| B |", "| C |"))]
    assert len(table_rows) == 3
    tables = {m: evaluate.per_case_table(evaluate.evaluate_folder(dirs[m.lower()], dirs["ref"])) for m in "AB"}
    (row,) = [r for r in evaluate.wilcoxon_tests(tables["A"], tables["B"], comparisons=2)
              if r["metric"] == "iou" and r["column"] == "LUL"]
    assert row["p_bonferroni"] == pytest.approx(min(1.0, row["p"] * 12)) and row["median_diff"] > 0
    with pytest.raises(SystemExit):
        evaluate.main([*args[:-6], "--names", "A", "B", "--out", str(out)])


def test_evaluate_refuses_missing_predictions(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    _write(tmp_path / "ref" / "x.mha", np.ones((4, 4, 4)))
    with pytest.raises(FileNotFoundError):
        evaluate.evaluate_folder(tmp_path / "pred", tmp_path / "ref")
