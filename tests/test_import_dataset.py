"""``python -m training import-dataset``: each layout imported from small phantom data sets
(tests/dataset_fakes.py), labels checked voxel for voxel, the selection and its reasons, resume
after an interruption and a SIGKILL, parallel workers, and training on the result."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dataset_fakes import SPLIT_OF, write_folder, write_nnunet, write_totalsegmentator

from algorithm.labels import LOBES
from training.data import import_case as import_case_mod
from training.data import import_dataset
from training.data.cases import read_case_csv

REPO = Path(__file__).resolve().parents[1]
KEPT = {"good-a", "good-b", "good-c", "good-d"}
EXCLUDED = {
    "cut": "lungs cut by the field of view: the superior edge crosses",
    "nonchest": "no lobe labelled (not a chest scan?)",
    "missing-rml": "missing lobe(s): RML",
}


@pytest.fixture(scope="session")
def ts_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("totalsegmentator")
    cases, shared = write_totalsegmentator(root)
    return root, {c.name: c for c in cases}, shared


@pytest.fixture(scope="session")
def nnunet_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    return root, {c.name: c for c in write_nnunet(root)}


@pytest.fixture(scope="session")
def folder_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    return root, {c.name: c for c in write_folder(root)}


@pytest.fixture(scope="session")
def ts_imported(ts_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ts-imported")
    summary = import_dataset.run_import("totalsegmentator", ts_source[0], out, stream=open(os.devnull, "w"))
    return out, summary


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "cases.csv", newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def _check_import(out: Path, cases: dict, failed: dict[str, str]) -> dict[str, dict]:
    """Statuses and reasons as the fakes intend; kept labels equal to the phantoms' voxel for
    voxel on the image's grid; images copied byte for byte; nothing of the others written."""
    rows = _rows(out)
    assert set(rows) == set(cases)
    for name, row in rows.items():
        if name in KEPT:
            assert (row["status"], row["reason"]) == ("ok", ""), name
            labels = sitk.ReadImage(str(out / row["label"]))
            image = sitk.ReadImage(str(out / row["image"]))
            assert labels.GetPixelID() == sitk.sitkUInt8
            np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), cases[name].labels)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(cases[name].image))
            assert labels.GetSize() == image.GetSize() == cases[name].image.GetSize()
            np.testing.assert_allclose(labels.GetOrigin(), image.GetOrigin())
            np.testing.assert_allclose(labels.GetSpacing(), image.GetSpacing())
            voxel_ml = np.prod(image.GetSpacing()) / 1000
            for lobe in LOBES:
                expected = np.count_nonzero(cases[name].labels == lobe) * voxel_ml
                assert float(row[f"volume_ml_{lobe.name}"]) == pytest.approx(expected, abs=0.01)
        elif name in EXCLUDED:
            assert row["status"] == "excluded" and row["reason"].startswith(EXCLUDED[name]), (name, row["reason"])
        else:
            assert row["status"] == "failed" and failed[name] in row["reason"], (name, row["reason"])
        if name not in KEPT:
            assert row["image"] == row["label"] == ""
            assert not list((out / "images").glob(f"{name}.*")) and not list((out / "labels").glob(f"{name}.*"))
    return rows


def test_totalsegmentator_layout_imports_selects_and_keeps_the_split(ts_source, ts_imported):
    root, cases, shared = ts_source
    out, summary = ts_imported
    failed = {"truncated": "truncated or corrupt gzip data", "overlap": f"LUL and LLL share {shared} voxels"}
    rows = _check_import(out, cases, failed)
    assert "overlapping masks in case overlap" in rows["overlap"]["reason"]
    assert {n: rows[n]["split"] for n in KEPT} == {n: SPLIT_OF[n] for n in KEPT}  # meta.csv's own split
    assert float(rows["cut"]["max_edge_percent"]) > 20 and float(rows["good-a"]["max_edge_percent"]) < 5
    assert "thick_slices" in rows["good-a"]["flags"].split(";")  # quality flags recorded (7-9 mm slices), not excluding
    # training reads the same file: only the kept cases, with their splits
    read = {c.name: c.split for c in read_case_csv(out / "cases.csv")}
    assert read == {n: SPLIT_OF[n] for n in KEPT}
    assert [r["name"] for r in summary.of_status("failed")] == ["overlap", "truncated"]


def test_nnunet_layout_reads_label_names_and_its_test_folder(nnunet_source, tmp_path):
    root, cases = nnunet_source
    assert import_dataset.main(["--layout", "nnunet", str(root), "--out", str(tmp_path)]) == 0
    rows = _check_import(tmp_path, cases, {"truncated": "truncated or corrupt gzip data"})
    assert rows["good-d"]["split"] == "test"  # imagesTs
    assert {rows[n]["split"] for n in KEPT - {"good-d"}} <= {"train", "val"}  # seeded, no second test set


def test_folder_layout_with_a_named_map_and_a_yaml_map(folder_source, tmp_path):
    root, cases = folder_source
    failed = {"truncated": "truncated or corrupt gzip data"}
    assert import_dataset.main(["--layout", "folder", str(root), "--out", str(tmp_path / "a"), "--label-map", "lola11"]) == 0
    rows = _check_import(tmp_path / "a", cases, failed)
    assert sorted(rows[n]["split"] for n in KEPT) == ["test", "train", "train", "train"]  # seeded: round(0.2 * 4) test, round(0.1 * 4) val
    yaml_map = tmp_path / "lola.yaml"
    yaml_map.write_text("10: LUL\n11: LLL\n20: RUL\n21: RML\n22: RLL\n")
    out = tmp_path / "b"
    assert import_dataset.main(["--layout", "folder", str(root), "--out", str(out), "--label-map", str(yaml_map)]) == 0
    _check_import(out, cases, failed)
    # the paper map reads LOLA11 values 10-22 as nothing at all: every case is left out, exit 1
    assert import_dataset.main(["--layout", "folder", str(root), "--out", str(tmp_path / "c")]) == 1


def test_bad_source_and_bad_map_are_one_error_line(tmp_path, ts_source, capsys):
    assert import_dataset.main(["--layout", "nnunet", str(ts_source[0]), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip().startswith("error: ") and not (tmp_path / "o").exists()
    assert import_dataset.main(["--layout", "totalsegmentator", str(ts_source[0]), "--out", str(tmp_path / "o"),
                                "--label-map", "lola11"]) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("10: LUL\n11: LLL\n")
    root = tmp_path / "f"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(next((ts_source[0] / "good-a").glob("ct.nii.gz")), root / "images" / "a.nii.gz")
    shutil.copy(next((ts_source[0] / "good-a").glob("ct.nii.gz")), root / "labels" / "a.nii.gz")
    capsys.readouterr()
    assert import_dataset.main(["--layout", "folder", str(root), "--out", str(tmp_path / "o"), "--label-map", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no source value for RUL, RLL, RML" in err


def test_second_run_skips_finished_cases_and_redoes_failed_ones(ts_source, ts_imported, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(ts_imported[0], out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert import_dataset.main(["--layout", "totalsegmentator", str(ts_source[0]), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "7 of 9 cases done by an earlier run: skipped" in err
    after = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert {n for n in before if before[n] != after[n]} == {"overlap.json", "truncated.json"}
    assert _rows(out) .keys() == _rows(ts_imported[0]).keys()


def test_interruption_between_image_and_labels_leaves_no_case_counted_done(ts_source, tmp_path, monkeypatch):
    """Stop the run (as a Ctrl-C would) after the second kept case's image is written: no record,
    so the next run redoes it, and the result equals an uninterrupted import."""
    calls = {"n": 0}
    real_write_mask = import_case_mod.write_mask

    def interrupted(mask, final):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_write_mask(mask, final)

    monkeypatch.setattr(import_case_mod, "write_mask", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        import_dataset.run_import("totalsegmentator", ts_source[0], out, stream=open(os.devnull, "w"))
    assert (out / "images" / "good-b.nii.gz").is_file() and not (out / "records" / "good-b.json").exists()
    monkeypatch.setattr(import_case_mod, "write_mask", real_write_mask)
    summary = import_dataset.run_import("totalsegmentator", ts_source[0], out, stream=open(os.devnull, "w"))
    assert summary.done_before == 2  # cut, good-a
    _check_import(out, ts_source[1], {"truncated": "truncated", "overlap": "overlapping masks"})


def test_resume_after_sigkill(ts_source, tmp_path):
    """Kill the command line with SIGKILL once some cases are done; every record left vouches for
    complete files, and a second run completes the import without redoing them."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "training", "import-dataset", "--layout", "totalsegmentator",
               str(ts_source[0]), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_finished(out)) < 2:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.stem: json.loads(p.read_text()) for p in _finished(out)}
    assert 2 <= len(done) < 9, "the run was not interrupted"
    assert not (out / "cases.csv").exists()
    for record in done.values():
        if record["status"] == "ok":
            sitk.ReadImage(str(out / record["label"]))  # complete files
    result = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{len(done)} of 9 cases done by an earlier run: skipped" in result.stderr
    _check_import(out, ts_source[1], {"truncated": "truncated", "overlap": "overlapping masks"})
    assert not [p for sub in ("images", "labels", "records") for p in (out / sub).iterdir() if p.name.startswith(".")]


def _finished(out: Path) -> list[Path]:
    """Records, not the hidden temporary files they are written as."""
    folder = out / "records"
    return [p for p in folder.glob("*.json") if not p.name.startswith(".")] if folder.is_dir() else []


def test_parallel_workers_give_the_same_import(ts_source, ts_imported, tmp_path):
    out = tmp_path / "out"
    assert import_dataset.main(["--layout", "totalsegmentator", str(ts_source[0]), "--out", str(out), "--workers", "2"]) == 0

    def without_time(rows):
        return {n: {k: v for k, v in r.items() if k != "seconds"} for n, r in rows.items()}

    assert without_time(_rows(out)) == without_time(_rows(ts_imported[0]))
    for name in KEPT:
        assert (out / "labels" / f"{name}.mha").read_bytes() == (ts_imported[0] / "labels" / f"{name}.mha").read_bytes()


@pytest.mark.parametrize("stage1_only_iters", [2, pytest.param(0, marks=pytest.mark.slow)], ids=["stage1", "end-to-end"])
def test_training_runs_on_the_imported_folder(ts_imported, tmp_path, stage1_only_iters):
    """Two steps of the tiny config on DST/cases.csv (stage I only: 8 s; end to end: 30 s, slow)."""
    from training.loop import train as train_mod

    out = ts_imported[0]
    overrides = {
        "data.root": "null", "data.csv": str(out / "cases.csv"), "data.cache_dir": str(tmp_path / "cache"),
        "run.out_dir": str(tmp_path / "run"), "optim.max_iters": 2, "run.checkpoint_every": 2,
        "run.stage1_only_iters": stage1_only_iters,
    }
    args = ["--config", str(REPO / "training" / "configs" / "tiny.yaml"), "--set", *[f"{k}={v}" for k, v in overrides.items()]]
    assert train_mod.main(args) == 0
    with open(tmp_path / "run" / "splits.csv", newline="") as handle:
        splits = {row["name"]: row["split"] for row in csv.DictReader(handle)}
    assert splits == {n: SPLIT_OF[n] for n in KEPT}
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained_on = {r["case"] for r in steps if r.get("kind") == "train"}
    assert trained_on and trained_on <= {n for n in KEPT if SPLIT_OF[n] == "train"}
    assert (tmp_path / "run" / "last.pt").is_file()
    # the documented path on: masks of the test split, scored against the imported references
    from training.evaluation import evaluate as evaluate_mod
    from training.loop import predict as predict_mod

    masks = tmp_path / "pred"
    assert predict_mod.main([str(tmp_path / "run"), "--cases", str(out / "cases.csv"), "--out", str(masks)]) == 0
    assert sorted(p.name for p in masks.iterdir()) == ["good-d_lobes.mha"]  # the one test case (meta.csv)
    assert evaluate_mod.main(["--pred", str(masks), "--ref", str(out / "cases.csv"), "--out", str(tmp_path / "report")]) == 0
    assert "good-d" in (tmp_path / "report" / "cases.csv").read_text()


def _dataset_json(root: Path, labels: dict) -> Path:
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr" / "a.nii.gz").write_bytes(b"")
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    return root


def test_nnunet_label_names_v1_v2_and_refusals(tmp_path):
    from training.data.dataset_layouts import LayoutError, discover

    v1 = {"0": "background", "1": "Left upper lobe", "2": "Left lower lobe", "3": "Right upper lobe",
          "4": "Right middle lobe", "5": "Right lower lobe", "6": "trachea"}
    (case,) = discover("nnunet", _dataset_json(tmp_path / "v1", v1))
    assert case.label_map == {1: 1, 2: 2, 3: 3, 4: 5, 5: 4}  # the lungmask order, read from the names
    assert case.image == (tmp_path / "v1" / "imagesTr" / "a_0000.nii.gz").resolve() and case.split == ""
    lungs = {"background": 0, "left lung": 1, "right lung": 2}
    with pytest.raises(LayoutError, match="left lung.*no source value for LUL, LLL, RUL, RLL, RML"):
        discover("nnunet", _dataset_json(tmp_path / "lungs", lungs))
    region = {"background": 0, "LUL": [1, 2], "LLL": 2, "RUL": 3, "RLL": 4, "RML": 5}
    with pytest.raises(LayoutError, match="region"):
        discover("nnunet", _dataset_json(tmp_path / "region", region))
    twice = {"background": 0, "LUL": 1, "lung_upper_lobe_left": 9, "LLL": 2, "RUL": 3, "RLL": 4, "RML": 5}
    with pytest.raises(LayoutError, match="names LUL twice"):
        discover("nnunet", _dataset_json(tmp_path / "twice", twice))
    # an explicit map wins over the names
    (case,) = discover("nnunet", _dataset_json(tmp_path / "lungs2", lungs), "lola11")
    assert case.label_map[21] == 5


def test_labels_off_the_image_grid_or_not_integers_fail_the_case(tmp_path):
    """A label file on another grid, or holding fractions, is a data error: failed, named, not resampled."""
    from training.data import layout_writers

    image = sitk.GetImageFromArray(np.full((12, 40, 40), -1000, np.int16))
    image.SetSpacing((8.0, 8.0, 10.0))  # a field of view the reader takes for a chest
    labels = np.zeros((12, 40, 40), np.uint8)
    layout_writers.folder_case(tmp_path / "src", "same", image, labels)
    layout_writers.folder_case(tmp_path / "src", "shifted", image, labels)
    shifted = sitk.GetImageFromArray(labels)
    shifted.CopyInformation(image)
    shifted.SetOrigin((0.0, 0.0, 5.0))
    sitk.WriteImage(shifted, str(tmp_path / "src" / "labels" / "shifted.nrrd"))
    fractions = sitk.GetImageFromArray(np.full((12, 40, 40), 0.5, np.float32))
    fractions.CopyInformation(image)
    layout_writers.folder_case(tmp_path / "src", "fractions", image, np.zeros((12, 40, 40), np.uint8))
    sitk.WriteImage(fractions, str(tmp_path / "src" / "labels" / "fractions.nrrd"))
    summary = import_dataset.run_import("folder", tmp_path / "src", tmp_path / "out", stream=open(os.devnull, "w"))
    reasons = {r["name"]: (r["status"], r["reason"]) for r in summary.records}
    assert reasons["shifted"] == ("failed", "shifted.nrrd is not on the image's grid (origin (0.0, 0.0, 5.0) vs (0.0, 0.0, 0.0))")
    assert reasons["fractions"] == ("failed", "fractions.nrrd holds non-integer values: not a label map")
    assert reasons["same"] == ("excluded", "no lobe labelled (not a chest scan?)")


def test_a_resumed_import_compares_label_values_not_map_names(folder_source, ts_source, ts_imported, tmp_path, capsys):
    """The default map and the same map named are one setting; another map redoes every case."""
    out = tmp_path / "ts"
    shutil.copytree(ts_imported[0], out)
    args = ["--layout", "totalsegmentator", str(ts_source[0]), "--out", str(out)]
    assert import_dataset.main([*args, "--label-map", "totalsegmentator"]) == 0
    assert "7 of 9 cases done by an earlier run: skipped" in capsys.readouterr().err
    root = folder_source[0]
    yaml_map = tmp_path / "lola.yaml"
    yaml_map.write_text("10: LUL\n11: LLL\n20: RUL\n21: RML\n22: RLL\n")
    folder_args = ["--layout", "folder", str(root), "--out", str(tmp_path / "f")]
    assert import_dataset.main([*folder_args, "--label-map", "lola11"]) == 0
    capsys.readouterr()
    assert import_dataset.main([*folder_args, "--label-map", str(yaml_map)]) == 0  # the same values
    assert "7 of 8 cases done by an earlier run: skipped" in capsys.readouterr().err
    yaml_map.write_text("10: LLL\n11: LUL\n20: RUL\n21: RML\n22: RLL\n")  # edited: left lobes swapped
    assert import_dataset.main([*folder_args, "--label-map", str(yaml_map)]) == 0
    assert "done by an earlier run" not in capsys.readouterr().err
    rows = _rows(tmp_path / "f")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "f" / rows["good-a"]["label"])))
    expected = folder_source[1]["good-a"].labels.copy()
    expected[folder_source[1]["good-a"].labels == 1], expected[folder_source[1]["good-a"].labels == 2] = 2, 1
    np.testing.assert_array_equal(labels, expected)
