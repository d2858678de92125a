"""The command line end to end, and every bad input of issue 2 with its exact behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.constants import DEFAULT_FISSURES
from algorithm.labels import label_map

from conftest import REPO_ROOT, make_simple_chest


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_end_to_end(tmp_path, chest_ct_path, test_weights):
    """As a user runs it: a subprocess, a file in, the two outputs out."""
    out = tmp_path / "out dir"  # a space in the path
    proc = subprocess.run(
        [sys.executable, "-m", "algorithm", "predict", str(chest_ct_path), "-o", str(out), "--weights", str(test_weights), "--device", "cpu"],
        cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    mask = sitk.ReadImage(str(out / "chest_lobes.mha"))
    image = sitk.ReadImage(str(chest_ct_path))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == image.GetSize() and mask.GetSpacing() == image.GetSpacing()
    assert mask.GetOrigin() == image.GetOrigin() and mask.GetDirection() == image.GetDirection()
    assert mask.GetMetaData("LabelMap").startswith("0=background;1=LUL;2=LLL;3=RUL;4=RLL;5=RML")
    report = json.loads((out / "chest_lobes.json").read_text())
    assert report["label_map"] == label_map()
    counts = np.bincount(sitk.GetArrayFromImage(mask).ravel(), minlength=6)
    voxel_ml = np.prod(image.GetSpacing()) / 1000
    assert report["volumes_ml"]["total"] == pytest.approx(counts[1:].sum() * voxel_ml, rel=1e-6)
    assert report["input_geometry"]["size_xyz"] == list(image.GetSize())
    assert report["weights"]["sha256"] and report["software"]["version"]
    assert report["network_grid"]["precision"] in {"float32", "bfloat16"}
    assert "total" in report["run_time_s"]
    assert report["fissures"]["mode"] == DEFAULT_FISSURES and "fissures" in report["run_time_s"]
    assert "lobe volumes (mL)" in proc.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_folder_of_cts_continues_past_a_bad_case(tmp_path, capsys, chest_ct_path, test_weights):
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "good.mha").write_bytes(chest_ct_path.read_bytes())
    (folder / "broken.mha").write_text("ObjectType = Image\nNDims = 3\n")
    code, out, err = _run(capsys, "predict", folder, "-o", tmp_path / "out", "--weights", test_weights, "--quiet")
    assert code == 1
    assert "broken" in err and "1 of 2 cases done, 1 failed" in err
    assert (tmp_path / "out" / "good_lobes.json").exists()
    assert not (tmp_path / "out" / "broken_lobes.mha").exists()
    # a re-run skips what is done
    code, _, err = _run(capsys, "predict", folder / "good.mha", "-o", tmp_path / "out", "--weights", test_weights, "--quiet")
    assert code == 0 and "skipped" in err


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    chest = make_simple_chest()
    good = _write(chest, tmp_path / "good.mha")
    truncated = tmp_path / "truncated.mha"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"\x00not an image" * 50)
    two_d = _write(sitk.Image(64, 64, sitk.sitkInt16), tmp_path / "slice.mha")
    four_d = _write(sitk.Image([64, 64, 20, 3], sitk.sitkInt16), tmp_path / "four_d.nii.gz")
    vector = _write(sitk.Image([64, 64, 20], sitk.sitkVectorInt16, 3), tmp_path / "vector.mha")
    tiny = _write(make_simple_chest((4, 16, 16), (1.0, 1.0, 1.0)), tmp_path / "tiny.mha")
    raw = sitk.GetArrayFromImage(chest).astype(np.int32) + 1024  # stored values, no rescale
    raw_image = sitk.GetImageFromArray(raw)
    raw_image.CopyInformation(chest)
    not_hu = _write(raw_image, tmp_path / "raw.mha")
    empty_dicom = tmp_path / "empty-dicom"
    empty_dicom.mkdir()
    (empty_dicom / "readme.txt").write_text("no DICOM here")
    return {
        "missing path": (tmp_path / "nope.mha", "input not found"),
        "truncated file": (truncated, "cannot read"),
        "unreadable file": (garbage, "cannot read"),
        "2D image": (two_d, "expected a 3D CT volume"),
        "4D image": (four_d, "expected a 3D CT volume"),
        "vector image": (vector, "scalar CT volume"),
        "too small": (tiny, "too small to hold the lungs"),
        "not HU": (not_hu, "Hounsfield"),
        "empty DICOM folder": (empty_dicom, "no DICOM series"),
    }


BAD_INPUT_NAMES = [
    "missing path", "truncated file", "unreadable file", "2D image", "4D image", "vector image",
    "too small", "not HU", "empty DICOM folder",
]


@pytest.mark.parametrize("case", BAD_INPUT_NAMES)
def test_bad_input_gives_one_clear_line_and_no_output(tmp_path, capsys, test_weights, case):
    path, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    code, _, err = _run(capsys, "predict", path, "-o", out, "--weights", test_weights, "--quiet")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_path(tmp_path, capsys, chest_ct_path, test_weights):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", blocker / "out", "--weights", test_weights, "--quiet")
    assert code == 1 and "cannot create output folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder(tmp_path, capsys, chest_ct_path, test_weights):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", out, "--weights", test_weights, "--quiet")
    assert code == 1 and "not writable" in err


def test_missing_weights_say_how_to_get_them(tmp_path, capsys, chest_ct_path):
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", tmp_path / "o", "--weights", tmp_path / "none.pt")
    assert code == 1 and "no weights at" in err and "--weights" in err


def test_float16_on_cpu_is_a_usage_error(chest_ct_path, test_weights, tmp_path, capsys):
    from algorithm.cli import main

    out = tmp_path / "out"
    code = main(["predict", str(chest_ct_path), "-o", str(out), "--device", "cpu", "--weights", str(test_weights),
                 "--precision", "float16", "--quiet"])
    assert code == 2
    assert "float16 needs CUDA" in capsys.readouterr().err
    assert not list(out.glob("*_lobes*"))


def test_fissures_network_keeps_the_papers_path(tmp_path, capsys, chest_ct_path, test_weights):
    out = tmp_path / "out"
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", out, "--weights", test_weights, "--device", "cpu",
                        "--fissures", "network", "--quiet", "--no-preview")
    assert code == 0, err
    report = json.loads((out / "chest_lobes.json").read_text())
    assert report["fissures"] == {"mode": "network", "fissures": None}
    with pytest.raises(SystemExit):
        main(["predict", str(chest_ct_path), "-o", str(out), "--fissures", "plane"])
