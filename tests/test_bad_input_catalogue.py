"""The bad-input catalogue of docs/robustness.md: each odd scan with its exact behaviour.

Together with the cases of test_cli.py (missing path, truncated .mha, garbage .nii.gz, 2D, 4D,
vector, too small, raw +1024, empty DICOM folder, unwritable output path). Failing inputs must
give exit code 1, exactly one ``error:`` line and no output file (temporary ones included);
tolerated inputs a ``warning:`` line and a correct mask. The network is replaced by a fast,
orientation-aware stand-in (robustness_helpers.fake_predict_network_grid): these tests are about
everything around it; test_determinism.py runs the real one.
"""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import algorithm.segmenter
from algorithm.cli import main
from conftest import REPO_ROOT, SHARED_REAL, make_simple_chest
from robustness_helpers import run_cli as _run, fake_predict_network_grid, listing, write_dicom_series, write_mha_header


def _predict(capsys, weights: Path, source: Path, out: Path) -> tuple[int, str, str]:
    return _run(capsys, "predict", source, "-o", out, "--weights", weights, "--quiet", "--device", "cpu", "--no-preview")


def _lines(err: str, kind: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith(kind)]


def _assert_refused(code: int, err: str, out: Path, message: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert listing(out) == [], listing(out)  # no output, no temporary file


def _image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    return image


def _chest_array() -> np.ndarray:
    return sitk.GetArrayFromImage(make_simple_chest())


def _lung_truth(image: sitk.Image) -> np.ndarray:
    """The phantom's lungs: air below -400 HU not connected to the slice corners."""
    hu = sitk.GetArrayFromImage(image)
    truth = np.zeros(hu.shape, bool)
    for k in range(hu.shape[0]):
        parts, _ = ndimage.label(hu[k] < -400)
        corners = {parts[0, 0], parts[0, -1], parts[-1, 0], parts[-1, -1]} - {0}
        truth[k] = (hu[k] < -400) & ~np.isin(parts, list(corners))
    return truth


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _mask(out: Path, name: str) -> sitk.Image:
    return sitk.ReadImage(str(out / f"{name}_lobes.mha"))


# --- refused inputs -------------------------------------------------------------------------


def _nifti_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "source.nii"
    sitk.WriteImage(make_simple_chest(), str(path))
    return path.read_bytes()


def _nrrd_text_and_data(tmp_path: Path) -> tuple[bytes, bytes]:
    path = tmp_path / "source.nrrd"
    sitk.WriteImage(make_simple_chest(), str(path), useCompression=False)
    raw = path.read_bytes()
    split = raw.index(b"\n\n") + 2
    return raw[:split], raw[split:]


def _refused_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input, text its error line must contain)."""
    chest = make_simple_chest()
    hu = _chest_array()
    nifti = _nifti_bytes(tmp_path)
    header, data = _nrrd_text_and_data(tmp_path)
    cases: dict[str, tuple[Path, str]] = {}

    def put(name: str, payload: bytes, message: str) -> None:
        path = tmp_path / name
        path.write_bytes(payload)
        cases[name] = (path, message)

    put("truncated.nii.gz", gzip.compress(nifti)[: len(gzip.compress(nifti)) // 2], "truncated or corrupt gzip data")
    corrupt = bytearray(nifti)
    corrupt[70:72] = (9999).to_bytes(2, "little")  # no such datatype
    put("corrupt-header.nii.gz", gzip.compress(bytes(corrupt)), "is not recognized as a NIFTI file")
    short = gzip.compress(nifti[: len(nifti) - 5000])  # a whole gzip stream, data cut short
    put("short-data.nii.gz", short, "the file holds 322680 bytes of pixel data, its header announces 327680")
    bad_dims = bytearray(nifti)
    bad_dims[40:42] = (9).to_bytes(2, "little")  # dim[0] = 9: more dimensions than NIfTI has
    put("bad-dims.nii.gz", gzip.compress(bytes(bad_dims)), "cannot read")
    put("truncated-data.nrrd", header + data[: len(data) // 3], "cannot read")
    put("corrupt-header.nrrd", header.replace(b"sizes:", b"sizes: banana"), "cannot read")
    put("not-nrrd.nrrd", b"NRRD0004\n\x00\xff garbage\n\n" + data[:100], "cannot read")
    cases["zero-size.mha"] = (
        write_mha_header(tmp_path / "zero-size.mha", {"DimSize": "0 64 64", "ElementType": "MET_SHORT"}),
        "the image is empty",
    )
    one_slice = sitk.GetImageFromArray(hu[20:21])
    one_slice.SetSpacing(chest.GetSpacing())
    sitk.WriteImage(one_slice, str(tmp_path / "one-slice.mha"))
    cases["one-slice.mha"] = (tmp_path / "one-slice.mha", "too small to hold the lungs")
    nan = hu.astype(np.float32)
    nan[20, 30, 30] = np.nan
    sitk.WriteImage(_image_like(nan, chest), str(tmp_path / "nan.mha"))
    cases["nan.mha"] = (tmp_path / "nan.mha", "NaN or infinite values (1 voxels)")
    inf = hu.astype(np.float32)
    inf[5, 5, 5], inf[6, 6, 6] = np.inf, -np.inf
    sitk.WriteImage(_image_like(inf, chest), str(tmp_path / "inf.mha"))
    cases["inf.mha"] = (tmp_path / "inf.mha", "NaN or infinite values (2 voxels)")
    geometry = {"DimSize": "64 64 40", "ElementType": "MET_SHORT"}
    pixels = hu.astype("<i2").tobytes()
    for name, fields, message in [
        ("zero-spacing.mha", {"ElementSpacing": "0 5.5 6"}, "invalid voxel spacing (0.0, 5.5, 6.0)"),
        ("negative-spacing.mha", {"ElementSpacing": "-5.5 5.5 6"}, "invalid voxel spacing (-5.5, 5.5, 6.0)"),
        ("degenerate-direction.mha", {"TransformMatrix": "1 0 0 1 0 0 0 0 1"}, "invalid direction cosines"),
        ("sheared-direction.mha", {"TransformMatrix": "1 0 0 0.5 0.866 0 0 0 1"}, "invalid direction cosines"),
    ]:
        write_mha_header(tmp_path / name, {"ElementSpacing": "5.5 5.5 6", **geometry, **fields}, pixels)
        cases[name] = (tmp_path / name, message)
    noise = np.random.default_rng(2).integers(-20, 21, hu.shape)
    write_mha_header(tmp_path / "ndims-minus-one.mha", {"NDims": "-1", **geometry}, pixels)  # MetaIO segfaulted
    cases["ndims-minus-one.mha"] = (tmp_path / "ndims-minus-one.mha", "malformed MetaImage header (NDims = -1)")
    raw = (hu.astype(np.int32) + 1024 + noise).clip(0, 4095).astype(np.uint16)
    raw[hu > 0] += 1400  # bone-like values up to the 12-bit range
    raw[:, :, 32:] = (hu[:, :, 32:].astype(np.int32) + 1024 + noise[:, :, 32:]).clip(0, 4095)
    sitk.WriteImage(_image_like(raw, chest), str(tmp_path / "raw-stored.mha"))
    cases["raw-stored.mha"] = (tmp_path / "raw-stored.mha", "raw stored values without the rescale intercept")
    labels = np.zeros(hu.shape, np.uint8)
    labels[hu == -850] = np.random.default_rng(0).integers(1, 6, int((hu == -850).sum()))
    sitk.WriteImage(_image_like(labels, chest), str(tmp_path / "labels.nii.gz"))
    cases["labels.nii.gz"] = (tmp_path / "labels.nii.gz", "looks like a label image (6 distinct values from 0 to 5)")
    sitk.WriteImage(_image_like(_mr_like(hu), chest), str(tmp_path / "mr.nii.gz"))
    cases["mr.nii.gz"] = (tmp_path / "mr.nii.gz", "an MR image")
    sitk.WriteImage(_head_ct(), str(tmp_path / "head.mha"))
    cases["head.mha"] = (tmp_path / "head.mha", "no lungs found")
    sitk.WriteImage(_abdomen_ct(), str(tmp_path / "abdomen.nrrd"))
    cases["abdomen.nrrd"] = (tmp_path / "abdomen.nrrd", "no lungs found")
    return cases


def _mr_like(hu: np.ndarray) -> np.ndarray:
    """T1-like: dark background and lungs, bright tissue; no negative values, no air level."""
    rng = np.random.default_rng(1)
    mr = np.where(hu > -500, 420, 15).astype(np.float32) + rng.normal(0, 8, hu.shape)
    return np.clip(mr, 0, None).astype(np.uint16)


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) < 1


def _head_ct() -> sitk.Image:
    """A head: skull, brain, two small sinuses (about 10 mL of enclosed air)."""
    shape = (40, 64, 64)
    hu = np.full(shape, -1000, np.int16)
    hu[_ellipsoid(shape, (20, 32, 32), (18, 28, 24))] = 1200
    hu[_ellipsoid(shape, (20, 32, 32), (16, 26, 22))] = 35
    hu[_ellipsoid(shape, (14, 10, 26), (3, 2, 3))] = -950
    hu[_ellipsoid(shape, (14, 10, 38), (3, 2, 3))] = -950
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((3.5, 3.5, 5.0))
    return image


def _abdomen_ct() -> sitk.Image:
    """An abdomen: body, liver, spine, some bowel gas, no lungs."""
    shape = (40, 64, 64)
    hu = np.full(shape, -1000, np.int16)
    hu[_ellipsoid(shape, (20, 32, 32), (60, 26, 29))] = 40
    hu[_ellipsoid(shape, (20, 30, 20), (60, 10, 8))] = 60
    hu[_ellipsoid(shape, (20, 50, 32), (60, 4, 4))] = 700
    for centre in ((10, 25, 40), (25, 35, 42), (30, 22, 30)):
        hu[_ellipsoid(shape, centre, (2, 2, 3))] = -980
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((5.5, 5.5, 6.0))
    return image


REFUSED = [
    "truncated.nii.gz", "corrupt-header.nii.gz", "short-data.nii.gz", "bad-dims.nii.gz", "truncated-data.nrrd",
    "corrupt-header.nrrd", "not-nrrd.nrrd", "zero-size.mha", "one-slice.mha", "nan.mha", "inf.mha",
    "zero-spacing.mha", "negative-spacing.mha", "degenerate-direction.mha", "sheared-direction.mha",
    "ndims-minus-one.mha", "raw-stored.mha", "labels.nii.gz", "mr.nii.gz", "head.mha", "abdomen.nrrd",
]


@pytest.mark.parametrize("case", REFUSED)
def test_refused_input(tmp_path, capsys, test_weights, fast_network, case):
    path, message = _refused_files(tmp_path)[case]
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, path, out)
    _assert_refused(code, err, out, message)


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_huge_header_without_data_fails_fast(tmp_path, capsys, test_weights, suffix):
    """A header claiming 100000^3 voxels is refused from the header, before any allocation."""
    path = write_mha_header(
        tmp_path / f"huge{suffix}", {"DimSize": "100000 100000 100000", "ElementType": "MET_SHORT", "ElementSpacing": "1 1 1"}
    )
    out = tmp_path / "out"
    started = time.perf_counter()
    code, _, err = _predict(capsys, test_weights, path, out)
    assert time.perf_counter() - started < 10.0  # checkpoint load included; no 2 PB allocation
    _assert_refused(code, err, out, "the header claims 1e+15 voxels (size (100000, 100000, 100000))")


def test_dicom_with_large_gap_is_refused(tmp_path, capsys, test_weights, fast_network):
    keep = [k for k in range(40) if k not in (17, 18, 19)]  # a gap of four slice spacings
    folder = write_dicom_series(make_simple_chest(), tmp_path / "gap", keep=keep)
    code, _, err = _predict(capsys, test_weights, folder, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "slices are missing: a gap of 24.0 mm between slices 17 and 18")


def test_dicom_with_duplicate_positions_is_refused(tmp_path, capsys, test_weights, fast_network):
    chest = make_simple_chest()
    positions = [chest.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(40)]
    positions[21] = positions[20]
    folder = write_dicom_series(chest, tmp_path / "dup", positions=positions)
    code, _, err = _predict(capsys, test_weights, folder, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "1 DICOM slices share a position with another")


# --- output folder faults -------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk(tmp_path, capsys, test_weights, fast_network, tiny_tmpfs):
    chest = make_simple_chest((40, 128, 128), (2.75, 2.75, 6.0))
    noisy = sitk.GetArrayFromImage(chest) + np.random.default_rng(0).integers(0, 30, (40, 128, 128)).astype(np.int16)
    source = tmp_path / "noisy.mha"
    sitk.WriteImage(_image_like(noisy, chest), str(source))
    stats = os.statvfs(tiny_tmpfs)
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 4096))  # 1 page left
    code, _, err = _predict(capsys, test_weights, source, tiny_tmpfs)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: noisy: cannot write") and "No space left on device" in lines[0]
    assert listing(tiny_tmpfs) == ["filler"]


def test_disk_full_while_writing_the_report(tmp_path, capsys, test_weights, fast_network, chest_ct_path, monkeypatch):
    """ENOSPC from the JSON write: the mask already written stays, no report, no temporary file;
    a re-run (outputs incomplete) redoes the case."""
    real_dump = json.dump

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", full)
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, chest_ct_path, out)
    assert code == 1 and _lines(err, "error:") == [f"error: chest: cannot write {out / 'chest_lobes.json'}: No space left on device"]
    assert listing(out) == ["chest_lobes.mha"]
    monkeypatch.setattr(json, "dump", real_dump)
    code, _, err = _predict(capsys, test_weights, chest_ct_path, out)
    assert code == 0 and listing(out) == ["chest_lobes.json", "chest_lobes.mha"]


def test_read_only_file_system(tmp_path, capsys, test_weights, fast_network, chest_ct_path, monkeypatch):
    """EROFS on the rename into place: one error line, the temporary file removed."""

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", read_only)
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, chest_ct_path, out)
    _assert_refused(code, err, out, "Read-only file system")


def test_read_only_output_folder_as_unprivileged_user(test_weights, chest_ct_path):
    """Run as nobody (setpriv) into a folder nobody cannot write: one error line, nothing written."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop to an unprivileged uid")
    public = Path(tempfile.mkdtemp(prefix="ctsunet-ro-"))  # pytest's tmp_path is private to root
    try:
        public.chmod(0o755)
        weights, source = shutil.copy(test_weights, public), shutil.copy(chest_ct_path, public)
        out = public / "ro"
        out.mkdir(mode=0o555)
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "algorithm",
             "predict", source, "-o", str(out), "--weights", weights, "--device", "cpu", "--quiet"],
            cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(public)},
        )
        if "Permission denied" in proc.stderr and "algorithm" not in proc.stderr:
            pytest.skip("the repository or its environment is not readable by an unprivileged user")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0] == f"error: output folder {out} is not writable"
        assert listing(out) == []
    finally:
        shutil.rmtree(public, ignore_errors=True)


# --- tolerated inputs: a warning and a correct result ----------------------------------------


def test_one_lung_partial_field_of_view(tmp_path, capsys, test_weights, fast_network):
    """The right half of a chest, cut through the left lung: warnings, and the lungs it holds."""
    chest = make_simple_chest()
    half = chest[:40, :, :]  # x < 40 of 64: the right lung whole, the left one cut
    path = tmp_path / "half.mha"
    sitk.WriteImage(half, str(path))
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, path, out)
    assert code == 0, err
    # the whole right lung is enclosed by the body: the lung-presence check passes without a word
    assert _lines(err, "warning:") == [
        "warning: half: the lungs reach the edge of the field of view (last slice along x): "
        "part of them may lie outside the scan, so lobe volumes may be partial"
    ]
    assert not _lines(err, "error:")
    mask = _mask(out, "half")
    assert mask.GetSize() == half.GetSize() and mask.GetOrigin() == half.GetOrigin()
    lungs = sitk.GetArrayFromImage(mask) > 0
    assert _dice(lungs, _lung_truth(half)) > 0.9
    report = json.loads((out / "half_lobes.json").read_text())
    assert len(report["warnings"]) == 1


def _tilted_series(chest: sitk.Image, degrees: float) -> tuple[list, list[np.ndarray]]:
    """Slices of ``chest`` as a scanner tilted about x acquires them: each one shifted along y."""
    spacing_x, spacing_y, spacing_z = chest.GetSpacing()
    shift_per_slice = spacing_z * math.tan(math.radians(degrees))
    hu = sitk.GetArrayFromImage(chest).astype(np.float32)
    positions, planes = [], []
    for k in range(chest.GetDepth()):
        shift_mm = k * shift_per_slice
        positions.append((0.0, shift_mm, k * spacing_z))
        # pixel (i, j) of slice k lies at y = j * spacing_y + shift_mm
        planes.append(ndimage.shift(hu[k], (-shift_mm / spacing_y, 0), order=1, mode="nearest"))
    return positions, planes


def test_gantry_tilted_dicom(tmp_path, capsys, test_weights, fast_network):
    chest = make_simple_chest()
    positions, planes = _tilted_series(chest, 12.0)
    acquired = _image_like(np.rint(np.stack(planes)).astype(np.int16), chest)
    folder = write_dicom_series(acquired, tmp_path / "tilted", positions=positions)
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, folder, out)
    assert code == 0, err
    assert _lines(err, "warning:") == ["warning: tilted: gantry tilt of 12.0 degrees: slices resampled onto an orthogonal grid"]
    mask = _mask(out, "tilted")
    assert mask.GetSize() == chest.GetSize() and np.allclose(mask.GetSpacing(), chest.GetSpacing())
    assert np.allclose(mask.GetDirection(), np.eye(3).ravel())
    lungs = sitk.GetArrayFromImage(mask) > 0
    assert _dice(lungs, _lung_truth(chest)) > 0.9  # the lungs back where they are in space


def test_dicom_with_a_missing_slice(tmp_path, capsys, test_weights, fast_network):
    chest = make_simple_chest()
    folder = write_dicom_series(chest, tmp_path / "missing", keep=[k for k in range(40) if k != 17])
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, folder, out)
    assert code == 0, err
    assert _lines(err, "warning:") == [
        "warning: missing: uneven slice spacing (6.00 to 12.00 mm, missing slices?): resampled to 6.00 mm by linear interpolation"
    ]
    mask = _mask(out, "missing")
    assert mask.GetSize() == chest.GetSize() and np.allclose(mask.GetSpacing(), chest.GetSpacing())
    assert _dice(sitk.GetArrayFromImage(mask) > 0, _lung_truth(chest)) > 0.95


def test_dicom_folder_with_several_series_and_a_localizer(tmp_path, capsys, test_weights, fast_network):
    chest = make_simple_chest()
    folder = tmp_path / "study"
    write_dicom_series(chest, folder, series_uid="1.2.3.4.2", series_number=2, description="CHEST 6mm")
    localizer = make_simple_chest((1, 64, 64))
    write_dicom_series(localizer, folder, series_uid="1.2.3.4.1", series_number=1, description="LOCALIZER", prefix="LOC")
    thick = make_simple_chest((8, 64, 64), (5.5, 5.5, 30.0))
    write_dicom_series(thick, folder, series_uid="1.2.3.4.3", series_number=3, description="THICK", prefix="THK")
    out = tmp_path / "out"
    code, _, err = _predict(capsys, test_weights, folder, out)
    assert code == 0, err
    assert _lines(err, "warning:")[0] == (
        f'warning: study: 3 DICOM series in {folder}; took the largest, series 2 "CHEST 6mm" (1.2.3.4.2) '
        '(40 files); ignored 1 "LOCALIZER" (1.2.3.4.1) (1 files), 3 "THICK" (1.2.3.4.3) (8 files)'
    )
    report = json.loads((out / "study_lobes.json").read_text())
    assert report["input"]["read"] == 'DICOM series 2 "CHEST 6mm" (1.2.3.4.2) (40 files)'
    assert _mask(out, "study").GetSize() == chest.GetSize()


def test_file_name_with_spaces_and_non_ascii(tmp_path, capsys, test_weights, fast_network):
    folder = tmp_path / "Patiënt ünïcode 肺"
    folder.mkdir()
    path = folder / "thorax scan – ø 1.nii.gz"
    sitk.WriteImage(make_simple_chest(), str(path))
    out = tmp_path / "résultats dir"
    code, stdout, err = _predict(capsys, test_weights, path, out)
    assert code == 0 and not _lines(err, "error:"), err
    assert listing(out) == ["thorax scan – ø 1_lobes.json", "thorax scan – ø 1_lobes.mha"]
    assert f"mask: {out / 'thorax scan – ø 1_lobes.mha'}" in stdout
    report = json.loads((out / "thorax scan – ø 1_lobes.json").read_text(encoding="utf-8"))
    assert report["case"] == "thorax scan – ø 1" and report["input"]["path"] == str(path)


def test_symlinks_to_a_file_and_to_a_dicom_folder(tmp_path, capsys, test_weights, fast_network):
    chest = make_simple_chest()
    target = tmp_path / "store" / "real-name.mha"
    target.parent.mkdir()
    sitk.WriteImage(chest, str(target))
    series = write_dicom_series(chest, tmp_path / "store" / "series-1")
    links = tmp_path / "links"
    links.mkdir()
    (links / "linked.mha").symlink_to(target)
    (links / "linked-dicom").symlink_to(series, target_is_directory=True)
    out = tmp_path / "out"
    assert _predict(capsys, test_weights, links / "linked.mha", out)[0] == 0
    assert _predict(capsys, test_weights, links / "linked-dicom", out)[0] == 0
    assert listing(out) == ["linked-dicom_lobes.json", "linked-dicom_lobes.mha", "linked_lobes.json", "linked_lobes.mha"]
    a, b = (sitk.GetArrayFromImage(_mask(out, n)) for n in ("linked", "linked-dicom"))
    assert np.array_equal(a, b)


def test_dangling_symlink(tmp_path, capsys, test_weights, fast_network):
    link = tmp_path / "gone.mha"
    link.symlink_to(tmp_path / "deleted.mha")
    code, _, err = _predict(capsys, test_weights, link, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", f"input not found: {link}")


@pytest.mark.real_data
@pytest.mark.parametrize(
    "name, expected_warning",
    [
        ("copdgene-10002K-ct64.nrrd", None),
        ("copdgene-10002K-ct64-dicom", None),
        ("lung-pet-ct-dx-A0001-dicom", None),
        ("lung-pet-ct-dx-A0002-apex-cut-8mm.mha", None),
        ("totalseg-heart-crop-partial-lungs.nii.gz", None),
    ],
)
def test_real_scans_pass_reading_and_validation(name, expected_warning):
    """Real scans: read, and every check before the network lets them through."""
    path = SHARED_REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    from algorithm.io.reading import read_image
    from algorithm.io.validation import check_geometry, check_intensities, check_lungs_present

    loaded = read_image(path)
    check_geometry(loaded.image)
    check_intensities(sitk.GetArrayViewFromImage(loaded.image))
    warnings = loaded.warnings + check_lungs_present(loaded.image)
    assert all(isinstance(w, str) for w in warnings)
    assert loaded.image.GetDimension() == 3
