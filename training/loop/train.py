"""``python -m training train --config CONFIG [--resume] [--init CKPT] [--set key=value ...]``

Trains CTSU-Net (or an ablation / the one-stage baseline) from a YAML config. Under ``torchrun``
each process is one rank of DistributedDataParallel (NCCL on CUDA, gloo on CPU).

Run folder (``run.out_dir``): config.yaml, splits.csv, metrics.jsonl (one line per step and per
validation), curves.png, last.pt (every ``checkpoint_every`` steps and at the end) and best.pt
(best validation mean IoU). Checkpoints are written atomically; ``--resume`` continues from
last.pt exactly: model, optimizer (momentum), step (hence schedule, OHEM K and data order, which
are functions of the step), best score and RNG states.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# OpenMP threads that spin while waiting make a shared CPU several times slower (measured: a
# stage-I step 0.8 s alone, 4-10 s with two spinning threads next to other jobs, 3 s passive).
# Only effective when torch was not imported yet, as with ``python -m training train``.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from algorithm.io.atomic import atomic_path, atomic_write_bytes
from algorithm.network.checkpoint import TRAINING_FORMAT, CheckpointError, load_checkpoint, read_training_checkpoint
from algorithm.network.checkpoint import build_model as build_network
from algorithm.labels import LOBES
from training.data.cases import cases_of, load_cases
from training.data.samples import PreprocessedCache, TrainSamples, identity_collate, step_generator
from training.config import TrainConfig, load_config
from training.loop.infer import segmenter_for, validation_labels
from training.evaluation.metrics import lobe_scores
from training.loop.steps import CascadeStep, StepInputs, UNetStep
from training.cli_help import command_parser

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    # rank 0 validates while the others wait at a barrier: allow long validations
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def choose_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The network a config describes (``algorithm.network.checkpoint.build_model``)."""
    return build_network(config.model.kind, config.model.nonlocal_mode)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of ``step`` (a pure function: resuming needs no scheduler state)."""
    o = config.optim
    begin, end = 0, o.max_iters
    warm_up = config.run.stage1_only_iters
    if 0 < warm_up < o.max_iters:  # two phases, each with its own warm-up and decay (docs/training.md)
        begin, end = (warm_up, o.max_iters) if step >= warm_up else (0, warm_up)
    local = step - begin
    if o.warmup_iters and local < o.warmup_iters:
        return o.lr * (local + 1) / o.warmup_iters
    t = min(local / max(end - begin, 1), 1.0)
    if o.schedule == "poly":
        return o.lr * (1.0 - t) ** o.poly_power
    if o.schedule == "cosine":
        return o.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if o.schedule == "step":
        return o.lr * o.step_gamma ** sum(t >= m for m in o.step_milestones)
    return o.lr


def load_initial_weights(model: torch.nn.Module, path: str) -> None:
    """Weights from a shipped checkpoint (algorithm format) or a training checkpoint."""
    try:
        state = load_checkpoint(path).model.state_dict()
    except CheckpointError:
        state = read_training_checkpoint(path)["model"]
    model.load_state_dict({k: v.float() for k, v in state.items()})


def atomic_torch_save(payload: dict, path: Path) -> None:
    """torch.save, atomically: a SIGKILL leaves the old or the new file."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """metrics.jsonl (rank 0), truncated to the checkpoint's step on resume."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.records: list[dict] = []
        if resume_step is not None and path.is_file():
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by the kill
                        continue
                    if record.get("step", 0) <= resume_step:
                        self.records.append(record)
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in self.records).encode())
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.records.append(record)
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()


def plot_curves(records: list[dict], path: Path) -> None:
    """Training loss (raw and smoothed) and validation IoU per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records if r.get("kind") == "train"]
    loss = [r["loss"] for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        ax1.plot(steps, loss, alpha=0.3, lw=0.8, label="loss")
        window = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax1.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
        ax1.set_xlabel("step")
        ax1.set_ylabel("loss (sum of terms)")
        ax1.legend()
    for key, style in (("stage1_mean_iou", "--"), ("mean_iou", "-")):
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax2.plot(*zip(*pts), style, marker="o", label=key)
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation IoU (mean of lobes)")
    ax2.set_ylim(0, 1)
    if val:
        ax2.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


class Trainer:
    """Owns the model, the optimizer and the loop; one instance per rank."""

    def __init__(self, config: TrainConfig, device: torch.device, info: DistInfo, init: str | None) -> None:
        self.config, self.device, self.info = config, device, info
        self.out_dir = Path(config.run.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.run.seed)  # identical initial weights on every rank
        self.model = build_model(config).to(device)
        if init:
            load_initial_weights(self.model, init)
        self.step_module = (UNetStep if config.model.kind == "unet3d" else CascadeStep)(self.model, config)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.optim.lr,
            momentum=config.optim.momentum,
            weight_decay=config.optim.weight_decay,
            nesterov=config.optim.nesterov,
        )
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.best = {"mean_iou": -1.0, "step": -1}

    def _amp_dtype(self) -> torch.dtype | None:
        if not (self.config.run.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict:
        return {
            "format": TRAINING_FORMAT,
            "config": self.config.to_dict(),
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": dict(self.best),
            "rng": rng_state(),
            "world_size": self.info.world_size,
        }

    def save(self, name: str) -> None:
        if self.info.world_size > 1:  # BN running stats: rank 0's, so every rank agrees
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        if self.info.is_main:
            atomic_torch_save(self.checkpoint_payload(), self.out_dir / name)

    def resume(self) -> bool:
        path = self.out_dir / "last.pt"
        if not path.is_file():
            return False
        payload = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.best = payload["best"]
        set_rng_state(payload["rng"])
        return True

    # -- data --------------------------------------------------------------------------------
    def prepare_data(self) -> tuple[PreprocessedCache, list[str], list[str]]:
        cfg = self.config.data
        splits = self.out_dir / "splits.csv"
        if self.info.is_main:
            load_cases(cfg, splits)
        barrier(self.info)
        cases = load_cases(cfg, splits)
        cache = PreprocessedCache(cfg.cache_dir, self.config.inplane_size, cfg.label_remap)
        train_cases = cases_of(cases, "train", cfg.max_cases)
        val_cases = cases_of(cases, "val", self.config.run.val_cases)
        todo = train_cases + val_cases
        if self.info.is_main:
            for case in tqdm(todo, desc="preprocess", disable=len(todo) < 2, file=sys.stderr):
                cache.ensure(case)
        barrier(self.info)
        return cache, [cache.ensure(c) for c in train_cases], [cache.ensure(c) for c in val_cases]

    def loader(self, cache: PreprocessedCache, keys: list[str]) -> DataLoader:
        cfg = self.config
        samples = TrainSamples(
            cache, keys, cfg.augment, cfg.run.seed, self.info.rank, self.info.world_size,
            self.step, cfg.optim.max_iters, cfg.loss.border_include_background,
        )
        workers = cfg.data.num_workers
        return DataLoader(
            samples,
            batch_size=1,
            shuffle=False,
            num_workers=workers,
            collate_fn=identity_collate,
            prefetch_factor=cfg.data.prefetch_factor if workers else None,
            persistent_workers=False,
        )

    # -- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, cache: PreprocessedCache, keys: list[str]) -> dict:
        """Mean IoU per lobe on the network grid, stage I and the full cascade."""
        self.model.eval()
        per_lobe: dict[str, list[float]] = {lobe.name: [] for lobe in LOBES}
        per_lobe_s1: dict[str, list[float]] = {lobe.name: [] for lobe in LOBES}
        # the shipped network step around the model in memory: same tiling rule and 10 mm lung-box margin
        segmenter = segmenter_for(self.model, self.config, self.device, tile_out=self.config.run.val_tile_out)
        stage1_only = self.config.model.kind != "unet3d" and self.step <= self.config.run.stage1_only_iters
        for key in keys:
            scan = cache.open(key)
            ref = np.asarray(scan.labels)
            pred, stage1 = validation_labels(segmenter, scan.image, scan.spacing_mm_zyx, stage1_only)
            if stage1 is not None:
                for name, score in lobe_scores(stage1, ref, scan.spacing_mm_zyx, with_hd95=False).items():
                    per_lobe_s1[name].append(score.iou)
            for name, score in lobe_scores(pred, ref, scan.spacing_mm_zyx, with_hd95=False).items():
                per_lobe[name].append(score.iou)
        self.model.train()
        record: dict = {"kind": "val", "step": self.step, "cases": len(keys)}
        record.update({f"iou_{k}": float(np.mean(v)) for k, v in per_lobe.items()})
        record["mean_iou"] = float(np.mean([np.mean(v) for v in per_lobe.values()]))
        if any(per_lobe_s1.values()):
            record.update({f"stage1_iou_{k}": float(np.mean(v)) for k, v in per_lobe_s1.items()})
            record["stage1_mean_iou"] = float(np.mean([np.mean(v) for v in per_lobe_s1.values()]))
        return record

    # -- the loop ----------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict[str, float]:
        cfg = self.config
        step = batch["step"]
        if step != self.step:
            raise RuntimeError(f"data stream at step {step}, trainer at {self.step}")
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        image = batch["image"][None].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        border = batch["border"].to(self.device, non_blocking=True)
        decay_iters = max(1.0, cfg.ohem.decay_end_fraction * cfg.optim.max_iters - cfg.run.stage1_only_iters)
        inputs = StepInputs(
            step=step,
            progress=(step - cfg.run.stage1_only_iters) / decay_iters,
            stage1_only=step < cfg.run.stage1_only_iters,
            rng=step_generator(cfg.run.seed, step, self.info.rank, 2),
        )
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.wrapped(image, labels, border, inputs)
        self.scaler.scale(out["loss"]).backward()
        if cfg.optim.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip_norm)
            out["grad_norm"] = grad_norm
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        record = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
        record.update(kind="train", step=self.step, lr=lr_at(step, cfg), case=batch["name"])
        return record

    def run(self, resume: bool) -> int:
        cfg, info = self.config, self.info
        resumed = self.resume() if resume else False
        if info.is_main:
            atomic_write_bytes(self.out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
        cache, train_keys, val_keys = self.prepare_data()
        log = MetricsLog(self.out_dir / "metrics.jsonl", self.step if resumed else None) if info.is_main else None
        find_unused = cfg.run.stage1_only_iters > 0 and cfg.model.kind == "ctsunet"
        self.wrapped = (
            DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused,
            )
            if info.world_size > 1
            else self.step_module
        )
        self.model.train()
        bar = tqdm(
            total=cfg.optim.max_iters, initial=self.step, disable=not info.is_main, dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr, desc=cfg.name,
        )
        start = time.perf_counter()
        for batch in self.loader(cache, train_keys):
            t0 = time.perf_counter()
            record = self.train_step(batch)
            record["time_s"] = time.perf_counter() - t0
            if info.is_main and (self.step % cfg.run.log_every == 0 or self.step == cfg.optim.max_iters):
                log.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", s_per_step=f"{record['time_s']:.1f}")
            out_of_time = self._out_of_time(start)
            self._periodic(cache, val_keys, log, final=out_of_time)
            if out_of_time:
                if info.is_main:
                    print(f"\nrun.time_limit_min ({cfg.run.time_limit_min:g} min) reached at step {self.step}: "
                          "validated and saved; --resume continues", file=sys.stderr)
                break
        bar.close()
        if info.world_size > 1:
            self.check_ranks_in_sync()
        if info.is_main:
            print(f"trained to step {self.step} in {time.perf_counter() - start:.0f} s; run folder {self.out_dir}", file=sys.stderr)
        return 0

    def check_ranks_in_sync(self) -> None:
        """Every rank's weight digest to ranks.json; a warning if they differ (they must not)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        digests: list = [None] * self.info.world_size
        dist.all_gather_object(digests, digest.hexdigest())
        if self.info.is_main:
            atomic_write_bytes(self.out_dir / "ranks.json", json.dumps({"step": self.step, "digests": digests}).encode())
            if len(set(digests)) > 1:
                print(f"WARNING: ranks hold different weights after step {self.step}: {digests}", file=sys.stderr)

    def _out_of_time(self, start: float) -> bool:
        """Whether ``run.time_limit_min`` has passed since ``start``; rank 0's clock decides for
        every rank, so that all of them stop after the same step."""
        limit = self.config.run.time_limit_min
        if limit is None:
            return False
        stop = torch.tensor([float(time.perf_counter() - start >= 60.0 * limit)], device=self.device)
        if self.info.world_size > 1:
            dist.broadcast(stop, 0)
        return bool(stop.item())

    def _periodic(
        self, cache: PreprocessedCache, val_keys: list[str], log: MetricsLog | None, final: bool = False
    ) -> None:
        """Validate and checkpoint when due; ``final``: the run stops after this step (time limit)."""
        cfg = self.config
        last = final or self.step == cfg.optim.max_iters
        if val_keys and cfg.run.val_every and (self.step % cfg.run.val_every == 0 or last):
            if self.info.is_main:
                record = self.validate(cache, val_keys)
                log.write(record)
                print(f"\nstep {self.step}: validation " + json.dumps({k: round(v, 4) for k, v in record.items() if "iou" in k}), file=sys.stderr)
                cascade_trained = cfg.model.kind == "unet3d" or self.step > cfg.run.stage1_only_iters
                if cascade_trained and record["mean_iou"] > self.best["mean_iou"]:
                    self.best = {"mean_iou": record["mean_iou"], "step": self.step}
                    atomic_torch_save(self.checkpoint_payload(), self.out_dir / "best.pt")
            barrier(self.info)
        if self.step % cfg.run.checkpoint_every == 0 or last:
            self.save("last.pt")
            if self.info.is_main:
                plot_curves(log.records, self.out_dir / "curves.png")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("python -m training train", __doc__)
    parser.add_argument("--config", required=True, help="YAML config (training/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    parser.add_argument("--init", help="initial weights (shipped or training checkpoint): fine-tuning")
    parser.add_argument("--out", help="run folder (overrides run.out_dir)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. optim.max_iters=10")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides = list(args.set) + ([f"run.out_dir={args.out}"] if args.out else [])
    config = load_config(args.config, overrides)
    if config.run.num_threads:
        torch.set_num_threads(config.run.num_threads)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    device_kind = "cuda" if config.run.device in {"auto", "cuda"} and torch.cuda.is_available() else "cpu"
    info = setup_distributed(device_kind)
    try:
        device = choose_device(config.run.device, info)
        trainer = Trainer(config, device, info, args.init or config.init)
        return trainer.run(resume=args.resume)
    finally:
        if info.world_size > 1:
            # leave together: a rank tearing gloo down while its peer is still writing
            # (rank 0: ranks.json, checkpoints) can leave the peer waiting forever
            if sys.exc_info()[0] is None:
                dist.barrier()
            dist.destroy_process_group()
