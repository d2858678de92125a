"""``LobeSegmenter``: the one way from a CT image to its lobe mask and report.

    from algorithm import LobeSegmenter
    segmenter = LobeSegmenter()                 # the shipped weights, loaded once; device "auto"
    result = segmenter(sitk.ReadImage("ct.mha"))  # a SimpleITK image in HU
    result.mask                                  # uint8 lobes on the input grid (labels.py)
    result.report.volumes_ml["RML"]              # LobeReport: volumes, measures, quality flags

The command line, the container, training (validation, ``training predict``) and the benchmarks
all segment through this class. A call is the short sequence of steps in ``__call__``; each step
is a small function of the per-call ``CaseState`` (never shared between calls, never the caller's
objects), so a new step is one line there. The segmenter itself is immutable after construction:
``with_options`` gives another one that shares the loaded network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES, MAX_TILE_IN_VOXELS
from algorithm.device import resolve_device
from algorithm.errors import InputError, SettingsError
from algorithm.inference import (
    NetworkPrediction,
    TilingSettings,
    bbox_margin_voxels,
    compute_dtype,
    predict_network_grid,
)
from algorithm.fissure_fit import refine_fissures
from algorithm.io.validation import check_geometry, check_intensities, check_lungs_present, coverage_warnings
from algorithm.network.checkpoint import InferenceSettings, load_checkpoint
from algorithm.lung_extent import LungExtent, NetworkLobes, lung_extent
from algorithm.postprocessing import clean_labels, merge_stray_pieces, outside_air
from algorithm.preprocessing import PreprocessedScan, canonical_to_input_image, preprocess, skips_network_voxels, to_canonical
from algorithm.report.lobe_report import LobeReport, NetworkRun, WeightsInfo, build_report, low_confidence_share

# progress(stage, done, total): stage is "preprocess", "network", "tile" (done of total stage-II
# tiles), "postprocess", "fissures" or "measures"
Progress = Callable[..., None]


@dataclass(frozen=True)
class SegmenterOptions:
    """How the network runs; none of these change what the network was trained for."""

    precision: str = "auto"  # "auto", "float32", "bfloat16", "float16" (CUDA): inference.compute_dtype
    tile_out: int | None = None  # fixed cubic stage-II output tile (8k - 28; the paper: 28); None: planned
    max_tile_in_voxels: int = MAX_TILE_IN_VOXELS  # memory budget of a planned stage-II tile's input
    batch_size: int = 1  # stage-II tiles per forward pass
    crop_to_lungs: bool = True  # False: stage II tiles the whole scan (the paper-faithful reference)
    fissures: str = DEFAULT_FISSURES  # "fit": refit each fissure to the scan (fissure_fit.py); "network": the paper's


@dataclass(frozen=True)
class SegmentationResult:
    """The lobe mask on the input grid, its report, and what the steps measured on the way."""

    mask: sitk.Image
    report: LobeReport
    timings_s: dict[str, float]
    network_labels: np.ndarray  # cleaned lobes on the network grid (benchmarks compare there)
    scan: PreprocessedScan  # the network grid

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings

    @property
    def lung_mask(self) -> sitk.Image:
        """The lung on the input grid (uint8 0/1): every lobe together, its extent from the scan
        (algorithm/lung_extent.py)."""
        return self.mask > 0


@dataclass
class CaseState:
    """What the steps of one call hand on to each other."""

    image: sitk.Image  # the caller's image: read, never modified
    progress: Progress
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    scan: PreprocessedScan | None = None
    prediction: NetworkPrediction | None = None
    labels: np.ndarray | None = None  # cleaned lobes on the network grid
    mask: sitk.Image | None = None  # lobes on the input grid
    fissures: dict | None = None  # what the fissure step did (report section "fissures")
    extent: LungExtent | None = None  # what lung_extent found (the lung from the scan)
    canonical: sitk.Image | None = None  # the scan reoriented to LPS (held from the lung step to the fissure step)
    canonical_labels: np.ndarray | None = None  # lobes on the reoriented input grid
    report: LobeReport | None = None

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
        case = CaseState(image=image, progress=progress or _no_progress)
        with case.timed("preprocess"):  # the input checks count as preprocessing
            check_input(case)
            preprocess_scan(case, self)
        run_network(case, self)
        with case.timed("postprocess"):
            clean_up(case)
            lung_from_scan(case)
        with case.timed("fissures"):
            fit_fissures(case, self)
        with case.timed("measures"):
            to_input_grid(case)
            measure(case, self)
        return SegmentationResult(case.mask, case.report, case.timings_s, case.labels, case.scan)

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


# -- the steps, in the order __call__ runs them ----------------------------------------------


def check_input(case: CaseState) -> None:
    """A 3D image in HU that holds lungs; the coverage warnings of the scan itself."""
    check_geometry(case.image)
    check_intensities(sitk.GetArrayViewFromImage(case.image))
    case.warnings += check_lungs_present(case.image)  # raises "no lungs found" on a non-chest CT


def preprocess_scan(case: CaseState, segmenter: LobeSegmenter) -> None:
    """Reorient, clamp and rescale, resample to the network grid the weights were trained on."""
    case.scan = preprocess(case.image, segmenter.settings.inplane_size)


def run_network(case: CaseState, segmenter: LobeSegmenter) -> None:
    """Stage I on the whole scan, stage II tiled over the stage-I lung box (timed per stage)."""
    case.progress("network")

    def on_tile(done: int, total: int = 0) -> None:
        case.progress("tile", done, total)

    case.prediction = segmenter.predict_grid(case.scan.array, case.scan.spacing_mm_zyx, on_tile=on_tile)
    case.timings_s.update(case.prediction.timings_s)  # stage1, stage2
    if case.prediction.lung_box is None:
        raise InputError("no lungs found in the image: is it a chest CT?")
    case.warnings += case.prediction.warnings


def clean_up(case: CaseState) -> None:
    """One piece per lobe, islands and holes to the nearest lobe, air outside the body dropped."""
    case.labels = clean_labels(case.prediction.labels, case.scan.array)


def lung_from_scan(case: CaseState) -> None:
    """The lung's extent from the scan on the (reoriented) input grid, each lung voxel's lobe from
    the network (lung_extent); the lobes cleaned again where a coarser input grid can cut them."""
    case.canonical = to_canonical(case.image)
    hu = sitk.GetArrayViewFromImage(case.canonical)
    network = NetworkLobes(case.labels, case.prediction.probabilities)
    case.extent = lung_extent(hu, case.scan.canonical_spacing_mm_zyx, network)
    labels = case.extent.labels
    case.canonical_labels = clean_labels(labels) if skips_network_voxels(case.scan) else labels


def fit_fissures(case: CaseState, segmenter: LobeSegmenter) -> None:
    """Refit each fissure to the vessel-sparse band of the scan where the evidence is clear
    (fissure_fit.py; after the lung's extent is settled); "network" keeps the network's borders.
    Runs on the reoriented arrays the lung step already made: no second reorientation."""
    hu = sitk.GetArrayViewFromImage(case.canonical)
    case.canonical_labels, case.fissures = refine_fissures(
        hu, case.canonical_labels, case.scan.canonical_spacing_mm_zyx, mode=segmenter.options.fissures
    )
    merge_stray_pieces(case.canonical_labels)  # slivers the refitted borders cut off


def to_input_grid(case: CaseState) -> None:
    """The lobes with the input's exact geometry; warn where the lungs touch the field of view."""
    case.mask = canonical_to_input_image(case.canonical_labels, case.scan, case.image)
    case.canonical = None  # the reoriented copy of the scan is not needed any more
    case.warnings += coverage_warnings(case.mask)


def measure(case: CaseState, segmenter: LobeSegmenter) -> None:
    """Volumes, per-lobe density measures and quality flags: the report."""
    prediction, scan = case.prediction, case.scan
    plan = prediction.plan
    network = NetworkRun(
        spacing_mm_zyx=tuple(round(float(s), 4) for s in scan.spacing_mm_zyx),
        stage2_tiles=len(plan.starts_zyx) if plan is not None else 0,
        stage2_tile_out_zyx=tuple(plan.size_out_zyx) if plan is not None else None,
        precision=segmenter.precision_name(),
    )
    case.report = build_report(
        case.image,
        case.mask,
        network,
        segmenter.weights,
        str(segmenter.device),
        low_confidence_share(case.labels, prediction.confidence),
        outside_air_ml=outside_air_removed_ml(prediction.labels, case.labels, scan),
        warnings=case.warnings,
        fissures=case.fissures,
        extent=case.extent,
    )


def outside_air_removed_ml(predicted: np.ndarray, cleaned: np.ndarray, scan: PreprocessedScan) -> float:
    """Volume of the network's lung labels that the clean-up removed from the air around the body."""
    removed = (predicted > 0) & (cleaned == 0) & outside_air(scan.array)
    return float(removed.sum() * np.prod(scan.spacing_mm_zyx) / 1000.0)
