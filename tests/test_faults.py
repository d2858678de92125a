"""Faults: SIGKILL while writing, out of memory in stage II, batch runs with a bad case, and the
security of output names built from untrusted file names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import algorithm.segmenter
from algorithm.cli import main
from algorithm.inference import TilingSettings, _shrink_or_fall_back, _Stage2State, predict_network_grid
from algorithm.network.cascade import Stage1Output
from algorithm.io.writing import is_temp_name
from conftest import REPO_ROOT, make_simple_chest
from robustness_helpers import run_cli as _run, fake_predict_network_grid, listing

# The CLI with the network replaced by the fast stand-in, as a subprocess that can be killed.
FAST_CLI = (
    "import sys; sys.path.insert(0, 'tests'); import algorithm.segmenter as p, robustness_helpers as h; "
    "p.predict_network_grid = h.fake_predict_network_grid; from algorithm.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def _case_folder(folder: Path, count: int, size_zyx=(40, 64, 64)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    chest = make_simple_chest(size_zyx, (5.5 * 64 / size_zyx[2], 5.5 * 64 / size_zyx[1], 6.0))
    hu = sitk.GetArrayFromImage(chest)
    for i in range(count):
        noisy = sitk.GetImageFromArray(hu + rng.integers(0, 20, hu.shape).astype(np.int16))
        noisy.CopyInformation(chest)
        sitk.WriteImage(noisy, str(folder / f"case{i:02d}.mha"))
    return folder


def _assert_outputs_whole(out: Path) -> None:
    """Every file under a final name is complete; only temporary names may be partial."""
    for path in out.iterdir():
        if is_temp_name(path.name):
            continue
        assert not path.name.startswith("."), path
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            if path.name.endswith("_lobes.json"):  # the report comes last: its mask is whole
                assert (out / path.name.replace(".json", ".mha")).exists()
            else:
                assert path.name == "summary.json" and data["cases"]
        elif path.suffix == ".png":  # the preview: whole up to its IEND chunk
            data = path.read_bytes()
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), path
        else:
            mask = sitk.ReadImage(str(path))
            assert mask.GetSize() == (64, 64, 40)


# --- SIGKILL --------------------------------------------------------------------------------


def _kill_and_check(command: list[str], out: Path, delays_s: list[float], env: dict) -> None:
    for delay in delays_s:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            _assert_outputs_whole(out)
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert done.returncode == 0, done.stderr
    assert not [name for name in listing(out) if name.startswith(".")]  # stale temporary files removed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["failed"] == 0
    _assert_outputs_whole(out)


def test_sigkill_at_random_moments_leaves_no_partial_output(tmp_path, test_weights):
    cases = _case_folder(tmp_path / "cases", 6)
    out = tmp_path / "out"
    command = [sys.executable, "-c", FAST_CLI, "predict", str(cases), "-o", str(out),
               "--weights", str(test_weights), "--device", "cpu", "--quiet"]
    delays = sorted(np.random.default_rng(int(time.time())).uniform(2.0, 6.0, 4))
    _kill_and_check(command, out, list(delays), {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert len(listing(out)) == 1 + 6 * 3  # summary; mask, report and preview per case


def test_stale_temp_files_are_removed_at_start(tmp_path, capsys, test_weights, fast_network, chest_ct_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [".chest_lobes.mha.ab12cd_9.mha", ".chest_lobes.json.zz99yy88.json", ".summary.json.q1w2e3r4.json"]
    for name in stale:
        (out / name).write_bytes(b"partial")
    kept = [".hidden-user-file", ".x.abcdefgh.json"]  # not our pattern: never touched
    for name in kept:
        (out / name).write_bytes(b"mine")
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", out, "--weights", test_weights, "--quiet", "--no-preview")
    assert code == 0, err
    assert listing(out) == sorted(kept + ["chest_lobes.json", "chest_lobes.mha"])


@pytest.mark.slow
def test_sigkill_of_the_real_command(tmp_path, test_weights):
    """`python -m algorithm predict` itself, with the real network, killed at several moments."""
    cases = _case_folder(tmp_path / "cases", 3)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "algorithm", "predict", str(cases), "-o", str(out),
               "--weights", str(test_weights), "--device", "cpu", "--quiet"]
    _kill_and_check(command, out, [1.0, 4.0, 8.0, 12.0, 20.0, 30.0], {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


# --- out of memory --------------------------------------------------------------------------


class _TileModel(torch.nn.Module):
    """A stand-in for CTSU-Net's stage-II interface; raises OOM as told; logits from positions."""

    def __init__(self, fail_when) -> None:
        super().__init__()
        self.fail_when, self.calls = fail_when, []

    def forward_stage1(self, scan):
        shape = tuple(scan.shape[2:])
        half = tuple((s + 1) // 2 for s in shape)
        logits = torch.zeros((1, 6) + half)
        logits[:, 1] = 1.0
        return Stage1Output(logits, torch.zeros((1, 1) + half), shape)

    def stage2_inputs(self, scan, stage1, in_starts, size_in):
        return torch.zeros((len(in_starts), 1, 1, 1, 1))

    def forward_stage2(self, inputs, in_starts, full_shape):
        self.calls.append(len(in_starts))
        if self.fail_when(len(in_starts), len(self.calls)):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        out = 12
        logits = torch.zeros((len(in_starts), 6, out, out, out))
        for i, start in enumerate(in_starts):
            logits[i, 1 + int(start.sum()) % 5] = 1.0
        return logits, None


def _predict_with(model, batch_size: int):
    scan = np.zeros((24, 24, 24), np.float32)
    return predict_network_grid(model, scan, torch.device("cpu"), TilingSettings(tile_out=12, batch_size=batch_size, bbox_margin_vox=0))


def test_out_of_memory_halves_the_tile_batch_down_to_one():
    reference = _predict_with(_TileModel(lambda n, call: False), 1)
    model = _TileModel(lambda n, call: n > 1)
    result = _predict_with(model, 8)
    assert np.array_equal(result.labels, reference.labels)
    assert model.calls[:4] == [8, 4, 2, 1] and set(model.calls[4:]) == {1}
    assert result.warnings == [
        "out of memory on cpu with 8 tiles a batch: retried with 4",
        "out of memory on cpu with 4 tiles a batch: retried with 2",
        "out of memory on cpu with 2 tiles a batch: retried with 1",
    ]


def test_out_of_memory_with_one_tile_on_the_cpu_is_an_error():
    from algorithm.errors import ResourceError

    with pytest.raises(ResourceError, match="out of memory on the CPU with one stage-II tile"):
        _predict_with(_TileModel(lambda n, call: True), 2)


def test_out_of_memory_in_stage_one_is_a_resource_error():
    """Stage I sees the whole scan: there is no smaller batch, so it says what to do instead."""
    from algorithm.errors import ResourceError

    class Stage1Fails(_TileModel):
        def forward_stage1(self, scan):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(ResourceError, match="out of memory on cpu in stage I"):
        _predict_with(Stage1Fails(lambda n, call: False), 1)


def test_out_of_memory_on_a_gpu_with_one_tile_moves_to_the_cpu():
    """The fallback step itself (no GPU needed): state moves to the CPU, and says so."""
    model = _TileModel(lambda n, call: False)
    stage1 = model.forward_stage1(torch.zeros((1, 1, 8, 8, 8)))
    state = _Stage2State(model, torch.zeros((1, 1, 8, 8, 8)), stage1, torch.device("cuda"), 1)
    message = _shrink_or_fall_back(state, 1)
    assert message == "out of memory on cuda with one tile a batch: stage II continued on the CPU (slower)"
    assert state.device == torch.device("cpu") and state.scan.device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_out_of_memory_fallback_on_a_real_gpu():
    model = _TileModel(lambda n, call: call <= 3).cuda()
    scan = np.zeros((24, 24, 24), np.float32)
    result = predict_network_grid(model, scan, torch.device("cuda"), TilingSettings(tile_out=12, batch_size=2, bbox_margin_vox=0))
    assert result.warnings[-1].endswith("stage II continued on the CPU (slower)")
    assert (result.labels > 0).all()


# --- batch runs -----------------------------------------------------------------------------


def test_batch_summary_statuses_exit_code_and_rerun(tmp_path, capsys, test_weights, fast_network):
    cases = _case_folder(tmp_path / "cases", 2)
    (cases / "broken.nii.gz").write_bytes(b"not a nifti")
    sitk.WriteImage(sitk.ReadImage(str(cases / "case00.mha")), str(cases / "case00.nrrd"))  # same case name
    out = tmp_path / "out"
    code, _, err = _run(capsys, "predict", cases, "-o", out, "--weights", test_weights, "--quiet", "--no-preview")
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    statuses = {(c["input"].rsplit("/", 1)[-1], c["status"]) for c in summary["cases"]}
    assert statuses == {("broken.nii.gz", "failed"), ("case00.mha", "done"), ("case00.nrrd", "failed"), ("case01.mha", "done")}
    duplicate = [c for c in summary["cases"] if c["input"].endswith("case00.nrrd")][0]
    assert duplicate["message"] == "case name 'case00' is already used by case00.mha: rename one"
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 2}
    assert "2 of 4 cases done, 2 failed" in err
    (cases / "broken.nii.gz").unlink()
    (cases / "case00.nrrd").unlink()
    code, _, err = _run(capsys, "predict", cases, "-o", out, "--weights", test_weights, "--quiet", "--no-preview")
    assert code == 0 and json.loads((out / "summary.json").read_text())["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    code, _, _ = _run(capsys, "predict", cases, "-o", out, "--weights", test_weights, "--quiet", "--no-preview", "--overwrite")
    assert code == 0 and json.loads((out / "summary.json").read_text())["counts"]["done"] == 2


# --- security: output names from untrusted file names ---------------------------------------


def test_file_names_cannot_move_outputs_out_of_outdir(tmp_path, capsys, test_weights, fast_network):
    cases = tmp_path / "in"
    cases.mkdir()
    source = make_simple_chest()
    for name in ("..mha", "...nii.gz", "..evil.mha", ". .nrrd"):
        sitk.WriteImage(source, str(cases / name))
    out = tmp_path / "deep" / "out"
    before = set(listing(tmp_path))
    code, _, err = _run(capsys, "predict", cases, "-o", out, "--weights", test_weights, "--quiet", "--no-preview")
    assert code == 1  # two of the names reduce to the same safe name
    written = set(listing(tmp_path)) - before
    assert all(name == "deep" or name.startswith("deep/out") for name in written), written
    assert not [name for name in listing(out) if name.startswith(".")]
    names = [c["case"] for c in json.loads((out / "summary.json").read_text())["cases"]]
    assert all("/" not in n and not n.startswith(".") for n in names), names


def test_dicom_folder_named_dot_dot(tmp_path, capsys, test_weights, fast_network):
    """INPUT given as 'x/..': the case is named after the folder it means, inside OUTDIR."""
    from robustness_helpers import write_dicom_series

    series = write_dicom_series(make_simple_chest(), tmp_path / "series")
    (series / "sub").mkdir()
    out = tmp_path / "out"
    code, _, err = _run(capsys, "predict", series / "sub" / "..", "-o", out, "--weights", test_weights, "--quiet", "--no-preview")
    assert code == 0, err
    assert listing(out) == ["series_lobes.json", "series_lobes.mha"]


def test_planted_symlink_at_an_output_name_is_replaced_not_followed(tmp_path, capsys, test_weights, fast_network, chest_ct_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "chest_lobes.mha").symlink_to(victim)
    code, _, err = _run(capsys, "predict", chest_ct_path, "-o", out, "--weights", test_weights, "--quiet", "--no-preview", "--overwrite")
    assert code == 0, err
    assert victim.read_text() == "precious"
    assert not (out / "chest_lobes.mha").is_symlink()


def test_nothing_written_outside_outdir_and_a_private_temp(tmp_path, test_weights, chest_ct_path):
    """The real command with HOME, TMPDIR and the working folder fresh: only OUTDIR changes."""
    home, tmp, work, inputs = (tmp_path / n for n in ("home", "tmp", "work", "inputs"))
    for folder in (home, tmp, work, inputs):
        folder.mkdir()
    source = inputs / "chest.mha"
    source.write_bytes(chest_ct_path.read_bytes())
    out = tmp_path / "out"
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(REPO_ROOT)}
    before = set(listing(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", FAST_CLI.replace("'tests'", repr(str(REPO_ROOT / "tests"))), "predict", str(source),
         "-o", str(out), "--weights", str(test_weights), "--device", "cpu", "--quiet", "--no-preview"],
        cwd=work, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    changed = set(listing(tmp_path)) - before
    assert changed == {"out", "out/chest_lobes.json", "out/chest_lobes.mha"}, changed
    assert source.read_bytes() == chest_ct_path.read_bytes()
