"""``LobeSegmenter``: the one way from a CT image to its lobe mask and report.

    from algorithm import LobeSegmenter
    segmenter = LobeSegmenter()                 # the shipped weights, loaded once; device "auto"
    result = segmenter(sitk.ReadImage("ct.mha"))  # a SimpleITK image in HU
    result.mask                                  # uint8 lobes on the input grid (labels.py)
    result.report.volumes_ml["RML"]              # LobeReport: volumes, measures, quality flags

The command line, the container, training (validation, ``training predict``) and the benchmarks
all segment through this class. A call runs the steps of ``algorithm/pipeline/`` in order, each a
function of what the steps before it handed on (``__call__`` reads as those hand-offs), so a new
step is one line there. The segmenter itself is immutable after construction: ``with_options``
gives another one that shares the loaded network.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES, MAX_TILE_IN_VOXELS
from algorithm.device import resolve_device
from algorithm.errors import SettingsError
from algorithm.inference import (
    NetworkPrediction,
    TilingSettings,
    bbox_margin_voxels,
    compute_dtype,
    predict_network_grid,
)
from algorithm.network.checkpoint import InferenceSettings, load_checkpoint
from algorithm.pipeline.clean_up import clean_up
from algorithm.fissure_points.reading import FissurePoints
from algorithm.pipeline.fissures import refine_lobes
from algorithm.pipeline.input_grid import to_input_grid
from algorithm.pipeline.lung import lung_from_scan
from algorithm.pipeline.measures import RunInfo, measure
from algorithm.pipeline.network import Progress, run_network
from algorithm.pipeline.one_lung import LungsLook, second_look
from algorithm.pipeline.preprocess import PreprocessedScan, check_input, preprocess
from algorithm.report.lobe_report import LobeReport, WeightsInfo

__all__ = ["LobeSegmenter", "Progress", "SegmentationResult", "SegmenterOptions"]


@dataclass(frozen=True)
class SegmenterOptions:
    """How the network runs; none of these change what the network was trained for."""

    precision: str = "auto"  # "auto", "float32", "bfloat16", "float16" (CUDA): inference.compute_dtype
    tile_out: int | None = None  # fixed cubic stage-II output tile (8k - 28; the paper: 28); None: planned
    max_tile_in_voxels: int = MAX_TILE_IN_VOXELS  # memory budget of a planned stage-II tile's input
    batch_size: int = 1  # stage-II tiles per forward pass
    crop_to_lungs: bool = True  # False: stage II tiles the whole scan (the paper-faithful reference)
    fissures: str = DEFAULT_FISSURES  # "fit": refit each fissure to the scan (fissure_fit/); "network": the paper's
    fissure_points: FissurePoints | None = None  # user points the marked fissures pass through (fissure_points/)


@dataclass(frozen=True)
class SegmentationResult:
    """The lobe mask on the input grid, its report, and what the steps measured on the way."""

    mask: sitk.Image
    report: LobeReport
    timings_s: dict[str, float]
    network_labels: np.ndarray  # cleaned lobes on the network grid (benchmarks compare there)
    scan: PreprocessedScan  # the network grid
    fissure_surfaces_lps: dict[str, np.ndarray] = field(default_factory=dict)  # with user points: grids on the fissures

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings

    @property
    def lung_mask(self) -> sitk.Image:
        """The lung on the input grid (uint8 0/1): every lobe together, its extent from the scan
        (algorithm/lung_extent.py)."""
        return self.mask > 0


class StageClock:
    """Wall time per stage of one call (``SegmentationResult.timings_s``), announced to ``progress``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings_s: dict[str, float] = {}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Announce ``stage`` and add its wall time to ``timings_s[stage]``."""
        self.progress(stage)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.timings_s[stage] = round(self.timings_s.get(stage, 0.0) + elapsed, 3)


class LobeSegmenter:
    """Pulmonary lobes of chest CTs with CTSU-Net; build once, call per image."""

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile_out: int | None = None,
        max_tile_in_voxels: int = MAX_TILE_IN_VOXELS,
        batch_size: int = 1,
        crop_to_lungs: bool = True,
        fissures: str = DEFAULT_FISSURES,
    ) -> None:
        """Load ``weights`` (default: the shipped checkpoint) onto ``device`` ("auto": CUDA if present).

        Raises ``SettingsError`` for a precision the device cannot run (before loading anything),
        ``InputError`` for an unknown or absent device, ``CheckpointError`` for bad weights.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device)
        options = SegmenterOptions(precision, tile_out, max_tile_in_voxels, batch_size, crop_to_lungs, fissures)
        check_options(options, device)
        checkpoint = load_checkpoint(weights, device)
        weights_info = WeightsInfo(
            str(checkpoint.path), checkpoint.sha256, checkpoint.meta.get("trained_on", "unknown")
        )
        self._init(checkpoint.model, checkpoint.settings, device, options, weights_info)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        settings: InferenceSettings,
        device: str | torch.device = "cpu",
        weights: WeightsInfo | None = None,
        **options,
    ) -> LobeSegmenter:
        """A segmenter around a network already in memory (training validation, ``training predict``).

        ``settings`` says what the model was trained for (grid, lung-box margin). The model is used
        as it is: the caller puts it in eval mode and on ``device``.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device)
        segmenter = cls.__new__(cls)
        opts = SegmenterOptions(**options)
        check_options(opts, device)
        segmenter._init(model, settings, device, opts, weights or WeightsInfo("(in memory)", "", "unknown"))
        return segmenter

    def _init(self, model, settings: InferenceSettings, device: torch.device, options: SegmenterOptions,
              weights: WeightsInfo) -> None:
        self.model, self.settings, self.device = model, settings, device
        self.options, self.weights = options, weights

    def with_options(self, **changes) -> LobeSegmenter:
        """Another segmenter with some options changed, sharing this one's network (no reload)."""
        options = replace(self.options, **changes)
        check_options(options, self.device)
        other = type(self).__new__(type(self))
        other._init(self.model, self.settings, self.device, options, self.weights)
        return other

    # -- one case ----------------------------------------------------------------------------
    def __call__(self, image: sitk.Image, progress: Progress | None = None) -> SegmentationResult:
        """Segment the lobes of ``image`` (a 3D CT in HU). Raises ``InputError`` for what cannot be segmented."""
        progress = progress or _no_progress
        clock = StageClock(progress)
        with clock.timed("preprocess"):  # the input checks count as preprocessing
            input_warnings = check_input(image)
            scan = preprocess(image, self.settings.inplane_size)
        prediction = run_network(scan, self.predict_grid, progress)
        clock.timings_s.update(prediction.timings_s)  # stage1, stage2
        with clock.timed("postprocess"):
            cleaned = clean_up(prediction, scan)
            lobes = lung_from_scan(scan, prediction, cleaned)
            # one lung airless: the network's second look (its time counts here; no new timing key)
            look = second_look(scan, LungsLook(prediction, cleaned, lobes), self.predict_grid, progress)
            prediction, cleaned, lobes = look.prediction, look.cleaned, look.lobes
        with clock.timed("fissures"):
            fitted = refine_lobes(scan.canonical, lobes.labels, self.options.fissures, self.options.fissure_points)
        with clock.timed("measures"):
            placed = to_input_grid(fitted.labels, scan, image)
            scan = scan.without_canonical()  # the reoriented scan is not needed any more
            warnings = input_warnings + tuple(prediction.warnings) + placed.warnings
            report = measure(image, placed.mask, scan, prediction, cleaned, lobes, fitted, self.run_info(), warnings)
        return SegmentationResult(placed.mask, report, clock.timings_s, cleaned.labels, scan, fitted.surfaces_lps)

    # -- the network on its grid -------------------------------------------------------------
    def tiling_for(self, spacing_mm_zyx: tuple[float, float, float]) -> TilingSettings:
        """Stage-II tiling of a scan on the network grid: the options plus the lung-box margin in voxels."""
        o = self.options
        return TilingSettings(
            tile_out=o.tile_out,
            max_tile_in_voxels=o.max_tile_in_voxels,
            batch_size=o.batch_size,
            bbox_margin_vox=bbox_margin_voxels(self.settings.bbox_margin_mm, spacing_mm_zyx),
            crop_to_lungs=o.crop_to_lungs,
            precision=o.precision,
        )

    def predict_grid(
        self, scan_zyx: np.ndarray, spacing_mm_zyx: tuple[float, float, float], on_tile=None
    ) -> NetworkPrediction:
        """Both stages on a preprocessed scan (float32 (Z, Y, X) in [0, 1]): labels on the network grid.

        The network step of ``__call__``; training validation calls it on its cached scans.
        """
        tiling = self.tiling_for(spacing_mm_zyx)
        return predict_network_grid(self.model, scan_zyx, self.device, tiling, on_tile=on_tile)

    def precision_name(self) -> str:
        """The arithmetic the network runs in on this device ("float32", "bfloat16", "float16")."""
        return str(compute_dtype(self.device, self.options.precision)).removeprefix("torch.")

    def run_info(self) -> RunInfo:
        """What runs, for the report: the weights, the device and the arithmetic."""
        return RunInfo(self.weights, str(self.device), self.precision_name())


def check_options(options: SegmenterOptions, device: torch.device) -> None:
    """Refuse options that cannot run on ``device`` before any work (the one float16 check)."""
    if options.fissures not in FISSURE_MODES:
        raise SettingsError(f"fissures must be one of {', '.join(FISSURE_MODES)}, not {options.fissures!r}")
    try:
        compute_dtype(device, options.precision)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def _no_progress(stage: str, done: int = 0, total: int = 0) -> None:
    pass
