"""Training end to end on tiny toy volumes: smoke, exact resume after SIGKILL, 2-rank DDP, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from conftest import make_simple_chest

from algorithm.network.checkpoint import load_checkpoint
from algorithm.segmenter import LobeSegmenter
from training.loop import export as export_mod
from training.loop import predict as predict_mod
from training.loop import train as train_mod
from training.config import load_config
from training.data.toy import write_toy_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), range(6))


def _overrides(toy_root: Path, out: Path, **extra) -> list[str]:
    values = {
        "data.root": str(toy_root),
        "data.cache_dir": str(toy_root.parent / "cache"),
        "run.out_dir": str(out),
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def _records(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_smoke_loss_falls_then_cascade_validates_and_exports(toy_root, tmp_path):
    run = tmp_path / "run"
    args = ["--config", str(TINY), "--set", *_overrides(
        toy_root, run, **{"optim.max_iters": 32, "run.stage1_only_iters": 30, "optim.lr": 0.05,
                          "run.val_every": 32, "run.val_tile_out": 36, "run.checkpoint_every": 16})]
    assert train_mod.main(args) == 0
    train = _records(run)
    assert len(train) == 32
    first = sum(r["loss"] for r in train[:8]) / 8
    last = sum(r["loss"] for r in train[22:30]) / 8
    assert last < first - 0.05, (first, last)
    joint = train[30:]
    assert all("stage2_lobe" in r and "ohem_k" in r for r in joint)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in joint)
    val = _records(run, "val")
    assert val and 0.0 <= val[-1]["mean_iou"] <= 1.0 and "stage1_mean_iou" in val[-1]
    assert (run / "curves.png").is_file() and (run / "best.pt").is_file() and (run / "splits.csv").is_file()
    shipped = tmp_path / "ctsunet.pt"
    assert export_mod.main([str(run), "--out", str(shipped)]) == 0
    checkpoint = load_checkpoint(shipped)
    assert checkpoint.settings.inplane_size == 32 and checkpoint.settings.train_patch_in == 92
    assert checkpoint.meta["training"]["step"] == 32
    _check_training_predict_matches_pipeline(run, tmp_path)


def _check_training_predict_matches_pipeline(run: Path, tmp_path: Path) -> None:
    """``training predict`` (used for the baseline tables) = the shipped pipeline on the same weights."""
    full_precision = tmp_path / "fp32.pt"
    assert export_mod.main([str(run / "last.pt"), "--out", str(full_precision), "--fp32"]) == 0
    image = make_simple_chest()
    shipped = LobeSegmenter(full_precision, "cpu")(image).mask
    model, config, step = predict_mod.load_training_model(run / "last.pt")
    ours = predict_mod.predict_case(model, config, image)
    assert step == 32 and ours.GetSize() == image.GetSize() and ours.GetSpacing() == image.GetSpacing()
    assert (sitk.GetArrayViewFromImage(ours) == sitk.GetArrayViewFromImage(shipped)).all()


def _train_cmd(toy_root: Path, run: Path, resume: bool, **extra) -> list[str]:
    cmd = [sys.executable, "-m", "training", "train", "--config", str(TINY)]
    cmd += ["--resume"] if resume else []
    return cmd + ["--set", *_overrides(toy_root, run, **extra)]


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"])
    except Exception:  # not there yet
        return -1


def test_resume_after_sigkill_gives_identical_weights(toy_root, tmp_path):
    settings = {"optim.max_iters": 7, "run.stage1_only_iters": 6, "run.checkpoint_every": 2, "run.val_every": 0}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(toy_root, straight, False, **settings), check=True, env=_env(), cwd=REPO, capture_output=True)

    proc = subprocess.Popen(_train_cmd(toy_root, killed, True, **settings), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _checkpoint_step(killed / "last.pt") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = _checkpoint_step(killed / "last.pt")
    assert 2 <= step_at_kill < 7, "the run must be killed part-way"
    subprocess.run(_train_cmd(toy_root, killed, True, **settings), check=True, env=_env(), cwd=REPO, capture_output=True)

    a = torch.load(straight / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(killed / "last.pt", map_location="cpu", weights_only=False)
    assert a["step"] == b["step"] == 7
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    losses_a = [r["loss"] for r in _records(straight)]
    losses_b = [r["loss"] for r in _records(killed)]
    assert losses_a == losses_b  # metrics past the checkpoint were truncated, not duplicated


def test_time_limit_stops_cleanly_with_a_validated_checkpoint(toy_root, tmp_path):
    run = tmp_path / "window"
    settings = {"optim.max_iters": 50, "run.stage1_only_iters": 0, "run.checkpoint_every": 1000,
                "run.val_every": 1000, "run.val_tile_out": 36, "run.time_limit_min": 1e-4}
    assert train_mod.main(["--config", str(TINY), "--set", *_overrides(toy_root, run, **settings)]) == 0
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == 1  # 6 ms of budget: the first step overruns it, the run stops there
    validations = _records(run, "val")
    assert [r["step"] for r in validations] == [1]  # validated on the way out although val_every is 1000
    assert (run / "best.pt").is_file()
    with pytest.raises(ValueError):
        load_config(TINY, ["data.root=x", "run.time_limit_min=0"])


def test_two_process_gloo_ddp_keeps_ranks_identical(toy_root, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "training",
           "train", "--config", str(TINY), "--set",
           *_overrides(toy_root, run, **{"optim.max_iters": 3, "run.stage1_only_iters": 2, "run.val_every": 0,
                                          "run.checkpoint_every": 3, "run.num_threads": 1})]
    result = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["step"] == 3 and len(ranks["digests"]) == 2
    assert ranks["digests"][0] == ranks["digests"][1]
    assert "WARNING" not in result.stderr


def test_config_switches_build_the_ablations(tmp_path):
    config = load_config(TINY, ["data.root=x", "model.nonlocal_mode=appearance"])
    model = train_mod.build_model(config)
    assert model.config.nonlocal_mode == "appearance"
    assert not train_mod.build_model(load_config(TINY, ["data.root=x", "model.nonlocal_mode=none"])).stage1.nonlocal_block
    unet = train_mod.build_model(load_config(TINY, ["data.root=x", "model.kind=unet3d"]))
    assert type(unet).__name__ == "UNet3D"
    with pytest.raises(ValueError):
        load_config(TINY, ["data.root=x", "optim.no_such_key=1"])
    with pytest.raises(ValueError):
        load_config(TINY, ["data.root=x", "patch_in=96"])  # does not pool evenly


def test_home_relative_paths_in_a_config_are_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(TINY, ["data.csv=~/data/cases.csv", "run.out_dir=~/runs/v2", "data.cache_dir=~/cache", "init=~/w.pt"])
    assert config.data.csv == str(tmp_path / "data" / "cases.csv")
    assert config.run.out_dir == str(tmp_path / "runs" / "v2")
    assert config.data.cache_dir == str(tmp_path / "cache")
    assert config.init == str(tmp_path / "w.pt")
    assert load_config(TINY, ["data.root=rel/x"]).data.root == "rel/x"  # relative paths stay as written


def test_lr_schedules():
    config = load_config(TINY, ["data.root=x", "optim.schedule=poly", "optim.max_iters=100", "optim.lr=0.1"])
    assert train_mod.lr_at(0, config) == pytest.approx(0.1)
    assert train_mod.lr_at(100, config) == pytest.approx(0.0)
    two_phase = load_config(TINY, ["data.root=x", "optim.max_iters=100", "optim.lr=0.1", "optim.schedule=poly",
                                   "run.stage1_only_iters=80", "optim.warmup_iters=5"])
    assert train_mod.lr_at(0, two_phase) == pytest.approx(0.02)
    assert train_mod.lr_at(80, two_phase) == pytest.approx(0.02)  # the end-to-end phase warms up again
    assert train_mod.lr_at(85, two_phase) == pytest.approx(0.1 * (1 - 5 / 20) ** 0.9)


@pytest.mark.slow
def test_unet3d_baseline_trains_a_step(toy_root, tmp_path):
    run = tmp_path / "unet"
    args = ["--config", str(TINY), "--set", *_overrides(
        toy_root, run, **{"model.kind": "unet3d", "optim.max_iters": 2, "run.val_every": 2, "run.val_tile_out": 36})]
    assert train_mod.main(args) == 0
    assert len(_records(run)) == 2 and _records(run, "val")
    images, out = tmp_path / "images", tmp_path / "pred"
    images.mkdir()
    sitk.WriteImage(make_simple_chest(), str(images / "chest.mha"))
    assert predict_mod.main([str(run), "--images", str(images), "--out", str(out)]) == 0
    mask = sitk.ReadImage(str(out / "chest_lobes.mha"))
    assert mask.GetSize() == (64, 64, 40) and sitk.GetArrayViewFromImage(mask).max() <= 5


@pytest.mark.slow
def test_finetune_from_checkpoint_with_topk_ce(toy_root, tmp_path):
    base = tmp_path / "base"
    assert train_mod.main(["--config", str(TINY), "--set", *_overrides(toy_root, base, **{"optim.max_iters": 2, "run.stage1_only_iters": 1})]) == 0
    tuned = tmp_path / "tuned"
    args = ["--config", str(TINY), "--init", str(base / "last.pt"), "--set",
            *_overrides(toy_root, tuned, **{"optim.max_iters": 2, "run.stage1_only_iters": 1, "loss.topk_ce_weight": 1.0})]
    assert train_mod.main(args) == 0
    records = _records(tuned)
    assert "stage1_topk_ce" in records[0] and "stage2_topk_ce" in records[1]
