"""One case from image to lobe mask and measures: the steps every front end shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from algorithm import __version__
from algorithm.report.border_index import border_flags, border_report
from algorithm.network.checkpoint import Checkpoint
from algorithm.errors import InputError
from algorithm.constants import DEFAULT_FISSURES
from algorithm.fissure_fit import refine_mask
from algorithm.inference import TilingSettings, bbox_margin_voxels, compute_dtype, predict_network_grid
from algorithm.labels import label_map
from algorithm.report.density import lobe_measures
from algorithm.report.volumes import volumes_ml
from algorithm.postprocessing import clean_labels, outside_air, to_input_mask
from algorithm.preprocessing import preprocess
from algorithm.report.quality_flags import assess_quality
from algorithm.io.validation import check_geometry, check_intensities, check_lungs_present, coverage_warnings


@dataclass
class Segmentation:
    """The lobe mask on the input grid and the report that goes with it."""

    mask: sitk.Image
    report: dict
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # also in report["warnings"]


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def lap(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - start, 3)
        return now


def segment(
    image: sitk.Image,
    checkpoint: Checkpoint,
    device: torch.device,
    tiling: TilingSettings | None = None,
    progress=None,
    fissures: str = DEFAULT_FISSURES,
) -> Segmentation:
    """Segment the lobes of a CT (HU). ``progress(stage: str, tiles: int)`` is told of each step;
    ``fissures``: "fit" refits each fissure to the scan's vessel-sparse band, "network" keeps the
    network's borders (the paper's path)."""
    clock, t = _Stopwatch(), time.perf_counter()
    notify = progress or (lambda stage, n=0: None)
    check_geometry(image)
    hu = sitk.GetArrayViewFromImage(image)
    check_intensities(hu)
    warnings = check_lungs_present(image)  # raises "no lungs found" on a non-chest CT
    settings = checkpoint.settings
    notify("preprocess")
    scan = preprocess(image, settings.inplane_size)
    t = clock.lap("preprocess", t)
    tiling = tiling or TilingSettings()
    tiling.bbox_margin_vox = bbox_margin_voxels(settings.bbox_margin_mm, scan.spacing_mm_zyx)
    notify("network")
    prediction = predict_network_grid(
        checkpoint.model, scan.array, device, tiling, on_tile=lambda n: notify("tile", n)
    )
    clock.timings.update(prediction.timings_s)  # stage1, stage2
    t = time.perf_counter()
    if prediction.lung_box is None:
        raise InputError("no lungs found in the image: is it a chest CT?")
    notify("postprocess")
    labels = clean_labels(prediction.labels, scan.array)
    mask = to_input_mask(labels, scan, image)
    t = clock.lap("postprocess", t)
    mask, fissure_section = refine_mask(image, mask, fissures)  # after the lung's extent is settled
    t = clock.lap("fissures", t)
    warnings += prediction.warnings + coverage_warnings(mask)
    air_ml = outside_air_removed_ml(prediction.labels, labels, scan)
    report = build_report(image, mask, checkpoint, device, scan.spacing_mm_zyx, prediction, labels, air_ml)
    clock.lap("measures", t)  # density measures and quality flags
    report["warnings"] = warnings
    report["fissures"] = fissure_section
    report["network_grid"]["stage2_tiles"] = len(prediction.plan.starts_zyx)
    report["network_grid"]["stage2_tile_out_zyx"] = list(prediction.plan.size_out_zyx)
    report["network_grid"]["precision"] = str(compute_dtype(device, tiling.precision)).removeprefix("torch.")
    return Segmentation(mask=mask, report=report, timings_s=clock.timings, warnings=warnings)


def outside_air_removed_ml(predicted: np.ndarray, cleaned: np.ndarray, scan) -> float:
    """Volume of the network's lung labels that the clean-up removed from the air around the body."""
    removed = (predicted > 0) & (cleaned == 0) & outside_air(scan.array)
    return float(removed.sum() * np.prod(scan.spacing_mm_zyx) / 1000.0)


def build_report(image, mask, checkpoint, device, grid_spacing_mm, prediction, labels, outside_air_ml: float = 0.0) -> dict:
    lung = labels > 0
    low_confidence = float(np.mean(prediction.confidence[lung] < 0.5)) if lung.any() else 0.0
    measures = lobe_measures(image, mask)
    quality = assess_quality(image, mask, measures, low_confidence, outside_air_ml=outside_air_ml)
    borders = border_report(image, mask)  # the vessel-sparse band along each fissure
    return {
        "software": {"name": "ctsunet-lobes", "version": __version__},
        "label_map": label_map(),
        "volumes_ml": volumes_ml(mask),
        "input_geometry": {
            "size_xyz": list(image.GetSize()),
            "spacing_mm_xyz": [float(s) for s in image.GetSpacing()],
            "origin_mm_xyz": [float(s) for s in image.GetOrigin()],
            "direction": [float(d) for d in image.GetDirection()],
        },
        "network_grid": {
            "spacing_mm_zyx": [round(float(s), 4) for s in grid_spacing_mm],
        },
        "weights": {
            "path": str(checkpoint.path),
            "sha256": checkpoint.sha256,
            "trained_on": checkpoint.meta.get("trained_on", "unknown"),
        },
        "device": str(device),
        "low_confidence_lung_share": round(low_confidence, 4),
        "outside_air_removed_ml": round(outside_air_ml, 1),
        "measures": measures,
        "quality_flags": quality.flags + border_flags(borders),
        "quality_estimates": quality.estimates,
        "border_vessel_index": borders,
    }
