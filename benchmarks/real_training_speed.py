"""From a data set on disk to training steps: import speed and time per training step.

    python benchmarks/real_training_speed.py --out DIR [--cases 3] [--steps 3] [--configs real,real_finetune]

1. Writes ``--cases`` phantoms of 512 x 512 x 300 voxels (0.7 x 0.7 x 1.0 mm) in the
   TotalSegmentator layout (``ct.nii.gz`` plus one mask per lobe and a liver mask) and times
   ``import-dataset`` on them with one and with two workers.
2. Trains ``--steps`` + 1 steps of each config on the imported cases (``training train``, CPU,
   ``run.num_threads`` 2, the first step is warm-up and not counted) and reads the seconds per
   step from ``metrics.jsonl``.
3. Counts the floating-point operations of one end-to-end step (forward + backward, torch's
   FlopCounterMode: convolutions and matrix products), times the work that stays on the CPU
   (one training sample: load, augment, borders; the OHEM window selection) and turns them into
   a GPU estimate: max(FLOPs / (peak x efficiency) + OHEM, sample / loader workers). An estimate,
   not a measurement: 3D U-Nets with 16-64 channels reach a small fraction of a GPU's
   tensor-core peak; the range printed assumes 15-35 %.
Writes ``DIR/results.json`` and prints a table. Generated data stays under ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from algorithm.labels import LOBES  # noqa: E402
from training.data import layout_writers  # noqa: E402
from training.phantoms import PhantomOptions, generate_case  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Dense bf16 tensor-core peaks (TFLOP/s, vendor data sheets) and the efficiency range assumed.
GPUS = {"A100": 312.0, "H100 SXM": 989.0}
EFFICIENCY = (0.15, 0.35)


def write_source(root: Path, cases: int) -> None:
    options = PhantomOptions(size_xyz=(512, 512, 300), spacing_mm=(0.7, 0.7, 1.0), pathology="none")
    splits = {}
    for seed in range(4, 4 + cases):
        name = f"s{seed:04d}"
        case = generate_case(seed, options, name=name)
        labels = sitk.GetArrayFromImage(case.label)
        layout_writers.totalsegmentator_case(root, name, case.image, {int(lobe): labels == lobe for lobe in LOBES})
        splits[name] = "train"
    layout_writers.totalsegmentator_meta(root, splits)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the import's worker processes):
    on a shared machine the wall time says more about the neighbours than about the import."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_import(source: Path, out: Path, workers: int) -> dict:
    from training.data import import_dataset

    shutil.rmtree(out, ignore_errors=True)  # time a fresh import, not a resumed one
    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = import_dataset.run_import("totalsegmentator", source, out, workers=workers, stream=open(os.devnull, "w"))
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {"workers": workers, "cases": summary.cases, "ok": len(summary.of_status("ok")), "seconds": round(seconds, 2),
            "seconds_per_case": round(seconds / summary.cases, 2), "cpu_seconds_per_case": round(cpu / summary.cases, 2),
            "reasons": {r["name"]: r["reason"] for r in summary.records if r["reason"]}}


def time_steps(config: str, imported: Path, work: Path, steps: int) -> dict:
    from training.loop import train as train_mod

    run = work / f"run-{config}"
    shutil.rmtree(run, ignore_errors=True)
    overrides = {
        "data.csv": str(imported / "cases.csv"), "data.cache_dir": str(work / "cache"), "data.num_workers": 0,
        "run.out_dir": str(run), "optim.max_iters": steps + 1, "run.val_every": 0, "run.checkpoint_every": 10**6,
        "run.num_threads": 2, "run.device": "cpu",
    }
    if config == "real_finetune":
        overrides["init"] = str(REPO / "algorithm" / "weights" / "ctsunet.pt")
    args = ["--config", str(REPO / "training" / "configs" / f"{config}.yaml"),
            "--set", *[f"{k}={v}" for k, v in overrides.items()]]
    if train_mod.main(args) != 0:
        raise RuntimeError(f"training {config} failed")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["time_s"] for r in records if r.get("kind") == "train"][1:]
    flops, cpu_seconds = step_cost(config, work)
    return {"config": config, "steps_timed": len(times), "seconds_per_step": round(statistics.median(times), 2),
            "all_seconds": [round(t, 2) for t in times], "flops_per_step": flops, "cpu_seconds_per_step": round(cpu_seconds, 1)}


def step_cost(config_name: str, work: Path) -> tuple[float, float]:
    """FLOPs and CPU seconds (all threads, the smaller of two) of one end-to-end step (forward
    and backward) on the first cached scan."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from training.data.samples import PreprocessedCache
    from training.data.borders import lobe_borders
    from training.config import load_config
    from training.loop.steps import CascadeStep, StepInputs
    from training.loop.train import build_model

    config = load_config(REPO / "training" / "configs" / f"{config_name}.yaml")
    cache = PreprocessedCache(work / "cache", config.inplane_size, "paper")
    key = sorted(p.stem for p in (work / "cache").glob("*.json"))
    scan = next(cache.open(k) for k in key if cache.open(k).image.shape[1] == config.inplane_size)
    image = torch.from_numpy(np.asarray(scan.image, dtype=np.float32))[None, None]
    labels = torch.from_numpy(np.array(scan.labels))
    step = CascadeStep(build_model(config), config)
    border = lobe_borders(labels)
    inputs = StepInputs(step=0, progress=0.5, stage1_only=False, rng=np.random.default_rng(0))
    with FlopCounterMode(display=False) as counter:
        step(image, labels, border, inputs)["loss"].backward()
    cpu_seconds = []
    for _ in range(2):  # CPU time, unlike wall time, hardly depends on the neighbours' load
        start = time.process_time()
        step(image, labels, border, inputs)["loss"].backward()
        cpu_seconds.append(time.process_time() - start)
    return float(counter.get_total_flops()), min(cpu_seconds)


def cpu_side_seconds(config_name: str, work: Path) -> dict:
    """The per-step work that stays on the CPU when the network runs on a GPU: one training
    sample (memory-mapped scan, augmentation, borders; DataLoader workers share it) and the OHEM
    window selection (summed-area table over the full-resolution error map). Medians of 3."""
    import torch

    from algorithm.constants import STAGE1_DOWNSAMPLE
    from algorithm.network.cunet import valid_output_size
    from training.data.samples import PreprocessedCache, TrainSamples
    from training.loop import ohem
    from training.config import load_config

    config = load_config(REPO / "training" / "configs" / f"{config_name}.yaml")
    cache = PreprocessedCache(work / "cache", config.inplane_size, "paper")
    keys = [k for k in sorted(p.stem for p in (work / "cache").glob("*.json")) if cache.open(k).image.shape[1] == config.inplane_size]
    samples = TrainSamples(cache, keys, config.augment, 0, 0, 1, 0, 3)
    sample_s = []
    for i in range(3):
        start = time.perf_counter()
        item = samples[i]
        sample_s.append(time.perf_counter() - start)
    full = tuple(item["labels"].shape)
    size = valid_output_size(config.patch_in)
    half = tuple(-(-d // STAGE1_DOWNSAMPLE) for d in full)
    ohem_s = []
    for i in range(3):
        error = torch.rand(half)
        start = time.perf_counter()
        error_full = ohem.upsample_nearest(error, full, STAGE1_DOWNSAMPLE)
        starts = ohem.window_grid(full, size, size, (i, i, i))
        ohem.select_hard_windows(error_full, starts, size, len(starts) // 5, config.ohem.patches_per_step,
                                 torch.Generator().manual_seed(i))
        ohem_s.append(time.perf_counter() - start)
    return {"sample_s": round(statistics.median(sample_s), 3), "ohem_s": round(statistics.median(ohem_s), 3),
            "loader_workers": config.data.num_workers, "scan_zyx": list(full)}


def gpu_estimate(flops: float, cpu_side: dict) -> dict:
    """Seconds per step on each GPU, fastest and slowest assumption: the network's FLOPs at
    EFFICIENCY of the peak plus the OHEM selection on the CPU, or the data loading (one sample
    per step from ``loader_workers`` processes), whichever is slower."""
    loading = cpu_side["sample_s"] / max(cpu_side["loader_workers"], 1)
    return {
        gpu: [round(max(flops / (peak * 1e12 * e) + cpu_side["ohem_s"], loading), 3) for e in reversed(EFFICIENCY)]
        for gpu, peak in GPUS.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--configs", default="real,real_finetune")
    args = p.parse_args()
    source, imported = args.out / "source", args.out / "imported"
    if not (source / "meta.csv").is_file():
        write_source(source, args.cases)
    results = {"load_average": os.getloadavg(), "imports": [], "training": []}
    for workers in (1, 2):
        results["imports"].append(time_import(source, args.out / f"imported-{workers}", workers))
        print(results["imports"][-1], flush=True)
    imported = args.out / "imported-1"
    for config in args.configs.split(","):
        entry = time_steps(config, imported, args.out, args.steps)
        entry["cpu_side"] = cpu_side_seconds(config, args.out)
        entry["gpu_estimate_s_per_step"] = gpu_estimate(entry["flops_per_step"], entry["cpu_side"])
        results["training"].append(entry)
        print(entry, flush=True)
    results["load_average_end"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("config         CPU s/step  CPU h/1000 steps  TFLOP/step  " + "  ".join(f"{g} s/step (est.)" for g in GPUS))
    for e in results["training"]:
        est = "  ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in e["gpu_estimate_s_per_step"].values())
        print(f"{e['config']:14s} {e['seconds_per_step']:10.1f}  {e['seconds_per_step'] * 1000 / 3600:16.1f}  "
              f"{e['flops_per_step'] / 1e12:10.2f}  {est}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
