"""User points on fissures (algorithm/fissure_points/): the formats, the bad-point errors, the refit
through the points on a synthetic lung with a misplaced fissure, the refine command and the export."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.errors import InputError
from algorithm.fissure_fit import point_residuals_mm
from algorithm.fissure_points.export import write_fissure_markups
from algorithm.fissure_points.fit import points_in_frame, refine_with_points
from algorithm.fissure_points.reading import points_from_json, read_points
from algorithm.labels import Lobe
from tests.test_fissure_fit import SPACING_MM, make_chest, oblique_mm

ORIGIN_LPS = (-100.0, -50.0, -300.0)  # x, y, z of voxel 0
MISPLACED_MM = 20.0
# (y, x) frame mm of the marked points on the left oblique fissure, spread over the lung
MARKS_YX = [(60.0, 190.0), (100.0, 200.0), (140.0, 210.0), (90.0, 225.0), (120.0, 180.0)]


@pytest.fixture(scope="module")
def case():
    """Truth, a mask whose left oblique fissure lies 20 mm too high, and the CT (HU) they belong to."""
    chest = make_chest(vessels=False)
    truth = chest.labels
    left = np.isin(truth, [Lobe.LUL, Lobe.LLL])
    misplaced = truth.copy()
    high = oblique_mm(chest.y[left], chest.x[left], +1) + MISPLACED_MM
    misplaced[left] = np.where(chest.z[left] < high, Lobe.LLL, Lobe.LUL)
    ct = sitk.GetImageFromArray(np.where(truth > 0, -850, -1000).astype(np.int16))
    ct.SetSpacing(SPACING_MM[::-1])
    ct.SetOrigin(ORIGIN_LPS)
    return truth, misplaced, ct


def true_points_lps(marks=MARKS_YX) -> list[list[float]]:
    """Points on the true left oblique fissure, LPS mm."""
    out = []
    for y, x in marks:
        z = float(oblique_mm(np.array(y), np.array(x), +1))
        out.append([x + ORIGIN_LPS[0], y + ORIGIN_LPS[1], z + ORIGIN_LPS[2]])
    return out


def markups(points_lps, system: str = "LPS", name: str = "left_oblique", label=None) -> dict:
    flip = np.array([-1.0, -1.0, 1.0]) if system == "RAS" else np.ones(3)
    controls = [{"id": str(i), "label": label or f"F-{i}", "position": list(np.array(p) * flip)}
                for i, p in enumerate(points_lps, start=1)]
    return {"markups": [{"type": "Fiducial", "coordinateSystem": system, "name": name, "controlPoints": controls}]}


def write(path: Path, document) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def iou(a: np.ndarray, b: np.ndarray, lobe: Lobe) -> float:
    return float(((a == lobe) & (b == lobe)).sum() / ((a == lobe) | (b == lobe)).sum())


def test_points_pull_a_misplaced_fissure_onto_the_truth(case, tmp_path):
    truth, misplaced, ct = case
    points = read_points(write(tmp_path / "p.mrk.json", markups(true_points_lps())))
    result = refine_with_points(ct, misplaced, points, mode="network")
    assert iou(misplaced, truth, Lobe.LLL) < 0.8  # the misplacement is real
    assert iou(result.labels, truth, Lobe.LLL) > 0.95 and iou(result.labels, truth, Lobe.LUL) > 0.95
    guided = result.section["user_points"]["fissures"]["left_oblique"]
    assert guided["max_residual_mm"] <= 0.5 * SPACING_MM[0]  # through the points within half a voxel
    assert result.section["fissures"]["left_oblique"]["decision"] == "points"
    assert result.section["fissures"]["right_oblique"]["user_guided"] is False
    right = truth >= Lobe.RUL
    assert np.array_equal(result.labels[right], misplaced[right])  # unmarked fissures keep the mask's borders
    assert np.array_equal(result.labels > 0, misplaced > 0)  # the lung's extent never changes


def test_lps_ras_and_csv_give_the_same_lobes(case, tmp_path):
    truth, misplaced, ct = case
    lps = read_points(write(tmp_path / "lps.mrk.json", markups(true_points_lps(), "LPS")))
    ras = read_points(write(tmp_path / "ras.mrk.json", markups(true_points_lps(), "RAS")))
    ras_rows = "\n".join(f"{-x},{-y},{z},left oblique" for x, y, z in true_points_lps())
    csv = read_points(write(tmp_path / "p.csv", f"# marked in Slicer\ncoordinate_system,RAS\nx,y,z,fissure\n{ras_rows}\n"))
    assert np.allclose([p.lps_mm for p in ras.points], [p.lps_mm for p in lps.points])
    out = [refine_with_points(ct, misplaced, p, mode="network").labels for p in (lps, ras, csv)]
    assert not np.array_equal(out[0], misplaced)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_points_labelled_by_fissure_in_one_markup(tmp_path):
    document = markups(true_points_lps(), name="F")
    for i, control in enumerate(document["markups"][0]["controlPoints"]):
        control["label"] = "right_oblique-%d" % i if i < 3 else "Right Horizontal"
    points, kind = points_from_json(document, "p.mrk.json")
    assert kind == "3D Slicer markups"
    assert [p.fissure for p in points] == ["right_oblique"] * 3 + ["right_horizontal"] * 2
    with pytest.raises(InputError, match=r"right_horizontal has 2 point\(s\) \(Right Horizontal, Right Horizontal\)"):
        read_points(write(tmp_path / "p.mrk.json", document))  # fewer than the minimum


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda pts: pts.__setitem__(1, [500.0, 0.0, 0.0]), r"point 2 \(F-2, left_oblique.*outside the image"),
        (lambda pts: pts.__setitem__(2, [ORIGIN_LPS[0] + 128.0, ORIGIN_LPS[1] + 10.0, ORIGIN_LPS[2] + 150.0]),
         r"point 3 \(F-3.*outside the lungs"),
        (lambda pts: pts.__setitem__(0, [ORIGIN_LPS[0] + 56.0, ORIGIN_LPS[1] + 90.0, ORIGIN_LPS[2] + 80.0]),
         r"point 1 \(F-1.*not in the lung of the left_oblique"),
    ],
)
def test_bad_points_are_refused_naming_the_point(case, tmp_path, edit, message):
    _, misplaced, ct = case
    pts = true_points_lps()
    edit(pts)
    points = read_points(write(tmp_path / "p.mrk.json", markups(pts)))
    with pytest.raises(InputError, match=message):
        points_in_frame(points, ct, misplaced)


def test_unreadable_point_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown fissure 'upper'"):
        read_points(write(tmp_path / "a.mrk.json", markups(true_points_lps(), name="upper", label="U")))
    with pytest.raises(InputError, match="left_oblique has 2 point"):
        read_points(write(tmp_path / "b.mrk.json", markups(true_points_lps()[:2])))
    with pytest.raises(InputError, match="line 2: position"):
        read_points(write(tmp_path / "c.csv", "x,y,z,fissure\n1,two,3,left_oblique\n"))
    with pytest.raises(InputError, match="neither LPS nor RAS"):
        read_points(write(tmp_path / "d.mrk.json", markups(true_points_lps(), "IJK")))


def test_refine_command_corrects_a_mask_and_its_export_reads_back(case, tmp_path):
    truth, misplaced, ct = case
    mask = sitk.GetImageFromArray(misplaced)
    mask.CopyInformation(ct)
    sitk.WriteImage(ct, str(tmp_path / "ct.mha"))
    sitk.WriteImage(mask, str(tmp_path / "mask.mha"))
    write(tmp_path / "p.mrk.json", markups(true_points_lps(), "RAS"))
    args = ["refine", str(tmp_path / "ct.mha"), str(tmp_path / "mask.mha"), "--fissure-points", str(tmp_path / "p.mrk.json")]
    assert main(args + ["-o", str(tmp_path / "out")]) == 0
    refined = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out/ct_lobes.mha")))
    assert iou(refined, truth, Lobe.LLL) > 0.95
    report = json.loads((tmp_path / "out/ct_lobes.json").read_text())
    schema = json.loads((Path(__file__).parents[1] / "algorithm/schemas/fissure-points.schema.json").read_text())
    jsonschema.validate(report["fissures"], schema)
    assert [p["label"] for p in report["fissures"]["user_points"]["fissures"]["left_oblique"]["points"]] == [
        f"F-{i}" for i in range(1, 6)]
    # the exported surfaces read back as points, and lie on the surfaces that bound the lobes
    exported = read_points(tmp_path / "out/ct_fissures.mrk.json")
    assert set(exported.fissures()) == {"left_oblique", "right_oblique", "right_horizontal"}
    result = refine_with_points(ct, misplaced, read_points(tmp_path / "p.mrk.json"), mode="network")
    assert np.allclose([p.lps_mm for p in exported.points], [q for name in exported.fissures() for q in result.surfaces_lps[name]], atol=1e-3)
    frame = points_in_frame(exported, ct, misplaced)
    moved = frame["left_oblique"]
    true_z = oblique_mm(moved[:, 1], moved[:, 2], +1)
    assert np.median(np.abs(moved[:, 0] - true_z)) <= 2.0  # the exported left oblique is the true fissure
    # and fed back as points, the export reproduces its own surface
    again = refine_with_points(ct, misplaced, exported, mode="network")
    assert again.section["user_points"]["fissures"]["left_oblique"]["max_residual_mm"] <= 1.0


def test_refine_command_reports_a_bad_point_and_fails(case, tmp_path, capsys):
    _, misplaced, ct = case
    mask = sitk.GetImageFromArray(misplaced)
    mask.CopyInformation(ct)
    sitk.WriteImage(ct, str(tmp_path / "ct.mha"))
    sitk.WriteImage(mask, str(tmp_path / "mask.mha"))
    pts = true_points_lps()
    pts[3] = [900.0, 0.0, 0.0]
    write(tmp_path / "p.mrk.json", markups(pts))
    code = main(["refine", str(tmp_path / "ct.mha"), str(tmp_path / "mask.mha"), "--fissure-points",
                 str(tmp_path / "p.mrk.json"), "-o", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: fissure point 4 (F-4" in err and "outside the image" in err
    assert not (tmp_path / "out" / "ct_lobes.mha").exists()


def test_residuals_are_distances_along_the_normal():
    from algorithm.fissure_fit import Surface

    knots = np.arange(-40.0, 201.0, 40.0)
    tilted = Surface(knots, knots, 0.5 * knots[:, None] + 0.0 * knots[None, :])  # z = 0.5 y
    r = point_residuals_mm(tilted, np.array([[50.0 + 10.0, 100.0, 80.0]]))  # 10 mm above, vertically
    assert r[0] == pytest.approx(10.0 / np.sqrt(1.25), rel=1e-6)


def test_the_pipeline_step_takes_the_points_and_keeps_its_default_without(case, tmp_path):
    from algorithm.pipeline.fissures import refine_lobes

    truth, misplaced, ct = case
    points = read_points(write(tmp_path / "p.mrk.json", markups(true_points_lps())))
    guided = refine_lobes(ct, misplaced, "network", points)
    assert iou(guided.labels, truth, Lobe.LLL) > 0.95
    assert set(guided.surfaces_lps) == {"left_oblique", "right_oblique", "right_horizontal"}
    plain = refine_lobes(ct, misplaced, "network")
    assert plain.section == {"mode": "network", "fissures": None} and plain.surfaces_lps == {}
    assert np.array_equal(plain.labels, misplaced)


def test_predict_refuses_bad_points_before_any_work(tmp_path, capsys):
    ct = tmp_path / "scan.mha"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16), str(ct))
    write(tmp_path / "p.csv", "x,y,z,fissure\n1,2,3,middle\n")
    code = main(["predict", str(ct), "-o", str(tmp_path / "out"), "--fissure-points", str(tmp_path / "p.csv")])
    assert code == 1
    assert "p.csv: line 2: unknown fissure 'middle'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "two").mkdir()
    for name in ("a.mha", "b.mha"):
        sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16), str(tmp_path / "two" / name))
    write(tmp_path / "ok.csv", "\n".join(f"{x},0,0,left_oblique" for x in range(3)))
    code = main(["predict", str(tmp_path / "two"), "-o", str(tmp_path / "out"), "--fissure-points", str(tmp_path / "ok.csv")])
    assert code == 1 and "belongs to one scan" in capsys.readouterr().err
    code = main(["predict", str(ct), "-o", str(tmp_path / "out"), "--fissure-points", str(tmp_path / "ok.csv"),
                 "--fissures", "global"])
    assert code == 1 and "works with --fissures fit or network, not global" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
