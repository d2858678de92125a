"""Training configuration: one dataclass per concern, loaded from YAML.

Every field has a default equal to the paper's setting where the paper gives one (see
``configs/paper.yaml`` and docs/training.md for the choices where it does not). Unknown keys are
an error, so a typo in a config cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithm.constants import INPLANE_SIZE, STAGE2_TRAIN_PATCH_IN


@dataclass
class DataConfig:
    """Where the scans are and how they are split and cached."""

    root: str | None = None  # folder with images/ and labels/ (pairs by name)
    csv: str | None = None  # or a CSV with columns image,label[,split][,name][,status] (import-dataset's cases.csv)
    label_remap: str | dict[int, int] = "paper"  # a name of training.data.label_maps, a .yaml file, or {src: dst}
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    max_cases: int | None = None  # use only the first N cases (by name) of each split: quick runs
    cache_dir: str = "cache"  # preprocessed memory-maps, shared by runs with the same settings
    num_workers: int = 2
    prefetch_factor: int = 2


@dataclass
class AugmentConfig:
    """Spatial and intensity augmentation. There is deliberately no flip option: a left-right
    mirror swaps left and right lobes, and up-down/front-back mirrors produce anatomy that does
    not occur."""

    enabled: bool = True
    rotate_deg: tuple[float, float, float] = (10.0, 5.0, 5.0)  # max |angle| about z, y, x
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_fraction: float = 0.05
    intensity_scale: float = 0.1  # x in [1 - s, 1 + s]
    intensity_shift: float = 0.05  # + in [-s, s] (normalised units, 1 = 1600 HU)
    noise_std_max: float = 0.02
    probability: float = 0.8  # chance of the spatial transform per sample
    # What scanners do (training/data/scanner_sim.py, issue 33); 0 turns each off and draws nothing,
    # so configs without them keep their exact sample stream.
    slice_thickness_mm_max: float = 0.0  # slab thickness drawn in [grid spacing, this]
    kernel_sigma_vox_max: float = 0.0  # in-plane blur drawn in [0.3, this] (network voxels; below 0.3 a blur does nothing)
    sharpen_max: float = 0.0  # unsharp-mask amount drawn in [0, this] on half the blurred samples
    intensity_curve_hu: float = 0.0  # max shift of the monotone intensity curve's knots (HU)
    scanner_probability: float = 0.5  # chance of each scanner effect per sample


@dataclass
class ModelConfig:
    """Which network (Table III/IV comparisons)."""

    kind: str = "ctsunet"  # "ctsunet" or "unet3d" (one-stage baseline)
    nonlocal_mode: str = "geometric"  # "geometric", "appearance" or "none"


@dataclass
class OptimConfig:
    """SGD with momentum (paper IV.A) and the learning-rate schedule."""

    lr: float = 1.0e-5  # the paper's "10e-6", read literally (docs/training.md)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "poly"  # "constant", "poly", "cosine", "step"
    poly_power: float = 0.9
    step_milestones: tuple[float, ...] = (0.6, 0.85)  # fractions of max_iters, for "step"
    step_gamma: float = 0.1
    warmup_iters: int = 0
    max_iters: int = 100_000
    grad_clip_norm: float | None = 10.0
    nesterov: bool = False


@dataclass
class LossConfig:
    """Four generalized-Dice terms (III.E) plus optional top-K cross-entropy (fine-tuning)."""

    stage1_weight: float = 1.0
    stage2_weight: float = 1.0
    border_weight: float = 1.0
    topk_ce_weight: float = 0.0  # 1.0 for COVID-19 fine-tuning (IV.A)
    topk_fraction: float = 0.3
    border_include_background: bool = False  # lung-background surface is not a lobe border


@dataclass
class OHEMConfig:
    """Online hard example mining (III.D) and the stage-II patch sampling."""

    enabled: bool = True
    final_coverage: float = 0.2  # top-K set covers about this fraction of the scan at the end
    decay_end_fraction: float = 1.0  # K reaches its final value at this fraction of training
    patches_per_step: int = 2  # stage-II mini-batch (paper IV.D: two 116^3 patches)
    random_grid_phase: bool = True  # shift the sliding-window grid randomly each step


@dataclass
class RunConfig:
    """Where and how often to write things; precision; seeds."""

    out_dir: str = "runs/default"
    seed: int = 0
    stage1_only_iters: int = 0  # CPU warm-up: stage-I losses only (0 = the paper's end to end)
    checkpoint_every: int = 500
    val_every: int = 2000
    val_cases: int | None = 8  # validate on the first N validation cases (None: all)
    val_tile_out: int = 44  # stage-II output tile for validation (bigger = fewer tiles)
    log_every: int = 1
    amp: bool = True  # bf16/fp16 autocast on CUDA; ignored on CPU
    deterministic: bool = True
    num_threads: int | None = None  # torch.set_num_threads on CPU (None: torch's default)
    device: str = "auto"  # "auto", "cpu", "cuda"
    # stop cleanly (validate, save last.pt) once this many minutes of training have passed: a
    # fixed window on a lent GPU, or a session's share of a multi-session CPU budget
    time_limit_min: float | None = None


@dataclass
class TrainConfig:
    """The whole training configuration."""

    name: str = "ctsunet"
    inplane_size: int = INPLANE_SIZE
    patch_in: int = STAGE2_TRAIN_PATCH_IN  # stage-II (or U-Net baseline) training input size
    bbox_margin_mm: float = 10.0  # recorded in the exported InferenceSettings
    tile_out: int = 28  # stage-II tile recorded in the exported InferenceSettings (inference plans its own)
    init: str | None = None  # checkpoint to start from (fine-tuning); --init overrides
    trained_on: str = ""  # description written into exported checkpoints
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ohem: OHEMConfig = field(default_factory=OHEMConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a (nested) dataclass from a dict, refusing unknown keys."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) in {where}: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)  # YAML lists -> the tuples the dataclasses declare
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a plain dict (e.g. the one stored in a training checkpoint)."""
    config = _build(TrainConfig, values, "config")
    _expand_home(config)
    validate(config)
    return config


def _expand_home(config: TrainConfig) -> None:
    """``~`` in path settings means the user's home: run folders and data live outside the
    checkout (``~/ctsunet-runs``) so that a new work tree finds them again."""
    for section, key in (("data", "root"), ("data", "csv"), ("data", "cache_dir"), ("run", "out_dir"), (None, "init")):
        owner = getattr(config, section) if section else config
        value = getattr(owner, key)
        if isinstance(value, str) and value.startswith("~"):
            setattr(owner, key, os.path.expanduser(value))


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config; ``overrides`` are ``dotted.key=value`` strings (value parsed as YAML)."""
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    for item in overrides or []:
        key, _, raw = item.partition("=")
        target = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(values)


def validate(config: TrainConfig) -> None:
    """Fail early on settings that cannot work."""
    from algorithm.network.cunet import valid_output_size

    valid_output_size(config.patch_in)  # raises on a size that does not pool evenly
    if config.model.kind not in {"ctsunet", "unet3d"}:
        raise ValueError(f"model.kind must be 'ctsunet' or 'unet3d', not {config.model.kind!r}")
    if config.model.nonlocal_mode not in {"geometric", "appearance", "none"}:
        raise ValueError(f"model.nonlocal_mode must be geometric/appearance/none, not {config.model.nonlocal_mode!r}")
    if config.optim.schedule not in {"constant", "poly", "cosine", "step"}:
        raise ValueError(f"optim.schedule must be constant/poly/cosine/step, not {config.optim.schedule!r}")
    if not 0.0 < config.ohem.final_coverage <= 1.0:
        raise ValueError("ohem.final_coverage must be in (0, 1]")
    if not 0.0 < config.loss.topk_fraction <= 1.0:
        raise ValueError("loss.topk_fraction must be in (0, 1]")
    if config.run.time_limit_min is not None and config.run.time_limit_min <= 0:
        raise ValueError("run.time_limit_min must be positive (or null: no limit)")
    if config.data.root is None and config.data.csv is None:
        raise ValueError("data.root or data.csv must be set")
